//! Reminder emails, `REMINDER_LEAD_SECONDS` before a show starts.
//!
//! Every few seconds one worker (the holder of a transaction-scoped
//! advisory lock) finds confirmed bookings of shows starting within the
//! lead that have no reminder yet, records them in `reminders` and writes a
//! `booking.reminder` event for each to the outbox, in one transaction. The
//! relay publishes them, and the email goes the same deduplicated way as
//! every other: through `notifier.emails`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::domain::BookingStatus;
use shared::messages::{BookingEvent, BookingSnapshot, EventKind, SeatLabel};
use shared::sweep::SweepError;
use sqlx::types::Json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::outbox;

const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Advisory lock key: only one worker sweeps at a time.
const SWEEP_LOCK: i64 = 0x626b_726d_6e64; // "bkrmnd"

pub async fn run(db: PgPool, lead: Duration, cancel: CancellationToken) {
    shared::sweep::every("reminders", SWEEP_EVERY, cancel, || sweep(&db, lead)).await;
}

struct Due {
    id: Uuid,
    show_id: Uuid,
    show_name: String,
    venue: String,
    starts_at: DateTime<Utc>,
    email: String,
    name: String,
    quantity: i32,
    total_cents: Option<i64>,
    seats: Json<Vec<SeatLabel>>,
    tickets: Vec<String>,
}

async fn sweep(db: &PgPool, lead: Duration) -> Result<usize, SweepError> {
    let mut tx = db.begin().await?;
    let mine = sqlx::query_scalar!("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if mine != Some(true) {
        return Ok(0);
    }
    let due = sqlx::query_as!(
        Due,
        r#"SELECT b.id, b.show_id, s.name AS show_name, s.venue, s.starts_at, b.email, b.name,
                  b.quantity, b.total_cents,
                  coalesce((SELECT json_agg(json_build_object('section', sec.name, 'row', st.row_label,
                                                              'number', st.number, 'price_cents', st.price_cents)
                                            ORDER BY sec.position, length(st.row_label), st.row_label, st.number)
                            FROM booking_seats bs JOIN seats st ON st.id = bs.seat_id
                            JOIN sections sec ON sec.id = st.section_id
                            WHERE bs.booking_id = b.id), '[]') AS "seats!: Json<Vec<SeatLabel>>",
                  -- In the seats' order, so the email pairs each code with its seat.
                  coalesce((SELECT array_agg(t.code ORDER BY sec.position, length(st.row_label), st.row_label,
                                                             st.number, t.code)
                            FROM tickets t LEFT JOIN seats st ON st.id = t.seat_id
                            LEFT JOIN sections sec ON sec.id = st.section_id
                            WHERE t.booking_id = b.id), '{}') AS "tickets!"
           FROM bookings b JOIN shows s ON s.id = b.show_id
           WHERE b.status = 'confirmed' AND s.starts_at > now()
             AND s.starts_at <= now() + make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM reminders r WHERE r.booking_id = b.id)
           ORDER BY s.starts_at LIMIT 200"#,
        lead.as_secs_f64()
    )
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = due.iter().map(|d| d.id).collect();
    sqlx::query!(
        "INSERT INTO reminders (booking_id) SELECT unnest($1::uuid[])",
        &ids
    )
    .execute(&mut *tx)
    .await?;
    let events: Vec<BookingEvent> = due.into_iter().map(reminder).collect();
    outbox::insert_events(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(ids.len())
}

fn reminder(d: Due) -> BookingEvent {
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
