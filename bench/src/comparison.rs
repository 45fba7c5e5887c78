//! A PostgreSQL cluster against one server, in one run: the same limits
//! and the same sale on each, one after the other, with the same broker,
//! services and settings. Their ratios say what the cluster (synchronous
//! replication, a proxy in front, Patroni beside) costs per booking. Taken
//! within one run, they are far steadier than two runs' figures on this
//! drifting machine; the RabbitMQ limit, the same broker measured in both
//! halves, shows how much the machine moved between them.

use std::fmt::Write as _;

use serde::Serialize;

use crate::flash_sale::FlashSale;
use crate::limits::Limits;
use crate::monitor::{OTHER, POSTGRES};
use crate::report::{count, Ratios, SystemConfig};
use crate::stats::ratio;

/// What the one server did, beside the cluster's figures (the report's own
/// `limits` and `flash_sale`).
#[derive(Debug, Serialize)]
pub struct OneNode {
    /// The server's database URL.
    pub database_url: String,
    pub load_average_at_start: f64,
    pub system: SystemConfig,
    pub limits: Option<Limits>,
    pub flash_sale: Option<FlashSale>,
    pub ratios: Ratios,
    /// `None` when no flash sale ran.
    pub correct: Option<bool>,
}

/// One figure on both, and the cluster's as a multiple of the one node's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pair {
    pub cluster: f64,
    pub one_node: f64,
    /// `cluster / one_node`.
    pub ratio: Option<f64>,
}

impl Pair {
    fn of(cluster: f64, one_node: f64) -> Self {
        Self {
            cluster,
            one_node,
            ratio: ratio(cluster, one_node),
        }
    }
}

/// The cluster against one server, figure by figure (`None` where a
/// scenario did not run).
#[derive(Debug, Default, Serialize)]
pub struct VsOneNode {
    pub decided_per_s: Option<Pair>,
    pub submit_per_s: Option<Pair>,
    /// The system's CPU per decided booking, µs (the cluster's includes
    /// its replicas, the proxy, Patroni and etcd).
    pub cpu_per_decided_us: Option<Pair>,
    /// PostgreSQL's part of it: this system's backends, the server's own
    /// processes, and on the cluster the WAL senders and the replicas.
    pub postgres_cpu_per_decided_us: Option<Pair>,
    pub decided_p99_ms: Option<Pair>,
    /// The PostgreSQL limit, one booking per commit: commits/s.
    pub postgres_commits_per_s: Option<Pair>,
    /// The PostgreSQL limit, `--pg-batch` bookings per commit: bookings/s.
    pub postgres_batched_bookings_per_s: Option<Pair>,
    /// The same broker in both halves: how far the machine drifted.
    pub rabbitmq_end_to_end_per_s: Option<Pair>,
    /// Cores busy during the sale outside the system and the bench client
    /// (anyone else on the machine; beside the one server, also the idle
    /// cluster): the noise each half ran in.
    pub other_processes_cores: Option<Pair>,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    /// PostgreSQL nodes of the cluster.
    pub nodes: usize,
    /// `cluster` or `one node`: which half ran first.
    pub first: &'static str,
    pub cluster_load_average_at_start: f64,
    pub one_node: OneNode,
    pub vs_one_node: VsOneNode,
}

impl Comparison {
    pub fn new(
        nodes: usize,
        cluster_first: bool,
        cluster_load_average_at_start: f64,
        cluster: (&Option<Limits>, &Option<FlashSale>),
        one_node: OneNode,
    ) -> Self {
        let vs_one_node = vs(cluster, (&one_node.limits, &one_node.flash_sale));
        Self {
            nodes,
            first: if cluster_first { "cluster" } else { "one node" },
            cluster_load_average_at_start,
            one_node,
            vs_one_node,
        }
    }

    /// Whether the system kept its promises on the one server too.
    pub fn correct(&self) -> bool {
        self.one_node.correct.unwrap_or(true)
    }

