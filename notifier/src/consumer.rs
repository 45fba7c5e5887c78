//! Consumes `notifier.emails`, sends each email once and acks only after
//! the send is recorded. The record `(booking, kind)` is checked before
//! sending, so a redelivery does not send again; a crash between the SMTP
//! send and the record can at worst repeat one email. On shutdown it stops
//! taking messages and finishes those in hand; one that is waiting for
//! PostgreSQL or SMTP to come back is left unacked for redelivery.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use shared::amqp::{self, PublishError, Publisher};
use shared::messages::{BookingEvent, BookingSnapshot};
use shared::topology::{Topology, NOTIFIER_DEAD_QUEUE, NOTIFIER_QUEUE};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::email::{EmailKind, Rendered, Templates};
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

/// Why a message cannot be turned into an email, however often it is tried.
#[derive(Debug, thiserror::Error)]
enum Poison {
    #[error("unparseable event: {0}")]
    Unparseable(#[from] serde_json::Error),
    #[error("cannot render: {0}")]
    Render(#[from] minijinja::Error),
    #[error("cannot send: {0}")]
    Mail(MailError),
}

/// What became of one message; whether it is acked follows from it.
#[derive(Debug)]
enum Handled {
    Sent,
    /// `sent_emails` has it: a redelivery of a message already handled.
    AlreadySent,
    /// An event no email is sent for.
    NotAnEmail,
    /// Shutdown came while an outage was waited out: the message stays
    /// unacked, so RabbitMQ delivers it again.
    Interrupted,
    /// Dead-lettered, then acked.
    Poison {
        cause: Poison,
        attempts: u32,
    },
}

impl Handled {
    fn label(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::AlreadySent => "already_sent",
            Self::NotAnEmail => "not_an_email",
            Self::Interrupted => "interrupted",
            Self::Poison { .. } => "dead_lettered",
        }
    }

    fn poison(cause: impl Into<Poison>, attempts: u32) -> Self {
        Self::Poison {
            cause: cause.into(),
            attempts,
        }
    }
}

/// A step of handling a message; `Err` ends the handling early with its
/// outcome.
type Step<T> = Result<T, Handled>;

/// Shutdown arrived while a step was retried.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Interrupted;

impl From<Interrupted> for Handled {
    fn from(_: Interrupted) -> Self {
        Self::Interrupted
    }
}

/// Why consuming stopped; the subscription is then made again on a new
/// connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsumeError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("dead-lettering a message failed: {0}")]
    DeadLetter(#[source] PublishError),
}

impl Notifier {
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let name = format!("notifier {}", std::process::id());
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
        consume_concurrently(
            &conn,
            NOTIFIER_QUEUE,
            self.concurrency,
            cancel.clone(),
            |delivery| {
                let this = self.clone();
                let cancel = cancel.clone();
                // A task of its own, awaited: when the channel dies, the
                // consuming loop ends and drops the handlers in flight, and
                // one dropped between sending an email and recording it
                // would send it again when the message is redelivered.
                let handling = tokio::spawn(async move { this.handle(delivery, &cancel).await });
                async move {
                    match handling.await {
                        Ok(handled) => handled,
                        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                        Err(_) => Ok(()),
                    }
                }
            },
        )
        .await
    }

