//! Live booking updates for `GET /v1/bookings/{id}/events`, without a
//! database poll per stream.
//!
//! Each API process runs one [`Hub`]. It consumes every booking event from
//! the `booking.events` exchange through a queue of its own (exclusive,
//! auto-delete, named after the process), and keeps one `watch` channel per
//! booking that has at least one open stream, holding the booking's latest
//! JSON. An event only marks its booking as due; every [`FLUSH_EVERY`] the
//! hub loads all due bookings in one batch and sends on only what changed.
//! A new stream is due too: its first view comes from the same batch, so a
//! burst of streams opening costs one load per flush, not one per stream.
//! An idle stream is just a receiver of that channel: no task, no timer but
//! its keep-alive, no queries.
//!
//! A queued booking's place in line moves when other bookings of its show
//! are decided. Their events mark the show's line due; at most once per
//! [`LINE_EVERY`] per show the hub reads the head of the line (one index
//! lookup) and places every watched queued booking of that show from the
//! number it keeps for it, without loading the bookings again. In a sale
//! every queued stream's place changes all the time, so the hub spreads at
//! most [`PLACES_PER_SECOND`] such updates over its queued streams: with
//! ten thousand of them each hears of its place every few seconds (a
//! place not yet updated over-states, which the contract allows; it never
//! under-states), and the sale is not slowed by their pushes.
//!
//! The state always comes from the database, never from the event, so a
//! lost, repeated or reordered event costs nothing but a reload: after a
//! reconnect every watched booking is reloaded.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use shared::amqp::consume::{self, ConsumeError, Queue};
use shared::domain::BookingStatus;
use shared::messages::decode_events;
use shared::service::Tasks;
use shared::store::bookings::view::{self, BookingView, Loaded};
use shared::store::bookings::Lines;
use shared::topology::{self, Topology, EVENTS_EXCHANGE};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::ApiError;
use crate::show_feed::ShowFeed;

/// How often the hub loads the bookings events have touched.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// How often at most the hub reads the head of one show's line.
const LINE_EVERY: Duration = Duration::from_secs(1);
/// Place-in-line updates a process pushes per second at most, over all its
/// queued streams.
const PLACES_PER_SECOND: f64 = 2000.0;
/// Events taken from the queue together at most.
const EVENTS_AT_ONCE: usize = 256;
/// After the database failed the hub, the pause before it asks again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A booking as its streams send it.
#[derive(Debug, PartialEq, Eq)]
pub struct View {
    /// Exactly the body `GET /v1/bookings/{id}` answers.
    pub json: String,
    /// A status after which nothing more is streamed.
    pub last: bool,
}

impl View {
    pub fn of(view: &BookingView) -> Arc<Self> {
        Arc::new(Self {
            json: serde_json::to_string(view).expect("booking views serialize"),
            last: ends_stream(view.status),
        })
    }
}

/// What a watched booking's (or show's) streams have to send.
#[derive(Debug)]
pub enum Current<T = View> {
    /// Not loaded yet: the first flush after the first stream opened.
    Loading,
    /// No such booking (show).
    Missing,
    /// The first load failed; retried after [`RETRY_AFTER`].
    Unavailable(Arc<sqlx::Error>),
    View(Arc<T>),
}

impl<T> Clone for Current<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Loading => Self::Loading,
            Self::Missing => Self::Missing,
            Self::Unavailable(err) => Self::Unavailable(err.clone()),
            Self::View(view) => Self::View(view.clone()),
        }
    }
}

/// The first view a stream gets (at once if another stream already
/// watches the same thing): a missing `what` is a 404, a database that
/// cannot be read a 503.
pub async fn first<T>(
    current: &mut watch::Receiver<Current<T>>,
    what: &'static str,
) -> Result<Arc<T>, ApiError> {
    let current = current
        .wait_for(|c| !matches!(c, Current::Loading))
        .await
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("the live hub is gone")))?
        .clone();
    match current {
        Current::View(view) => Ok(view),
        Current::Missing => Err(ApiError::NotFound(what)),
        Current::Unavailable(err) => Err(ApiError::DatabaseUnavailable(err)),
        Current::Loading => unreachable!("waited for a load"),
    }
}

