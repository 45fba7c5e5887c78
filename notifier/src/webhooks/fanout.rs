//! Consumes `webhooks.events`: each booking event becomes one delivery row
//! per live endpoint subscribed to its type, written by one statement; the
//! message is acked only after it committed. A redelivered event inserts nothing new (`UNIQUE
//! (endpoint_id, event_id)`), so a crash at any instant loses no event and
//! doubles none. The booking is read only when some endpoint wants it.

use std::sync::Arc;

use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::Connection;
use shared::amqp::{self, Publisher};
use shared::messages::BookingEvent;
use shared::topology::{Topology, WEBHOOKS_DEAD_QUEUE, WEBHOOKS_QUEUE};
use shared::webhooks::{WebhookEvent, ROUTING_LOCK};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::consumer::{consume_concurrently, until_done, ConsumeError};

pub struct Fanout {
    pub db: PgPool,
    pub dead_letters: Arc<Publisher>,
    pub amqp_url: String,
    pub topology: Topology,
    /// Events in hand at once.
    pub concurrency: u16,
    /// Told when new deliveries are due, so the sweeper need not wait for
    /// its next pass.
    pub wake: Arc<Notify>,
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
        let consuming = consume_concurrently(
            &conn,
            WEBHOOKS_QUEUE,
            self.concurrency,
            cancel.clone(),
            |delivery| {
                let this = self.clone();
                let cancel = cancel.clone();
                async move { this.handle(delivery, &cancel).await }
            },
        );
        tokio::select! {
            done = consuming => done,
            failed = self.keep_bound(&conn, &cancel) => failed,
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

    async fn handle(
        &self,
        delivery: Delivery,
        cancel: &CancellationToken,
    ) -> Result<(), ConsumeError> {
        let event: BookingEvent = match serde_json::from_slice(&delivery.data) {
            Ok(event) => event,
            Err(err) => {
                tracing::error!(error = %err, "dead-lettering unparseable event");
                let attempts = 1 + amqp::previous_deliveries(&delivery);
                self.dead_letters
                    .dead_letter(
                        &delivery,
                        WEBHOOKS_QUEUE,
                        WEBHOOKS_DEAD_QUEUE,
                        &format!("unparseable event: {err}"),
                        attempts,
                    )
                    .await
                    .map_err(ConsumeError::DeadLetter)?;
                delivery.acker.ack(BasicAckOptions::default()).await?;
                return Ok(());
            }
        };
        if let Some(kind) = WebhookEvent::for_event(event.kind) {
            let b = &event.booking;
            let span = tracing::info_span!("webhook_fanout", booking_id = %b.id, show_id = %b.show_id,
                event_id = %event.event_id, event_type = kind.as_str());
            let fanned = until_done(cancel, || self.fan_out(&event, kind))
                .instrument(span)
                .await;
            match fanned {
                // Shutdown came while the database was away: left unacked.
                Err(_interrupted) => return Ok(()),
                Ok(0) => {}
                Ok(created) => {
                    metrics::counter!("notifier_webhook_deliveries_created_total")
                        .increment(created);
                    self.wake.notify_one();
                }
            }
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Binds `webhooks.events` if some endpoint is live, else unbinds it,
    /// under the routing lock (see [`ROUTING_LOCK`]).
    async fn route(&self, channel: &lapin::Channel) -> Result<(), RouteError> {
        let mut tx = self.db.begin().await?;
        sqlx::query!("SELECT pg_advisory_xact_lock($1)", ROUTING_LOCK)
            .execute(&mut *tx)
            .await?;
        let live = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE deleted_at IS NULL) AS "live!""#
        )
        .fetch_one(&mut *tx)
        .await?;
        shared::topology::bind_webhook_events(channel, live).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes the event's deliveries; returns how many are new. One
    /// statement at a time, each on its own connection: a transaction held
    /// while the booking is loaded would need two connections per event.
    async fn fan_out(&self, event: &BookingEvent, kind: WebhookEvent) -> Result<u64, sqlx::Error> {
        let wanted = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM webhook_endpoints
                              WHERE deleted_at IS NULL AND events @> ARRAY[$1::text]) AS "wanted!""#,
            kind.as_str()
        )
        .fetch_one(&self.db)
        .await?;
        if !wanted {
            return Ok(0);
        }
        let payload = serde_json::json!({
            "type": kind,
            "timestamp": event.occurred_at,
            // The booking as `GET /v1/bookings/{id}` shows it (events are
            // only written for bookings that stay).
            "data": shared::view::load(&self.db, event.booking.id).await?,
        });
        let b = &event.booking;
        // Share locks: an endpoint being deleted (which cancels its pending
        // deliveries) waits for this statement, or this sees it deleted.
        let created = sqlx::query!(
            "INSERT INTO webhook_deliveries
                 (id, endpoint_id, event_id, event_type, booking_id, show_id, payload)
             SELECT gen_random_uuid(), e.id, $2, $1, $3, $4, $5
             FROM webhook_endpoints e
             WHERE e.deleted_at IS NULL AND e.events @> ARRAY[$1::text]
             FOR SHARE
             ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            kind.as_str(),
            event.event_id,
            b.id,
            b.show_id,
            payload
        )
        .execute(&self.db)
        .await?
        .rows_affected();
        if created > 0 {
            tracing::info!(created, "webhook deliveries queued");
        }
        Ok(created)
    }
}
