//! Watching a run from the outside, once a second: where the CPU goes (per
//! process of the system, PostgreSQL, RabbitMQ, the benchmark client itself
//! and everything else on the machine), and where work piles up (messages
//! waiting in the shard queues, bookings still `queued`, events not yet
//! relayed). This is the evidence for what limits the throughput.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const BENCH: &str = "bench client";
pub const OTHER: &str = "other processes";
const PG_SYSTEM: &str = "postgres (this system)";
const PG_SERVER: &str = "postgres (server: WAL, checkpoints)";
const PG_OTHER: &str = "postgres (other databases)";
/// Every RabbitMQ node listening on one of the AMQP ports on this machine.
const RABBITMQ: &str = "rabbitmq (whole node)";
/// A PostgreSQL cluster's primary streaming its WAL to the replicas.
const PG_WAL_SENDERS: &str = "postgres (WAL senders)";
/// A cluster's other nodes: replaying the WAL, and the api's reads.
const PG_REPLICAS: &str = "postgres (replicas)";
/// HAProxy in front of a cluster: every connection of the services to it.
const PG_PROXY: &str = "haproxy (PostgreSQL proxy)";
/// What keeps a cluster's roles: each node's Patroni, and etcd.
const PG_SUPERVISORS: &str = "patroni and etcd";
/// The roles that are PostgreSQL's own work for the system.
pub const POSTGRES: [&str; 4] = [PG_SYSTEM, PG_SERVER, PG_WAL_SENDERS, PG_REPLICAS];

/// CPU one role used over the run.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub role: String,
    pub cpu_seconds: f64,
    /// Average number of cores kept busy.
    pub cores: f64,
    /// Share of all the machine's cores over the run.
    pub share: f64,
}

/// What one decided booking cost in CPU, by role and in total.
#[derive(Debug, Clone, Serialize)]
pub struct CpuPerDecided {
    pub decided: usize,
    /// CPU seconds per decided booking, by role (the roles of `cpu`).
    pub by_role: Vec<RoleCost>,
    /// The system under test: its services, PostgreSQL (this system's
    /// backends and the server's own processes) and RabbitMQ; not the
    /// bench client, other databases or the rest of the machine.
    pub system_s: f64,
    /// Every busy core of the machine, the bench client included.
    pub machine_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleCost {
    pub role: String,
    pub cpu_s: f64,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    /// Booking requests answered so far by the API (any status).
    pub answered: usize,
    /// Bookings still `queued` in the database.
    pub queued: i64,
    /// Messages ready or unacknowledged in the booking shard queues
    /// (the management API refreshes these every few seconds).
    pub broker_backlog: Option<i64>,
    /// Outbox events not yet relayed to RabbitMQ.
    pub outbox_backlog: i64,
    /// Transactions committed in this system's database during this second
    /// (PostgreSQL's statistics, which backends report about once a second).
    pub commits: i64,
    /// Cores busy per role during this second.
    pub cores: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Observed {
    pub seconds: f64,
    pub cpu: Vec<CpuUse>,
    pub max_broker_backlog: Option<i64>,
    pub max_outbox_backlog: i64,
    pub max_queued: i64,
    /// Transactions committed in this system's database over the run.
    pub commits: i64,
    /// What PostgreSQL was busy with for the system, by statement.
    pub statements: Vec<Statement>,
    pub timeline: Vec<Sample>,
}

/// The sale in its phases, from the one-second timeline. They show where
/// a change of speed sits: streams opening slow the first seconds, what
/// the API and the clients carry slows the rest of the submitting, and
/// the drain is the workers' alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phases {
    /// Requests answered in the first five seconds.
    pub answered_first_5s: f64,
    /// From the start to the last second in which a request was answered.
    pub submitting: Phase,
    /// From then until nothing is queued.
    pub draining: Phase,
    /// Requests still queued when the last was answered: how far decisions
    /// fell behind the API.
    pub queued_when_submitted: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    pub seconds: f64,
    pub answered_per_s: f64,
    /// Answered and no longer queued.
    pub decided_per_s: f64,
}

impl Phases {
    /// `None` for a timeline with no answer in it.
    pub fn of(timeline: &[Sample]) -> Option<Self> {
        // The sale starts from nothing answered at 0 s.
        let points: Vec<Point> = std::iter::once(Point::default())
            .chain(timeline.iter().map(Point::of))
            .collect();
        let last_answer = (1..points.len())
            .rev()
            .find(|&i| points[i].answered > points[i - 1].answered)?;
        let submitted = points[last_answer];
        let drained = points[last_answer..]
            .iter()
            .find(|p| p.queued == 0.0)
            .unwrap_or(&points[points.len() - 1]);
        Some(Self {
            answered_first_5s: answered_by(5.0, &points),
            submitting: Phase::between(points[0], submitted),
            draining: Phase::between(submitted, *drained),
            queued_when_submitted: submitted.queued,
        })
    }
}

impl Phase {
    fn between(from: Point, to: Point) -> Self {
        let seconds = to.t - from.t;
        let rate = |delta: f64| if seconds > 0.0 { delta / seconds } else { 0.0 };
        Self {
            seconds,
            answered_per_s: rate(to.answered - from.answered),
            decided_per_s: rate(to.decided() - from.decided()),
        }
    }
}

/// A sample as numbers to interpolate.
#[derive(Debug, Clone, Copy, Default)]
struct Point {
    t: f64,
    answered: f64,
    queued: f64,
}

impl Point {
    fn of(sample: &Sample) -> Self {
        Self {
            t: sample.t_s,
            answered: sample.answered as f64,
            queued: sample.queued as f64,
        }
    }