/// Streams end with `confirmed` too: the contract's final statuses are the
/// ones a customer waits for, though a confirmed booking can still be
/// cancelled later.
pub fn ends_stream(status: BookingStatus) -> bool {
    status == BookingStatus::Confirmed || status.is_final()
}

/// The registry of watched bookings, shared by the HTTP handlers (which
/// subscribe) and the hub's consumer and flusher.
pub struct Hub {
    inner: Mutex<Inner>,
    keep_alive: Duration,
}

#[derive(Default)]
struct Inner {
    watched: HashMap<Uuid, Watched>,
    /// Watched bookings to load at the next flush.
    due: HashSet<Uuid>,
    /// Shows with watched queued bookings.
    lines: HashMap<Uuid, Line>,
}

struct Watched {
    view: watch::Sender<Current>,
    /// Open streams of this booking; the entry goes with the last one.
    streams: usize,
    /// While queued: its last loaded view, to place it again.
    queued: Option<Queued>,
}

struct Queued {
    view: BookingView,
    /// Its number in its show's line.
    seq: i64,
}

/// One show's line as far as streams watch it.
#[derive(Default)]
struct Line {
    /// The watched bookings queued in it.
    bookings: HashSet<Uuid>,
    /// Another booking of the show was decided since the head was read.
    moved: bool,
    read_at: Option<Instant>,
}

/// One stream's hold on a watched booking.
pub struct Subscription {
    hub: Arc<Hub>,
    id: Uuid,
    pub view: watch::Receiver<Current>,
}

impl Subscription {
    /// The booking's view as the hub first loads it ([`first`]).
    pub async fn first(&mut self) -> Result<Arc<View>, ApiError> {
        first(&mut self.view, "booking").await
    }
}

impl Hub {
    pub fn new(keep_alive: Duration) -> Self {
        Self {
            inner: Mutex::default(),
            keep_alive,
        }
    }

    /// How often an idle stream sends a comment line.
    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches booking `id`. A first watcher makes it due, so the next
    /// flush loads it with the rest of its batch; later ones share the
    /// latest view.
    pub fn subscribe(self: &Arc<Self>, id: Uuid) -> Subscription {
        let mut inner = self.lock();
        let view = match inner.watched.entry(id) {
            Entry::Occupied(mut entry) => {
                let watched = entry.get_mut();
                watched.streams += 1;
                watched.view.subscribe()
            }
            Entry::Vacant(entry) => {
                let (tx, rx) = watch::channel(Current::Loading);
                entry.insert(Watched {
                    view: tx,
                    streams: 1,
                    queued: None,
                });
                inner.due.insert(id);
                rx
            }
        };
        metrics::gauge!("api_live_streams").increment(1);
        metrics::gauge!("api_live_bookings").set(inner.watched.len() as f64);
        Subscription {
            hub: self.clone(),
            id,
            view,
        }
    }

    /// An event about `booking` of `show`: load the booking at the next
    /// flush if watched, and place the show's watched queued bookings again.
    fn touched(&self, booking: Uuid, show: Uuid) {
        let mut inner = self.lock();
        if inner.watched.contains_key(&booking) {
            inner.due.insert(booking);
        }
        if let Some(line) = inner.lines.get_mut(&show) {
            line.moved = true;
        }
    }

    /// Events may have been missed (a reconnect): load every watched booking.
    fn refresh_all(&self) {
        let mut inner = self.lock();
        let Inner { watched, due, .. } = &mut *inner;
        due.extend(watched.keys().copied());
    }

    /// The due bookings with where to send each one's view.
    fn take_due(&self) -> Vec<(Uuid, watch::Sender<Current>)> {
        let mut inner = self.lock();
        let due = std::mem::take(&mut inner.due);
        due.into_iter()
            .filter_map(|id| Some((id, inner.watched.get(&id)?.view.clone())))
            .collect()
    }

