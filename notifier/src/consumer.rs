//! Consumes `notifier.emails`, sends each email once and acks only after
//! the send is recorded. The record `(booking, kind)` is checked before
//! sending, so a redelivery does not send again; a crash between the SMTP
//! send and the record can at worst repeat one email.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use shared::amqp::{self, Publisher};
use shared::messages::BookingEvent;
use shared::topology::{Topology, NOTIFIER_DEAD_QUEUE, NOTIFIER_QUEUE};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::email::{EmailKind, Templates};
use crate::mailer::{MailError, Mailer};

pub struct Notifier {
    pub db: PgPool,
    pub mailer: Mailer,
    pub templates: Templates,
    pub dead_letters: Arc<Publisher>,
    pub amqp_url: String,
    pub topology: Topology,
    /// Emails in flight at once.
    pub concurrency: u16,
    pub max_attempts: u32,
}

/// Why a message could not be turned into an email.
#[derive(Debug, thiserror::Error)]
enum Poison {
    #[error("unparseable event: {0}")]
    Unparseable(#[from] serde_json::Error),
    #[error("cannot render: {0}")]
    Render(#[from] minijinja::Error),
    #[error("cannot send: {0}")]
    Mail(MailError),
}

impl Notifier {
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let name = format!("notifier {}", std::process::id());
        amqp::reconnecting(&self.amqp_url, &name, &self.topology, &cancel, |conn| {
            self.clone().consume(conn, cancel.clone())
        })
        .await;
    }

    async fn consume(
        self: Arc<Self>,
        conn: Arc<Connection>,
        cancel: CancellationToken,
    ) -> lapin::Result<()> {
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(self.concurrency, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                NOTIFIER_QUEUE.into(),
                format!("notifier-{}", std::process::id()).as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(queue = NOTIFIER_QUEUE, "consuming");
        consumer
            .take_until(cancel.cancelled())
            .try_for_each_concurrent(usize::from(self.concurrency), |delivery| {
                let this = self.clone();
                let cancel = cancel.clone();
                async move { this.handle(delivery, &cancel).await }
            })
            .await
    }

    async fn handle(&self, delivery: Delivery, cancel: &CancellationToken) -> lapin::Result<()> {
        match self.deliver(&delivery, cancel).await {
            Ok(true) => {}
            // Shutdown mid-retry: leave it unacked for redelivery.
            Ok(false) => return Ok(()),
            Err((poison, attempts)) => {
                metrics::counter!("notifier_emails_total", "outcome" => "dead_lettered")
                    .increment(1);
                tracing::error!(error = %poison, "dead-lettering notification");
                let attempts = attempts + amqp::previous_deliveries(&delivery);
                self.dead_letters
                    .dead_letter(
                        &delivery,
                        NOTIFIER_QUEUE,
                        NOTIFIER_DEAD_QUEUE,
                        &poison.to_string(),
                        attempts,
                    )
                    .await
                    .map_err(|e| {
                        lapin::ErrorKind::IOError(Arc::new(std::io::Error::other(e.to_string())))
                    })?;
            }
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Sends the email the event calls for, once. `Ok(false)` if interrupted.
    async fn deliver(
        &self,
        delivery: &Delivery,
        cancel: &CancellationToken,
    ) -> Result<bool, (Poison, u32)> {
        let event: BookingEvent =
            serde_json::from_slice(&delivery.data).map_err(|e| (e.into(), 1))?;
        let Some(kind) = EmailKind::for_event(event.kind) else {
            return Ok(true);
        };
        let b = &event.booking;
        let span = tracing::info_span!("email", booking_id = %b.id, show_id = %b.show_id, kind = kind.as_str());
        async {
            if !self.until_done(cancel, || self.already_sent(b.id, kind)).await? {
                return Ok(true);
            }
            let mail = self.templates.render(kind, &event).map_err(|e| (e.into(), 1))?;
            let mut attempts = 0;
            let mut delays = shared::retry::delays(Duration::from_millis(100));
            loop {
                attempts += 1;
                match self.mailer.send(&b.name, &b.email, &mail).await {
                    Ok(()) => break,
                    Err(err) if err.is_transient() || attempts < self.max_attempts => {
                        let wait = delays.next().unwrap_or(Duration::from_secs(5));
                        tracing::warn!(error = %err, attempts, ?wait, "send failed, retrying");
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = cancel.cancelled() => return Ok(false),
                        }
                    }
                    Err(err) => return Err((Poison::Mail(err), attempts)),
                }
            }
            let recorded = self
                .until_done(cancel, || async {
                    sqlx::query!(
                        "INSERT INTO sent_emails (booking_id, kind, event_id, recipient) VALUES ($1, $2, $3, $4)
                         ON CONFLICT DO NOTHING",
                        b.id,
                        kind.as_str(),
                        event.event_id,
                        b.email
                    )
                    .execute(&self.db)
                    .await
                    .map(|_| true)
                })
                .await?;
            if recorded {
                metrics::counter!("notifier_emails_total", "outcome" => "sent").increment(1);
                tracing::info!(to = %b.email, "email sent");
            }
            Ok(recorded)
        }
        .instrument(span)
        .await
    }

    /// `true` if the email still has to be sent.
    async fn already_sent(
        &self,
        booking_id: uuid::Uuid,
        kind: EmailKind,
    ) -> Result<bool, sqlx::Error> {
        let sent = sqlx::query_scalar!(
            "SELECT 1 AS one FROM sent_emails WHERE booking_id = $1 AND kind = $2",
            booking_id,
            kind.as_str()
        )
        .fetch_optional(&self.db)
        .await?;
        Ok(sent.is_none())
    }

    /// Retries a database step while the database is unreachable; returns
    /// `Ok(false)` when shut down meanwhile.
    async fn until_done<F, Fut>(
        &self,
        cancel: &CancellationToken,
        mut step: F,
    ) -> Result<bool, (Poison, u32)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, sqlx::Error>>,
    {
        let mut delays = shared::retry::delays(Duration::from_millis(100));
        loop {
            match step().await {
                Ok(value) => return Ok(value),
                Err(err) => {
                    let wait = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %err, ?wait, "database step failed, retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.cancelled() => return Ok(false),
                    }
                }
            }
        }
    }
}
