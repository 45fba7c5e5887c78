//! Shard ownership: which worker consumes which shard queue.
//!
//! Single active consumer keeps each shard in order (one consumer at a
//! time), but on RabbitMQ 3.10 the first worker to subscribe would get every
//! shard, so it cannot balance the pool by itself. A worker therefore
//! subscribes to a shard only while it holds that shard's PostgreSQL
//! advisory lock, and aims at its fair share, `ceil(shards / live workers)`.
//! Live workers are the sessions named [`APPLICATION_NAME`] in
//! `pg_stat_activity`: a worker that dies loses its session at once, which
//! frees its locks, and the others claim its shards on their next pass (the
//! SQL of both is in [`shared::store::claims`]).
//! Single active consumer stays on as the safety net during hand-over.

use std::collections::BTreeSet;
use std::str::FromStr;

use shared::store::claims::{self, APPLICATION_NAME};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

/// Shards each of `live` workers should own.
pub fn fair_share(shards: u16, live: i64) -> usize {
    let live = live.max(1) as usize;
    (usize::from(shards)).div_ceil(live)
}

/// What to change after a pass: shards to stop consuming (then release) and
/// shards newly claimed (to start consuming).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub stop: Vec<u16>,
    pub start: Vec<u16>,
}

pub struct Claims {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    held: BTreeSet<u16>,
    shards: u16,
    /// Where this worker starts looking for free shards, so that workers
    /// starting together do not all race for shard 0.
    offset: u16,
}

impl Claims {
    pub fn new(database_url: &str, shards: u16) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(database_url)?.application_name(APPLICATION_NAME);
        Ok(Self {
            options,
            conn: None,
            held: BTreeSet::new(),
            shards,
            offset: (std::process::id() % u32::from(shards.max(1))) as u16,
        })
    }

    /// One balancing pass against the shards now `running`.
    pub async fn rebalance(&mut self, running: &BTreeSet<u16>) -> Result<Plan, sqlx::Error> {
        let result = self.try_rebalance(running).await;
        if result.is_err() {
            // Locks die with the session; start over on the next pass.
            self.conn = None;
            self.held.clear();
        }
        result
    }

    async fn try_rebalance(&mut self, running: &BTreeSet<u16>) -> Result<Plan, sqlx::Error> {
        if self.conn.is_none() {
            self.conn = Some(self.options.connect().await?);
            self.held.clear();
        }
        let mut plan = Plan::default();
        // After a lost session, take back what we still consume, or let go.
        for &shard in running.difference(&self.held.clone()) {
            if self.try_lock(shard).await? {
                self.held.insert(shard);
            } else {
                plan.stop.push(shard);
            }
        }
        let live = self.live_workers().await?;
        let target = fair_share(self.shards, live);
        let owned: Vec<u16> = self
            .held
            .iter()
            .copied()
            .filter(|s| !plan.stop.contains(s))
            .collect();
        if owned.len() > target {
            plan.stop
                .extend(owned.iter().rev().take(owned.len() - target));
        } else {
            let mut count = owned.len();
            let (shards, offset) = (self.shards, self.offset);
            for shard in (0..shards).map(|i| (i + offset) % shards) {
                if count >= target {
                    break;
                }
                if !self.held.contains(&shard) && self.try_lock(shard).await? {
                    self.held.insert(shard);
                    plan.start.push(shard);
                    count += 1;
                }
            }
        }
        Ok(plan)
    }

    /// Gives a shard back once its consumer has stopped.
    pub async fn release(&mut self, shard: u16) {
        if !self.held.remove(&shard) {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let unlocked = claims::release(conn, shard).await;
        if let Err(err) = unlocked {
            tracing::warn!(shard, error = %err, "releasing shard failed; dropping the claim session");
            self.conn = None;
            self.held.clear();
        }
    }

    async fn try_lock(&mut self, shard: u16) -> Result<bool, sqlx::Error> {
        claims::try_claim(self.conn.as_mut().expect("connected"), shard).await
    }

    async fn live_workers(&mut self) -> Result<i64, sqlx::Error> {
        claims::live_workers(self.conn.as_mut().expect("connected")).await
    }
}

#[cfg(test)]
mod tests {
    use super::fair_share;

    #[test]
    fn shares_round_up_so_every_shard_has_an_owner() {
        assert_eq!(fair_share(16, 1), 16);
        assert_eq!(fair_share(16, 2), 8);
        assert_eq!(fair_share(16, 3), 6);
        assert_eq!(fair_share(16, 0), 16, "a worker always counts itself");
        for live in 1..=20 {
            assert!(fair_share(16, live) * live as usize >= 16);
        }
    }
}
