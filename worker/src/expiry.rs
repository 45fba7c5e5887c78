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
use shared::sweep::SweepError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::outbox;

const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A hold still held this long after its expiry was requested is asked again.
const ASK_AGAIN_AFTER_SECONDS: f64 = 60.0;

pub async fn run(db: PgPool, cancel: CancellationToken) {
    shared::sweep::every("expiry", SWEEP_EVERY, cancel, || sweep(&db)).await;
}

/// Claims due holds and the waitlisted bookings of started shows (`SKIP
/// LOCKED`, so sweepers in other workers take others), notes the request
/// and records the commands, in one transaction.
async fn sweep(db: &PgPool) -> Result<usize, SweepError> {
    let mut tx = db.begin().await?;
    let mut due: Vec<(Uuid, Uuid)> = sqlx::query!(
        "SELECT id, show_id FROM bookings
         WHERE status = 'held' AND hold_expires_at <= now()
           AND (expiry_requested_at IS NULL
                OR expiry_requested_at < now() - make_interval(secs => $1))
         ORDER BY hold_expires_at LIMIT 1000
         FOR UPDATE SKIP LOCKED",
        ASK_AGAIN_AFTER_SECONDS
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|d| (d.id, d.show_id))
    .collect();
    // Shows first: almost always none has started with people waiting, and
    // then the (possibly long) waiting lists of shows on sale are not read.
    let started: Vec<Uuid> = sqlx::query_scalar!(
        "SELECT id FROM shows s
         WHERE starts_at <= now() AND waitlist_tail > 0
           AND (SELECT true FROM bookings b
                WHERE b.show_id = s.id AND b.status = 'waitlisted' LIMIT 1)"
    )
    .fetch_all(&mut *tx)
    .await?;
    if !started.is_empty() {
        due.extend(
            sqlx::query!(
                "SELECT id, show_id FROM bookings
                 WHERE status = 'waitlisted' AND show_id = ANY($2)
                   AND (expiry_requested_at IS NULL
                        OR expiry_requested_at < now() - make_interval(secs => $1))
                 LIMIT 1000
                 FOR UPDATE SKIP LOCKED",
                ASK_AGAIN_AFTER_SECONDS,
                &started
            )
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|d| (d.id, d.show_id)),
        );
    }
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = due.iter().map(|(id, _)| *id).collect();
    sqlx::query!(
        "UPDATE bookings SET expiry_requested_at = now() WHERE id = ANY($1)",
        &ids
    )
    .execute(&mut *tx)
    .await?;
    let commands: Vec<BookingCommand> = due
        .iter()
        .map(|&(booking_id, show_id)| BookingCommand::Expire {
            booking_id,
            show_id,
        })
        .collect();
    outbox::insert_commands(&mut tx, &commands).await?;
    tx.commit().await?;
    metrics::counter!("worker_expiries_requested_total").increment(ids.len() as u64);
    Ok(ids.len())
}
