//! What operators read about bookings: search, and a show's sales.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{BookingStatus, Reason};

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingSummary {
    pub id: Uuid,
    pub show_id: Uuid,
    pub status: BookingStatus,
    pub reason: Option<Reason>,
    pub email: String,
    pub name: String,
    pub quantity: i32,
    pub total_cents: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// What to search for; `None` matches anything.
#[derive(Debug, Default)]
pub struct Search<'a> {
    pub show_id: Option<Uuid>,
    /// Case-insensitive exact match.
    pub email: Option<&'a str>,
    pub status: Option<BookingStatus>,
}

/// Bookings matching `search`, newest first, a page at a time.
pub async fn search(
    db: impl PgExecutor<'_>,
    search: &Search<'_>,
    limit: i64,
    offset: i64,
) -> Result<Vec<BookingSummary>, sqlx::Error> {
    sqlx::query_as!(
        BookingSummary,
        r#"SELECT id, show_id, status AS "status: BookingStatus", reason AS "reason: Reason",
                  email, name, quantity, total_cents, created_at
           FROM bookings
           WHERE ($1::uuid IS NULL OR show_id = $1)
             AND ($2::text IS NULL OR lower(email) = lower($2))
             AND ($3::text IS NULL OR status = $3)
           ORDER BY created_at DESC, id
           LIMIT $4 OFFSET $5"#,
        search.show_id,
        search.email,
        search.status as Option<BookingStatus>,
        limit,
        offset
    )
    .fetch_all(db)
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusCount {
    pub status: BookingStatus,
    pub bookings: i64,
    pub tickets: i64,
}

/// A show's bookings and tickets by status.
pub async fn count_by_status(
    db: impl PgExecutor<'_>,
    show_id: Uuid,
) -> Result<Vec<StatusCount>, sqlx::Error> {
    sqlx::query_as!(
        StatusCount,
        r#"SELECT status AS "status: BookingStatus", count(*) AS "bookings!",
                  coalesce(sum(quantity), 0)::bigint AS "tickets!"
           FROM bookings WHERE show_id = $1 GROUP BY status ORDER BY status"#,
        show_id
    )
    .fetch_all(db)
    .await
}

/// The sum of a show's confirmed bookings.
pub async fn revenue_cents(db: impl PgExecutor<'_>, show_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT coalesce(sum(total_cents), 0)::bigint AS "revenue!"
           FROM bookings WHERE show_id = $1 AND booking_confirmed(status)"#,
        show_id
    )
    .fetch_one(db)
    .await
}
