//! Sending over SMTP with lettre, on a pooled connection (SMTP sinks and
//! real relays both charge for every new connection).

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::email::Rendered;

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
    /// `smtp://…?tls=required`, with optional credentials.
    pub fn new(smtp_url: &str, from: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)?.build();
        let from = from
            .parse()
            .map_err(|e| MailError::Address(from.to_owned(), e))?;
        Ok(Self { transport, from })
    }

    pub async fn send(
        &self,
        to_name: &str,
        to_email: &str,
        mail: &Rendered,
    ) -> Result<(), MailError> {
        let address = to_email
            .parse()
            .map_err(|e| MailError::Address(to_email.to_owned(), e))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(Some(to_name.to_owned()), address))
            .subject(&mail.subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(mail.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(mail.html.clone()),
                    ),
            )?;
        self.transport.send(message).await?;
        Ok(())
    }
}