    fn decided(&self) -> f64 {
        (self.answered - self.queued).max(0.0)
    }
}

/// Requests answered by time `t`, interpolated between the points around
/// it.
fn answered_by(t: f64, points: &[Point]) -> f64 {
    let mut before = points[0];
    for &p in points {
        if p.t >= t {
            let span = p.t - before.t;
            return if span > 0.0 {
                before.answered + (p.answered - before.answered) * (t - before.t) / span
            } else {
                p.answered
            };
        }
        before = p;
    }
    before.answered
}

impl Observed {
    /// CPU seconds per decided booking (`None` when nothing was decided).
    pub fn cpu_per_decided(&self, decided: usize) -> Option<CpuPerDecided> {
        if decided == 0 {
            return None;
        }
        let per = |seconds: f64| seconds / decided as f64;
        let outside = [BENCH, OTHER, PG_OTHER];
        Some(CpuPerDecided {
            decided,
            by_role: self
                .cpu
                .iter()
                .map(|c| RoleCost {
                    role: c.role.clone(),
                    cpu_s: per(c.cpu_seconds),
                })
                .collect(),
            system_s: per(self
                .cpu
                .iter()
                .filter(|c| !outside.contains(&c.role.as_str()))
                .map(|c| c.cpu_seconds)
                .sum()),
            machine_s: per(self.cpu.iter().map(|c| c.cpu_seconds).sum()),
        })
    }
}

/// How often a statement was seen running (or waiting) in this system's
/// database when sampled: a poor man's profile of PostgreSQL by statement.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub statement: String,
    /// `on CPU`, or the wait event (e.g. `IO: WalSync`, `Lock: tuple`).
    pub state: String,
    pub samples: usize,
    /// Share of all samples of active backends.
    pub share: f64,
}

/// Application name of the benchmark's own connections, left out of the
/// statement samples.
pub const BENCH_APPLICATION: &str = "bench";
/// Samples of PostgreSQL's activity per second.
const ACTIVITY_HZ: u64 = 20;

/// Which process plays which part.
pub struct Roles {
    me: u32,
    services: HashMap<u32, String>,
    postmaster: Option<u32>,
    /// The RabbitMQ node(s): one per AMQP port listened on here.
    brokers: Vec<u32>,
    /// This system's database, as PostgreSQL shows it in its backends'
    /// process titles (`postgres: user DATABASE host(port) state`).
    database: String,
    /// A cluster's replicas (their postmasters), the proxy the services
    /// connect through, and the processes that run the cluster (see
    /// [`Roles::with_cluster`]).
    replicas: Vec<u32>,
    proxy: Option<u32>,
    supervisors: Vec<u32>,
}

impl Roles {
    /// Finds PostgreSQL and RabbitMQ by the ports they listen on, so that
    /// other servers on the same machine are not mistaken for them (every
    /// port of `amqp_ports`: the nodes of a cluster count as RabbitMQ).
    pub fn find(
        services: Vec<(String, u32)>,
        database: &str,
        pg_port: u16,
        amqp_ports: &[u16],
    ) -> Self {
        let mut brokers: Vec<u32> = amqp_ports.iter().filter_map(|&p| listener_pid(p)).collect();
        brokers.sort_unstable();
        brokers.dedup();
        Self {
            me: std::process::id(),
            services: services
                .into_iter()
                .map(|(label, pid)| (pid, label))
                .collect(),
            postmaster: listener_pid(pg_port),
            brokers,
            database: format!(" {database} "),
            replicas: Vec::new(),
            proxy: None,
            supervisors: Vec::new(),
        }
    }

