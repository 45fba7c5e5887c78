//! Periodic sweeps (hold expiries, stale queued bookings, reminders) share
//! one loop: wait, sweep, log what the pass did, until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::amqp::PublishError;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Runs `sweep` every `period` until `cancel` fires. A pass returns how many
/// items it acted on; a failed pass is logged and the next one tries again.
pub async fn every<F, Fut>(
    name: &'static str,
    period: Duration,
    cancel: CancellationToken,
    mut sweep: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, SweepError>>,
{
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = cancel.cancelled() => return,
        }
        match sweep().await {
            Ok(0) => {}
            Ok(count) => tracing::info!(sweep = name, count, "sweep acted"),
            Err(err) => {
                tracing::warn!(sweep = name, error = %err, "sweep failed, retrying next pass")
            }
        }
    }
}
