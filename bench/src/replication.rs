//! A PostgreSQL cluster under the bench (`scripts/bench --postgres-nodes
//! N`): where its processes are, so that their CPU is counted as the
//! system's, and how far its replicas fall behind the primary during the
//! sale.
//!
//! Replication is synchronous: a commit waits until the synchronous
//! standby has its WAL on disk, not until it has replayed it, so what a
//! replica serves (the api's reads through `DATABASE_READ_URL`) can still
//! lag. The lag is sampled on the primary from `pg_stat_replication`: the
//! WAL bytes between the primary's current position and what each replica
//! has replayed, and `replay_lag`, the time from a local flush on the
//! primary to the replica's report of having replayed it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::monitor::BENCH_APPLICATION;
use crate::stats::{nearest_rank, Latency};

/// The cluster `scripts/bench` started, as it describes it in the
/// environment.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Each node's PostgreSQL port.
    pub node_ports: Vec<u16>,
    /// What runs the cluster beside PostgreSQL: each node's Patroni (its
    /// REST API's port) and etcd.
    pub support_ports: Vec<u16>,
    /// The proxy in front of the replicas, for the api's reads that may lag.
    pub read_addr: SocketAddr,
}

/// The cluster, and the one server to compare it with, when
/// `scripts/bench --postgres-nodes N` set them up.
#[derive(Debug, Clone)]
pub struct Setup {
    pub cluster: Cluster,
    /// A database URL on the plain PostgreSQL beside the cluster.
    pub single_url: String,
}

impl Setup {
    /// `None` unless `BENCH_SINGLE_DATABASE_URL` is set; then the rest must
    /// be too: `TEST_DATABASE_READ_URL`, `BENCH_POSTGRES_NODE_PORTS` and
    /// `BENCH_POSTGRES_SUPPORT_PORTS` (comma-separated ports).
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(single_url) = var("BENCH_SINGLE_DATABASE_URL") else {
            return Ok(None);
        };
        let wanted = |name: &str| {
            var(name).with_context(|| {
                format!("BENCH_SINGLE_DATABASE_URL is set but {name} is not: run scripts/bench --postgres-nodes N")
            })
        };
        let read_url = reqwest::Url::parse(&wanted("TEST_DATABASE_READ_URL")?)?;
        let read_addr = format!(
            "{}:{}",
            read_url.host_str().context("the read URL has a host")?,
            read_url.port().unwrap_or(5432)
        );
        Ok(Some(Self {
            cluster: Cluster {
                node_ports: ports(&wanted("BENCH_POSTGRES_NODE_PORTS")?)?,
                support_ports: ports(&wanted("BENCH_POSTGRES_SUPPORT_PORTS")?)?,
                read_addr: read_addr
                    .parse()
                    .with_context(|| format!("not an address: {read_addr}"))?,
            },
            single_url,
        }))
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn ports(list: &str) -> anyhow::Result<Vec<u16>> {
    list.split(',')
        .map(|p| p.trim().parse().with_context(|| format!("not a port: {p}")))
        .collect()
}

/// The port of the server that answers on `db`: through the proxy's write
/// port, the primary's.
pub async fn primary_port(db: &PgPool) -> anyhow::Result<u16> {
    let port: i32 = sqlx::query_scalar("SELECT inet_server_port()")
        .fetch_one(db)
        .await?;
    Ok(u16::try_from(port)?)
}

/// How often the primary is asked.
const INTERVAL: Duration = Duration::from_millis(250);

/// Replica lag during the sale, per replica and over all of them.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaLag {
    pub interval_ms: u64,
    /// Times the primary was asked.
    pub rounds: usize,
    /// Rounds that listed fewer replicas than the most any round listed (a
    /// replica not streaming then).
    pub rounds_missing_a_replica: usize,
    /// Replicas as the primary names them (Patroni's member names).
    pub replicas: Vec<ReplicaLagOf>,
    /// Every sample of every replica together.
    pub all: LagFigures,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicaLagOf {
    pub name: String,
    /// `sync` or `async` (or `potential`, `quorum`), as seen most often:
    /// only the synchronous standby holds up commits.
    pub sync_state: String,
    #[serde(flatten)]
    pub lag: LagFigures,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LagFigures {
    pub samples: usize,
    /// WAL bytes written on the primary and not yet replayed on the replica.
    pub bytes: Bytes,
    /// `replay_lag`. While a replica is idle and caught up, PostgreSQL
    /// shows no lag (NULL), counted here as 0.
    pub replay_lag: Latency,
    /// Samples with WAL outstanding but no `replay_lag` to show yet (left
    /// out of `replay_lag`).
    pub replay_lag_unknown: usize,
}

/// Nearest-rank percentiles of WAL bytes behind.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Bytes {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Bytes {
    fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        Self {
            p50: nearest_rank(&samples, 50.0),
            p99: nearest_rank(&samples, 99.0),
            max: samples[samples.len() - 1],
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
        }
    }
}

/// One replica in one round.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    name: String,
    sync_state: String,
    bytes: Option<f64>,
    replay_lag_s: Option<f64>,
}

/// Asks the primary every [`INTERVAL`] until stopped, on a connection of
/// its own (the bench's pool is busy with the monitor and the checks, and
/// a sample should not wait for them).
pub struct LagSampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<Vec<Row>>>,
}

