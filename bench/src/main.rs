//! `bench`: how fast the booking system is on this machine, and how that
//! compares with what the machine allows.
//!
//! It starts nothing by hand: like the end-to-end tests it gets a fresh
//! database and vhost on the running PostgreSQL and RabbitMQ and starts the
//! real `api`, `worker` and `notifier` binaries found next to itself, then
//! drives them over HTTP like real clients. Run it with `scripts/bench`,
//! which provides the servers and the `TEST_*` variables.
//!
//! Scenarios: `limits` (the raw rates of RabbitMQ and PostgreSQL for one
//! booking's work), `flash-sale` (a crowd books one show, or `--shows N`
//! at once), `all` (both, with the sale's figures as ratios to the
//! limits). `--waitlist` adds the waiting list to the sale: offers of
//! returned tickets, and their order; `--catalog N` searches N seeded
//! shows while the sale runs.
//!
//! On a PostgreSQL cluster (`scripts/bench --postgres-nodes N`, which also
//! starts one plain server beside it) every scenario runs twice, on the
//! cluster and on the one server, and the report puts them side by side.

mod catalog;
mod comparison;
mod event_stream;
mod flash_sale;
mod limits;
mod machine;
mod monitor;
mod replication;
mod report;
mod shows;
mod stats;
mod streams;
mod waitlist;
mod webhooks;
mod work;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use harness::{Options, System};
use shared::amqp::nodes::Nodes;

/// `--streams` makes the bench hold as many connections as the API does,
/// and glibc's heap fragments under them as the API's would (see
/// `api/src/main.rs`): the load generator would then take more of the
/// two cores it shares with the system under test than its work needs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// The limits, then the flash sale with ratios to them.
    All,
    /// A crowd books one show (or --shows N) over HTTP.
    FlashSale,
    /// What RabbitMQ and PostgreSQL allow for one booking's work here.
    Limits,
}

