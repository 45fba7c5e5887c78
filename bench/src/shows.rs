//! Many shows on sale at once (`--shows N`): which show each request goes
//! to, how the tickets are split between the shows, and how evenly the
//! workers shared the work. Pure functions, so that a run is reproducible
//! from its `--seed` and the arithmetic is tested here.

use serde::Serialize;

/// How far from even a worker's share may be: within a third of
/// `1 / workers`, either way.
pub const EVEN_WITHIN: f64 = 1.0 / 3.0;
/// Fewer decisions than this say little about how the workers share them,
/// so `--check` does not judge their spread.
pub const MIN_DECISIONS_JUDGED: usize = 1_000;

/// Zipf weights of ranks 1..=n, `1 / k^s`, normalised to sum to 1.
pub fn zipf_weights(n: usize, s: f64) -> Vec<f64> {
    let raw: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
    let sum: f64 = raw.iter().sum();
    raw.into_iter().map(|w| w / sum).collect()
}

/// Draws ranks (0-based) from a Zipf law over `n` ranks.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        assert!(n > 0, "a Zipf law needs at least one rank");
        let mut sum = 0.0;
        let mut cumulative: Vec<f64> = zipf_weights(n, s)
            .into_iter()
            .map(|w| {
                sum += w;
                sum
            })
            .collect();
        // No uniform draw may fall past the last rank through rounding.
        *cumulative.last_mut().expect("n > 0") = 1.0;
        Self { cumulative }
    }

    /// The rank for a uniform draw `u` in [0, 1): the first whose
    /// cumulative weight exceeds `u`.
    pub fn sample(&self, u: f64) -> usize {
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1)
    }
}

/// Splits `total` tickets between shows in proportion to `weights`
/// (largest remainders), at least one each: the sum is `total`, or the
/// number of shows if that is more.
pub fn split_capacity(total: u32, weights: &[f64]) -> Vec<u32> {
    let exact: Vec<f64> = weights.iter().map(|w| f64::from(total) * w).collect();
    let mut capacities: Vec<u32> = exact.iter().map(|e| (e.floor() as u32).max(1)).collect();
    let given: u64 = capacities.iter().map(|&c| u64::from(c)).sum();
    let missing = u64::from(total).saturating_sub(given);
    if missing > 0 {
        let mut order: Vec<usize> = (0..weights.len()).collect();
        let remainder = |i: usize| exact[i] - f64::from(capacities[i]);
        order.sort_by(|&a, &b| remainder(b).total_cmp(&remainder(a)).then(a.cmp(&b)));
        for &i in order.iter().cycle().take(missing as usize) {
            capacities[i] += 1;
        }
    }
    capacities
}

/// The largest relative distance of a share from even, `|share · n − 1|`
/// over the `n` shares (0 = perfectly even; `None` for no shares).
pub fn max_deviation(shares: &[f64]) -> Option<f64> {
    let n = shares.len() as f64;
    shares.iter().map(|s| (s * n - 1.0).abs()).reduce(f64::max)
}

/// How the tickets of many shows sold.
#[derive(Debug, Clone, Serialize)]
pub struct ManyShows {
    /// The Zipf exponent over the shows' ranks.
    pub zipf_s: f64,
    /// Tickets of the most wanted show, and of the least wanted.
    pub capacity_max: u32,
    pub capacity_min: u32,
    /// Share of the accepted requests that went to the most wanted show.
    pub top_show_share: f64,
    /// Shows that got at least one accepted request.
    pub shows_requested: usize,
    /// Shows with every ticket held.
    pub sold_out: usize,
}

/// How evenly the worker processes shared the sale's decisions and the
/// shard queues, against "each within a third of 1 / workers".
#[derive(Debug, Clone, Serialize)]
pub struct Evenness {
    pub workers: usize,
    /// Largest `|share · workers − 1|` of the decisions (`None`: none made).
    pub decisions_max_deviation: Option<f64>,
    pub decisions_within_a_third: bool,
    /// Largest `|share · workers − 1|` of the shard queues each worker
    /// consumed when the sale was decided (`None`: not known).
    pub shards_max_deviation: Option<f64>,
    pub shards_within_a_third: bool,
    /// Whether `--check` holds the run to it: only with many shows (one
    /// show is one shard, decided by one worker by design), and for the
    /// decisions only from `MIN_DECISIONS_JUDGED` decided.
    pub decisions_judged: bool,
    pub shards_judged: bool,
}

impl Evenness {
    /// Per worker: `decisions` made, and `shard_shares`, the fraction of
    /// all the shard queues it consumes.
    pub fn of(decisions: &[f64], shard_shares: &[f64], many_shows: bool) -> Self {
        let within = |d: Option<f64>| d.is_some_and(|d| d <= EVEN_WITHIN + 1e-9);
        let total: f64 = decisions.iter().sum();
        let decision_shares: Vec<f64> = decisions.iter().map(|d| d / total).collect();
        let decisions_max_deviation = (total > 0.0)
            .then(|| max_deviation(&decision_shares))
            .flatten();
        let shards_max_deviation = max_deviation(shard_shares);
        Self {
            workers: decisions.len(),
            decisions_max_deviation,
            decisions_within_a_third: within(decisions_max_deviation),
            shards_max_deviation,
            shards_within_a_third: within(shards_max_deviation),
            decisions_judged: many_shows && total >= MIN_DECISIONS_JUDGED as f64,
            shards_judged: many_shows,
        }
    }

