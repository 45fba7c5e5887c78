//! Returns expired holds to sale, and ends the waiting list of a show that
//! has started. The sweeper does not touch the booking
//! itself: it records an `expire` command in the outbox, which the relay
//! sends down the show's shard queue, so the release is decided in order
//! with everything else for that show, by the one consumer that owns it (no
//! version conflicts with a running sale). Each hold is asked for once; if
//! it is still held a while later, it is asked for again — the decision is
//! idempotent, so a duplicate changes nothing.

use std::time::Duration;

use shared::messages::BookingCommand;
use shared::store::bookings::sweeps;
use shared::store::shows;
use shared::sweep::SweepError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::outbox;

const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A hold still held this long after its expiry was requested is asked again.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(60);

pub async fn run(db: PgPool, cancel: CancellationToken) {
    shared::sweep::every("expiry", SWEEP_EVERY, cancel, || sweep(&db)).await;
}

/// Claims due holds and the waitlisted bookings of started shows (`SKIP
/// LOCKED`, so sweepers in other workers take others), notes the request
/// and records the commands, in one transaction.
async fn sweep(db: &PgPool) -> Result<usize, SweepError> {
    let mut tx = db.begin().await?;
    let mut due = sweeps::lock_expired_holds(&mut tx, ASK_AGAIN_AFTER).await?;
    // Shows first: almost always none has started with people waiting, and
    // then the (possibly long) waiting lists of shows on sale are not read.
    let started = shows::started_with_waitlist(&mut tx).await?;
    if !started.is_empty() {
        due.extend(sweeps::lock_waitlisted(&mut tx, &started, ASK_AGAIN_AFTER).await?);
    }
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = due.iter().map(|d| d.id).collect();
    sweeps::mark_expiry_requested(&mut tx, &ids).await?;
    let commands: Vec<BookingCommand> = due
        .iter()
        .map(|d| BookingCommand::Expire {
            booking_id: d.id,
            show_id: d.show_id,
        })
        .collect();
    outbox::insert_commands(&mut tx, &commands).await?;
    tx.commit().await?;
    metrics::counter!("worker_expiries_requested_total").increment(ids.len() as u64);
    Ok(ids.len())
}