#[derive(Debug, Parser)]
#[command(about = "Benchmark the booking system against the limits of this machine")]
struct Args {
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Tickets (general admission) or seats (--seated) of the show on sale;
    /// with --shows, the tickets of all the shows together.
    #[arg(long, default_value_t = 20_000)]
    capacity: u32,
    /// General-admission shows on sale at the same time. Each request's
    /// show is drawn from a Zipf law over the shows' ranks (--zipf), and
    /// --capacity is split between the shows in proportion to the same
    /// weights (largest remainders, at least 1 ticket each), so that every
    /// show is as oversubscribed as the whole sale and they sell out
    /// together. Lost, oversold and inversions are checked per show;
    /// reports decided/s, CPU per decided booking, and each worker's share
    /// of the decisions and of the shard queues. With --check, above one
    /// show, every worker's share of the shards (and of the decisions, from
    /// 1,000 decided) must be within a third of 1/--workers. Not with
    /// --seated or --waitlist.
    #[arg(long, default_value_t = 1)]
    shows: usize,
    /// With --shows: the Zipf exponent s (the show of rank k gets a share
    /// of the requests proportional to 1/k^s; 0 is uniform).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Booking requests to send, each for 1–4 tickets from its own email address.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Closed loop: requests in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Open loop instead: start this many requests per second regardless of
    /// answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Booking shard queues.
    #[arg(long, default_value_t = 16)]
    shards: u16,
    /// A seated show (rows of --row-seats); each request picks 1–4 adjacent
    /// seats at random, so many requests collide.
    #[arg(long)]
    seated: bool,
    #[arg(long, default_value_t = 50)]
    row_seats: u32,
    /// General admission with the waiting list: every request asks to wait
    /// when sold out ("waitlist": true, counted as decided), then every
    /// tenth held booking is cancelled over HTTP (--concurrency in flight)
    /// and the offers of the returned tickets are measured: offers/s and
    /// the latency from sending the cancel to the offer. --check adds: no
    /// one passed over in the line.
    #[arg(long, conflicts_with = "seated")]
    waitlist: bool,
    /// Follow the first N accepted bookings over Server-Sent Events (all on
    /// the one API process, open until the sale settles) while the others
    /// are polled; reports the event delay, poll latency and the API's peak
    /// memory.
    #[arg(long, default_value_t = 0)]
    streams: usize,
    /// Subscribe one webhook endpoint (a local receiver) to every booking
    /// event; reports deliveries/s and the delay from event to delivery.
    #[arg(long)]
    webhook: bool,
    /// Seed this many shows (names, descriptions, categories, tags, dates
    /// and places drawn from --seed) through POST /v1/shows before the
    /// sale, not timed with it, and search them while the sale sends
    /// (--search-rate); reports the searches' latency. --check adds: p99
    /// at most 20 ms, and no search failed.
    #[arg(long, default_value_t = 0)]
    catalog: usize,
    /// With --catalog: searches started per second (open loop), each a
    /// full-text, category, tag, near or date-window search.
    #[arg(long, default_value_t = 50.0, requires = "catalog")]
    search_rate: f64,
    /// Stop sending after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/flash-sale.json")]
    json: PathBuf,
    /// A previous JSON report (a general-admission run) to compare the
    /// decided throughput with, e.g. for the seated target.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Exit non-zero if anything was lost, oversold or unfair (with
    /// --shows above 1: or the workers' shares were uneven; with
    /// --catalog: or the searches missed their target).
    #[arg(long)]
    check: bool,
    /// Small and quick, correctness only (for CI): capacity 300, 2,000
    /// requests, 64 in flight, 5,000 raw messages, 1 s per PostgreSQL
    /// measurement, and --check (one show unless --shows). Flags given
    /// explicitly still win.
    #[arg(long)]
    smoke: bool,
    /// Seed of the random quantities, seat and show choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Limits: messages through RabbitMQ.
    #[arg(long, default_value_t = 50_000)]
    raw_messages: usize,
    /// Limits: unconfirmed publishes at once.
    #[arg(long, default_value_t = 1_000)]
    raw_in_flight: usize,
    /// Limits: the consumer's prefetch.
    #[arg(long, default_value_t = 200)]
    raw_prefetch: u16,
    /// Limits: PostgreSQL connections running booking transactions.
    #[arg(long, default_value_t = 8)]
    pg_clients: usize,
    /// Limits: seconds per PostgreSQL measurement.
    #[arg(long, default_value_t = 5.0)]
    pg_seconds: f64,
    /// Limits: bookings per commit in the batched PostgreSQL measurement.
    #[arg(long, default_value_t = 50)]
    pg_batch: usize,
    /// Environment for every service process, e.g. PREFETCH=500 (repeat
    /// for more). DB_POOL_SIZE defaults to the services' own default, 16.
    /// The rate limit is off (RATE_LIMIT_PER_SECOND=0, as in the tests):
    /// every request comes from this one address.
    #[arg(long = "service-env", value_name = "KEY=VALUE", value_parser = key_value)]
    service_env: Vec<(String, String)>,
    /// Seconds to wait for every decision, and again for the API to show it.
    #[arg(long, default_value_t = 300)]
    settle_timeout: u64,
    /// Bookings polled over HTTP at once when checking that all are decided.
    #[arg(long, default_value_t = 64)]
    poll_concurrency: usize,
    /// On a PostgreSQL cluster (scripts/bench --postgres-nodes N): run the
    /// one server's half first (the cluster's comes first otherwise), so
    /// that runs can alternate the order.
    #[arg(long)]
    one_node_first: bool,
}

