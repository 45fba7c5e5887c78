//! The `flash-sale` scenario: one show (or `--shows N`, each request's
//! show drawn from a Zipf law) goes on sale and a crowd books it over
//! HTTP, like real clients. Every request is timed from the client's
//! side (sent, `202` received); its decision time comes from the audit
//! trail (the row leaving `queued`), converted to the client's clock through
//! a wall-clock anchor taken at the start (same machine, same clock). Every
//! accepted booking is then polled over HTTP until the API shows it
//! decided: one that never gets there is lost, a broken promise. With
//! `--waitlist` every request asks to wait when sold out, and the offer
//! phase of `waitlist` follows the sale. With `--catalog` a seeded
//! catalog is searched while the sale sends (`catalog`).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use harness::load::{self, Request, Submitted};
use harness::System;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

use crate::catalog::{self, Catalog, CatalogSearch};
use crate::monitor::{CpuPerDecided, Monitor, Observed, Phases, Roles, BENCH_APPLICATION};
use crate::replication::{self, Cluster, LagSampler, ReplicaLag};
use crate::shows::{split_capacity, zipf_weights, Evenness, ManyShows, Zipf};
use crate::stats::{per_second, Latency};
use crate::streams::{Streams, StreamsReport};
use crate::waitlist::{self, Waitlist};
use crate::webhooks::{Webhook, WebhooksReport};
use crate::work;

/// Most tickets one request asks for; each asks for 1 to this many.
const MAX_QUANTITY: usize = 4;

