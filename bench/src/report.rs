//! The results: one JSON document with every number, and a table on
//! stdout for people. Ratios to the measured limits and the targets
//! are worked out here, so both outputs say the same thing.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::CatalogSearch;
use crate::comparison::Comparison;
use crate::flash_sale::FlashSale;
use crate::limits::Limits;
use crate::machine::Machine;
use crate::replication::ReplicaLag;
use crate::shows::EVEN_WITHIN;
use crate::stats::{ratio, Latency};
use crate::streams::StreamsReport;
use crate::waitlist::Waitlist;
use crate::webhooks::WebhooksReport;

#[derive(Debug, Serialize)]
pub struct Report {
    pub started_at: DateTime<Utc>,
    pub command: String,
    pub machine: Machine,
    pub system: SystemConfig,
    pub limits: Option<Limits>,
    pub flash_sale: Option<FlashSale>,
    pub ratios: Ratios,
    pub targets: Vec<Target>,
    /// `None` when no flash sale ran.
    pub correct: Option<bool>,
    /// On a PostgreSQL cluster (`scripts/bench --postgres-nodes N`): the
    /// same scenarios on one server beside it, and the cluster's figures
    /// (`limits`, `flash_sale` above) against its.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_cluster: Option<Comparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemConfig {
    pub workers: usize,
    pub shards: u16,
    pub hold_seconds: u64,
    pub service_env: Vec<(String, String)>,
    /// Process ids by label, e.g. to match a `perf` profile.
    pub pids: Vec<(String, u32)>,
    pub logs: String,
}

/// The flash sale's throughput as a fraction of what the machine allows.
#[derive(Debug, Default, Serialize)]
pub struct Ratios {
    pub decided_vs_rabbitmq_end_to_end: Option<f64>,
    pub submit_vs_rabbitmq_end_to_end: Option<f64>,
    pub decided_vs_postgres_commits: Option<f64>,
    pub decided_vs_postgres_batched_bookings: Option<f64>,
    /// Against one broker pass plus one batched booking in a row:
    /// 1 / (1/RabbitMQ end to end + 1/PostgreSQL batched bookings).
    pub decided_vs_broker_plus_database: Option<f64>,
    /// Against the `--baseline` run's decided throughput.
    pub decided_vs_baseline: Option<f64>,
    /// The system's CPU per decided booking against the `--baseline`
    /// run's (e.g. many shows against one; `None` for an older report).
    pub cpu_per_decided_vs_baseline: Option<f64>,
}

impl Ratios {
    pub fn of(
        limits: Option<&Limits>,
        flash_sale: Option<&FlashSale>,
        baseline: Option<Baseline>,
    ) -> Self {
        let mut ratios = Self::default();
        let Some(sale) = flash_sale else {
            return ratios;
        };
        if let Some(limits) = limits {
            let broker = limits.rabbitmq.end_to_end_per_s;
            ratios.decided_vs_rabbitmq_end_to_end = ratio(sale.decided_per_s, broker);
            ratios.submit_vs_rabbitmq_end_to_end = ratio(sale.submit_per_s, broker);
            ratios.decided_vs_postgres_commits = ratio(
                sale.decided_per_s,
                limits.postgres.one_per_commit.commits_per_s,
            );
            let database = limits.postgres.batched.bookings_per_s;
            ratios.decided_vs_postgres_batched_bookings = ratio(sale.decided_per_s, database);
            if broker > 0.0 && database > 0.0 {
                let combined = 1.0 / (1.0 / broker + 1.0 / database);
                ratios.decided_vs_broker_plus_database = ratio(sale.decided_per_s, combined);
            }
        }
        if let Some(b) = baseline {
            ratios.decided_vs_baseline = ratio(sale.decided_per_s, b.decided_per_s);
            ratios.cpu_per_decided_vs_baseline = sale
                .cpu_per_decided
                .as_ref()
                .zip(b.cpu_per_decided_s)
                .and_then(|(now, then)| ratio(now.system_s, then));
        }
        ratios
    }
}