impl Args {
    /// Parses the command line; `--smoke` changes the defaults only.
    fn read() -> Self {
        let matches = Self::command().get_matches();
        let mut args = Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if args.smoke {
            let default = |id: &str| matches.value_source(id) != Some(ValueSource::CommandLine);
            if default("capacity") {
                args.capacity = 300;
            }
            if default("requests") {
                args.requests = 2_000;
            }
            if default("concurrency") {
                args.concurrency = 64;
            }
            if default("raw_messages") {
                args.raw_messages = 5_000;
            }
            if default("pg_seconds") {
                args.pg_seconds = 1.0;
            }
            if default("json") {
                args.json = PathBuf::from("target/bench/smoke.json");
            }
            args.check = true;
        }
        let invalid = |message: &str| {
            Self::command()
                .error(ErrorKind::InvalidValue, message)
                .exit()
        };
        if args.shows == 0 {
            invalid("--shows must be at least 1");
        }
        if !(args.zipf.is_finite() && args.zipf >= 0.0) {
            invalid("--zipf must be a number ≥ 0");
        }
        if !(args.search_rate.is_finite() && args.search_rate > 0.0) {
            invalid("--search-rate must be a number > 0");
        }
        if args.shows > 1 && (args.seated || args.waitlist) {
            Self::command()
                .error(
                    ErrorKind::ArgumentConflict,
                    "--shows above 1 is general admission without --waitlist",
                )
                .exit();
        }
        args
    }
}