pub struct Settings {
    /// Tickets or seats of the show; with many shows, of all of them.
    pub capacity: u32,
    /// General-admission shows on sale at once (1: the classic sale).
    pub shows: usize,
    /// Exponent of the Zipf law that picks each request's show.
    pub zipf: f64,
    /// Booking shard queues of the system.
    pub shards: u16,
    pub requests: usize,
    /// Closed loop: requests in flight at any time.
    pub concurrency: usize,
    /// Open loop: requests started per second, whatever the answers do.
    pub rate: Option<f64>,
    pub seated: bool,
    pub row_seats: u32,
    /// General admission: every request asks to wait when sold out, and a
    /// tenth of the held bookings are cancelled after the sale.
    pub waitlist: bool,
    /// No request is sent after this long.
    pub duration: Option<Duration>,
    pub seed: u64,
    /// How long to wait for decisions and for the API to show them.
    pub settle_timeout: Duration,
    pub poll_concurrency: usize,
    pub pg_port: u16,
    /// Every AMQP port of the broker (one per node of a cluster).
    pub amqp_ports: Vec<u16>,
    /// Follow this many accepted bookings over Server-Sent Events.
    pub streams: usize,
    /// Subscribe one webhook endpoint to every event.
    pub webhook: bool,
    /// Seed a catalog before the sale and search it while the sale sends.
    pub catalog: Option<catalog::Settings>,
    /// The PostgreSQL cluster the system runs on, if it is one: its
    /// processes count as the system's, and its replicas' lag is sampled.
    pub cluster: Option<Cluster>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlashSale {
    /// The show on sale; with many shows, the most wanted one.
    pub show_id: String,
    /// Shows on sale at once.
    pub shows: usize,
    pub seated: bool,
    /// Tickets or seats on sale, over all the shows.
    pub capacity: u32,
    /// `--shows` above 1: the shows' tickets and how they sold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub many_shows: Option<ManyShows>,
    pub load: String,
    pub sent: usize,
    pub accepted: usize,
    /// Non-202 answers by kind (`HTTP 503`, `connection failed`, …) and
    /// failures while polling.
    pub errors: BTreeMap<String, usize>,
    /// First request sent to last `202` received.
    pub submit_seconds: f64,
    pub submit_per_s: f64,
    pub submit_latency: Latency,
    /// Open loop only: how late the client started requests against its
    /// schedule (large values mean the client itself could not keep up).
    pub schedule_lag: Option<Latency>,
    /// Held, rejected or (with `--waitlist`) waitlisted.
    pub decided: usize,
    pub held: usize,
    pub rejected: usize,
    pub tickets_held: i64,
    /// First request sent to last decision.
    pub decided_seconds: f64,
    pub decided_per_s: f64,
    pub decided_latency: Latency,
    /// Accepted bookings the API never showed decided.
    pub lost: usize,
    pub oversold: i64,
    pub inversions: usize,
    pub invariants: Vec<Invariant>,
    /// `--waitlist` only: the sale's waiting list and the offer phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waitlist: Option<Waitlist>,
    /// `--streams` only: the event streams and the polls beside them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<StreamsReport>,
    /// `--webhook` only: deliveries to one endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<WebhooksReport>,
    /// `--catalog` only: the searches beside the sale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_search: Option<CatalogSearch>,
    /// On a PostgreSQL cluster only: how far the replicas were behind the
    /// primary while the sale ran (sampled over the same span as
    /// `observed`: from just before the first request until every booking
    /// was decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_lag: Option<ReplicaLag>,
    pub worker_share: Vec<WorkerShare>,
    /// How evenly the workers shared the decisions and the shards.
    pub evenness: Evenness,
    /// CPU seconds per decided booking, by role and in total (from
    /// `observed.cpu`; `None` if nothing was decided).
    pub cpu_per_decided: Option<CpuPerDecided>,
    /// The servers' work per decided booking: transactions, rows, WAL,
    /// messages and bytes (`None` if nothing was decided).
    pub work_per_decided: Option<work::PerBooking>,
    /// The sale's phases (from `observed.timeline`; `None` if nothing was
    /// answered).
    pub phases: Option<Phases>,
    pub observed: Observed,
    /// How PostgreSQL read the `bookings` table over the run: sequential
    /// scans of a table this size are the sign of a bad (e.g. generic,
    /// planned while the table was empty) plan.
    pub bookings_table: TableReads,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TableReads {
    pub seq_scan: i64,
    pub seq_tup_read: i64,
    pub idx_scan: i64,
    pub autoanalyze_count: i64,
}

impl FlashSale {
    /// Whether the system kept its promises in this run.
    pub fn correct(&self) -> bool {
        self.lost == 0
            && self.oversold == 0
            && self.inversions == 0
            && self.invariants.iter().all(|i| i.ok)
            && self.waitlist.as_ref().is_none_or(|w| w.passed_over == 0)
            && self.evenness.ok()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    pub ok: bool,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerShare {
    pub worker: String,
    pub decisions: i64,
    pub share: f64,
    /// Shard queues it consumed when the sale was decided (`None`: not a
    /// worker of this system any more).
    pub shards: Option<u32>,
    pub shard_share: Option<f64>,
}

/// A booking and its decision as the database recorded them.
#[derive(sqlx::FromRow)]
struct Decision {
    id: Uuid,
    status: String,
    at: Option<DateTime<Utc>>,
    actor: Option<String>,
}

pub async fn run(sys: Arc<System>, settings: &Settings) -> anyhow::Result<FlashSale> {
    let catalog = match settings.catalog {
        Some(catalog) => Some(Catalog::seed(&sys, catalog).await?),
        None => None,
    };
    let (shows, capacities, requests) = if settings.seated {
        let (show, requests) = seated_sale(&sys, settings).await?;
        (vec![show], vec![settings.capacity], requests)
    } else {
        let (shows, capacities) = ga_shows(&sys, settings).await?;
        let requests = ga_requests(&shows, settings);
        (shows, capacities, requests)
    };
    let show_ids = shows
        .iter()
        .map(|show| show.parse())
        .collect::<Result<Vec<Uuid>, _>>()?;
    // The benchmark's own connections, named so that the statement samples
    // leave them out.
    let options =
        PgConnectOptions::from_str(&sys.database_url)?.application_name(BENCH_APPLICATION);
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;

    let answered = Arc::new(AtomicUsize::new(0));
    let mut roles = Roles::find(
        sys.pids(),
        &sys.name,
        settings.pg_port,
        &settings.amqp_ports,
    );
    let lag = match &settings.cluster {
        Some(cluster) => {
            let primary = replication::primary_port(&db).await?;
            roles = roles.with_cluster(&cluster.node_ports, &cluster.support_ports, primary);
            Some(LagSampler::start(&sys.database_url).await?)
        }
        None => None,
    };
    let work_before = work::Counters::take(&db, sys.vhost.as_deref()).await;
    let monitor = Monitor::start(roles, db.clone(), sys.vhost.clone(), answered.clone());
    let webhook = if settings.webhook {
        Some(Webhook::subscribe(&sys).await?)
    } else {
        None
    };
    let streams = match settings.streams {
        0 => None,
        wanted => Some(Streams::start(sys.clone(), wanted)?),
    };
    let searches = match catalog {
        Some(catalog) => Some(catalog.search(&sys)?),
        None => None,
    };
    let anchor = (Instant::now(), Utc::now());
    let (submitted, schedule_lag) = match settings.rate {
        Some(rate) => {
            open_loop(
                &sys,
                requests,
                rate,
                settings.duration,
                &answered,
                streams.clone(),
            )
            .await
        }
        None => (
            closed_loop(
                &sys,
                requests,
                settings.concurrency,
                settings.duration,
                &answered,
                streams.clone(),
            )
            .await,
            None,
        ),
    };
    let catalog_search = match searches {
        Some(searches) => Some(searches.finish(&sys).await?),
        None => None,
    };
    let accepted: Vec<&Submitted> = submitted.iter().filter(|s| s.accepted()).collect();
    settle(&db, &show_ids, accepted.len(), settings.settle_timeout).await;
    let shards_owned = shards_owned(&sys).await;
    // Let the last events reach their streams before closing them.
    let streams = match streams {
        Some(streams) => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Some(streams.finish().await)
        }
        None => None,
    };
    let observed = monitor.finish().await;
    let work_after = work::Counters::settled(&db, sys.vhost.as_deref()).await;
    let replica_lag = match lag {
        Some(lag) => Some(lag.finish().await),
        None => None,
    };

    let decisions = decisions(&db, &show_ids).await?;
    // Before the checks below, whose 100,000 polls would compete with the
    // deliveries still under way: one event per decision.
    let webhooks = match webhook {
        Some(webhook) => {
            let events = decisions
                .values()
                .filter(|d| {
                    matches!(
                        d.status.as_str(),
                        "held" | "confirmed" | "rejected" | "waitlisted"
                    )
                })
                .count();
            Some(webhook.finish(events, settings.settle_timeout).await)
        }
        None => None,
    };
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for s in submitted.iter().filter(|s| !s.accepted()) {
        let kind = if s.status == 0 {
            "connection failed".to_owned()
        } else {
            format!("HTTP {}", s.status)
        };
        *errors.entry(kind).or_default() += 1;
    }
    let ids: Vec<String> = accepted.iter().filter_map(|s| s.id.clone()).collect();
    let (lost, poll_errors) = poll_all(
        &sys,
        ids,
        settings.poll_concurrency,
        settings.settle_timeout,
    )
    .await;
    for (kind, n) in poll_errors {
        *errors.entry(format!("poll: {kind}")).or_default() += n;
    }

    let t = |at: Instant| at.duration_since(anchor.0).as_secs_f64();
    let decided_t =
        |at: DateTime<Utc>| (at - anchor.1).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let first_sent = submitted
        .iter()
        .map(|s| t(s.sent))
        .fold(f64::INFINITY, f64::min);
    let last_answer = accepted.iter().map(|s| t(s.answered)).fold(0.0, f64::max);
    let submit_seconds = (last_answer - first_sent).max(0.0);

    let mut held = 0;
    let mut rejected = 0;
    let mut waitlisted = 0;
    let mut tickets_held = 0;
    let mut decided_latency = Vec::with_capacity(accepted.len());
    let mut last_decision = first_sent;
    let mut outcome_of: HashMap<&str, bool> = HashMap::new();
    for s in &accepted {
        let Some(decision) = s.id.as_deref().and_then(|id| decisions.get(id)) else {
            continue;
        };
        // Waiting is a refusal for the inversion rule: nothing is released
        // during the sale, so nobody later may get what this one asked for.
        let got_seats = match decision.status.as_str() {
            "held" | "confirmed" => {
                held += 1;
                tickets_held += i64::from(s.request.quantity);
                true
            }
            "rejected" => {
                rejected += 1;
                false
            }
            "waitlisted" => {
                waitlisted += 1;
                false
            }
            _ => continue,
        };
        if let Some(at) = decision.at {
            decided_latency.push(decided_t(at) - t(s.sent));
            last_decision = last_decision.max(decided_t(at));
        }
        if let Some(id) = s.id.as_deref() {
            outcome_of.insert(id, got_seats);
        }
    }
    let decided = held + rejected + waitlisted;
    let decided_seconds = (last_decision - first_sent).max(0.0);

    // After the sale's figures, which come from `decisions` as the sale
    // left them; oversell and the invariants below are checked after it.
    let waitlist = if settings.waitlist {
        let held: Vec<Uuid> = accepted
            .iter()
            .filter_map(|s| s.id.as_deref())
            .filter(|id| decisions.get(*id).is_some_and(|d| d.status == "held"))
            .filter_map(|id| id.parse().ok())
            .collect();
        let phase = waitlist::Phase {
            sys: &sys,
            db: &db,
            show: show_ids[0],
            anchor,
            concurrency: settings.concurrency,
            timeout: settings.settle_timeout,
        };
        Some(waitlist::run(&phase, &held, &mut errors).await?)
    } else {
        None
    };

    let mode = match settings.rate {
        Some(rate) => format!("open loop, {rate:.0} requests/s"),
        None => format!("closed loop, {} in flight", settings.concurrency),
    };
    let worker_share = worker_share(&sys, &decisions, &shards_owned, settings.shards);
    let evenness = Evenness::of(
        &worker_share
            .iter()
            .map(|w| w.decisions as f64)
            .collect::<Vec<_>>(),
        &worker_share
            .iter()
            .filter_map(|w| w.shard_share)
            .collect::<Vec<_>>(),
        shows.len() > 1,
    );
    let many_shows = (shows.len() > 1)
        .then(|| many_shows(settings.zipf, &shows, &capacities, &accepted, &decisions));
    let sale = FlashSale {
        show_id: shows[0].clone(),
        shows: shows.len(),
        seated: settings.seated,
        capacity: capacities.iter().sum(),
        many_shows,
        load: mode,
        sent: submitted.len(),
        accepted: accepted.len(),
        errors,
        submit_seconds,
        submit_per_s: per_second(accepted.len(), submit_seconds),
        submit_latency: Latency::of_seconds(
            accepted
                .iter()
                .map(|s| (s.answered - s.sent).as_secs_f64())
                .collect(),
        ),
        schedule_lag,
        decided,
        held,
        rejected,
        tickets_held,
        decided_seconds,
        decided_per_s: per_second(decided, decided_seconds),
        decided_latency: Latency::of_seconds(decided_latency),
        lost,
        oversold: oversold(&db, &show_ids).await?,
        inversions: inversions(&accepted, &outcome_of, settings.seated),
        invariants: invariants(&db, &show_ids, settings.waitlist).await,
        waitlist,
        streams,
        webhooks,
        catalog_search,
        replica_lag,
        worker_share,
        evenness,
        cpu_per_decided: observed.cpu_per_decided(decided),
        work_per_decided: work_after.per_booking(&work_before, decided),
        phases: Phases::of(&observed.timeline),
        observed,
        bookings_table: sqlx::query_as(
            "SELECT seq_scan, seq_tup_read, coalesce(idx_scan, 0) AS idx_scan, autoanalyze_count
             FROM pg_stat_user_tables WHERE relname = 'bookings'",
        )
        .fetch_one(&db)
        .await?,
    };
    db.close().await;
    Ok(sale)
}

/// General-admission shows, most wanted first, and their tickets: one show
/// of `capacity`, or `--shows` sharing `capacity` by their Zipf weights
/// (so that all are as contended as the whole sale), created a few at a
/// time.
async fn ga_shows(sys: &System, settings: &Settings) -> anyhow::Result<(Vec<String>, Vec<u32>)> {
    if settings.shows <= 1 {
        let show = sys.ga_show(i32::try_from(settings.capacity)?).await;
        return Ok((vec![show], vec![settings.capacity]));
    }
    let capacities = split_capacity(
        settings.capacity,
        &zipf_weights(settings.shows, settings.zipf),
    );
    eprintln!("creating {} shows …", settings.shows);
    let created: Vec<Value> = futures::stream::iter(capacities.iter().enumerate())
        .map(|(rank, capacity)| {
            sys.create_show(json!({
                "name": format!("Bench Show {}", rank + 1), "venue": "The Park",
                "starts_at": "2030-06-01T19:00:00Z", "capacity": capacity, "price_cents": 2500
            }))
        })
        .buffered(8)
        .collect()
        .await;
    let shows = created
        .iter()
        .map(|show| show["id"].as_str().map(str::to_owned).context("show id"))
        .collect::<anyhow::Result<_>>()?;
    Ok((shows, capacities))
}

/// General-admission requests for 1–4 tickets, each from its own email
/// address; with many shows, each for a show drawn from the Zipf law.
fn ga_requests(shows: &[String], settings: &Settings) -> Vec<Request> {
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let run = Uuid::new_v4().simple().to_string();
    let zipf = (shows.len() > 1).then(|| Zipf::new(shows.len(), settings.zipf));
    (0..settings.requests)
        .map(|i| {
            let quantity = rng.random_range(1..=MAX_QUANTITY as i32);
            // One show draws nothing more: the same requests as ever.
            let show = match &zipf {
                Some(zipf) => &shows[zipf.sample(rng.random())],
                None => &shows[0],
            };
            let mut body = json!({"email": format!("fs-{}-{i}@bench.test", &run[..8]), "name": "Bench Client", "quantity": quantity});
            if settings.waitlist {
                body["waitlist"] = json!(true);
            }
            Request {
                show: show.clone(),
                body,
                quantity,
            }
        })
        .collect()
}

/// A seated show of `capacity` seats in rows of `row_seats`, and requests
/// for 1–4 adjacent seats at a random place in a random row, so that many
/// requests want some of the same seats.
async fn seated_sale(sys: &System, settings: &Settings) -> anyhow::Result<(String, Vec<Request>)> {
    let mut rows = Vec::new();
    let mut left = settings.capacity;
    while left > 0 {
        let seats = left.min(settings.row_seats);
        rows.push(json!({"row": format!("R{:03}", rows.len() + 1), "seats": seats}));
        left -= seats;
    }
    let show = sys
        .create_show(json!({
            "name": "Bench Hall", "venue": "The Arena", "starts_at": "2030-06-01T19:00:00Z",
            "sections": [{"name": "Stalls", "price_cents": 4000, "rows": rows}]
        }))
        .await;
    let show = show["id"].as_str().context("show id")?.to_owned();
    let map = sys.seat_map(&show).await;
    let mut by_row: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for seat in map["seats"].as_array().context("seat map")? {
        let row = seat["row"].as_str().unwrap_or_default().to_owned();
        let number = seat["number"].as_i64().unwrap_or_default();
        let id = seat["id"].as_str().unwrap_or_default().to_owned();
        by_row.entry(row).or_default().push((number, id));
    }
    let rows: Vec<Vec<String>> = by_row
        .into_values()
        .map(|mut seats| {
            seats.sort();
            seats.into_iter().map(|(_, id)| id).collect()
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(settings.seed);
    let run = Uuid::new_v4().simple().to_string();
    let requests = (0..settings.requests)
        .map(|i| {
            let row = &rows[rng.random_range(0..rows.len())];
            let quantity = rng.random_range(1..=MAX_QUANTITY).min(row.len());
            let first = rng.random_range(0..=row.len() - quantity);
            let seats = &row[first..first + quantity];
            Request {
                show: show.clone(),
                body: json!({"email": format!("fs-{}-{i}@bench.test", &run[..8]), "name": "Bench Client", "seat_ids": seats}),
                quantity: quantity as i32,
            }
        })
        .collect();
    Ok((show, requests))
}

pub(crate) fn progress(len: usize, prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64).with_prefix(prefix);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    bar
}

/// `concurrency` clients, each sending its next request as soon as the
/// previous one is answered.
async fn closed_loop(
    sys: &Arc<System>,
    requests: Vec<Request>,
    concurrency: usize,
    duration: Option<Duration>,
    answered: &Arc<AtomicUsize>,
    streams: Option<Arc<Streams>>,
) -> Vec<Submitted> {
    let bar = progress(requests.len(), "submit");
    let deadline = duration.map(|d| Instant::now() + d);
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(requests.len())));
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let (sys, requests, next, results) =
                (sys.clone(), requests.clone(), next.clone(), results.clone());
            let (answered, bar, streams) = (answered.clone(), bar.clone(), streams.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests.len() || deadline.is_some_and(|d| Instant::now() >= d) {
                        return;
                    }
                    let submitted = load::submit(&sys, requests[i].clone()).await;
                    follow(streams.as_ref(), &submitted);
                    answered.fetch_add(1, Ordering::Relaxed);
                    bar.inc(1);
                    results.lock().expect("not poisoned").push(submitted);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("a client does not panic");
    }
    bar.finish();
    let results = std::mem::take(&mut *results.lock().expect("not poisoned"));
    eprintln!("submitted {} requests", results.len());
    results
}

/// Hands an accepted booking to the streams (`--streams`), if any.
fn follow(streams: Option<&Arc<Streams>>, submitted: &Submitted) {
    if let (Some(streams), Some(id)) = (streams, submitted.id.as_deref()) {
        if submitted.accepted() {
            streams.accepted(id);
        }
    }
}

/// Starts request `i` at `i / rate` seconds, whether or not earlier ones
/// have been answered, as independent clients do. Returns the answers and
/// how late each request started against that schedule.
async fn open_loop(
    sys: &Arc<System>,
    requests: Vec<Request>,
    rate: f64,
    duration: Option<Duration>,
    answered: &Arc<AtomicUsize>,
    streams: Option<Arc<Streams>>,
) -> (Vec<Submitted>, Option<Latency>) {
    let bar = progress(requests.len(), "submit");
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(requests.len());
    for (i, request) in requests.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if duration.is_some_and(|d| due >= start + d) {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let (sys, answered, bar) = (sys.clone(), answered.clone(), bar.clone());
        let streams = streams.clone();
        tasks.push(tokio::spawn(async move {
            let submitted = load::submit(&sys, request).await;
            follow(streams.as_ref(), &submitted);
            answered.fetch_add(1, Ordering::Relaxed);
            bar.inc(1);
            (submitted.sent.saturating_duration_since(due), submitted)
        }));
    }
    let mut lags = Vec::with_capacity(tasks.len());
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (lag, submitted) = task.await.expect("a client does not panic");
        lags.push(lag.as_secs_f64());
        results.push(submitted);
    }
    bar.finish();
    eprintln!("submitted {} requests", results.len());
    (results, Some(Latency::of_seconds(lags)))
}

/// Waits until no booking of the shows is `queued` any more (or the
/// timeout), showing decisions as they happen.
async fn settle(db: &PgPool, shows: &[Uuid], accepted: usize, timeout: Duration) {
    let bar = progress(accepted, "decide");
    let deadline = Instant::now() + timeout;
    loop {
        let queued: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bookings WHERE show_id = ANY($1) AND status = 'queued'",
        )
        .bind(shows)
        .fetch_one(db)
        .await
        .unwrap_or(i64::MAX);
        bar.set_position((accepted as i64 - queued).max(0) as u64);
        if queued == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish();
}

/// Every booking of the shows with its first decision (the audit row that
/// took it out of `queued`: when and by whom).
async fn decisions(db: &PgPool, shows: &[Uuid]) -> anyhow::Result<HashMap<String, Decision>> {
    let rows: Vec<Decision> = sqlx::query_as(
        "SELECT DISTINCT ON (b.id) b.id, b.status, a.at, a.actor
         FROM bookings b
         LEFT JOIN booking_audit a ON a.booking_id = b.id AND a.from_status = 'queued'
         WHERE b.show_id = ANY($1)
         ORDER BY b.id, a.id",
    )
    .bind(shows)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|d| (d.id.to_string(), d)).collect())
}

