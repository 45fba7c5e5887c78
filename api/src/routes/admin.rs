//! Admin views: search bookings, sales and revenue per show.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::{BookingStatus, Reason};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::{Path, Query};
use crate::routes::shows::{fetch_show, Page};
use crate::startup::AppState;
use crate::validation;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BookingSearch {
    #[param(nullable = false)]
    pub show_id: Option<Uuid>,
    /// Case-insensitive exact match.
    #[param(nullable = false, pattern = "^[^\\u0000]*$")]
    pub email: Option<String>,
    #[param(nullable = false)]
    pub status: Option<BookingStatus>,
}

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

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingList {
    pub bookings: Vec<BookingSummary>,
}

/// Search bookings by show, email and status (admin), newest first.
#[utoipa::path(get, path = "/v1/bookings", tag = "admin", params(BookingSearch, Page),
    responses((status = 200, body = BookingList), (status = 422, body = Problem)))]
pub async fn list_bookings(
    State(state): State<AppState>,
    Query(q): Query<BookingSearch>,
    Query(page): Query<Page>,
) -> Result<axum::Json<BookingList>, ApiError> {
    let (limit, offset) = page.bounds()?;
    if let Some(invalid) = q
        .email
        .as_deref()
        .and_then(|e| validation::storable("email", e))
    {
        return Err(ApiError::Validation(vec![invalid]));
    }
    let bookings = sqlx::query_as!(
        BookingSummary,
        r#"SELECT id, show_id, status AS "status: BookingStatus", reason AS "reason: Reason",
                  email, name, quantity, total_cents, created_at
           FROM bookings
           WHERE ($1::uuid IS NULL OR show_id = $1)
             AND ($2::text IS NULL OR lower(email) = lower($2))
             AND ($3::text IS NULL OR status = $3)
           ORDER BY created_at DESC, id
           LIMIT $4 OFFSET $5"#,
        q.show_id,
        q.email,
        q.status.map(BookingStatus::as_str),
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(BookingList { bookings }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusCount {
    pub status: BookingStatus,
    pub bookings: i64,
    pub tickets: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Sales {
    pub show_id: Uuid,
    pub capacity: i32,
    pub available: i32,
    pub held: i32,
    pub booked: i32,
    /// Sum of confirmed bookings.
    pub revenue_cents: i64,
    /// Bookings on the waiting list now.
    pub waitlisted: i64,
    pub refunds: RefundCounts,
    /// Tickets scanned at the door.
    pub checked_in: i64,
    pub by_status: Vec<StatusCount>,
}

/// Refunds of the show's bookings: made, and still to be made (the gateway
/// has not said yes yet; the worker keeps asking).
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundCounts {
    pub completed: i64,
    pub refunded_cents: i64,
    pub pending: i64,
    pub pending_cents: i64,
}

/// Sales and revenue of one show (admin).
#[utoipa::path(get, path = "/v1/shows/{id}/sales", tag = "admin",
    responses((status = 200, body = Sales), (status = 404, body = Problem)))]
pub async fn show_sales(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Sales>, ApiError> {
    let show = fetch_show(&state, id).await?;
    let by_status = sqlx::query_as!(
        StatusCount,
        r#"SELECT status AS "status: BookingStatus", count(*) AS "bookings!",
                  coalesce(sum(quantity), 0)::bigint AS "tickets!"
           FROM bookings WHERE show_id = $1 GROUP BY status ORDER BY status"#,
        id
    )
    .fetch_all(&state.db)
    .await?;
    let revenue_cents = sqlx::query_scalar!(
        r#"SELECT coalesce(sum(total_cents), 0)::bigint AS "revenue!"
           FROM bookings WHERE show_id = $1 AND status = 'confirmed'"#,
        id
    )
    .fetch_one(&state.db)
    .await?;
    let refunds = sqlx::query_as!(
        RefundCounts,
        r#"SELECT count(*) FILTER (WHERE r.refunded_at IS NOT NULL) AS "completed!",
                  coalesce(sum(r.amount_cents) FILTER (WHERE r.refunded_at IS NOT NULL), 0)::bigint
                      AS "refunded_cents!",
                  count(*) FILTER (WHERE r.refunded_at IS NULL) AS "pending!",
                  coalesce(sum(r.amount_cents) FILTER (WHERE r.refunded_at IS NULL), 0)::bigint
                      AS "pending_cents!"
           FROM refunds r JOIN bookings b ON b.id = r.booking_id
           WHERE b.show_id = $1"#,
        id
    )
    .fetch_one(&state.db)
    .await?;
    let checked_in = sqlx::query_scalar!(
        r#"SELECT count(*) AS "checked_in!" FROM tickets
           WHERE show_id = $1 AND checked_in_at IS NOT NULL"#,
        id
    )
    .fetch_one(&state.db)
    .await?;
    let waitlisted = by_status
        .iter()
        .find(|c| c.status == BookingStatus::Waitlisted)
        .map_or(0, |c| c.bookings);
    Ok(axum::Json(Sales {
        show_id: id,
        capacity: show.capacity,
        available: show.available,
        held: show.held,
        booked: show.booked,
        revenue_cents,
        waitlisted,
        refunds,
        checked_in,
        by_status,
    }))
}
