//! Latency percentiles and rates.

use serde::Serialize;

/// Summary of a latency sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// Summarises samples given in seconds. Nearest-rank percentiles: the
    /// reported p99 is a latency some request really had, never an
    /// interpolation between two.
    pub fn of_seconds(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let rank = |p: f64| nearest_rank(&samples, p) * 1000.0;
        Self {
            count: n,
            p50_ms: rank(50.0),
            p90_ms: rank(90.0),
            p95_ms: rank(95.0),
            p99_ms: rank(99.0),
            max_ms: samples[n - 1] * 1000.0,
            mean_ms: samples.iter().sum::<f64>() / n as f64 * 1000.0,
        }
    }
}

/// The `p`th percentile of sorted, non-empty samples by nearest rank: a
/// value that was really sampled.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let index = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[index.clamp(1, n) - 1]
}

/// Events per second; zero for an empty or instantaneous span rather than
/// an infinity that would poison ratios and the JSON report.
pub fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `a / b`, or `None` when there is nothing to compare with.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(|ms| f64::from(ms) / 1000.0).collect();
        let l = Latency::of_seconds(samples);
        assert_eq!(l.count, 100);
        assert!((l.p50_ms - 50.0).abs() < 1e-9);
        assert!((l.p90_ms - 90.0).abs() < 1e-9);
        assert!((l.p95_ms - 95.0).abs() < 1e-9);
        assert!((l.p99_ms - 99.0).abs() < 1e-9);
        assert!((l.max_ms - 100.0).abs() < 1e-9);
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let l = Latency::of_seconds(vec![0.002]);
        assert!((l.p50_ms - 2.0).abs() < 1e-9 && (l.p99_ms - 2.0).abs() < 1e-9);
    }

    #[test]
    fn nothing_to_measure_gives_zeroes() {
        assert_eq!(Latency::of_seconds(Vec::new()).count, 0);
        assert!(per_second(10, 0.0).abs() < f64::EPSILON);
        assert!(ratio(1.0, 0.0).is_none());
    }
}