    /// The table's section: both side by side, with the ratios.
    pub fn table(&self, out: &mut String) {
        let title = format!(
            "PostgreSQL: a {}-node cluster against one server (the same run, {} first)",
            self.nodes,
            if self.first == "cluster" {
                "the cluster"
            } else {
                "one server"
            }
        );
        let _ = write!(out, "\n{title}\n{}\n", "─".repeat(title.chars().count()));
        let _ = writeln!(
            out,
            "  {:<40} {:>14} {:>14} {:>9}",
            "", "cluster", "one server", "ratio"
        );
        let v = &self.vs_one_node;
        let rows = [
            ("decided", v.decided_per_s, Unit::PerSecond),
            ("202s", v.submit_per_s, Unit::PerSecond),
            (
                "CPU per decided booking (system)",
                v.cpu_per_decided_us,
                Unit::Micros,
            ),
            (
                "PostgreSQL's CPU per decided booking",
                v.postgres_cpu_per_decided_us,
                Unit::Micros,
            ),
            ("p99 submit → decided", v.decided_p99_ms, Unit::Millis),
            (
                "PostgreSQL limit, 1 booking/commit",
                v.postgres_commits_per_s,
                Unit::CommitsPerSecond,
            ),
            (
                "PostgreSQL limit, batched bookings",
                v.postgres_batched_bookings_per_s,
                Unit::PerSecond,
            ),
            (
                "RabbitMQ limit (the same broker)",
                v.rabbitmq_end_to_end_per_s,
                Unit::PerSecond,
            ),
            (
                "other processes during the sale",
                v.other_processes_cores,
                Unit::Cores,
            ),
        ];
        for (name, pair, unit) in rows {
            if let Some(p) = pair {
                let _ = writeln!(
                    out,
                    "  {name:<40} {:>14} {:>14} {:>9}",
                    unit.show(p.cluster),
                    unit.show(p.one_node),
                    p.ratio.map_or("–".to_owned(), |r| format!("{r:.2}"))
                );
            }
        }
        if let Some(p) = v.cpu_per_decided_us {
            let _ = writeln!(
                out,
                "  {:<40} {:+.0} µs per decided booking on the cluster",
                "what the cluster costs",
                p.cluster - p.one_node
            );
        }
        let _ = writeln!(
            out,
            "  {:<40} {:.2} (cluster), {:.2} (one server)",
            "load average at start",
            self.cluster_load_average_at_start,
            self.one_node.load_average_at_start
        );
        if let Some(f) = &self.one_node.flash_sale {
            let _ = writeln!(
                out,
                "  {:<40} lost {}, oversold {}, inversions {}; invariants {}",
                "one server: correctness",
                f.lost,
                f.oversold,
                f.inversions,
                if f.invariants.iter().all(|i| i.ok) {
                    "hold"
                } else {
                    "BROKEN"
                }
            );
        }
    }
}

/// How a figure of the side-by-side table reads.
#[derive(Clone, Copy)]
enum Unit {
    PerSecond,
    CommitsPerSecond,
    Micros,
    Millis,
    Cores,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Self::PerSecond => format!("{}/s", count(value)),
            Self::CommitsPerSecond => format!("{} c/s", count(value)),
            Self::Micros => format!("{value:.0} µs"),
            Self::Millis => format!("{value:.0} ms"),
            Self::Cores => format!("{value:.2} cores"),
        }
    }
}

fn vs(
    cluster: (&Option<Limits>, &Option<FlashSale>),
    one: (&Option<Limits>, &Option<FlashSale>),
) -> VsOneNode {
    let mut v = VsOneNode::default();
    if let (Some(c), Some(o)) = (cluster.0, one.0) {
        v.postgres_commits_per_s = Some(Pair::of(
            c.postgres.one_per_commit.commits_per_s,
            o.postgres.one_per_commit.commits_per_s,
        ));
        v.postgres_batched_bookings_per_s = Some(Pair::of(
            c.postgres.batched.bookings_per_s,
            o.postgres.batched.bookings_per_s,
        ));
        v.rabbitmq_end_to_end_per_s = Some(Pair::of(
            c.rabbitmq.end_to_end_per_s,
            o.rabbitmq.end_to_end_per_s,
        ));
    }
    if let (Some(c), Some(o)) = (cluster.1, one.1) {
        v.decided_per_s = Some(Pair::of(c.decided_per_s, o.decided_per_s));
        v.submit_per_s = Some(Pair::of(c.submit_per_s, o.submit_per_s));
        v.decided_p99_ms = Some(Pair::of(c.decided_latency.p99_ms, o.decided_latency.p99_ms));
        let other = |f: &FlashSale| {
            f.observed
                .cpu
                .iter()
                .filter(|c| c.role == OTHER)
                .map(|c| c.cores)
                .sum::<f64>()
        };
        v.other_processes_cores = Some(Pair::of(other(c), other(o)));
        if let (Some(cc), Some(oc)) = (&c.cpu_per_decided, &o.cpu_per_decided) {
            v.cpu_per_decided_us = Some(Pair::of(cc.system_s * 1e6, oc.system_s * 1e6));
            let postgres = |p: &crate::monitor::CpuPerDecided| {
                p.by_role
                    .iter()
                    .filter(|r| POSTGRES.contains(&r.role.as_str()))
                    .map(|r| r.cpu_s)
                    .sum::<f64>()
                    * 1e6
            };
            v.postgres_cpu_per_decided_us = Some(Pair::of(postgres(cc), postgres(oc)));
        }
    }
    v
}
