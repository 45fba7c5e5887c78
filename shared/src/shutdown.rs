//! Graceful shutdown. SIGTERM or Ctrl-C cancels the process's root token;
//! every task watches a child of it (and hands children of its own token
//! to its sub-tasks), so the whole process stops taking new work at once.
//! Tasks then finish what they hold: in-flight work is acked, or left
//! unacked for redelivery. [`drain`] bounds how long the process waits for
//! that (`SHUTDOWN_GRACE_SECONDS`); past it the process exits anyway, which
//! loses nothing either: RabbitMQ redelivers what was unacked.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Returns the process's root token, cancelled on the first SIGTERM or SIGINT.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            () = term => {},
        }
        tracing::info!("shutdown signal received, draining");
        trigger.cancel();
    });
    token
}

/// Runs `work` (the process's tasks) to its end. If it is still running
/// `grace` after `root` was cancelled, ends the process with status 1.
pub async fn drain<F: Future>(root: &CancellationToken, grace: Duration, work: F) -> F::Output {
    match within_grace(root, grace, work).await {
        Some(out) => out,
        None => give_up(grace),
    }
}

/// Runs `work` to its end, but once `root` is
/// cancelled waits at most `grace` more. `None` if the grace ran out.
async fn within_grace<F: Future>(
    root: &CancellationToken,
    grace: Duration,
    work: F,
) -> Option<F::Output> {
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return Some(out),
        () = root.cancelled() => {}
    }
    tokio::time::timeout(grace, work).await.ok()
}

/// Ends the process at once after the grace ran out: what did not finish
/// is unacked (redelivered) or never answered.
fn give_up(grace: Duration) -> ! {
    tracing::error!(
        ?grace,
        "draining did not finish within SHUTDOWN_GRACE_SECONDS; exiting anyway, \
         unacknowledged messages will be redelivered"
    );
    // Not a return from main: dropping the runtime would wait for tasks
    // still blocked, which is what the grace is there to bound.
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_that_ends_before_any_signal_is_not_cut_short() {
        let root = CancellationToken::new();
        let out = within_grace(&root, Duration::ZERO, async { 7 }).await;
        assert_eq!(out, Some(7));
    }

    #[tokio::test]
    async fn draining_work_gets_the_grace_after_the_signal() {
        let root = CancellationToken::new();
        let task = root.child_token();
        let work = async move {
            task.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            "drained"
        };
        root.cancel();
        let out = within_grace(&root, Duration::from_secs(5), work).await;
        assert_eq!(out, Some("drained"));
    }

    #[tokio::test]
    async fn work_still_running_when_the_grace_ends_is_abandoned() {
        let root = CancellationToken::new();
        root.cancel();
        let started = std::time::Instant::now();
        let out = within_grace(
            &root,
            Duration::from_millis(100),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(out, None);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