    /// Whether what is judged is within a third of even.
    pub fn ok(&self) -> bool {
        (!self.decisions_judged || self.decisions_within_a_third)
            && (!self.shards_judged || self.shards_within_a_third)
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn zipf_weights_fall_as_one_over_the_rank() {
        let w = zipf_weights(3, 1.0);
        let h3 = 1.0 + 0.5 + 1.0 / 3.0;
        assert!((w[0] - 1.0 / h3).abs() < 1e-12);
        assert!((w[1] - 0.5 / h3).abs() < 1e-12);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // s = 0 is uniform.
        assert!(zipf_weights(4, 0.0)
            .iter()
            .all(|w| (w - 0.25).abs() < 1e-12));
    }

    #[test]
    fn a_uniform_draw_picks_the_first_rank_past_it() {
        // Cumulative 6/11, 9/11, 1.
        let z = Zipf::new(3, 1.0);
        assert_eq!(z.sample(0.0), 0);
        assert_eq!(z.sample(0.54), 0);
        assert_eq!(z.sample(0.55), 1);
        assert_eq!(z.sample(0.8), 1);
        assert_eq!(z.sample(0.9), 2);
        assert_eq!(z.sample(0.999_999_9), 2);
        assert_eq!(z.sample(1.0), 2);
        assert_eq!(Zipf::new(1, 1.0).sample(0.7), 0);
    }

    #[test]
    fn seeded_draws_follow_the_law_and_repeat() {
        let z = Zipf::new(1_000, 1.0);
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..100_000)
                .map(|_| z.sample(rng.random()))
                .collect::<Vec<_>>()
        };
        let ranks = draw(1);
        assert_eq!(ranks, draw(1));
        let share = |rank| ranks.iter().filter(|&&r| r == rank).count() as f64 / 1e5;
        let h: f64 = (1..=1_000).map(|k| 1.0 / f64::from(k)).sum();
        assert!((share(0) - 1.0 / h).abs() < 0.005, "{}", share(0));
        assert!((share(1) - 0.5 / h).abs() < 0.005, "{}", share(1));
        assert!(ranks.iter().all(|&r| r < 1_000));
    }

    #[test]
    fn capacity_is_split_by_weight_exactly_and_at_least_one_each() {
        let w = zipf_weights(1_000, 1.0);
        let c = split_capacity(20_000, &w);
        assert_eq!(c.iter().sum::<u32>(), 20_000);
        assert!(c.iter().all(|&c| c >= 1));
        assert!(c.windows(2).all(|p| p[0] >= p[1]), "falls with the rank");
        assert!((2_671..=2_673).contains(&c[0]), "{}", c[0]);
        // Fewer tickets than shows: one each.
        assert_eq!(split_capacity(5, &zipf_weights(20, 1.0)), vec![1; 20]);
        assert_eq!(split_capacity(7, &[1.0]), vec![7]);
    }

    #[test]
    fn deviation_from_even_is_relative_to_the_fair_share() {
        assert_eq!(max_deviation(&[]), None);
        assert!(max_deviation(&[0.5, 0.5]).unwrap().abs() < 1e-12);
        assert!((max_deviation(&[0.6, 0.4]).unwrap() - 0.2).abs() < 1e-12);
        assert!((max_deviation(&[0.7, 0.3]).unwrap() - 0.4).abs() < 1e-12);
    }

    #[test]
    fn evenness_is_judged_only_for_many_shows_and_enough_decisions() {
        let even = Evenness::of(&[600.0, 400.0], &[0.5, 0.5], true);
        assert!(even.decisions_within_a_third && even.shards_within_a_third);
        assert!(even.decisions_judged && even.ok());

        let lopsided = Evenness::of(&[700.0, 300.0], &[0.5, 0.5], true);
        assert!(!lopsided.decisions_within_a_third && !lopsided.ok());
        // One show: one worker decides everything, by design.
        assert!(Evenness::of(&[1_000.0, 0.0], &[0.5, 0.5], false).ok());
        // Too few decisions to judge.
        let few = Evenness::of(&[90.0, 10.0], &[0.5, 0.5], true);
        assert!(!few.decisions_judged && few.ok());
        // A worker without shards fails whatever the decisions.
        assert!(!Evenness::of(&[600.0, 400.0], &[1.0, 0.0], true).ok());
        let none = Evenness::of(&[0.0, 0.0], &[], true);
        assert_eq!(none.decisions_max_deviation, None);
        assert!(!none.shards_within_a_third && !none.ok());
    }
}