    async fn handle(
        &self,
        delivery: Delivery,
        cancel: &CancellationToken,
    ) -> Result<(), ConsumeError> {
        let handled = self.deliver(&delivery, cancel).await;
        metrics::counter!("notifier_emails_total", "outcome" => handled.label()).increment(1);
        match handled {
            Handled::Sent | Handled::AlreadySent | Handled::NotAnEmail => {}
            Handled::Interrupted => return Ok(()),
            Handled::Poison { cause, attempts } => {
                tracing::error!(error = %cause, "dead-lettering notification");
                let attempts = attempts + amqp::previous_deliveries(&delivery);
                self.dead_letters
                    .dead_letter(
                        &delivery,
                        NOTIFIER_QUEUE,
                        NOTIFIER_DEAD_QUEUE,
                        &cause.to_string(),
                        attempts,
                    )
                    .await
                    .map_err(ConsumeError::DeadLetter)?;
            }
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    async fn deliver(&self, delivery: &Delivery, cancel: &CancellationToken) -> Handled {
        let event: BookingEvent = match serde_json::from_slice(&delivery.data) {
            Ok(event) => event,
            Err(err) => return Handled::poison(err, 1),
        };
        let Some(kind) = EmailKind::for_event(event.kind) else {
            return Handled::NotAnEmail;
        };
        let b = &event.booking;
        let span = tracing::info_span!("email", booking_id = %b.id, show_id = %b.show_id, kind = kind.as_str());
        self.send_once(&event, kind, cancel)
            .instrument(span)
            .await
            .unwrap_or_else(|early| early)
    }

    /// Sends the email the event calls for unless it was sent before, and
    /// records that it was.
    ///
    /// Two copies of one event can be in hand at once, in this notifier or
    /// in another: an outbox relay republishes an event whose confirm was
    /// lost, which happens whenever a broker node or a queue leader goes
    /// away. So the check, the send and the record happen in one
    /// transaction holding an advisory lock on (booking, kind): the second
    /// copy waits, then finds the record.
    async fn send_once(
        &self,
        event: &BookingEvent,
        kind: EmailKind,
        cancel: &CancellationToken,
    ) -> Step<Handled> {
        let b = &event.booking;
        let Some(mut claim) = until_done(cancel, || self.claim(b.id, kind)).await? else {
            return Ok(Handled::AlreadySent);
        };
        let mail = self
            .templates
            .render(kind, event)
            .map_err(|e| Handled::poison(e, 1))?;
        self.send(b, &mail, cancel).await?;
        let recorded = async {
            self.record_sent(&mut *claim, event, kind).await?;
            claim.commit().await
        };
        if let Err(err) = recorded.await {
            // The lock went with the connection; the record must not.
            tracing::warn!(error = %err, "recording the sent email failed, retrying");
            until_done(cancel, || self.record_sent(&self.db, event, kind)).await?;
        }
        tracing::info!(to = %b.email, "email sent");
        Ok(Handled::Sent)
    }

    /// A transaction holding the lock on (booking, kind), or `None` if the
    /// email was sent before.
    async fn claim(
        &self,
        booking_id: Uuid,
        kind: EmailKind,
    ) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(email_lock_key(booking_id, kind))
            .execute(&mut *tx)
            .await?;
        let sent = sqlx::query_scalar!(
            "SELECT 1 AS one FROM sent_emails WHERE booking_id = $1 AND kind = $2",
            booking_id,
            kind.as_str()
        )
        .fetch_optional(&mut *tx)
        .await?;
        if sent.is_some() {
            tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some(tx))
    }

    async fn record_sent<'e, E>(
        &self,
        executor: E,
        event: &BookingEvent,
        kind: EmailKind,
    ) -> Result<(), sqlx::Error>
    where
        E: sqlx::PgExecutor<'e>,
    {
        let b = &event.booking;
        sqlx::query!(
            "INSERT INTO sent_emails (booking_id, kind, event_id, recipient) VALUES ($1, $2, $3, $4)
                         ON CONFLICT DO NOTHING",
            b.id,
            kind.as_str(),
            event.event_id,
            b.email
        )
        .execute(executor)
        .await
        .map(drop)
    }

    /// Sends over SMTP: retried without limit while the server is away,
    /// up to `max_attempts` for anything else.
    async fn send(
        &self,
        b: &BookingSnapshot,
        mail: &Rendered,
        cancel: &CancellationToken,
    ) -> Step<()> {
        let mut attempts = 0;
        let mut delays = shared::retry::delays(Duration::from_millis(100));
        loop {
            attempts += 1;
            match self.mailer.send(&b.name, &b.email, mail).await {
                Ok(()) => return Ok(()),
                Err(err) if err.is_transient() || attempts < self.max_attempts => {
                    let wait = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %err, attempts, ?wait, "send failed, retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.cancelled() => return Err(Handled::Interrupted),
                    }
                }
                Err(err) => return Err(Handled::poison(Poison::Mail(err), attempts)),
            }
        }
    }
}