/// Polls every accepted booking over HTTP until it is no longer `queued`.
/// Returns how many never got there, and failures by kind.
async fn poll_all(
    sys: &Arc<System>,
    ids: Vec<String>,
    concurrency: usize,
    timeout: Duration,
) -> (usize, BTreeMap<String, usize>) {
    let bar = progress(ids.len(), "poll");
    let deadline = Instant::now() + timeout;
    let outcomes: Vec<Result<(), String>> = futures::stream::iter(ids)
        .map(|id| {
            let bar = bar.clone();
            async move {
                let outcome = poll(sys, &id, deadline).await;
                bar.inc(1);
                outcome
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    bar.finish();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut lost = 0;
    for failure in outcomes.into_iter().filter_map(Result::err) {
        lost += 1;
        *failures.entry(failure).or_default() += 1;
    }
    (lost, failures)
}

async fn poll(sys: &System, id: &str, deadline: Instant) -> Result<(), String> {
    let mut last = String::from("still queued");
    while Instant::now() < deadline {
        match sys
            .request(reqwest::Method::GET, &format!("/v1/bookings/{id}"))
            .send()
            .await
        {
            Ok(res) if res.status() == 200 => match res.json::<Value>().await {
                Ok(booking) if booking["status"] != "queued" => return Ok(()),
                Ok(_) => last = "still queued".to_owned(),
                Err(_) => last = "unreadable body".to_owned(),
            },
            Ok(res) => last = format!("HTTP {}", res.status().as_u16()),
            Err(_) => last = "connection failed".to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// Tickets or seats sold beyond what exists, summed over the shows: live
/// tickets over each show's capacity, plus seats that two live bookings
/// both count as theirs.
async fn oversold(db: &PgPool, shows: &[Uuid]) -> anyhow::Result<i64> {
    let over: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(over), 0)::bigint FROM (
           SELECT greatest(0, coalesce(sum(b.quantity), 0) - s.capacity) AS over
           FROM shows s LEFT JOIN bookings b ON b.show_id = s.id AND b.status IN ('held', 'confirmed')
           WHERE s.id = ANY($1) GROUP BY s.id, s.capacity) t",
    )
    .bind(shows)
    .fetch_one(db)
    .await?;
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
           SELECT bs.seat_id FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
           WHERE b.show_id = ANY($1) AND b.status IN ('held', 'confirmed')
           GROUP BY bs.seat_id HAVING count(*) > 1) t",
    )
    .bind(shows)
    .fetch_one(db)
    .await?;
    Ok(over + doubled)
}

/// Later requests that got what an earlier one was refused. A request A
/// answered `202` before B was sent is decided before B (per-show order),
/// and nothing is released during the sale (holds outlive it), so B may
/// get seats only if A could have had them too:
/// - general admission: A and B ask for the same quantity of the same show;
/// - seated: B's seats include all of A's.
///
/// For each refused A only the earliest answer matters, so this is one
/// pass with a map from "what was asked" to the earliest refusal.
fn inversions(accepted: &[&Submitted], got_seats: &HashMap<&str, bool>, seated: bool) -> usize {
    let wanted = |s: &Submitted| -> Vec<String> {
        if seated {
            let mut seats: Vec<String> = s.request.body["seat_ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            seats.sort();
            seats
        } else {
            vec![format!("{} × {}", s.request.show, s.request.quantity)]
        }
    };
    let outcome = |s: &Submitted| s.id.as_deref().and_then(|id| got_seats.get(id)).copied();
    let mut first_refusal: HashMap<Vec<String>, Instant> = HashMap::new();
    for s in accepted.iter().filter(|s| outcome(s) == Some(false)) {
        let at = first_refusal.entry(wanted(s)).or_insert(s.answered);
        *at = (*at).min(s.answered);
    }
    accepted
        .iter()
        .filter(|b| outcome(b) == Some(true))
        .filter(|b| {
            let asked = wanted(b);
            // Every non-empty subset of what B got (at most 2^4 - 1).
            (1..1_usize << asked.len()).any(|mask| {
                let subset: Vec<String> = asked
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, s)| s.clone())
                    .collect();
                first_refusal
                    .get(&subset)
                    .is_some_and(|refused| *refused < b.sent)
            })
        })
        .count()
}

/// The harness's invariant checks on every show, as pass or fail with the
/// reason, rather than a panic that would end the benchmark without its
/// report; with the waiting list (one show), its own check on top.
async fn invariants(db: &PgPool, shows: &[Uuid], waitlist: bool) -> Vec<Invariant> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcomes: Vec<[Result<(), String>; 2]> = futures::stream::iter(shows.iter().copied())
        .map(|show| async move {
            let not_oversold = {
                let db = db.clone();
                tokio::spawn(
                    async move { harness::invariants::assert_not_oversold(&db, show).await },
                )
                .await
            };
            let decided_once = {
                let db = db.clone();
                tokio::spawn(
                    async move { harness::invariants::assert_decided_once(&db, show).await },
                )
                .await
            };
            [failure(not_oversold), failure(decided_once)]
        })
        .buffered(4)
        .collect()
        .await;
    std::panic::set_hook(quiet);
    let check = |name, which: usize| {
        let failed: Vec<&String> = outcomes
            .iter()
            .filter_map(|o| o[which].as_ref().err())
            .collect();
        Invariant {
            name,
            ok: failed.is_empty(),
            detail: match failed.as_slice() {
                [] => None,
                [only] if shows.len() == 1 => Some((*only).clone()),
                [first, ..] => Some(format!(
                    "{} of {} shows, e.g. {first}",
                    failed.len(),
                    shows.len()
                )),
            },
        }
    };
    let mut checks = vec![check("not oversold (counters, bookings, seats agree)", 0)];
    checks.push(check("decided once, one event each", 1));
    if waitlist {
        checks.push(waitlist::invariants(db, shows[0]).await);
    }
    checks
}