    /// Sends freshly loaded views on, to the channels they were loaded for
    /// (a booking watched anew since is due again anyway), and keeps what
    /// places the queued ones.
    fn loaded(&self, due: Vec<(Uuid, watch::Sender<Current>)>, loaded: Vec<Loaded>) {
        let mut loaded: HashMap<Uuid, Loaded> =
            loaded.into_iter().map(|l| (l.view.id, l)).collect();
        let mut inner = self.lock();
        for (id, sender) in due {
            let Some(fresh) = loaded.remove(&id) else {
                // Unknown, or a request withdrawn after a failed publish:
                // only a stream still waiting for its first view cares.
                settle(&sender, Current::Missing);
                continue;
            };
            let Inner { watched, lines, .. } = &mut *inner;
            let Some(watched) = watched
                .get_mut(&id)
                .filter(|w| w.view.same_channel(&sender))
            else {
                continue;
            };
            send(&watched.view, View::of(&fresh.view));
            let show = fresh.view.show_id;
            watched.queued = match fresh.accepted_seq {
                Some(seq) if fresh.view.status == BookingStatus::Queued => {
                    lines.entry(show).or_default().bookings.insert(id);
                    Some(Queued {
                        view: fresh.view,
                        seq,
                    })
                }
                _ => {
                    leave_line(lines, show, id);
                    None
                }
            };
        }
    }

    /// Lines that moved and were not read within [`LINE_EVERY`], or longer
    /// when more queued streams than [`PLACES_PER_SECOND`] are watched.
    fn take_moved_lines(&self, now: Instant) -> Vec<Uuid> {
        let mut inner = self.lock();
        let queued: usize = inner.lines.values().map(|l| l.bookings.len()).sum();
        let every = LINE_EVERY.max(Duration::from_secs_f64(queued as f64 / PLACES_PER_SECOND));
        let mut shows = Vec::new();
        for (show, line) in &mut inner.lines {
            if line.moved && line.read_at.is_none_or(|at| now - at >= every) {
                line.moved = false;
                line.read_at = Some(now);
                shows.push(*show);
            }
        }
        shows
    }

    /// Places the watched queued bookings of each show with a known head.
    /// A show with nobody queued is left alone: its watched bookings were
    /// decided, and their own events reload them.
    fn placed(&self, heads: &HashMap<Uuid, i64>) {
        let mut inner = self.lock();
        let Inner { watched, lines, .. } = &mut *inner;
        for (show, head) in heads {
            let Some(line) = lines.get(show) else {
                continue;
            };
            for id in &line.bookings {
                let Some(Watched {
                    view: sender,
                    queued: Some(queued),
                    ..
                }) = watched.get_mut(id)
                else {
                    continue;
                };
                let position = Some(BookingView::place(queued.seq, *head));
                if queued.view.position != position {
                    queued.view.position = position;
                    send(sender, View::of(&queued.view));
                }
            }
        }
    }

    /// A load failed: streams waiting for their first view are told, and
    /// everything is loaded again next time.
    fn load_failed(&self, due: Vec<(Uuid, watch::Sender<Current>)>, err: sqlx::Error) {
        let err = Arc::new(err);
        let mut inner = self.lock();
        for (id, sender) in due {
            settle(&sender, Current::Unavailable(err.clone()));
            inner.due.insert(id);
        }
    }

    fn lines_moved_again(&self, shows: &[Uuid]) {
        let mut inner = self.lock();
        for show in shows {
            if let Some(line) = inner.lines.get_mut(show) {
                line.moved = true;
            }
        }
    }
}

/// Sends `fresh` to the booking's streams unless it is what they have.
fn send(sender: &watch::Sender<Current>, fresh: Arc<View>) {
    sender.send_if_modified(|current| {
        let changed = !matches!(current, Current::View(view) if **view == *fresh);
        if changed {
            *current = Current::View(fresh);
        }
        changed
    });
}

/// Answers streams still waiting for their first view with `outcome`.
pub(crate) fn settle<T>(sender: &watch::Sender<Current<T>>, outcome: Current<T>) {
    sender.send_if_modified(|current| {
        let waiting = matches!(current, Current::Loading | Current::Unavailable(_));
        if waiting {
            *current = outcome;
        }
        waiting
    });
}

