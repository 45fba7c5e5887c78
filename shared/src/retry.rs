//! Retry timing: exponential backoff with jitter (backon; the `backoff`
//! crate is unmaintained, RUSTSEC-2025-0012), and [`Retry`], the one loop
//! that retries a step of handling a message.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// Waiting for a dependency to come back: 100 ms doubling to 5 s, forever.
pub fn forever() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
}

/// Successive waits between attempts, starting at `first`, capped at 5 s.
/// The caller decides when to stop.
pub fn delays(first: Duration) -> impl Iterator<Item = Duration> {
    delays_up_to(first, Duration::from_secs(5))
}

/// Successive waits between attempts, from `first` doubling up to
/// `longest`, with jitter. The caller decides when to stop.
pub fn delays_up_to(first: Duration, longest: Duration) -> impl Iterator<Item = Duration> {
    forever()
        .with_min_delay(first)
        .with_max_delay(longest)
        .build()
}

/// How a failed attempt counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A dependency is away: retried without limit, since the work itself
    /// is fine and must not be given up (dead-lettered) for it.
    Outage,
    /// Counts towards [`Retry::max_attempts`].
    Counted,
}

/// How retrying ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Tried<T, E> {
    Done(T),
    /// Failed on every attempt it was allowed.
    GaveUp {
        error: E,
        attempts: u32,
    },
    /// Shutdown came while waiting for the next attempt.
    Interrupted,
}

/// Shutdown arrived while a step was retried.
#[derive(Debug, PartialEq, Eq)]
pub struct Interrupted;

/// Retrying a step with exponential backoff and jitter. Shutdown only cuts
/// the waits short, never an attempt in progress: what an attempt started
/// (a transaction, an email on the wire) is finished.
pub struct Retry<'a> {
    /// Named in the warning logged for each failure.
    pub what: &'static str,
    /// The first wait; it doubles up to 5 s.
    pub first: Duration,
    /// Attempts at most for failures that are not outages.
    pub max_attempts: u32,
    pub cancel: &'a CancellationToken,
}

impl Retry<'_> {
    /// Runs `attempt` until it succeeds, a counted failure (as `failure`
    /// classifies it) used up the attempts, or shutdown comes during a wait.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut attempt: F,
        failure: impl Fn(&E) -> Failure,
    ) -> Tried<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        let mut delays = delays(self.first);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let err = match attempt().await {
                Ok(value) => return Tried::Done(value),
                Err(err) => err,
            };
            if failure(&err) == Failure::Counted && attempts >= self.max_attempts {
                return Tried::GaveUp {
                    error: err,
                    attempts,
                };
            }
            let wait = delays.next().unwrap_or(Duration::from_secs(5));
            let what = self.what;
            tracing::warn!(error = %err, attempts, ?wait, "{what} failed, retrying");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.cancel.cancelled() => return Tried::Interrupted,
            }
        }
    }
}

/// Retries a database step while it fails (the database is unreachable),
/// until it works or shutdown comes.
pub async fn until_done<T, F, Fut>(cancel: &CancellationToken, step: F) -> Result<T, Interrupted>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let retry = Retry {
        what: "database step",
        first: Duration::from_millis(100),
        max_attempts: u32::MAX,
        cancel,
    };
    match retry.run(step, |_| Failure::Outage).await {
        Tried::Done(value) => Ok(value),
        Tried::GaveUp { .. } | Tried::Interrupted => Err(Interrupted),
    }
}

/// The wait after the `attempts`-th failed attempt at something retried
/// from a table (refunds, webhook deliveries): `first`, doubling, capped at
/// `max`.
pub fn backoff(attempts: i32, first: Duration, max: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 24) as u32;
    first
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_wait_to_the_cap() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(300));
        let waits: Vec<u64> = (1..=11).map(|n| backoff(n, first, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(0, first, max), first);
        assert_eq!(backoff(i32::MAX, first, max), max);
    }

    #[tokio::test]
    async fn a_database_outage_cut_short_by_shutdown_is_interrupted_not_done() {
        let cancel = CancellationToken::new();
        let mut tries = 0;
        let outcome = until_done(&cancel, || {
            tries += 1;
            if tries == 2 {
                cancel.cancel();
            }
            async { Err::<bool, _>(sqlx::Error::PoolTimedOut) }
        })
        .await;
        assert_eq!(outcome, Err(Interrupted));
    }

    #[tokio::test]
    async fn counted_failures_give_up_after_the_last_attempt_but_outages_do_not() {
        let cancel = CancellationToken::new();
        let retry = Retry {
            what: "test",
            first: Duration::from_millis(1),
            max_attempts: 3,
            cancel: &cancel,
        };
        let mut tries = 0;
        let tried = retry
            .run(
                || {
                    tries += 1;
                    async { Err::<(), _>("broken") }
                },
                |_| Failure::Counted,
            )
            .await;
        assert_eq!(
            tried,
            Tried::GaveUp {
                error: "broken",
                attempts: 3
            }
        );
        let mut tries = 0;
        let tried = retry
            .run(
                || {
                    tries += 1;
                    let outcome = if tries < 6 { Err("away") } else { Ok(tries) };
                    async move { outcome }
                },
                |_| Failure::Outage,
            )
            .await;
        assert_eq!(tried, Tried::Done(6));
    }
}