/// A check's panic message, if it failed.
fn failure(outcome: Result<(), tokio::task::JoinError>) -> Result<(), String> {
    outcome.map_err(|err| match err.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "failed".to_owned()),
        Err(err) => err.to_string(),
    })
}

/// The shard queues each worker consumes now, by label (0 if it does not
/// answer).
async fn shards_owned(sys: &System) -> HashMap<String, u32> {
    let mut owned = HashMap::new();
    for label in sys.workers() {
        let shards = sys
            .worker_metric(&label, "worker_shards_owned")
            .await
            .unwrap_or(0.0);
        owned.insert(label, shards as u32);
    }
    owned
}

/// How the tickets of many shows sold.
fn many_shows(
    zipf_s: f64,
    shows: &[String],
    capacities: &[u32],
    accepted: &[&Submitted],
    decisions: &HashMap<String, Decision>,
) -> ManyShows {
    let mut requested: HashMap<&str, usize> = HashMap::new();
    let mut sold: HashMap<&str, i64> = HashMap::new();
    for s in accepted {
        let show = s.request.show.as_str();
        *requested.entry(show).or_default() += 1;
        let held =
            s.id.as_deref()
                .and_then(|id| decisions.get(id))
                .is_some_and(|d| matches!(d.status.as_str(), "held" | "confirmed"));
        if held {
            *sold.entry(show).or_default() += i64::from(s.request.quantity);
        }
    }
    ManyShows {
        zipf_s,
        capacity_max: capacities.iter().copied().max().unwrap_or(0),
        capacity_min: capacities.iter().copied().min().unwrap_or(0),
        top_show_share: requested.get(shows[0].as_str()).copied().unwrap_or(0) as f64
            / accepted.len().max(1) as f64,
        shows_requested: requested.len(),
        sold_out: shows
            .iter()
            .zip(capacities)
            .filter(|(show, &capacity)| {
                sold.get(show.as_str()).copied().unwrap_or(0) >= i64::from(capacity)
            })
            .count(),
    }
}