fn leave_line(lines: &mut HashMap<Uuid, Line>, show: Uuid, id: Uuid) {
    if let Entry::Occupied(mut line) = lines.entry(show) {
        line.get_mut().bookings.remove(&id);
        if line.get().bookings.is_empty() {
            line.remove();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        let Inner { watched, lines, .. } = &mut *inner;
        if let Entry::Occupied(mut entry) = watched.entry(self.id) {
            entry.get_mut().streams -= 1;
            if entry.get().streams == 0 {
                if let Some(queued) = entry.remove().queued {
                    leave_line(lines, queued.view.show_id, self.id);
                }
            }
        }
        metrics::gauge!("api_live_streams").decrement(1);
        metrics::gauge!("api_live_bookings").set(watched.len() as f64);
    }
}

/// Starts the hub's consumer (which also tells `feed` which shows' bookings
/// changed) and flusher on `tasks`; both stop at shutdown.
pub fn spawn(
    hub: Arc<Hub>,
    feed: Arc<ShowFeed>,
    db: PgPool,
    lines: Arc<Lines>,
    amqp_url: &str,
    topology: Topology,
    tasks: &Tasks,
) {
    let url = amqp_url.to_owned();
    let consumer_hub = hub.clone();
    tasks.spawn(|consuming| async move {
        let name = format!("api {} live", std::process::id());
        shared::amqp::reconnecting(&url, &name, &topology, &consuming, |conn| {
            consume(consumer_hub.clone(), feed.clone(), conn, consuming.clone())
        })
        .await;
    });
    tasks.spawn(|cancel| flush(hub, db, lines, cancel));
}

/// One subscription to the events, on one connection: declares and binds
/// this process's queue (gone with the connection, so a reconnect makes it
/// anew), reloads everything watched (an event from now on waits in the
/// queue, so none is missed), then marks bookings due as their events
/// arrive, a batch at a time. No acks: the state is read from the database
/// anyway.
async fn consume(
    hub: Arc<Hub>,
    feed: Arc<ShowFeed>,
    conn: Arc<Connection>,
    cancel: CancellationToken,
) -> Result<(), ConsumeError> {
    let queue = topology::live_queue(std::process::id());
    bind_private(&conn, &queue).await?;
    tracing::info!(queue, "watching booking events");
    hub.refresh_all();
    feed.refresh_all();
    let events = Queue {
        name: &queue,
        prefetch: 0,
        tag: &queue,
        no_ack: true,
    };
    consume::batches(&conn, events, EVENTS_AT_ONCE, &cancel, |batch| {
        for delivery in batch {
            match decode_events(&delivery.data) {
                Ok(events) => {
                    for event in events {
                        hub.touched(event.booking.id, event.booking.show_id);
                        feed.touched(event.booking.show_id);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "unreadable booking events ignored"),
            }
        }
        std::future::ready(Ok::<_, ConsumeError>(ControlFlow::Continue(())))
    })
    .await
}

/// Declares `queue`, exclusive to this connection and deleted with it, and
/// binds every booking event to it.
async fn bind_private(conn: &Connection, queue: &str) -> Result<(), lapin::Error> {
    let channel = conn.create_channel().await?;
    let private = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), private, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            queue.into(),
            EVENTS_EXCHANGE.into(),
            topology::EVENT_BATCH_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    shared::amqp::close_channel(&channel, "declared").await;
    Ok(())
}

/// Every [`FLUSH_EVERY`]: loads the due bookings and places the queued
/// ones of moved lines, and sends each changed view to its streams. What
/// cannot be read now stays due, and is tried again after [`RETRY_AFTER`].
async fn flush(hub: Arc<Hub>, db: PgPool, lines: Arc<Lines>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let due = hub.take_due();
        if !due.is_empty() {
            let ids: Vec<Uuid> = due.iter().map(|(id, _)| *id).collect();
            match view::load_many(&db, &lines, &ids).await {
                Ok(loaded) => hub.loaded(due, loaded),
                Err(err) => {
                    tracing::warn!(error = %err, bookings = ids.len(), "cannot load watched bookings; trying again");
                    hub.load_failed(due, err);
                    tick.reset_after(RETRY_AFTER);
                }
            }
        }
        let shows = hub.take_moved_lines(Instant::now());
        if !shows.is_empty() {
            match view::line_heads(&db, &lines, &shows).await {
                Ok(heads) => hub.placed(&heads),
                Err(err) => {
                    tracing::warn!(error = %err, shows = shows.len(), "cannot read the heads of lines; trying again");
                    hub.lines_moved_again(&shows);
                    tick.reset_after(RETRY_AFTER);
                }
            }
        }
    }
}