/// What a `--baseline` run's JSON report says.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub decided_per_s: f64,
    /// The system's CPU seconds per decided booking, if it was reported.
    pub cpu_per_decided_s: Option<f64>,
}

impl Baseline {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)?;
        let sale = &json["flash_sale"];
        Ok(Self {
            decided_per_s: sale["decided_per_s"]
                .as_f64()
                .with_context(|| format!("{} has no flash_sale.decided_per_s", path.display()))?,
            cpu_per_decided_s: sale["cpu_per_decided"]["system_s"].as_f64(),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub wanted: String,
    pub measured: String,
    pub met: bool,
}

impl Report {
    pub fn new(
        command: String,
        machine: Machine,
        system: SystemConfig,
        limits: Option<Limits>,
        flash_sale: Option<FlashSale>,
        baseline: Option<Baseline>,
        judge_speed: bool,
    ) -> Self {
        let ratios = Ratios::of(limits.as_ref(), flash_sale.as_ref(), baseline);
        let targets = flash_sale
            .as_ref()
            .map(|s| targets(s, &ratios, judge_speed))
            .unwrap_or_default();
        Self {
            started_at: Utc::now(),
            command,
            machine,
            system,
            correct: flash_sale.as_ref().map(FlashSale::correct),
            limits,
            flash_sale,
            ratios,
            targets,
            postgres_cluster: None,
        }
    }

    /// Whether the system kept its promises (on both servers, with a
    /// comparison); `None` when no flash sale ran.
    pub fn all_correct(&self) -> Option<bool> {
        let one_node = self
            .postgres_cluster
            .as_ref()
            .is_none_or(Comparison::correct);
        self.correct.map(|correct| correct && one_node)
    }

    /// What `--check` fails on: broken promises and, with `--catalog`,
    /// searches slower than their target or failing (on both servers,
    /// with a comparison). Other speed targets are reported, not checked.
    pub fn failed_checks(&self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        if self.all_correct() == Some(false) {
            failed
                .push("something was lost, oversold or unfair, or the workers' shares were uneven");
        }
        let one_node = self
            .postgres_cluster
            .as_ref()
            .and_then(|c| c.one_node.flash_sale.as_ref());
        let searches_missed = [self.flash_sale.as_ref(), one_node]
            .into_iter()
            .flatten()
            .filter_map(|sale| sale.catalog_search.as_ref())
            .any(|c| !c.met);
        if searches_missed {
            failed.push("the catalog searches were too slow or failed");
        }
        failed
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let s = &self.system;
        line(&mut out, "command", &self.command);
        line(
            &mut out,
            "machine",
            &format!(
                "{} cores ({}), {:.1} GiB, Linux {}, load {:.2} at start",
                m.cores, m.cpu_model, m.memory_gib, m.kernel, m.load_average_at_start
            ),
        );
        line(
            &mut out,
            "servers",
            &format!(
                "RabbitMQ {} (Erlang {}), PostgreSQL {}",
                m.rabbitmq_version, m.erlang_version, m.postgres_version
            ),
        );
        let env: Vec<String> = s
            .service_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line(
            &mut out,
            "system",
            &format!(
                "{} workers, {} shards, {}",
                s.workers,
                s.shards,
                env.join(" ")
            ),
        );

        if let Some(l) = &self.limits {
            let (b, p) = (&l.rabbitmq, &l.postgres);
            heading(&mut out, "Limits of this machine");
            line(
                &mut out,
                "RabbitMQ publish+consume+ack",
                &format!(
                    "{}/s end to end; publish+confirm alone {}/s ({} × {} B, {} in flight, prefetch {}, quorum)",
                    count(b.end_to_end_per_s),
                    count(b.publish_per_s),
                    count(b.messages as f64),
                    b.message_bytes,
                    b.in_flight,
                    b.prefetch
                ),
            );
            for rate in [&p.one_per_commit, &p.batched] {
                line(
                    &mut out,
                    &format!("PostgreSQL, {} booking(s)/commit", rate.bookings_per_commit),
                    &format!(
                        "{} commits/s = {} bookings/s ({} clients, {:.1} s, {} conflicts)",
                        count(rate.commits_per_s),
                        count(rate.bookings_per_s),
                        p.clients,
                        rate.seconds,
                        rate.conflicts
                    ),
                );
            }
        }

        if let Some(f) = &self.flash_sale {
            heading(
                &mut out,
                &if f.shows > 1 {
                    format!(
                        "Flash sale: {} general-admission shows, {} tickets in all, {}",
                        count(f.shows as f64),
                        count(f64::from(f.capacity)),
                        f.load
                    )
                } else {
                    format!(
                        "Flash sale: {} show of {}, {}",
                        if f.seated {
                            "seated"
                        } else {
                            "general-admission"
                        },
                        count(f64::from(f.capacity)),
                        f.load
                    )
                },
            );
            if let Some(m) = &f.many_shows {
                line(
                    &mut out,
                    "shows",
                    &format!(
                        "{} (Zipf s = {}): {}–{} tickets each; the top show got {:.1}% of the requests; {} requested, {} sold out",
                        count(f.shows as f64),
                        m.zipf_s,
                        count(f64::from(m.capacity_min)),
                        count(f64::from(m.capacity_max)),
                        m.top_show_share * 100.0,
                        count(m.shows_requested as f64),
                        count(m.sold_out as f64)
                    ),
                );
            }
            line(
                &mut out,
                "submitted",
                &format!(
                    "{} sent, {} accepted (202) in {:.1} s = {}/s",
                    count(f.sent as f64),
                    count(f.accepted as f64),
                    f.submit_seconds,
                    count(f.submit_per_s)
                ),
            );
            line(
                &mut out,
                "submit latency (202)",
                &latency(&f.submit_latency),
            );
            if let Some(lag) = &f.schedule_lag {
                line(&mut out, "client lag behind schedule", &latency(lag));
            }
            let waitlisted = f
                .waitlist
                .as_ref()
                .map(|w| format!(", {} waitlisted", count(w.waitlisted as f64)))
                .unwrap_or_default();
            line(
                &mut out,
                "decided",
                &format!(
                    "{} ({} held = {} tickets, {} rejected{waitlisted}) in {:.1} s = {}/s",
                    count(f.decided as f64),
                    count(f.held as f64),
                    count(f.tickets_held as f64),
                    count(f.rejected as f64),
                    f.decided_seconds,
                    count(f.decided_per_s)
                ),
            );
            line(
                &mut out,
                "submit → decided latency",
                &latency(&f.decided_latency),
            );
            if let Some(p) = &f.phases {
                line(
                    &mut out,
                    "phases",
                    &format!(
                        "{} answered in the first 5 s; submitting {:.1} s: {}/s answered, {}/s decided, {} left queued; draining {:.1} s: {}/s decided",
                        count(p.answered_first_5s),
                        p.submitting.seconds,
                        count(p.submitting.answered_per_s),
                        count(p.submitting.decided_per_s),
                        count(p.queued_when_submitted),
                        p.draining.seconds,
                        count(p.draining.decided_per_s)
                    ),
                );
            }
            if let Some(w) = &f.waitlist {
                waitlist(&mut out, w);
            }
            if let Some(s) = &f.streams {
                streams(&mut out, s);
            }
            if let Some(w) = &f.webhooks {
                webhooks(&mut out, w);
            }
            if let Some(c) = &f.catalog_search {
                catalog_search(&mut out, c);
            }
            let passed_over = f
                .waitlist
                .as_ref()
                .map(|w| format!(", passed over {}", w.passed_over))
                .unwrap_or_default();
            line(
                &mut out,
                "correctness",
                &format!(
                    "lost {}, oversold {}, inversions {}{passed_over}; invariants {}",
                    f.lost,
                    f.oversold,
                    f.inversions,
                    if f.invariants.iter().all(|i| i.ok) {
                        "hold"
                    } else {
                        "BROKEN"
                    }
                ),
            );
            for broken in f.invariants.iter().filter(|i| !i.ok) {
                line(
                    &mut out,
                    "  broken",
                    &format!(
                        "{}: {}",
                        broken.name,
                        broken.detail.as_deref().unwrap_or("")
                    ),
                );
            }
            let errors: Vec<String> = f.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            line(
                &mut out,
                "errors",
                &if errors.is_empty() {
                    "none".to_owned()
                } else {
                    errors.join(", ")
                },
            );
            let shares: Vec<String> = f
                .worker_share
                .iter()
                .map(|w| {
                    let shards = w
                        .shards
                        .map(|s| format!(", {s} shards"))
                        .unwrap_or_default();
                    format!(
                        "{} {:.0}% ({}{shards})",
                        w.worker,
                        w.share * 100.0,
                        count(w.decisions as f64)
                    )
                })
                .collect();
            line(&mut out, "worker share", &shares.join(", "));
            let e = &f.evenness;
            let judged = |judged: bool, within: bool| match (judged, within) {
                (false, _) => "not judged",
                (true, true) => "within a third",
                (true, false) => "NOT within a third",
            };
            line(
                &mut out,
                "off even (max, of 1/workers)",
                &format!(
                    "decisions {} ({}), shards {} ({})",
                    percent(e.decisions_max_deviation),
                    judged(e.decisions_judged, e.decisions_within_a_third),
                    percent(e.shards_max_deviation),
                    judged(e.shards_judged, e.shards_within_a_third)
                ),
            );
            let o = &f.observed;
            line(
                &mut out,
                "backlog (max)",
                &format!(
                    "{} queued in the database, {} in the shard queues, {} events in the outbox",
                    o.max_queued,
                    o.max_broker_backlog
                        .map_or("?".to_owned(), |b| b.to_string()),
                    o.max_outbox_backlog
                ),
            );
            line(
                &mut out,
                "PostgreSQL commits (this system)",
                &format!(
                    "{} = {:.2} per accepted booking, {}/s",
                    count(o.commits as f64),
                    o.commits as f64 / f.accepted.max(1) as f64,
                    count(o.commits as f64 / o.seconds)
                ),
            );
            let t = &f.bookings_table;
            line(
                &mut out,
                "bookings table reads",
                &format!(
                    "{} sequential scans ({} rows), {} index scans, {} auto-analyzes",
                    count(t.seq_scan as f64),
                    count(t.seq_tup_read as f64),
                    count(t.idx_scan as f64),
                    t.autoanalyze_count
                ),
            );
            if let Some(lag) = &f.replica_lag {
                replica_lag(&mut out, lag);
            }
            if !o.statements.is_empty() {
                heading(
                    &mut out,
                    "PostgreSQL busy with (samples of active backends)",
                );
                for st in o.statements.iter().take(8) {
                    let _ = writeln!(
                        out,
                        "  {:5.1}%  {:<14} {}",
                        st.share * 100.0,
                        st.state,
                        st.statement
                    );
                }
            }
            heading(
                &mut out,
                &format!(
                    "CPU during the sale ({:.1} s, {} cores)",
                    o.seconds, m.cores
                ),
            );
            let per_decided = |role: &str| {
                f.cpu_per_decided
                    .as_ref()
                    .and_then(|p| p.by_role.iter().find(|r| r.role == role))
                    .map(|r| format!("  {:6.0} µs per decided", r.cpu_s * 1e6))
                    .unwrap_or_default()
            };
            for cpu in &o.cpu {
                line(
                    &mut out,
                    &cpu.role,
                    &format!(
                        "{:5.2} cores  {:5.1}% of the machine{}",
                        cpu.cores,
                        cpu.share * 100.0,
                        per_decided(&cpu.role)
                    ),
                );
            }
            if let Some(w) = &f.work_per_decided {
                line(
                    &mut out,
                    "work per decided booking",
                    &format!(
                        "PostgreSQL {:.2} commits, {:.1} rows written, {:.0} B of WAL; RabbitMQ {:.2} messages published, {:.2} delivered, {:.0} B on the wire",
                        w.commits,
                        w.rows_written,
                        w.wal_bytes,
                        w.messages_published,
                        w.messages_delivered,
                        w.broker_bytes
                    ),
                );
                let tables: Vec<String> = w
                    .rows_by_table
                    .iter()
                    .map(|(table, rows)| format!("{table} {rows:.2}"))
                    .collect();
                line(
                    &mut out,
                    "rows written per decided, by table",
                    &tables.join(", "),
                );
            }
            if let Some(p) = &f.cpu_per_decided {
                line(
                    &mut out,
                    "CPU per decided booking",
                    &format!(
                        "{:.0} µs the system (services, PostgreSQL, RabbitMQ), {:.0} µs the whole machine",
                        p.system_s * 1e6,
                        p.machine_s * 1e6
                    ),
                );
            }
        }

        let r = &self.ratios;
        let ratios = [
            (
                "decided / RabbitMQ end to end",
                r.decided_vs_rabbitmq_end_to_end,
            ),
            (
                "202s / RabbitMQ end to end",
                r.submit_vs_rabbitmq_end_to_end,
            ),
            (
                "decided / PostgreSQL commits (1/commit)",
                r.decided_vs_postgres_commits,
            ),
            (
                "decided / PostgreSQL bookings (batched)",
                r.decided_vs_postgres_batched_bookings,
            ),
            (
                "decided / broker + database in a row",
                r.decided_vs_broker_plus_database,
            ),
            ("decided / baseline run", r.decided_vs_baseline),
            (
                "CPU per decided / baseline run",
                r.cpu_per_decided_vs_baseline,
            ),
        ];
        if ratios.iter().any(|(_, v)| v.is_some()) {
            heading(&mut out, "Ratios");
            for (name, value) in ratios {
                if let Some(v) = value {
                    line(&mut out, name, &format!("{:.1}%", v * 100.0));
                }
            }
        }
        if !self.targets.is_empty() {
            heading(&mut out, "Targets");
            for t in &self.targets {
                line(
                    &mut out,
                    &t.name,
                    &format!(
                        "{} (wanted {}) {}",
                        t.measured,
                        t.wanted,
                        if t.met { "met" } else { "NOT MET" }
                    ),
                );
            }
        }
        if let Some(c) = &self.postgres_cluster {
            c.table(&mut out);
        }
        out
    }
}

/// A PostgreSQL cluster's replicas behind the primary during the sale.
fn replica_lag(out: &mut String, lag: &ReplicaLag) {
    let mib = |bytes: f64| bytes / 1024.0 / 1024.0;
    for r in &lag.replicas {
        let l = &r.lag;
        line(
            out,
            &format!("replica lag: {} ({})", r.name, r.sync_state),
            &format!(
                "WAL behind p99 {:.2} MiB, max {:.2} MiB; replay lag p99 {:.1} ms, max {:.1} ms (n = {}{})",
                mib(l.bytes.p99),
                mib(l.bytes.max),
                l.replay_lag.p99_ms,
                l.replay_lag.max_ms,
                l.samples,
                if l.replay_lag_unknown > 0 {
                    format!(", {} without a replay lag", l.replay_lag_unknown)
                } else {
                    String::new()
                }
            ),
        );
    }
    line(
        out,
        "replica lag: sampled",
        &format!(
            "every {} ms, {} rounds, {} missing a replica",
            lag.interval_ms, lag.rounds, lag.rounds_missing_a_replica
        ),
    );
}

/// `--streams`: the streams and the polls beside them.
fn streams(out: &mut String, s: &StreamsReport) {
    line(
        out,
        "event streams",
        &format!(
            "{} wanted, {} opened (at most {} at once), {} failed",
            count(s.wanted as f64),
            count(s.opened as f64),
            count(s.peak_open as f64),
            count(s.failed as f64)
        ),
    );
    line(
        out,
        "decision → stream event",
        &format!(
            "{} ({} more were decided before their stream opened)",
            latency(&s.event_delay),
            count(s.decided_at_open as f64)
        ),
    );
    line(
        out,
        "polls beside the streams",
        &format!(
            "{} = {}/s; {}",
            count(s.polls as f64),
            count(s.polls_per_s),
            latency(&s.poll_latency)
        ),
    );
    line(
        out,
        "api peak RSS",
        &s.api_peak_rss_mib
            .map_or("unknown".to_owned(), |m| format!("{m:.0} MiB")),
    );
}

/// `--webhook`: deliveries to one endpoint.
fn webhooks(out: &mut String, w: &WebhooksReport) {
    line(
        out,
        "webhook deliveries",
        &format!(
            "{} received ({} distinct of {} events) in {:.1} s = {}/s",
            count(w.received as f64),
            count(w.distinct as f64),
            count(w.expected as f64),
            w.seconds,
            count(w.per_s)
        ),
    );
    line(out, "event → webhook delivery", &latency(&w.delay));
}

/// `--catalog`: the searches beside the sale.
fn catalog_search(out: &mut String, c: &CatalogSearch) {
    line(
        out,
        "catalog",
        &format!(
            "{} shows ({} seeded before the sale in {:.1} s = {}/s)",
            count(c.shows as f64),
            count(c.seeded as f64),
            c.seed_seconds,
            count(c.seeded_per_s)
        ),
    );
    line(
        out,
        "catalog searches",
        &format!(
            "{} sent in {:.1} s = {}/s (asked {}/s), {} errors, {} possible cache hits left out",
            count(c.sent as f64),
            c.seconds,
            count(c.per_s),
            count(c.rate),
            count(c.errors as f64),
            count(c.repeats as f64)
        ),
    );
    line(out, "search latency (database)", &latency(&c.latency));
    for (kind, l) in &c.by_kind {
        line(out, &format!("  {}", kind.label()), &latency(l));
    }
    line(out, "search latency (cache)", &latency(&c.cached));
}

/// The offer phase of `--waitlist`.
fn waitlist(out: &mut String, w: &Waitlist) {
    line(
        out,
        "waiting list",
        &format!(
            "{} joined in the sale, {} still waiting at the end",
            count(w.waitlisted as f64),
            count(w.still_waiting as f64)
        ),
    );
    line(
        out,
        "cancels (every tenth held booking)",
        &format!(
            "{} sent, {} accepted (202), {} decided = {} tickets back",
            count(w.cancels_sent as f64),
            count(w.cancels_accepted as f64),
            count(w.cancelled as f64),
            count(w.tickets_returned as f64)
        ),
    );
    line(
        out,
        "offers",
        &format!(
            "{} = {} tickets in {:.2} s (first cancel sent → last offer) = {}/s",
            count(w.offers as f64),
            count(w.tickets_offered as f64),
            w.offer_seconds,
            count(w.offers_per_s)
        ),
    );
    line(out, "cancel sent → offered", &latency(&w.offer_latency));
    line(
        out,
        "cancel decided → offered",
        &latency(&w.decision_to_offer),
    );
}

/// The targets that this run can speak to; the speed targets only
/// when asked (a smoke run is too small and short to judge speed by).
fn targets(sale: &FlashSale, ratios: &Ratios, judge_speed: bool) -> Vec<Target> {
    let mut targets = vec![
        exact("lost requests", sale.lost as f64),
        exact("oversold", sale.oversold as f64),
        exact("fairness inversions", sale.inversions as f64),
    ];
    if let Some(w) = &sale.waitlist {
        targets.push(exact("waiting-list pass-overs", w.passed_over as f64));
    }
    let e = &sale.evenness;
    if e.decisions_judged {
        targets.push(even(
            "worker decisions off even",
            e.decisions_max_deviation,
            e.decisions_within_a_third,
        ));
    }
    if e.shards_judged {
        targets.push(even(
            "worker shards off even",
            e.shards_max_deviation,
            e.shards_within_a_third,
        ));
    }
    // Asked for with --catalog, so judged in any run.
    if let Some(c) = &sale.catalog_search {
        targets.push(at_most(
            "p99 catalog search",
            c.latency.p99_ms,
            c.target_p99_ms,
        ));
        targets.push(exact("catalog search errors", c.errors as f64));
    }
    if !judge_speed {
        return targets;
    }
    let open_loop = sale.schedule_lag.is_some();
    let default_sale = !open_loop && !sale.seated && sale.waitlist.is_none() && sale.shows == 1;
    if default_sale {
        if let Some(r) = ratios.decided_vs_broker_plus_database {
            targets.push(at_least("decided / broker + database", r, 0.5));
        }
        if let Some(cpu) = &sale.cpu_per_decided {
            targets.push(Target {
                name: "CPU per decided booking (system)".to_owned(),
                wanted: format!("≤ {:.0} µs", CPU_PER_DECIDED_S * 1e6),
                measured: format!("{:.0} µs", cpu.system_s * 1e6),
                met: cpu.system_s <= CPU_PER_DECIDED_S,
            });
        }
        if let Some(p) = &sale.phases {
            let share = p.queued_when_submitted / (sale.accepted.max(1) as f64);
            targets.push(Target {
                name: "queued when submitting ended".to_owned(),
                wanted: format!("≤ {:.0}% of accepted", BEHIND_AT_MOST * 100.0),
                measured: format!("{:.1}%", share * 100.0),
                met: share <= BEHIND_AT_MOST,
            });
        }
        targets.push(at_most(
            "p99 submit → decided",
            sale.decided_latency.p99_ms,
            1000.0,
        ));
    }
    if sale.seated {
        if let Some(r) = ratios.decided_vs_baseline {
            targets.push(at_least("seated / general-admission throughput", r, 0.3));
        }
    }
    if open_loop {
        targets.push(at_most(
            "p99 submit latency",
            sale.submit_latency.p99_ms,
            25.0,
        ));
        targets.push(at_most(
            "p99 submit → decided",
            sale.decided_latency.p99_ms,
            500.0,
        ));
    }
    targets
}

/// The default sale's goals (issue 31): the whole system's CPU per decided
/// booking, and how far decisions may fall behind the API.
const CPU_PER_DECIDED_S: f64 = 250e-6;
const BEHIND_AT_MOST: f64 = 0.05;

fn exact(name: &str, measured: f64) -> Target {
    Target {
        name: name.to_owned(),
        wanted: "0".to_owned(),
        measured: format!("{measured}"),
        met: measured == 0.0,
    }
}

/// A largest deviation from even shares, wanted within a third.
fn even(name: &str, deviation: Option<f64>, within: bool) -> Target {
    Target {
        name: name.to_owned(),
        wanted: format!("≤ {:.0}%", EVEN_WITHIN * 100.0),
        measured: percent(deviation),
        met: within,
    }
}

fn at_least(name: &str, measured: f64, wanted: f64) -> Target {
    Target {
        name: name.to_owned(),
        wanted: format!("≥ {:.0}%", wanted * 100.0),
        measured: format!("{:.1}%", measured * 100.0),
        met: measured >= wanted,
    }
}

fn at_most(name: &str, measured_ms: f64, wanted_ms: f64) -> Target {
    Target {
        name: name.to_owned(),
        wanted: format!("≤ {wanted_ms} ms"),
        measured: format!("{measured_ms:.1} ms"),
        met: measured_ms <= wanted_ms,
    }
}

fn heading(out: &mut String, title: &str) {
    let _ = write!(out, "\n{title}\n{}\n", "─".repeat(title.chars().count()));
}

fn line(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {label:<40} {value}");
}

fn latency(l: &Latency) -> String {
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n = {})",
        l.p50_ms, l.p90_ms, l.p95_ms, l.p99_ms, l.max_ms, l.count
    )
}

fn percent(value: Option<f64>) -> String {
    value.map_or("unknown".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

/// A rounded count with thousands separators: `16,432`.
pub fn count(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0.4), "0");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(16_432.2), "16,432");
        assert_eq!(count(1_234_567.0), "1,234,567");
    }
}
