//! Crash recovery for the API: a booking is recorded before its request is
//! published, so an API that dies in between leaves a `queued` row with no
//! message. Long-queued rows are published again; workers skip duplicates.

use std::time::Duration;

use shared::amqp::Publisher;
use shared::messages::BookingCommand;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const SWEEP_EVERY: Duration = Duration::from_secs(5);

pub async fn run(
    db: PgPool,
    publisher: &Publisher,
    older_than: Duration,
    cancel: CancellationToken,
) {
    let older_than = older_than.as_secs_f64();
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            () = cancel.cancelled() => return,
        }
        let stale = sqlx::query!(
            "SELECT id, show_id FROM bookings
             WHERE status = 'queued' AND dead_lettered_at IS NULL
               AND created_at < now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT 1000",
            older_than
        )
        .fetch_all(&db)
        .await;
        let stale = match stale {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = %err, "requeue sweep failed");
                continue;
            }
        };
        for row in stale {
            let command = BookingCommand::Request {
                booking_id: row.id,
                show_id: row.show_id,
            };
            match publisher.send_command(&command).await {
                Ok(()) => {
                    metrics::counter!("worker_requeued_total").increment(1);
                    tracing::warn!(booking_id = %row.id, "republished a long-queued booking");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "requeue publish failed");
                    break;
                }
            }
        }
    }
}
