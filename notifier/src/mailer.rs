//! Sending over SMTP with lettre, on a pooled connection (SMTP sinks and
//! real relays both charge for every new connection).

use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use shared::config::EmailConcurrency;
use shared::messages::BookingEvent;
use uuid::Uuid;

use crate::email::{EmailKind, Rendered};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid address {0:?}: {1}")]
    Address(String, lettre::address::AddressError),
    #[error("could not build the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl MailError {
    /// Whether trying again later may work (server down, busy, 4xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Smtp(e) if !e.is_permanent())
    }
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// `smtp_url` as lettre reads it: `smtp://host:port`, `smtps://…`, or
    /// `smtp://…?tls=required`, with optional credentials. The pool keeps
    /// a connection for each email sent at once: fewer would open and close
    /// one per email beyond them.
    pub fn new(
        smtp_url: &str,
        from: &str,
        concurrency: EmailConcurrency,
    ) -> Result<Self, MailError> {
        let pool = PoolConfig::new().max_size(concurrency.get().into());
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)?
            .pool_config(pool)
            .build();
        let from = from
            .parse()
            .map_err(|e| MailError::Address(from.to_owned(), e))?;
        Ok(Self { transport, from })
    }

    /// Sends the email of `kind` about `event`'s booking to its customer.
    pub async fn send(
        &self,
        event: &BookingEvent,
        kind: EmailKind,
        mail: &Rendered,
    ) -> Result<(), MailError> {
        self.transport
            .send(message(&self.from, event, kind, mail)?)
            .await?;
        Ok(())
    }
}

/// The `Message-ID` of the email of `kind` about booking `booking_id`:
/// `<{booking_id}.{kind}@{domain}>`, fixed by the key under which
/// `sent_emails` records the email. A crash between the relay taking an
/// email and that record sends it again, and the copy then carries the
/// first one's id, so mail clients and relays that fold messages by id
/// show one. The domain is the sender's, which owns the id's uniqueness
/// (RFC 5322, 3.6.4).
fn message_id(booking_id: Uuid, kind: EmailKind, domain: &str) -> String {
    format!("<{booking_id}.{}@{domain}>", kind.as_str())
}

/// The message for the email of `kind` about `event`'s booking, from
/// `from`: the text and HTML alternatives, and for a confirmation the show
/// as a calendar entry beside them (`multipart/mixed`, so clients offer it
/// as an attachment rather than as a third way to show the text).
fn message(
    from: &Mailbox,
    event: &BookingEvent,
    kind: EmailKind,
    mail: &Rendered,
) -> Result<Message, MailError> {
    let b = &event.booking;
    let address = b
        .email
        .parse()
        .map_err(|e| MailError::Address(b.email.clone(), e))?;
    let builder = Message::builder()
        .message_id(Some(message_id(b.id, kind, from.email.domain())))
        .from(from.clone())
        .to(Mailbox::new(Some(b.name.clone()), address))
        .subject(&mail.subject);
    let alternative = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(mail.text.clone()),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(mail.html.clone()),
        );
    let message = match kind {
        EmailKind::Confirmation => {
            let ics = crate::calendar::ics(b, event.occurred_at, from.email.domain());
            builder.multipart(
                MultiPart::mixed()
                    .multipart(alternative)
                    .singlepart(Attachment::new("show.ics".into()).body(ics, calendar_type())),
            )?
        }
        _ => builder.multipart(alternative)?,
    };
    Ok(message)
}

/// The content type of the calendar attachment: `method` matches the
/// calendar's `METHOD` (RFC 6047, 2.4), which clients need to offer it.
fn calendar_type() -> ContentType {
    ContentType::parse("text/calendar; charset=utf-8; method=PUBLISH")
        .expect("a valid content type")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::tests::event;

    #[test]
    fn a_message_id_is_fixed_by_booking_and_kind_and_differs_per_kind() {
        let booking: Uuid = "0190f3c2-7d1e-7a8b-9c0d-1e2f3a4b5c6d".parse().unwrap();
        assert_eq!(
            message_id(booking, EmailKind::Confirmation, "booking.test"),
            "<0190f3c2-7d1e-7a8b-9c0d-1e2f3a4b5c6d.confirmation@booking.test>"
        );
        let ids: std::collections::HashSet<String> = EmailKind::ALL
            .iter()
            .map(|&kind| message_id(booking, kind, "booking.test"))
            .collect();
        assert_eq!(ids.len(), EmailKind::ALL.len());
        assert_ne!(
            message_id(booking, EmailKind::Reminder, "booking.test"),
            message_id(Uuid::now_v7(), EmailKind::Reminder, "booking.test")
        );
    }

    #[test]
    fn every_copy_of_an_email_carries_the_message_id_of_its_booking_and_kind() {
        let from: Mailbox = "Booking <tickets@booking.test>".parse().unwrap();
        let event = event(vec![]);
        let mail = crate::email::Templates::default()
            .render(EmailKind::Confirmation, &event)
            .unwrap();
        let header = |message: Message| {
            let formatted = String::from_utf8(message.formatted()).unwrap();
            formatted
                .lines()
                .find(|line| line.starts_with("Message-ID: "))
                .map(str::to_owned)
        };
        let first = message(&from, &event, EmailKind::Confirmation, &mail).unwrap();
        let copy = message(&from, &event, EmailKind::Confirmation, &mail).unwrap();
        let expected = format!(
            "Message-ID: <{}.confirmation@booking.test>",
            event.booking.id
        );
        assert_eq!(header(first).as_deref(), Some(expected.as_str()));
        assert_eq!(header(copy).as_deref(), Some(expected.as_str()));
    }

    #[test]
    fn only_the_confirmation_carries_the_show_as_a_calendar_attachment() {
        let from: Mailbox = "Booking <tickets@booking.test>".parse().unwrap();
        let event = event(vec![]);
        let templates = crate::email::Templates::default();
        let formatted = |kind| {
            let mail = templates.render(kind, &event).unwrap();
            String::from_utf8(message(&from, &event, kind, &mail).unwrap().formatted()).unwrap()
        };
        let confirmation = formatted(EmailKind::Confirmation);
        assert!(confirmation.contains("Content-Type: multipart/mixed"));
        assert!(confirmation.contains("Content-Type: multipart/alternative"));
        assert!(confirmation.contains("Content-Disposition: attachment; filename=\"show.ics\""));
        assert!(
            confirmation.contains("Content-Type: text/calendar; charset=utf-8; method=PUBLISH"),
            "{confirmation}"
        );
        assert!(confirmation.contains("BEGIN:VCALENDAR\r\n"));
        let uid = format!("UID:{}@booking.test\r\n", event.booking.id);
        assert!(confirmation.contains(&uid), "{confirmation}");
        assert!(confirmation.contains("TKT-AAAA-BBBB-CCCC"));

        for &kind in EmailKind::ALL {
            if kind == EmailKind::Confirmation {
                continue;
            }
            let other = formatted(kind);
            assert!(!other.contains("multipart/mixed"), "{other}");
            assert!(!other.contains("VCALENDAR") && !other.contains("show.ics"));
        }
    }
}
