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
