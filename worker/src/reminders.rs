//! Reminder emails, `REMINDER_LEAD_SECONDS` before a show starts.
//!
//! Every few seconds one worker (the holder of a transaction-scoped
//! advisory lock) finds confirmed bookings of shows starting within the
//! lead that have no reminder yet, records them in `reminders` and writes a
//! `booking.reminder` event for each to the outbox, in one transaction. The
//! relay publishes them, and the email goes the same deduplicated way as
//! every other: through `notifier.emails`.

use std::time::Duration;

use chrono::Utc;
use shared::domain::BookingStatus;
use shared::messages::{BookingEvent, BookingSnapshot, EventKind};
use shared::store::reminders;
use shared::sweep::SweepError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::outbox;

const SWEEP_EVERY: Duration = Duration::from_secs(5);

pub async fn run(db: PgPool, lead: Duration, cancel: CancellationToken) {
    shared::sweep::every("reminders", SWEEP_EVERY, cancel, || sweep(&db, lead)).await;
}

async fn sweep(db: &PgPool, lead: Duration) -> Result<usize, SweepError> {
    let mut tx = db.begin().await?;
    if !reminders::try_lock_sweep(&mut tx).await? {
        return Ok(0);
    }
    let due = reminders::due(&mut tx, lead).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = due.iter().map(|d| d.id).collect();
    reminders::record(&mut tx, &ids).await?;
    let events: Vec<BookingEvent> = due.into_iter().map(reminder).collect();
    outbox::insert_events(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(ids.len())
}

fn reminder(d: reminders::Due) -> BookingEvent {
    BookingEvent {
        event_id: Uuid::now_v7(),
        kind: EventKind::Reminder,
        occurred_at: Utc::now(),
        booking: BookingSnapshot {
            id: d.id,
            show_id: d.show_id,
            show_name: d.show_name,
            venue: d.venue,
            starts_at: d.starts_at,
            email: d.email,
            name: d.name,
            status: BookingStatus::Confirmed,
            reason: None,
            quantity: d.quantity,
            seats: d.seats.0,
            total_cents: d.total_cents,
            hold_expires_at: None,
            tickets: d.tickets,
            refund_cents: None,
        },
    }
}
