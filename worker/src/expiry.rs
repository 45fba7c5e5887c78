//! Returns expired holds to sale. Every worker runs a sweeper; the booking's
//! version check makes two sweepers (or a sweeper and a confirm) racing for
//! the same hold harmless: one wins, the other finds nothing to do.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::decide::{Decider, Outcome};
use crate::payment::PaymentGateway;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub async fn run<G: PaymentGateway>(
    db: PgPool,
    decider: Arc<Decider<G>>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            () = cancel.cancelled() => return,
        }
        let due = sqlx::query_scalar!(
            "SELECT id FROM bookings WHERE status = 'held' AND hold_expires_at <= now()
             ORDER BY hold_expires_at LIMIT 500"
        )
        .fetch_all(&db)
        .await;
        let due = match due {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err, "expiry sweep failed");
                continue;
            }
        };
        for booking_id in due {
            match decider.expire(booking_id).await {
                Ok(Outcome::Applied(_)) => {
                    metrics::counter!("worker_holds_expired_total").increment(1);
                    tracing::info!(%booking_id, "hold expired");
                }
                Ok(Outcome::Skipped(_)) => {}
                // Another worker got there first, or the database is down:
                // the next sweep tries again.
                Err(err) => tracing::debug!(%booking_id, error = %err, "expiry deferred"),
            }
        }
    }
}
