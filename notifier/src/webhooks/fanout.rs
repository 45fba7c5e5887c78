//! Consumes `webhooks.events` a batch at a time: each booking event becomes
//! one delivery row per live endpoint subscribed to its type. A message is
//! one outbox relay batch's events (or, as queued before the relay batched
//! them, a single event). Every [`EVENTS_AT_ONCE`] events cost three
//! statements (which types are wanted, the wanted bookings' views, the
//! delivery rows), and the messages one ack, sent only after the rows
//! committed. A redelivered event inserts nothing new (`UNIQUE
//! (endpoint_id, event_id)`), so a crash at any instant loses no event and
//! doubles none. A booking is read only when some endpoint wants its event.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::Connection;
use shared::amqp::consume::{self, ConsumeError, Queue, Settler};
use shared::amqp::{self, Publisher};
use shared::messages::{decode_events, EventRef};
use shared::retry::until_done;
use shared::store::bookings::{view, BookingView, Lines};
use shared::store::webhooks::{self as store, NewDeliveries};
use shared::topology::{Topology, WEBHOOKS_DEAD_QUEUE, WEBHOOKS_QUEUE};
use shared::webhooks::WebhookEvent;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::pace::Pace;

/// Events fanned out together at most: one statement's delivery rows, and
/// what the pace admits at once.
const EVENTS_AT_ONCE: usize = 256;
/// Messages handled together at most; each holds up to a relay batch.
const MESSAGES_AT_ONCE: usize = 16;

pub struct Fanout {
    pub db: PgPool,
    /// Where the bookings' lines start, for the places in the payloads.
    pub lines: Lines,
    pub dead_letters: Arc<Publisher>,
    pub amqp_url: String,
    pub topology: Topology,
    /// Unacked messages in hand at most: a batch being fanned out and the
    /// next one gathering.
    pub prefetch: u16,
    /// Told when new deliveries are due, so the sweeper need not wait for
    /// its next pass.
    pub wake: Arc<Notify>,
    /// Slows the fan-out down while a sale's requests wait.
    pub pace: Pace,
}

#[derive(Debug, thiserror::Error)]
enum RouteError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
}

