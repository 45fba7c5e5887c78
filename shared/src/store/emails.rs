//! Owns `sent_emails`: the emails the notifier has sent, one per booking
//! and kind, so that a redelivered event does not send its email again.
//! Checking and recording happen under an advisory lock on (booking, kind)
//! (see [`claim`]), since two copies of one event can be in hand at once.

use sqlx::{PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::messages::EventKind;
use crate::names::named_enum;

named_enum! {
    /// An email the notifier sends; also the key under which it is
    /// recorded as sent, so each booking gets each kind at most once.
    pub enum EmailKind {
        Confirmation = "confirmation",
        Cancellation = "cancellation",
        HoldExpired = "hold_expired",
        Reminder = "reminder",
        /// Returned tickets are held for a waitlisted booking.
        Offer = "offer",
    }
}

impl EmailKind {
    /// The email an event calls for, if any.
    pub fn for_event(kind: EventKind) -> Option<Self> {
        match kind {
            EventKind::Confirmed => Some(Self::Confirmation),
            EventKind::Cancelled => Some(Self::Cancellation),
            EventKind::Expired => Some(Self::HoldExpired),
            EventKind::Reminder => Some(Self::Reminder),
            EventKind::Offered => Some(Self::Offer),
            EventKind::Held
            | EventKind::Rejected
            | EventKind::Waitlisted
            | EventKind::PaymentDeclined => None,
        }
    }
}

/// An email as it is recorded once sent.
pub struct Sent<'a> {
    pub booking_id: Uuid,
    pub kind: EmailKind,
    /// The event that called for it.
    pub event_id: Uuid,
    pub recipient: &'a str,
}

/// A transaction holding the lock on (booking, kind), or `None` if the
/// email was sent before. The caller sends while holding it and records the
/// send in it: another copy of the event waits, then finds the record.
pub async fn claim(
    db: &PgPool,
    booking_id: Uuid,
    kind: EmailKind,
) -> Result<Option<Transaction<'static, Postgres>>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(booking_id, kind))
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

/// Records an email as sent; a record already there stays as it is.
pub async fn record_sent(db: impl PgExecutor<'_>, sent: &Sent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO sent_emails (booking_id, kind, event_id, recipient) VALUES ($1, $2, $3, $4)
                         ON CONFLICT DO NOTHING",
        sent.booking_id,
        sent.kind.as_str(),
        sent.event_id,
        sent.recipient
    )
    .execute(db)
    .await
    .map(drop)
}

/// The advisory lock of one email: the booking's id folded to 64 bits,
/// mixed with the kind. Two emails that collide only wait for each other.
fn lock_key(booking_id: Uuid, kind: EmailKind) -> i64 {
    let id = booking_id.as_u128();
    let folded = (id >> 64) as u64 ^ id as u64;
    (folded ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

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
        .map(|kind| lock_key(booking, kind))
        .collect();
        assert_eq!(keys.len(), 5);
        assert_eq!(
            lock_key(booking, EmailKind::Offer),
            lock_key(booking, EmailKind::Offer)
        );
        assert_ne!(
            lock_key(booking, EmailKind::Offer),
            lock_key(Uuid::now_v7(), EmailKind::Offer)
        );
    }
}
