//! Retry timing: exponential backoff with jitter (backon; the `backoff`
//! crate is unmaintained, RUSTSEC-2025-0012).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

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
    forever().with_min_delay(first).build()
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
}