/// Takes messages from `queue` (manual acks, `concurrency` in hand at once)
/// and handles them concurrently until `cancel` fires, then finishes the
/// ones in hand.
pub(crate) async fn consume_concurrently<F, Fut, E>(
    conn: &Connection,
    queue: &str,
    concurrency: u16,
    cancel: CancellationToken,
    handle: F,
) -> Result<(), E>
where
    F: FnMut(Delivery) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: From<lapin::Error>,
{
    let (channel, consumer) = subscribe(conn, queue, concurrency).await?;
    let result = consumer
        .take_until(cancel.cancelled_owned())
        .map_err(E::from)
        .try_for_each_concurrent(usize::from(concurrency), handle)
        .await;
    close(channel).await;
    result
}

/// Takes messages from `queue` a batch at a time: what has arrived, up to
/// `batch` messages, goes to `handle` at once, and the next batch only
/// after it returned (meanwhile the next gathers, up to `prefetch`). Ends
/// when `cancel` fires or `handle` breaks, which it does when it leaves a
/// batch unsettled: so a handler may ack a batch with `multiple`, since
/// every earlier message of the channel was settled before.
pub(crate) async fn consume_batches<F, Fut, E>(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
    batch: usize,
    cancel: CancellationToken,
    mut handle: F,
) -> Result<(), E>
where
    F: FnMut(Vec<Delivery>) -> Fut,
    Fut: std::future::Future<Output = Result<ControlFlow<()>, E>>,
    E: From<lapin::Error>,
{
    let (channel, consumer) = subscribe(conn, queue, prefetch).await?;
    let batches = consumer
        .take_until(cancel.cancelled_owned())
        .ready_chunks(batch);
    let mut batches = std::pin::pin!(batches);
    let result = async {
        while let Some(batch) = batches.next().await {
            let deliveries = batch.into_iter().collect::<Result<Vec<_>, _>>()?;
            if handle(deliveries).await?.is_break() {
                break;
            }
        }
        Ok(())
    }
    .await;
    close(channel).await;
    result
}

/// A consumer of `queue` on a channel of its own, `prefetch` unacked
/// messages at most.
async fn subscribe(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
) -> Result<(lapin::Channel, lapin::Consumer), lapin::Error> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            format!("{queue}-{}", std::process::id()).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue, "consuming");
    Ok((channel, consumer))
}

/// Closed here, not on drop: a channel still closing when the connection
/// is closed can leave that close unanswered.
async fn close(channel: lapin::Channel) {
    amqp::close_channel(&channel, "stopping").await;
}

/// The advisory lock of one email: the booking's id folded to 64 bits,
/// mixed with the kind. Two emails that collide only wait for each other.
fn email_lock_key(booking_id: Uuid, kind: EmailKind) -> i64 {
    let id = booking_id.as_u128();
    let folded = (id >> 64) as u64 ^ id as u64;
    (folded ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) as i64
}

/// Retries a database step while the database is unreachable, until it
/// works or shutdown comes.
pub(crate) async fn until_done<T, F, Fut>(
    cancel: &CancellationToken,
    mut step: F,
) -> Result<T, Interrupted>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
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
                    () = cancel.cancelled() => return Err(Interrupted),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_outage_cut_short_by_shutdown_is_interrupted_not_done() {
        let cancel = CancellationToken::new();
        let mut tries = 0;
        let outcome = until_done(&cancel, || {
            tries += 1;
            if tries == 2 {
                cancel.cancel();
            }
            async { Err::<bool, _>(sqlx::Error::PoolTimedOut) }
        })
        .await;
        assert_eq!(outcome, Err(Interrupted));
    }

    #[test]
    fn each_email_of_a_booking_has_its_own_lock() {
        let booking = Uuid::now_v7();
        let keys: std::collections::HashSet<i64> = [
            EmailKind::Confirmation,
            EmailKind::Cancellation,
            EmailKind::HoldExpired,
            EmailKind::Reminder,
            EmailKind::Offer,
        ]
        .into_iter()
        .map(|kind| email_lock_key(booking, kind))
        .collect();
        assert_eq!(keys.len(), 5);
        assert_eq!(
            email_lock_key(booking, EmailKind::Offer),
            email_lock_key(booking, EmailKind::Offer)
        );
        assert_ne!(
            email_lock_key(booking, EmailKind::Offer),
            email_lock_key(Uuid::now_v7(), EmailKind::Offer)
        );
    }
}