    /// With a PostgreSQL cluster, what listens on the services' port is
    /// the proxy; the server is the primary (on `primary_port`, one of
    /// `node_ports`), and the other nodes are replicas. The processes on
    /// `support_ports` (Patroni, etcd) run the cluster. All of it is the
    /// system's cost: a cluster is what the services run on.
    pub fn with_cluster(
        mut self,
        node_ports: &[u16],
        support_ports: &[u16],
        primary_port: u16,
    ) -> Self {
        self.proxy = self.postmaster.take();
        self.postmaster = listener_pid(primary_port);
        self.replicas = node_ports
            .iter()
            .filter(|&&p| p != primary_port)
            .filter_map(|&p| listener_pid(p))
            .collect();
        self.supervisors = support_ports
            .iter()
            .filter_map(|&p| listener_pid(p))
            .collect();
        self
    }

    fn of(&self, pid: u32, ppid: u32) -> Option<String> {
        if pid == self.me {
            return Some(BENCH.to_owned());
        }
        if let Some(label) = self.services.get(&pid) {
            return Some(label.clone());
        }
        if Some(pid) == self.postmaster {
            return Some(PG_SERVER.to_owned());
        }
        if Some(ppid) == self.postmaster {
            let title = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let role = if title.contains(&self.database) {
                PG_SYSTEM
            } else if title.contains(" walsender ") {
                PG_WAL_SENDERS
            } else if title.contains('(') || title.contains("[local]") {
                PG_OTHER
            } else {
                PG_SERVER
            };
            return Some(role.to_owned());
        }
        if self.replicas.contains(&pid) || self.replicas.contains(&ppid) {
            return Some(PG_REPLICAS.to_owned());
        }
        if Some(pid) == self.proxy {
            return Some(PG_PROXY.to_owned());
        }
        if self.supervisors.contains(&pid) || self.supervisors.contains(&ppid) {
            return Some(PG_SUPERVISORS.to_owned());
        }
        if self.brokers.contains(&pid) || self.brokers.contains(&ppid) {
            return Some(RABBITMQ.to_owned());
        }
        None
    }
}

/// CPU counters at one instant, in clock ticks.
struct Snapshot {
    at: Instant,
    processes: HashMap<u32, (String, u64)>,
    machine_busy: u64,
}

impl Snapshot {
    fn take(roles: &Roles) -> Self {
        let mut processes = HashMap::new();
        for pid in live_pids() {
            let Some((ppid, ticks)) = process_times(pid) else {
                continue;
            };
            if let Some(role) = roles.of(pid, ppid) {
                processes.insert(pid, (role, ticks));
            }
        }
        Self {
            at: Instant::now(),
            processes,
            machine_busy: machine_busy_ticks(),
        }
    }

    /// CPU seconds per role between `earlier` and this snapshot, including
    /// the residue of the machine that no known process accounts for.
    fn since(&self, earlier: &Snapshot, tick: f64) -> BTreeMap<String, f64> {
        let mut by_role: BTreeMap<String, f64> = BTreeMap::new();
        let mut known = 0.0;
        for (pid, (role, ticks)) in &self.processes {
            // A process born during the interval used all its ticks in it.
            let before = earlier.processes.get(pid).map_or(0, |(_, t)| *t);
            let seconds = ticks.saturating_sub(before) as f64 / tick;
            known += seconds;
            *by_role.entry(role.clone()).or_default() += seconds;
        }
        let busy = self.machine_busy.saturating_sub(earlier.machine_busy) as f64 / tick;
        by_role.insert(OTHER.to_owned(), (busy - known).max(0.0));
        by_role
    }
}

/// Samples a run once a second until stopped.
pub struct Monitor {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Observed>,
    activity: (oneshot::Sender<()>, JoinHandle<Vec<Statement>>),
}