impl Fanout {
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let name = format!("notifier {} webhooks", std::process::id());
        amqp::reconnecting(&self.amqp_url, &name, &self.topology, &cancel, |conn| {
            self.clone().consume(conn, cancel.child_token())
        })
        .await;
    }

    async fn consume(
        self: Arc<Self>,
        conn: Arc<Connection>,
        cancel: CancellationToken,
    ) -> Result<(), ConsumeError> {
        let tag = format!("{WEBHOOKS_QUEUE}-{}", std::process::id());
        let queue = Queue {
            name: WEBHOOKS_QUEUE,
            prefetch: self.prefetch,
            tag: &tag,
            no_ack: false,
        };
        let consuming = consume::batches(&conn, queue, MESSAGES_AT_ONCE, &cancel, |batch| {
            self.handle(batch, &cancel)
        });
        tokio::select! {
            done = consuming => done,
            failed = self.keep_bound(&conn, &cancel) => failed,
            never = self.pace.watch(&self.db) => match never {},
        }
    }

    /// Keeps `webhooks.events` bound while some endpoint is live and unbound
    /// while none is, checking every second. The api binds at once when it
    /// creates an endpoint; this covers a bind that failed there, and undoes
    /// it after the last endpoint is deleted. Returns only on a broker error:
    /// on shutdown it waits for the consumer to drain.
    async fn keep_bound(
        &self,
        conn: &Connection,
        cancel: &CancellationToken,
    ) -> Result<(), ConsumeError> {
        let channel = conn.create_channel().await?;
        loop {
            // Applied every time, not only on a change this loop saw: the
            // api binds on its own, and an endpoint can come and go between
            // two checks. Both are idempotent and cheap.
            if let Err(err) = self.route(&channel).await {
                match err {
                    RouteError::Broker(err) => return Err(err.into()),
                    RouteError::Database(err) => {
                        tracing::warn!(error = %err, "cannot read the webhook endpoints");
                    }
                }
            }
            if cancel.is_cancelled() {
                // The consumer drains what it holds and ends the select.
                return std::future::pending().await;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// Fans out a batch and acks it; breaks, leaving the batch unacked,
    /// when shutdown came while the database was away.
    async fn handle(
        &self,
        batch: Vec<Delivery>,
        cancel: &CancellationToken,
    ) -> Result<ControlFlow<()>, ConsumeError> {
        let Some(last) = batch.last().map(|d| d.acker.clone()) else {
            return Ok(ControlFlow::Continue(()));
        };
        let settler = Settler {
            dead_letters: &self.dead_letters,
            queue: WEBHOOKS_QUEUE,
            dead_queue: WEBHOOKS_DEAD_QUEUE,
        };
        let mut events = Vec::new();
        for delivery in &batch {
            match decode_events(&delivery.data) {
                Ok(decoded) => events.extend(decoded.into_iter().filter_map(|event| {
                    WebhookEvent::for_event(event.kind).map(|kind| (event, kind))
                })),
                Err(err) => {
                    tracing::error!(error = %err, "dead-lettering unparseable events");
                    // Acked with the batch below.
                    settler
                        .dead_letter(delivery, None, &format!("unparseable events: {err}"), 1)
                        .await?;
                }
            }
        }
        // A redelivery after a break fans out again what went before it,
        // which adds nothing (see the module doc).
        for chunk in events.chunks(EVENTS_AT_ONCE) {
            tokio::select! {
                () = self.pace.admit(chunk.len()) => {}
                // Unacked, the batch is delivered again.
                () = cancel.cancelled() => return Ok(ControlFlow::Break(())),
            }
            let span = tracing::info_span!("webhook_fanout", events = chunk.len());
            let fanned = until_done(cancel, || self.fan_out(chunk))
                .instrument(span)
                .await;
            match fanned {
                Err(_interrupted) => return Ok(ControlFlow::Break(())),
                Ok(0) => {}
                Ok(created) => {
                    metrics::counter!("notifier_webhook_deliveries_created_total")
                        .increment(created);
                    self.wake.notify_one();
                }
            }
        }
        // Every earlier message of the channel is settled (see
        // `consume::batches`), so one ack covers the batch.
        last.ack(BasicAckOptions { multiple: true }).await?;
        Ok(ControlFlow::Continue(()))
    }

    /// Binds `webhooks.events` if some endpoint is live, else unbinds it,
    /// under the routing lock (see [`shared::webhooks::ROUTING_LOCK`]).
    async fn route(&self, channel: &lapin::Channel) -> Result<(), RouteError> {
        let mut tx = self.db.begin().await?;
        store::lock_routing(&mut tx).await?;
        let live = store::any_endpoint_live(&mut *tx).await?;
        shared::topology::bind_webhook_events(channel, live).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes the events' deliveries; returns how many are new. One
    /// statement at a time, each on its own connection: a transaction held
    /// while the bookings are loaded would need two connections per batch.
    async fn fan_out(&self, events: &[(EventRef, WebhookEvent)]) -> Result<u64, sqlx::Error> {
        let wanted = store::wanted_event_types(&self.db).await?;
        let events: Vec<&(EventRef, WebhookEvent)> = events
            .iter()
            .filter(|(_, kind)| wanted.iter().any(|w| w == kind.as_str()))
            .collect();
        if events.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = events.iter().map(|(e, _)| e.booking.id).collect();
        let views: HashMap<Uuid, BookingView> = view::load_many(&self.db, &self.lines, &ids)
            .await?
            .into_iter()
            .map(|loaded| (loaded.view.id, loaded.view))
            .collect();
        let mut rows = NewDeliveries::default();
        for (event, kind) in events {
            let b = &event.booking;
            let payload = serde_json::json!({
                "type": kind,
                "timestamp": event.occurred_at,
                // The booking as `GET /v1/bookings/{id}` shows it (events are
                // only written for bookings that stay).
                "data": views.get(&b.id),
            });
            rows.push(event.event_id, *kind, b.id, b.show_id, payload);
        }
        let created = store::queue_deliveries(&self.db, &rows).await?;
        if created > 0 {
            tracing::info!(created, "webhook deliveries queued");
        }
        Ok(created)
    }
}
