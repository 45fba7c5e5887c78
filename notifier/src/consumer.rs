//! Consumes `notifier.emails`, sends each email once and acks only after
//! the send is recorded. The record `(booking, kind)` is checked before
//! sending, so a redelivery does not send again. What a crash can repeat is
//! the emails between the SMTP server taking them and their record: at most
//! `EMAIL_CONCURRENCY`, the emails this notifier sends at once (a slow
//! relay needs several in flight). Every copy carries the `Message-ID` of
//! its (booking, kind), so mail clients and relays can fold the repeats. On
//! shutdown it stops taking messages and finishes those in hand; one that
//! is waiting for PostgreSQL or SMTP to come back is left unacked for
//! redelivery.

use std::sync::Arc;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::Connection;
use shared::amqp::consume::{self, ConsumeError, Queue, Settle, Settler};
use shared::amqp::{self, Publisher};
use shared::config::EmailConcurrency;
use shared::messages::BookingEvent;
use shared::retry::{until_done, Failure, Interrupted, Retry, Tried};
use shared::store::emails::{self, Sent};
use shared::topology::{Topology, NOTIFIER_DEAD_QUEUE, NOTIFIER_QUEUE};
use sqlx::PgPool;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::email::{EmailKind, Rendered, Templates};
use crate::mailer::{MailError, Mailer};

pub struct Notifier {
    pub db: PgPool,
    pub mailer: Mailer,
    pub templates: Templates,
    pub dead_letters: Arc<Publisher>,
    pub amqp_url: String,
    pub topology: Topology,
    pub sending: Sending,
    pub max_attempts: u32,
}

/// The emails this notifier is sending, at most `EMAIL_CONCURRENCY` at
/// once. The queue's prefetch is that number, but a consuming loop torn
/// down by a lost channel leaves its emails running while the next channel
/// takes new ones; they share these permits, so even then no more are in
/// flight, and a crash repeats no more.
pub struct Sending {
    limit: EmailConcurrency,
    permits: Semaphore,
}

impl Sending {
    pub fn new(limit: EmailConcurrency) -> Self {
        Self {
            limit,
            permits: Semaphore::new(limit.get().into()),
        }
    }

    /// A permit to send one email; `Interrupted` if shutdown comes first.
    async fn permit(&self, cancel: &CancellationToken) -> Result<SemaphorePermit<'_>, Interrupted> {
        tokio::select! {
            permit = self.permits.acquire() => Ok(permit.expect("never closed")),
            () = cancel.cancelled() => Err(Interrupted),
        }
    }
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

impl From<Interrupted> for Handled {
    fn from(_: Interrupted) -> Self {
        Self::Interrupted
    }
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
        let tag = format!("{NOTIFIER_QUEUE}-{}", std::process::id());
        let queue = Queue {
            name: NOTIFIER_QUEUE,
            prefetch: self.sending.limit.get(),
            tag: &tag,
            no_ack: false,
        };
        consume::concurrently(&conn, queue, cancel.clone(), |delivery| {
            let (this, cancel) = (self.clone(), cancel.clone());
            async move { this.handle(delivery, &cancel).await }
        })
        .await
    }

    async fn handle(
        &self,
        delivery: Delivery,
        cancel: &CancellationToken,
    ) -> Result<(), ConsumeError> {
        let handled = self.deliver(&delivery, cancel).await;
        metrics::counter!("notifier_emails_total", "outcome" => handled.label()).increment(1);
        let settle = match handled {
            Handled::Sent | Handled::AlreadySent | Handled::NotAnEmail => Settle::Ack,
            Handled::Interrupted => Settle::Later,
            Handled::Poison { cause, attempts } => {
                tracing::error!(error = %cause, "dead-lettering notification");
                Settle::DeadLetter {
                    reason: cause.to_string(),
                    attempts,
                }
            }
        };
        let settler = Settler {
            dead_letters: &self.dead_letters,
            queue: NOTIFIER_QUEUE,
            dead_queue: NOTIFIER_DEAD_QUEUE,
        };
        settler.settle(&delivery, settle).await
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
        let _sending = self.sending.permit(cancel).await?;
        let Some(mut claim) = until_done(cancel, || emails::claim(&self.db, b.id, kind)).await?
        else {
            return Ok(Handled::AlreadySent);
        };
        let mail = self
            .templates
            .render(kind, event)
            .map_err(|e| Handled::poison(e, 1))?;
        self.send(event, kind, &mail, cancel).await?;
        let sent = Sent {
            booking_id: b.id,
            kind,
            event_id: event.event_id,
            recipient: &b.email,
        };
        let recorded = async {
            emails::record_sent(&mut *claim, &sent).await?;
            claim.commit().await
        };
        if let Err(err) = recorded.await {
            // The lock went with the connection; the record must not.
            tracing::warn!(error = %err, "recording the sent email failed, retrying");
            until_done(cancel, || emails::record_sent(&self.db, &sent)).await?;
        }
        tracing::info!(to = %b.email, "email sent");
        Ok(Handled::Sent)
    }

    /// Sends over SMTP: retried without limit while the server is away,
    /// up to `max_attempts` for anything else.
    async fn send(
        &self,
        event: &BookingEvent,
        kind: EmailKind,
        mail: &Rendered,
        cancel: &CancellationToken,
    ) -> Step<()> {
        let retry = Retry {
            what: "send",
            first: Duration::from_millis(100),
            max_attempts: self.max_attempts,
            cancel,
        };
        let sending = || self.mailer.send(event, kind, mail);
        let failure = |err: &MailError| match err.is_transient() {
            true => Failure::Outage,
            false => Failure::Counted,
        };
        match retry.run(sending, failure).await {
            Tried::Done(()) => Ok(()),
            Tried::GaveUp { error, attempts } => {
                Err(Handled::poison(Poison::Mail(error), attempts))
            }
            Tried::Interrupted => Err(Handled::Interrupted),
        }
    }
}
