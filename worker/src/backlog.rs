//! `worker_requests_waiting{shard}`: the requests waiting in each shard
//! this worker owns. A shard queue's message can carry many requests (see
//! [`shared::messages::RequestBatch`]), so the management UI's message
//! count is not the number of people waiting; this is. It is the sum of
//! the lines of the shows whose messages the shard has carried, read from
//! the database every few seconds (one index lookup per show).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use shared::store::bookings::{view, Lines};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the gauge is read: as often as the management UI's own
/// figures move.
const EVERY: Duration = Duration::from_secs(5);

/// The shows seen on each owned shard.
#[derive(Debug, Default)]
pub struct Backlog {
    shows: Mutex<BTreeMap<u16, HashSet<Uuid>>>,
}

impl Backlog {
    /// A message of `show` came from `shard`.
    pub fn seen(&self, shard: u16, show: Uuid) {
        self.lock().entry(shard).or_default().insert(show);
    }

    /// `shard` is no longer this worker's: its new owner reports it.
    pub fn forget(&self, shard: u16) {
        self.lock().remove(&shard);
        gauge(shard, 0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, HashSet<Uuid>>> {
        self.shows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the gauge of every owned shard every [`EVERY`] until `cancel`
    /// fires. A show whose line is empty is forgotten until its next
    /// message.
    pub async fn run(&self, db: PgPool, cancel: CancellationToken) {
        let lines = Lines::default();
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let read: HashSet<Uuid> = self.lock().values().flatten().copied().collect();
            let listed: Vec<Uuid> = read.iter().copied().collect();
            let lengths = match view::line_lengths(&db, &lines, &listed).await {
                Ok(lengths) => lengths,
                Err(err) => {
                    tracing::debug!(error = %err, "could not read the lines' lengths");
                    continue;
                }
            };
            let mut owned = self.lock();
            for (shard, shows) in owned.iter_mut() {
                // A show seen since the read keeps its place.
                shows.retain(|show| lengths.contains_key(show) || !read.contains(show));
                gauge(
                    *shard,
                    shows.iter().filter_map(|show| lengths.get(show)).sum(),
                );
            }
        }
    }
}

fn gauge(shard: u16, waiting: i64) {
    metrics::gauge!("worker_requests_waiting", "shard" => format!("{shard:02}"))
        .set(waiting as f64);
}
