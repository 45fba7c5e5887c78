//! Owns `tickets`: one code per confirmed seat or unit, and its check-in
//! at the door.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::BookingStatus;
use crate::store::bookings::BookedSeat;

/// Issues `codes[i]` to `bookings[i]` (for `seats[i]`, if seated).
pub async fn issue(
    conn: &mut PgConnection,
    show_id: Uuid,
    codes: &[String],
    bookings: &[Uuid],
    seats: &[Option<Uuid>],
) -> Result<(), sqlx::Error> {
    if codes.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "INSERT INTO tickets (code, booking_id, show_id, seat_id)
         SELECT code, booking, $1, seat
         FROM unnest($2::text[], $3::uuid[], $4::uuid[]) AS t(code, booking, seat)",
        show_id,
        codes,
        bookings,
        seats as &[Option<Uuid>]
    )
    .execute(conn)
    .await
    .map(drop)
}

/// A ticket let in.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckedIn {
    pub code: String,
    pub booking_id: Uuid,
    pub show_id: Uuid,
    /// Its seat, at a seated show.
    pub seat: Option<BookedSeat>,
    pub checked_in_at: DateTime<Utc>,
    /// The operator token that scanned it.
    pub checked_in_by: String,
}

/// Checks the ticket `code` in, if its booking is confirmed and it was not
/// checked in before; `None` otherwise. The row lock orders concurrent
/// scans: the second one re-reads the ticket after the first committed,
/// finds it checked in and matches nothing.
pub async fn check_in(
    db: impl PgExecutor<'_>,
    code: &str,
    by: &str,
) -> Result<Option<CheckedIn>, sqlx::Error> {
    let scanned = sqlx::query!(
        r#"WITH scan AS (
               UPDATE tickets t SET checked_in_at = now(), checked_in_by = $2
               FROM bookings b
               WHERE t.code = $1 AND b.id = t.booking_id AND b.status = $3
                 AND t.checked_in_at IS NULL
               RETURNING t.code, t.booking_id, t.show_id, t.seat_id, t.checked_in_at, t.checked_in_by)
           SELECT scan.code AS "code!", scan.booking_id AS "booking_id!", scan.show_id AS "show_id!",
                  scan.checked_in_at AS "checked_in_at!", scan.checked_in_by AS "checked_in_by!",
                  s.id AS "seat_id?", s.section AS "section?", s.row AS "row?",
                  s.number AS "number?", s.price_cents AS "price_cents?"
           FROM scan
           LEFT JOIN seat_places s ON s.id = scan.seat_id"#,
        code,
        by,
        BookingStatus::Confirmed as BookingStatus
    )
    .fetch_optional(db)
    .await?;
    Ok(scanned.map(|t| CheckedIn {
        seat: match (t.seat_id, t.section, t.row, t.number, t.price_cents) {
            (Some(id), Some(section), Some(row), Some(number), Some(price_cents)) => {
                Some(BookedSeat {
                    id,
                    section,
                    row,
                    number,
                    price_cents,
                })
            }
            _ => None,
        },
        code: t.code,
        booking_id: t.booking_id,
        show_id: t.show_id,
        checked_in_at: t.checked_in_at,
        checked_in_by: t.checked_in_by,
    }))
}

/// A ticket as found, for telling why a scan let nobody in.
pub struct Found {
    pub checked_in_at: Option<DateTime<Utc>>,
    pub status: BookingStatus,
}

pub async fn find(db: impl PgExecutor<'_>, code: &str) -> Result<Option<Found>, sqlx::Error> {
    sqlx::query_as!(
        Found,
        r#"SELECT t.checked_in_at, b.status AS "status: BookingStatus"
           FROM tickets t JOIN bookings b ON b.id = t.booking_id WHERE t.code = $1"#,
        code
    )
    .fetch_optional(db)
    .await
}

/// Tickets of a show scanned at the door.
pub async fn checked_in(db: impl PgExecutor<'_>, show_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "checked_in!" FROM tickets
           WHERE show_id = $1 AND checked_in_at IS NOT NULL"#,
        show_id
    )
    .fetch_one(db)
    .await
}
