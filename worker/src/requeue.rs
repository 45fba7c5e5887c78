//! Crash recovery for the API: a booking is recorded before its request is
//! published, so an API that dies in between leaves a `queued` row with no
//! message. Long-queued rows are published again; workers skip duplicates.

use std::time::Duration;

use shared::amqp::Publisher;
use shared::messages::BookingCommand;
use shared::store::bookings::sweeps;
use shared::sweep::SweepError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const SWEEP_EVERY: Duration = Duration::from_secs(5);

pub async fn run(
    db: PgPool,
    publisher: &Publisher,
    older_than: Duration,
    cancel: CancellationToken,
) {
    shared::sweep::every("requeue", SWEEP_EVERY, cancel, || {
        sweep(&db, publisher, older_than)
    })
    .await;
}

async fn sweep(
    db: &PgPool,
    publisher: &Publisher,
    older_than: Duration,
) -> Result<usize, SweepError> {
    let stale = sweeps::stale_in_line(db, older_than).await?;
    for row in &stale {
        let command = BookingCommand::Request {
            booking_id: row.id,
            show_id: row.show_id,
        };
        publisher.send_command(&command).await?;
        metrics::counter!("worker_requeued_total").increment(1);
        tracing::warn!(booking_id = %row.id, "republished a long-queued booking");
    }
    Ok(stale.len())
}
