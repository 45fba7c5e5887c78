//! Owns `reminders`: the confirmed bookings whose reminder has been queued.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::messages::SeatLabel;

/// Taken by one sweeper at a time, for its transaction.
const SWEEP_LOCK: i64 = 0x626b_726d_6e64; // "bkrmnd"

/// Whether this transaction may sweep (no other sweeper holds the lock).
pub async fn try_lock_sweep(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let mine = sqlx::query_scalar!("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK)
        .fetch_one(conn)
        .await?;
    Ok(mine == Some(true))
}

/// A confirmed booking whose reminder is due, as its email needs it.
pub struct Due {
    pub id: Uuid,
    pub show_id: Uuid,
    pub show_name: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub email: String,
    pub name: String,
    pub quantity: i32,
    pub total_cents: Option<i64>,
    pub seats: Json<Vec<SeatLabel>>,
    /// In the seats' order, so the email pairs each code with its seat.
    pub tickets: Vec<String>,
}

/// Up to 200 confirmed bookings of shows starting within `lead` that have
/// no reminder yet, soonest show first.
pub async fn due(conn: &mut PgConnection, lead: Duration) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as!(
        Due,
        r#"SELECT b.id, b.show_id, s.name AS show_name, s.venue, s.starts_at, b.email, b.name,
                  b.quantity, b.total_cents,
                  coalesce((SELECT json_agg(json_build_object('section', sp.section, 'row', sp.row,
                                                              'number', sp.number, 'price_cents', sp.price_cents)
                                            ORDER BY sp.seat_order)
                            FROM booking_seats bs JOIN seat_places sp ON sp.id = bs.seat_id
                            WHERE bs.booking_id = b.id), '[]') AS "seats!: Json<Vec<SeatLabel>>",
                  coalesce((SELECT array_agg(t.code ORDER BY sp.seat_order, t.code)
                            FROM tickets t LEFT JOIN seat_places sp ON sp.id = t.seat_id
                            WHERE t.booking_id = b.id), '{}') AS "tickets!"
           FROM bookings b JOIN shows s ON s.id = b.show_id
           WHERE booking_confirmed(b.status) AND s.starts_at > now()
             AND s.starts_at <= now() + make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM reminders r WHERE r.booking_id = b.id)
           ORDER BY s.starts_at LIMIT 200"#,
        lead.as_secs_f64()
    )
    .fetch_all(conn)
    .await
}

/// Records that these bookings' reminders are queued.
pub async fn record(conn: &mut PgConnection, bookings: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO reminders (booking_id) SELECT unnest($1::uuid[])",
        bookings
    )
    .execute(conn)
    .await
    .map(drop)
}