impl Monitor {
    pub fn start(
        roles: Roles,
        db: PgPool,
        vhost: Option<String>,
        answered: Arc<AtomicUsize>,
    ) -> Self {
        let activity = {
            let (stop, stopped) = oneshot::channel();
            (stop, tokio::spawn(sample_activity(db.clone(), stopped)))
        };
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let tick = clock_ticks_per_second();
            let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
            let mut previous = Snapshot::take(&roles);
            let started = previous.at;
            let first_commits = count(&db, COMMITS).await;
            let mut commits = first_commits;
            let mut totals: BTreeMap<String, f64> = BTreeMap::new();
            let mut timeline = Vec::new();
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            interval.tick().await;
            loop {
                let last = tokio::select! {
                    _ = interval.tick() => false,
                    _ = &mut stopped => true,
                };
                let now = Snapshot::take(&roles);
                let wall = now.at.duration_since(previous.at).as_secs_f64().max(1e-3);
                let used = now.since(&previous, tick);
                let committed = count(&db, COMMITS).await;
                for (role, seconds) in &used {
                    *totals.entry(role.clone()).or_default() += seconds;
                }
                timeline.push(Sample {
                    t_s: now.at.duration_since(started).as_secs_f64(),
                    answered: answered.load(Ordering::Relaxed),
                    queued: count(&db, "SELECT count(*) FROM bookings WHERE status = 'queued'")
                        .await,
                    broker_backlog: shard_backlog(vhost.as_deref()).await,
                    outbox_backlog: count(
                        &db,
                        "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                    )
                    .await,
                    commits: committed - commits,
                    cores: used.into_iter().map(|(role, s)| (role, s / wall)).collect(),
                });
                previous = now;
                commits = committed;
                if last {
                    break;
                }
            }
            let seconds = previous.at.duration_since(started).as_secs_f64().max(1e-3);
            let mut cpu: Vec<CpuUse> = totals
                .into_iter()
                .map(|(role, cpu_seconds)| CpuUse {
                    role,
                    cpu_seconds,
                    cores: cpu_seconds / seconds,
                    share: cpu_seconds / seconds / cores,
                })
                .collect();
            cpu.sort_by(|a, b| b.cpu_seconds.total_cmp(&a.cpu_seconds));
            Observed {
                seconds,
                cpu,
                max_broker_backlog: timeline.iter().filter_map(|s| s.broker_backlog).max(),
                max_outbox_backlog: timeline.iter().map(|s| s.outbox_backlog).max().unwrap_or(0),
                max_queued: timeline.iter().map(|s| s.queued).max().unwrap_or(0),
                commits: commits - first_commits,
                statements: Vec::new(),
                timeline,
            }
        });
        Self {
            stop,
            task,
            activity,
        }
    }

    pub async fn finish(self) -> Observed {
        let _ = self.stop.send(());
        let _ = self.activity.0.send(());
        let mut observed = self.task.await.expect("the monitor does not panic");
        observed.statements = self.activity.1.await.expect("the sampler does not panic");
        observed
    }
}

/// Samples the active backends of this system's database until stopped.
async fn sample_activity(db: PgPool, mut stopped: oneshot::Receiver<()>) -> Vec<Statement> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut interval = tokio::time::interval(Duration::from_millis(1000 / ACTIVITY_HZ));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = &mut stopped => break,
        }
        let active: Vec<(String, String)> = sqlx::query_as(
            "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 110),
                    coalesce(wait_event_type || ': ' || wait_event, 'on CPU')
             FROM pg_stat_activity
             WHERE datname = current_database() AND state = 'active'
               AND backend_type = 'client backend' AND application_name <> $1",
        )
        .bind(BENCH_APPLICATION)
        .fetch_all(&db)
        .await
        .unwrap_or_default();
        for key in active {
            *seen.entry(key).or_default() += 1;
        }
    }
    let total: usize = seen.values().sum();
    let mut statements: Vec<Statement> = seen
        .into_iter()
        .map(|((statement, state), samples)| Statement {
            statement,
            state,
            samples,
            share: samples as f64 / total.max(1) as f64,
        })
        .collect();
    statements.sort_by_key(|s| std::cmp::Reverse(s.samples));
    statements
}

const COMMITS: &str = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()";

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap_or(-1)
}