/// Decisions per worker process, from the audit trail's `worker-<pid>`
/// (of the sale's shows only: the same count as the harness's
/// `decisions_by_worker`, which counts the whole database), and the shard
/// queues each consumes.
fn worker_share(
    sys: &System,
    decisions: &HashMap<String, Decision>,
    shards_owned: &HashMap<String, u32>,
    shards: u16,
) -> Vec<WorkerShare> {
    let mut by_actor: BTreeMap<String, i64> = BTreeMap::new();
    for actor in decisions.values().filter_map(|d| d.actor.as_ref()) {
        *by_actor.entry(actor.clone()).or_default() += 1;
    }
    let total: i64 = by_actor.values().sum();
    let mut shares: Vec<WorkerShare> = sys
        .pids()
        .into_iter()
        .filter(|(label, _)| label.starts_with("worker"))
        .map(|(label, pid)| {
            let decisions = by_actor.remove(&format!("worker-{pid}")).unwrap_or(0);
            let owned = shards_owned.get(&label).copied();
            WorkerShare {
                worker: format!("{label} (pid {pid})"),
                decisions,
                share: if total > 0 {
                    decisions as f64 / total as f64
                } else {
                    0.0
                },
                shards: owned,
                shard_share: owned.map(|o| f64::from(o) / f64::from(shards.max(1))),
            }
        })
        .collect();
    // Anyone else who decided (e.g. a worker restarted under a new pid).
    shares.extend(by_actor.into_iter().map(|(actor, decisions)| WorkerShare {
        worker: actor,
        decisions,
        share: decisions as f64 / total as f64,
        shards: None,
        shard_share: None,
    }));
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted(
        quantity: i32,
        seats: &[&str],
        sent: Instant,
        answered: Instant,
        id: &str,
    ) -> Submitted {
        Submitted {
            request: Request {
                show: "s".into(),
                body: json!({"seat_ids": seats, "quantity": quantity}),
                quantity,
            },
            status: 202,
            id: Some(id.to_owned()),
            sent,
            answered,
        }
    }

    #[test]
    fn a_later_request_of_the_same_size_served_after_a_refusal_is_an_inversion() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let a = submitted(2, &[], ms(0), ms(10), "a");
        let b = submitted(2, &[], ms(20), ms(30), "b");
        let c = submitted(2, &[], ms(5), ms(15), "c"); // sent before A's answer: no order promised
        let d = submitted(3, &[], ms(40), ms(50), "d"); // another size
        let outcomes = HashMap::from([("a", false), ("b", true), ("c", true), ("d", true)]);
        assert_eq!(inversions(&[&a, &b, &c, &d], &outcomes, false), 1);
    }

    #[test]
    fn seated_requests_invert_only_when_the_later_one_got_all_the_refused_seats() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let a = submitted(2, &["s1", "s2"], ms(0), ms(10), "a");
        let overlap = submitted(2, &["s2", "s3"], ms(20), ms(30), "o");
        let superset = submitted(3, &["s3", "s1", "s2"], ms(40), ms(50), "s");
        let outcomes = HashMap::from([("a", false), ("o", true), ("s", true)]);
        assert_eq!(inversions(&[&a, &overlap, &superset], &outcomes, true), 1);
    }
}
