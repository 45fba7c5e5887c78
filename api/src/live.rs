//! Live booking updates for `GET /v1/bookings/{id}/events`, without a
//! database poll per stream.
//!
//! Each API process runs one [`Hub`]. It consumes every booking event from
//! the `booking.events` exchange through a queue of its own (exclusive,
//! auto-delete, named after the process), and keeps one `watch` channel per
//! booking that has at least one open stream, holding the booking's latest
//! JSON. An event only marks its booking as due; every [`FLUSH_EVERY`] the
//! hub loads all due bookings together and sends on only what changed. An
//! idle stream is just a receiver of that channel: no task, no timer but
//! its keep-alive, no queries.
//!
//! The state always comes from the database, never from the event, so a
//! lost, repeated or reordered event costs nothing but a reload: after a
//! reconnect every watched booking is reloaded.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use serde::Deserialize;
use shared::domain::BookingStatus;
use shared::topology::{self, Topology, EVENTS_EXCHANGE};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::bookings::{load_booking, BookingView};
use crate::startup::AppState;

/// How often the hub loads the bookings events have touched.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bookings loaded at once while the per-booking loader is in use.
const LOAD_CONCURRENCY: usize = 4;

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
}

struct Watched {
    view: watch::Sender<Arc<View>>,
    /// Open streams of this booking; the entry goes with the last one.
    streams: usize,
}

/// One stream's hold on a watched booking.
pub struct Subscription {
    hub: Arc<Hub>,
    id: Uuid,
    pub view: watch::Receiver<Arc<View>>,
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

    /// Watches booking `id`, whose view the caller has just loaded. The
    /// subscription's current value is what its stream sends first: the
    /// shared latest view if others already watch the booking, else
    /// `loaded`. A first watcher also makes the booking due, since an event
    /// that came between its load and now was not yet looked at.
    pub fn subscribe(self: &Arc<Self>, id: Uuid, loaded: Arc<View>) -> Subscription {
        let mut inner = self.lock();
        let view = match inner.watched.entry(id) {
            Entry::Occupied(mut entry) => {
                let watched = entry.get_mut();
                watched.streams += 1;
                watched.view.subscribe()
            }
            Entry::Vacant(entry) => {
                let (tx, rx) = watch::channel(loaded);
                entry.insert(Watched {
                    view: tx,
                    streams: 1,
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

    /// An event about `booking`: load it at the next flush if watched.
    fn touched(&self, booking: Uuid) {
        let mut inner = self.lock();
        if inner.watched.contains_key(&booking) {
            inner.due.insert(booking);
        }
    }

    /// Events may have been missed (a reconnect): load every watched booking.
    fn refresh_all(&self) {
        let mut inner = self.lock();
        let Inner { watched, due } = &mut *inner;
        due.extend(watched.keys().copied());
    }

    /// The due bookings with where to send each one's view.
    fn take_due(&self) -> Vec<(Uuid, watch::Sender<Arc<View>>)> {
        let mut inner = self.lock();
        let due = std::mem::take(&mut inner.due);
        due.into_iter()
            .filter_map(|id| Some((id, inner.watched.get(&id)?.view.clone())))
            .collect()
    }

    fn due_again(&self, ids: impl IntoIterator<Item = Uuid>) {
        self.lock().due.extend(ids);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        if let Entry::Occupied(mut entry) = inner.watched.entry(self.id) {
            entry.get_mut().streams -= 1;
            if entry.get().streams == 0 {
                entry.remove();
            }
        }
        metrics::gauge!("api_live_streams").decrement(1);
        metrics::gauge!("api_live_bookings").set(inner.watched.len() as f64);
    }
}

/// Starts the hub's consumer and flusher; both stop when `cancel` fires.
pub fn spawn(state: &AppState, amqp_url: &str, topology: Topology, cancel: &CancellationToken) {
    let hub = state.live.clone();
    let url = amqp_url.to_owned();
    let consuming = cancel.child_token();
    tokio::spawn(async move {
        let name = format!("api {} live", std::process::id());
        shared::amqp::reconnecting(&url, &name, &topology, &consuming, |conn| {
            consume(hub.clone(), conn, consuming.clone())
        })
        .await;
    });
    tokio::spawn(flush(state.clone(), cancel.child_token()));
}

/// What the hub reads of an event: which booking it concerns.
#[derive(Deserialize)]
struct Touched {
    booking: TouchedBooking,
}

#[derive(Deserialize)]
struct TouchedBooking {
    id: Uuid,
}

/// One subscription to the events, on one connection: declares and binds
/// this process's queue (gone with the connection, so a reconnect makes it
/// anew), reloads everything watched, then marks bookings due as their
/// events arrive. No acks: the state is read from the database anyway.
async fn consume(
    hub: Arc<Hub>,
    conn: Arc<Connection>,
    cancel: CancellationToken,
) -> Result<(), lapin::Error> {
    let channel = conn.create_channel().await?;
    let queue = topology::live_queue(std::process::id());
    let private = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), private, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            EVENTS_EXCHANGE.into(),
            topology::ALL_BOOKING_EVENTS.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            queue.as_str().into(),
            no_ack,
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue, "watching booking events");
    hub.refresh_all();
    let result = loop {
        let delivery = tokio::select! {
            () = cancel.cancelled() => break Ok(()),
            next = consumer.next() => next,
        };
        match delivery {
            Some(Ok(delivery)) => match serde_json::from_slice::<Touched>(&delivery.data) {
                Ok(event) => hub.touched(event.booking.id),
                Err(err) => tracing::warn!(error = %err, "unreadable booking event ignored"),
            },
            Some(Err(err)) => break Err(err),
            None => break Ok(()),
        }
    };
    let _ = channel.close(200, "stopping".into()).await;
    result
}

/// Every [`FLUSH_EVERY`]: loads the due bookings and sends each changed
/// view to its streams. A booking that cannot be loaded now stays due.
async fn flush(state: AppState, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let due = state.live.take_due();
        if due.is_empty() {
            continue;
        }
        let loaded = load_views(&state, due.iter().map(|(id, _)| *id).collect()).await;
        let mut failed = Vec::new();
        for (id, view) in due {
            match loaded.get(&id) {
                Some(Ok(fresh)) => {
                    view.send_if_modified(|current| {
                        let changed = **current != **fresh;
                        if changed {
                            *current = fresh.clone();
                        }
                        changed
                    });
                }
                // Gone (a request withdrawn after a failed publish): nothing to send.
                Some(Err(ApiError::NotFound(_))) | None => {}
                Some(Err(err)) => failed.push((id, err)),
            }
        }
        if let Some((_, err)) = failed.first() {
            tracing::warn!(error = %err, bookings = failed.len(), "cannot load watched bookings; trying again");
            state.live.due_again(failed.into_iter().map(|(id, _)| id));
        }
    }
}

/// The views of `ids`, each serialized as `GET /v1/bookings/{id}` answers.
async fn load_views(
    state: &AppState,
    ids: Vec<Uuid>,
) -> HashMap<Uuid, Result<Arc<View>, ApiError>> {
    futures::stream::iter(ids)
        .map(|id| async move { (id, load_booking(state, id).await.map(|v| View::of(&v))) })
        .buffer_unordered(LOAD_CONCURRENCY)
        .collect()
        .await
}