fn key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Holds outlive the sale, so the expiry sweeper cannot hand seats back
/// mid-run (that would be a legitimate second chance, not unfairness, but
/// it would blur the inversion count).
const HOLD_SECONDS: u64 = 3_600;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::read();
    match run(&args).await {
        Ok(failed) if args.check && !failed.is_empty() => {
            eprintln!("bench: --check failed: {} (see above)", failed.join("; "));
            ExitCode::FAILURE
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the scenarios and reports; returns what `--check` fails on.
async fn run(args: &Args) -> anyhow::Result<Vec<&'static str>> {
    let database_url = required("TEST_DATABASE_URL")?;
    let amqp_url = required("TEST_AMQP_URL")?;
    for name in [
        "TEST_RABBITMQ_MANAGEMENT_URL",
        "TEST_SMTP_URL",
        "TEST_MAILDEV_URL",
    ] {
        required(name)?;
    }
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("the executable has a directory")?
        .to_path_buf();
    for binary in ["api", "worker", "notifier"] {
        anyhow::ensure!(
            bin_dir.join(binary).exists(),
            "{binary} is not next to the bench in {} (cargo build --bins, same profile)",
            bin_dir.display()
        );
    }
    let mut service_env = vec![("DB_POOL_SIZE".to_owned(), "16".to_owned())];
    if args.webhook {
        // The receiver is on this machine.
        service_env.push((
            "WEBHOOK_ALLOW_PRIVATE_NETWORKS".to_owned(),
            "true".to_owned(),
        ));
    }
    for (key, value) in &args.service_env {
        service_env.retain(|(k, _)| k != key);
        service_env.push((key.clone(), value.clone()));
    }
    let baseline = match &args.baseline {
        Some(path) => Some(report::Baseline::read(path)?),
        None => None,
    };
    let setup = Setup {
        bin_dir,
        service_env,
        amqp_url,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");

    let report = match replication::Setup::from_env()? {
        None => {
            let half = on(args, &setup, &Server::one(database_url)).await?;
            half.report(command, baseline, !args.smoke)
        }
        Some(pg) => {
            let nodes = pg.cluster.node_ports.len();
            let cluster = Server {
                label: format!("the {nodes}-node PostgreSQL cluster"),
                admin_url: database_url,
                cluster: Some(pg.cluster),
            };
            let one = Server::one(pg.single_url.clone());
            let (cluster, one) = if args.one_node_first {
                let one = on(args, &setup, &one).await?;
                (on(args, &setup, &cluster).await?, one)
            } else {
                let cluster = on(args, &setup, &cluster).await?;
                (cluster, on(args, &setup, &one).await?)
            };
            let one_node = comparison::OneNode {
                database_url: pg.single_url,
                load_average_at_start: one.machine.load_average_at_start,
                ratios: report::Ratios::of(one.limits.as_ref(), one.flash_sale.as_ref(), baseline),
                correct: one.flash_sale.as_ref().map(flash_sale::FlashSale::correct),
                system: one.system,
                limits: one.limits,
                flash_sale: one.flash_sale,
            };
            let mut report = cluster.report(command, baseline, !args.smoke);
            report.postgres_cluster = Some(comparison::Comparison::new(
                nodes,
                !args.one_node_first,
                report.machine.load_average_at_start,
                (&report.limits, &report.flash_sale),
                one_node,
            ));
            report
        }
    };
    println!("{}", report.table());
    report.write_json(&args.json)?;
    eprintln!("JSON report: {}", args.json.display());
    Ok(report.failed_checks())
}

/// What every half of a run shares.
struct Setup {
    bin_dir: PathBuf,
    service_env: Vec<(String, String)>,
    amqp_url: String,
}

/// The PostgreSQL a system runs on.
struct Server {
    /// For the progress messages.
    label: String,
    /// Where the system's database and the limits' scratch database are made.
    admin_url: String,
    /// A cluster: the api reads through its replicas, and the sale counts
    /// its processes and samples their lag.
    cluster: Option<replication::Cluster>,
}

impl Server {
    fn one(admin_url: String) -> Self {
        Self {
            label: "one PostgreSQL server".to_owned(),
            admin_url,
            cluster: None,
        }
    }

    fn read_via(&self) -> Option<SocketAddr> {
        self.cluster.as_ref().map(|c| c.read_addr)
    }
}

/// What the scenarios gave on one server.
struct Half {
    machine: machine::Machine,
    system: report::SystemConfig,
    limits: Option<limits::Limits>,
    flash_sale: Option<flash_sale::FlashSale>,
}

impl Half {
    fn report(
        self,
        command: String,
        baseline: Option<report::Baseline>,
        judge_speed: bool,
    ) -> report::Report {
        report::Report::new(
            command,
            self.machine,
            self.system,
            self.limits,
            self.flash_sale,
            baseline,
            judge_speed,
        )
    }
}

/// Starts a system on `server`, runs the scenarios and stops it.
async fn on(args: &Args, setup: &Setup, server: &Server) -> anyhow::Result<Half> {
    eprintln!(
        "starting the system on {}: api, {} workers, notifier ({} shards) …",
        server.label, args.workers, args.shards
    );
    let sys = Arc::new(
        System::start_with(Options {
            workers: args.workers,
            shards: args.shards,
            hold_seconds: HOLD_SECONDS,
            bin_dir: Some(setup.bin_dir.clone()),
            extra_env: setup.service_env.clone(),
            admin_db_url: Some(server.admin_url.clone()),
            database_read_via: server.read_via(),
            ..Options::default()
        })
        .await,
    );
    wait_for_balance(&sys, args.shards, Duration::from_secs(30)).await;
    let machine = machine::Machine::describe(sys.db().await).await;
    let system = report::SystemConfig {
        workers: args.workers,
        shards: args.shards,
        hold_seconds: HOLD_SECONDS,
        service_env: setup.service_env.clone(),
        pids: sys.pids(),
        logs: sys.log_dir().display().to_string(),
    };

    let outcome = scenarios(args, &sys, server, &setup.amqp_url).await;
    match Arc::try_unwrap(sys) {
        Ok(sys) => sys.finish().await,
        Err(sys) => drop(sys),
    }
    let (limits, flash_sale) = outcome?;
    Ok(Half {
        machine,
        system,
        limits,
        flash_sale,
    })
}

async fn scenarios(
    args: &Args,
    sys: &Arc<System>,
    server: &Server,
    amqp_url: &str,
) -> anyhow::Result<(Option<limits::Limits>, Option<flash_sale::FlashSale>)> {
    let database_url = server.admin_url.as_str();
    let nodes: Nodes = amqp_url.parse()?;
    let limits = if args.scenario == Scenario::FlashSale {
        None
    } else {
        let sandbox_nodes: Nodes = sys.amqp_url.parse()?;
        let broker = limits::broker::Settings {
            // One node's round trip: the first URL of a cluster's list.
            amqp_url: sandbox_nodes
                .urls()
                .next()
                .expect("a node list is never empty")
                .to_owned(),
            messages: args.raw_messages,
            in_flight: args.raw_in_flight,
            prefetch: args.raw_prefetch,
        };
        let database = limits::database::Settings {
            admin_url: database_url.to_owned(),
            clients: args.pg_clients,
            duration: Duration::from_secs_f64(args.pg_seconds),
            batch: args.pg_batch,
        };
        Some(limits::measure(&broker, &database).await?)
    };
    let flash_sale = if args.scenario == Scenario::Limits {
        None
    } else {
        let settings = flash_sale::Settings {
            capacity: args.capacity,
            shows: args.shows,
            zipf: args.zipf,
            shards: args.shards,
            requests: args.requests,
            concurrency: args.concurrency,
            rate: args.rate,
            seated: args.seated,
            row_seats: args.row_seats,
            waitlist: args.waitlist,
            duration: args.duration.map(Duration::from_secs_f64),
            seed: args.seed,
            settle_timeout: Duration::from_secs(args.settle_timeout),
            poll_concurrency: args.poll_concurrency,
            pg_port: port(database_url, 5432)?,
            amqp_ports: nodes
                .urls()
                .map(|url| port(url, 5672))
                .collect::<anyhow::Result<_>>()?,
            streams: args.streams,
            webhook: args.webhook,
            catalog: (args.catalog > 0).then_some(catalog::Settings {
                shows: args.catalog,
                rate: args.search_rate,
                seed: args.seed,
            }),
            cluster: server.cluster.clone(),
        };
        eprintln!(
            "flash sale: {} requests on {} of {}{} …",
            args.requests,
            if args.seated {
                "a seated show".to_owned()
            } else if args.shows > 1 {
                format!(
                    "{} general-admission shows (Zipf s = {}), tickets",
                    args.shows, args.zipf
                )
            } else {
                "a general-admission show".to_owned()
            },
            args.capacity,
            if args.waitlist {
                ", all asking to wait"
            } else {
                ""
            }
        );
        Some(flash_sale::run(sys.clone(), &settings).await?)
    };
    Ok((limits, flash_sale))
}

/// Waits until the workers have shared out the shards. Workers claim
/// shards once a second after they start; a shard handed over during the
/// sale pauses its show for about a second, which would be measured as the
/// system's latency although it is a start-up effect.
async fn wait_for_balance(sys: &System, shards: u16, limit: Duration) {
    let workers = sys.workers();
    let share = f64::from(shards / u16::try_from(workers.len().max(1)).unwrap_or(u16::MAX));
    let started = std::time::Instant::now();
    loop {
        let mut owned = Vec::new();
        for w in &workers {
            owned.push(
                sys.worker_metric(w, "worker_shards_owned")
                    .await
                    .unwrap_or(0.0),
            );
        }
        if owned.iter().sum::<f64>() >= f64::from(shards) && owned.iter().all(|&o| o >= share) {
            return;
        }
        if started.elapsed() > limit {
            eprintln!("warning: shards not balanced after {limit:?} ({owned:?}); going on");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .with_context(|| format!("{name} is not set: run the benchmark with scripts/bench"))
}

fn port(url: &str, default: u16) -> anyhow::Result<u16> {
    let url = reqwest::Url::parse(url).with_context(|| format!("not a URL: {url}"))?;
    Ok(url.port().unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_of_a_cluster_has_its_port() {
        let list = "amqp://guest:guest@127.0.0.1:5672/%2f, amqp://guest:guest@127.0.0.1:5673/%2f,";
        let nodes: Nodes = list.parse().unwrap();
        let ports: Vec<u16> = nodes.urls().map(|u| port(u, 5672).unwrap()).collect();
        assert_eq!(ports, vec![5672, 5673]);
        assert_eq!(port("amqp://localhost/%2f", 5672).unwrap(), 5672);
    }
}
