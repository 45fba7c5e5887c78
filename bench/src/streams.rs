//! `--streams N`: the first N accepted bookings of the sale are followed
//! over Server-Sent Events (`GET /v1/bookings/{id}/events`), all on the one
//! API process, and stay open until the sale has settled (a held booking's
//! stream does not end); a few clients meanwhile poll the other accepted
//! bookings, as customers without a stream would. Measured: how
//! late each stream learns its decision (decision time from the event's
//! own `updated_at`), how slow a poll is under the flood, and the API's
//! peak memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use harness::System;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::event_stream::{Endpoint, EventStream};
use crate::stats::{per_second, Latency};

/// Polling clients running while the streams are open: a sample of the
/// customers without a stream, each polling its booking every
/// [`POLL_EVERY`], to measure what a poll costs under the flood without
/// adding a load of their own that the run without streams does not have.
const POLLERS: usize = 8;
const POLL_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Serialize)]
pub struct StreamsReport {
    pub wanted: usize,
    /// Streams that answered 200 and sent the booking at once.
    pub opened: usize,
    /// Streams that delivered the booking's decision as a change.
    pub decided: usize,
    /// Streams whose booking was decided before they opened (their first
    /// event says so; not a push, so not in `event_delay`).
    pub decided_at_open: usize,
    /// Most streams open at the same time.
    pub peak_open: usize,
    /// Streams that failed (refused, cut) before the decision.
    pub failed: usize,
    /// Decision (the event's `updated_at`) to the event's arrival.
    pub event_delay: Latency,
    /// Polls of bookings without a stream, during the sale.
    pub polls: usize,
    pub polls_per_s: f64,
    pub poll_latency: Latency,
    /// The API process's peak resident memory (VmHWM), MiB.
    pub api_peak_rss_mib: Option<f64>,
}

/// The streams and pollers of one sale.
pub struct Streams {
    sys: Arc<System>,
    api: Endpoint,
    /// The pollers' client.
    client: reqwest::Client,
    wanted: usize,
    started: AtomicUsize,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    opened: AtomicUsize,
    failed: AtomicUsize,
    decided_at_open: AtomicUsize,
    delays: Mutex<Vec<f64>>,
    tasks: Mutex<JoinSet<()>>,
    /// Accepted bookings without a stream, for the pollers.
    unwatched: Mutex<VecDeque<String>>,
    poll_latency: Mutex<Vec<f64>>,
    polling_since: Instant,
}

impl Streams {
    /// Starts the pollers; streams open as bookings are accepted.
    pub fn start(sys: Arc<System>, wanted: usize) -> anyhow::Result<Arc<Self>> {
        let streams = Arc::new(Self {
            api: Endpoint::of(&sys.base_url)?,
            sys,
            client: reqwest::Client::new(),
            wanted,
            started: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            peak_open: AtomicUsize::new(0),
            opened: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            decided_at_open: AtomicUsize::new(0),
            delays: Mutex::default(),
            tasks: Mutex::new(JoinSet::new()),
            unwatched: Mutex::default(),
            poll_latency: Mutex::default(),
            polling_since: Instant::now(),
        });
        for _ in 0..POLLERS {
            let s = streams.clone();
            streams.spawn(async move { s.poll_loop().await });
        }
        Ok(streams)
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.lock().expect("not poisoned").spawn(task);
    }

    /// A booking was accepted: follow it over a stream while there are
    /// streams to give, else leave it to the pollers.
    pub fn accepted(self: &Arc<Self>, id: &str) {
        if self.started.fetch_add(1, Ordering::Relaxed) < self.wanted {
            let (s, id) = (self.clone(), id.to_owned());
            self.spawn(async move { s.follow(&id).await });
        } else {
            self.unwatched
                .lock()
                .expect("not poisoned")
                .push_back(id.to_owned());
        }
    }

    async fn follow(&self, id: &str) {
        let Ok(mut stream) = EventStream::open(&self.api, id).await else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(open, Ordering::Relaxed);
        let mut decided = false;
        let mut first = true;
        while let Ok(Some(event)) = stream.next().await {
            let Ok(booking) = serde_json::from_str::<Seen>(&event.data) else {
                break;
            };
            let at_open = std::mem::take(&mut first);
            if decided || booking.status == "queued" {
                continue;
            }
            decided = true;
            if at_open {
                self.decided_at_open.fetch_add(1, Ordering::Relaxed);
            } else {
                let delay = Utc::now() - booking.updated_at;
                let delay = delay.num_microseconds().unwrap_or(0) as f64 / 1e6;
                self.delays.lock().expect("not poisoned").push(delay);
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        if !decided {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Polls the oldest unwatched booking still queued, over and over.
    async fn poll_loop(&self) {
        loop {
            let next = self.unwatched.lock().expect("not poisoned").pop_front();
            let Some(id) = next else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let sent = Instant::now();
            let res = self
                .client
                .get(format!("{}/v1/bookings/{id}", self.sys.base_url))
                .send()
                .await;
            let Ok(res) = res else { continue };
            let Ok(booking) = res.json::<Value>().await else {
                continue;
            };
            self.poll_latency
                .lock()
                .expect("not poisoned")
                .push(sent.elapsed().as_secs_f64());
            if booking["status"] == "queued" {
                self.unwatched.lock().expect("not poisoned").push_back(id);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Closes every stream and stops the pollers (the sale has settled).
    pub async fn finish(&self) -> StreamsReport {
        let api_peak_rss_mib = self
            .sys
            .pids()
            .into_iter()
            .find(|(label, _)| label == "api")
            .and_then(|(_, pid)| peak_rss_mib(pid));
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("not poisoned"));
        tasks.shutdown().await;
        let delays = std::mem::take(&mut *self.delays.lock().expect("not poisoned"));
        let polls = std::mem::take(&mut *self.poll_latency.lock().expect("not poisoned"));
        StreamsReport {
            wanted: self.wanted,
            opened: self.opened.load(Ordering::Relaxed),
            decided: delays.len(),
            decided_at_open: self.decided_at_open.load(Ordering::Relaxed),
            peak_open: self.peak_open.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            event_delay: Latency::of_seconds(delays),
            polls: polls.len(),
            polls_per_s: per_second(polls.len(), self.polling_since.elapsed().as_secs_f64()),
            poll_latency: Latency::of_seconds(polls),
            api_peak_rss_mib,
        }
    }
}

/// What the bench reads of a streamed booking.
#[derive(Deserialize)]
struct Seen<'a> {
    status: &'a str,
    updated_at: DateTime<Utc>,
}

/// A process's peak resident set (`VmHWM` in /proc), MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