/// Messages waiting in or being worked on from the booking shard queues.
async fn shard_backlog(vhost: Option<&str>) -> Option<i64> {
    let vhost = vhost.unwrap_or("%2f");
    let queues = harness::system::management_get(&format!(
        "/api/queues/{vhost}?columns=name,messages_ready,messages_unacknowledged"
    ))
    .await?;
    let total = queues
        .as_array()?
        .iter()
        .filter(|q| {
            q["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("booking.requests.shard-"))
        })
        .map(|q| {
            q["messages_ready"].as_i64().unwrap_or(0)
                + q["messages_unacknowledged"].as_i64().unwrap_or(0)
        })
        .sum();
    Some(total)
}

/// Parent pid and user + system CPU ticks of a process (all its threads).
fn process_times(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start
    // after the last ')'. From there: state, ppid, …, utime (12th), stime.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// Busy ticks of all cores together since boot (`/proc/stat`).
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let values: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    values
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum()
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        // USER_HZ is 100 on every common Linux build.
        .unwrap_or(100.0)
}

/// The process listening on a local TCP port: the socket's inode from
/// `/proc/net/tcp*`, then the process holding that inode open.
fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3) == Some(&"0A");
            let on_port = fields
                .get(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                if let Some(inode) = fields.get(9) {
                    inodes.insert(format!("socket:[{inode}]"));
                }
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for pid in live_pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path())
                .is_ok_and(|target| inodes.contains(target.to_string_lossy().as_ref()))
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The ids of the processes now running (the numeric entries of `/proc`).
fn live_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time() {
        let (ppid, _) = process_times(std::process::id()).expect("own /proc entry");
        assert_eq!(ppid, std::os::unix::process::parent_id());
    }

    #[test]
    fn finds_the_process_listening_on_a_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(listener_pid(port), Some(std::process::id()));
    }

    #[test]
    fn cpu_per_decided_leaves_the_client_and_the_rest_out_of_the_system() {
        let cpu = |role: &str, cpu_seconds| CpuUse {
            role: role.to_owned(),
            cpu_seconds,
            cores: 0.0,
            share: 0.0,
        };
        let observed = Observed {
            seconds: 10.0,
            cpu: vec![
                cpu(PG_SYSTEM, 4.0),
                cpu("worker-0", 2.0),
                cpu(BENCH, 1.0),
                cpu(OTHER, 0.5),
                cpu(PG_OTHER, 0.5),
            ],
            max_broker_backlog: None,
            max_outbox_backlog: 0,
            max_queued: 0,
            commits: 0,
            statements: Vec::new(),
            timeline: Vec::new(),
        };
        assert!(observed.cpu_per_decided(0).is_none());
        let per = observed.cpu_per_decided(1_000).unwrap();
        assert!((per.system_s - 0.006).abs() < 1e-12);
        assert!((per.machine_s - 0.008).abs() < 1e-12);
        assert_eq!(per.by_role[1].role, "worker-0");
        assert!((per.by_role[1].cpu_s - 0.002).abs() < 1e-12);
    }

    fn sample(t_s: f64, answered: usize, queued: i64) -> Sample {
        Sample {
            t_s,
            answered,
            queued,
            broker_backlog: None,
            outbox_backlog: 0,
            commits: 0,
            cores: BTreeMap::new(),
        }
    }

    #[test]
    fn phases_split_the_sale_at_its_last_answer_and_its_empty_queue() {
        let timeline = [
            sample(1.0, 1_000, 500),
            sample(2.0, 2_000, 1_000),
            sample(4.0, 4_000, 2_000),
            sample(6.0, 6_000, 3_000),
            sample(8.0, 8_000, 4_000),
            sample(9.0, 8_000, 2_000),
            sample(10.0, 8_000, 0),
            sample(11.0, 8_000, 0),
        ];
        let phases = Phases::of(&timeline).unwrap();
        assert_eq!(phases.answered_first_5s, 5_000.0);
        assert_eq!(
            phases.submitting,
            Phase {
                seconds: 8.0,
                answered_per_s: 1_000.0,
                decided_per_s: 500.0
            }
        );
        assert_eq!(
            phases.draining,
            Phase {
                seconds: 2.0,
                answered_per_s: 0.0,
                decided_per_s: 2_000.0
            }
        );
        assert_eq!(phases.queued_when_submitted, 4_000.0);
    }

    #[test]
    fn a_sale_without_answers_has_no_phases() {
        assert_eq!(Phases::of(&[]), None);
        assert_eq!(Phases::of(&[sample(1.0, 0, 0), sample(2.0, 0, 0)]), None);
    }

    #[test]
    fn on_a_cluster_the_services_port_is_the_proxy_and_the_primary_is_the_server() {
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let primary = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
        let me = std::process::id();
        let roles = Roles::find(Vec::new(), "none", port(&proxy), &[]);
        assert_eq!(roles.postmaster, Some(me));
        let roles = roles.with_cluster(&[port(&primary)], &[], port(&primary));
        assert_eq!(roles.proxy, Some(me));
        assert_eq!(roles.postmaster, Some(me));
        assert!(roles.replicas.is_empty(), "the primary is no replica");
    }

    #[test]
    fn the_rest_of_the_machine_is_other() {
        let roles = Roles::find(Vec::new(), "none", 1, &[1]);
        let a = Snapshot::take(&roles);
        let b = Snapshot::take(&roles);
        let used = b.since(&a, 100.0);
        assert!(used.contains_key(OTHER));
        assert!(used.values().all(|s| *s >= 0.0));
    }
}