impl LagSampler {
    pub async fn start(database_url: &str) -> anyhow::Result<Self> {
        let mut conn = PgConnectOptions::from_str(database_url)?
            .application_name(BENCH_APPLICATION)
            .connect()
            .await
            .context("connecting to the primary for the replica lag")?;
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut rounds = Vec::new();
            let mut interval = tokio::time::interval(INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = &mut stopped => break,
                }
                // A round the primary did not answer (it is busy or away)
                // is not a round: the lag it would show is unknown.
                if let Ok(rows) = sample(&mut conn).await {
                    rounds.push(rows);
                }
            }
            let _ = conn.close().await;
            rounds
        });
        Ok(Self { stop, task })
    }

    pub async fn finish(self) -> ReplicaLag {
        let _ = self.stop.send(());
        let rounds = self.task.await.expect("the lag sampler does not panic");
        ReplicaLag::of(&rounds)
    }
}

async fn sample(conn: &mut PgConnection) -> Result<Vec<Row>, sqlx::Error> {
    let started = Instant::now();
    let rows = sqlx::query_as(
        "SELECT application_name AS name, sync_state,
                pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS bytes,
                extract(epoch FROM replay_lag)::float8 AS replay_lag_s
         FROM pg_stat_replication ORDER BY application_name",
    )
    .fetch_all(conn)
    .await?;
    if started.elapsed() > INTERVAL {
        note_slow(started.elapsed());
    }
    Ok(rows)
}

/// A sample that took longer than the interval is noted once, on stderr:
/// the rounds are then further apart than asked.
fn note_slow(took: Duration) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!("note: a replica-lag sample took {took:?}, longer than the {INTERVAL:?} between samples");
    });
}

impl ReplicaLag {
    fn of(rounds: &[Vec<Row>]) -> Self {
        let most = rounds.iter().map(Vec::len).max().unwrap_or(0);
        let mut by_name: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
        for row in rounds.iter().flatten() {
            by_name.entry(&row.name).or_default().push(row);
        }
        let replicas = by_name
            .into_iter()
            .map(|(name, rows)| {
                let mut states: BTreeMap<&str, usize> = BTreeMap::new();
                for row in &rows {
                    *states.entry(&row.sync_state).or_default() += 1;
                }
                let sync_state = states
                    .into_iter()
                    .max_by_key(|(_, n)| *n)
                    .map(|(state, _)| state.to_owned())
                    .unwrap_or_default();
                ReplicaLagOf {
                    name: name.to_owned(),
                    sync_state,
                    lag: LagFigures::of(&rows),
                }
            })
            .collect();
        Self {
            interval_ms: INTERVAL.as_millis() as u64,
            rounds: rounds.len(),
            rounds_missing_a_replica: rounds.iter().filter(|r| r.len() < most).count(),
            replicas,
            all: LagFigures::of(&rounds.iter().flatten().collect::<Vec<_>>()),
        }
    }
}

impl LagFigures {
    fn of(rows: &[&Row]) -> Self {
        let mut unknown = 0;
        let mut lags = Vec::new();
        for row in rows {
            match (row.replay_lag_s, row.bytes.unwrap_or(0.0)) {
                (Some(lag), _) => lags.push(lag),
                // Idle and caught up: nothing to replay.
                (None, bytes) if bytes <= 0.0 => lags.push(0.0),
                (None, _) => unknown += 1,
            }
        }
        Self {
            samples: rows.len(),
            bytes: Bytes::of(
                rows.iter()
                    .map(|r| r.bytes.unwrap_or(0.0).max(0.0))
                    .collect(),
            ),
            replay_lag: Latency::of_seconds(lags),
            replay_lag_unknown: unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, sync: &str, bytes: f64, lag: Option<f64>) -> Row {
        Row {
            name: name.to_owned(),
            sync_state: sync.to_owned(),
            bytes: Some(bytes),
            replay_lag_s: lag,
        }
    }

    #[test]
    fn lag_is_summed_up_per_replica_and_over_all() {
        let rounds = vec![
            vec![
                row("pg-2", "sync", 0.0, None),
                row("pg-3", "async", 0.0, None),
            ],
            vec![
                row("pg-2", "sync", 1_000.0, Some(0.010)),
                row("pg-3", "async", 5_000.0, None),
            ],
            vec![row("pg-2", "sync", 3_000.0, Some(0.030))],
        ];
        let lag = ReplicaLag::of(&rounds);
        assert_eq!(lag.rounds, 3);
        assert_eq!(lag.rounds_missing_a_replica, 1);
        let names: Vec<&str> = lag.replicas.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["pg-2", "pg-3"]);
        let sync = &lag.replicas[0];
        assert_eq!(sync.sync_state, "sync");
        assert_eq!(sync.lag.samples, 3);
        assert!((sync.lag.bytes.max - 3_000.0).abs() < 1e-9);
        assert!((sync.lag.replay_lag.max_ms - 30.0).abs() < 1e-9);
        // Idle and caught up counts as no lag; behind without a figure is unknown.
        let other = &lag.replicas[1];
        assert_eq!(other.lag.replay_lag.count, 1);
        assert_eq!(other.lag.replay_lag_unknown, 1);
        assert_eq!(lag.all.samples, 5);
        assert!((lag.all.bytes.max - 5_000.0).abs() < 1e-9);
    }

    #[test]
    fn port_lists_are_read() {
        assert_eq!(ports("55331,55332, 55333").unwrap(), [55331, 55332, 55333]);
        assert!(ports("55331,x").is_err());
    }
}
