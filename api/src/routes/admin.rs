//! Admin views: search bookings, sales and revenue per show.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::domain::BookingStatus;
use shared::store::bookings::admin;
pub use shared::store::bookings::admin::{BookingSummary, StatusCount};
pub use shared::store::refunds::RefundCounts;
use shared::store::{refunds, tickets};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::{Path, Query};
use crate::routes::shows::{fetch_show, Page};
use crate::state::AppState;
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
    let search = admin::Search {
        show_id: q.show_id,
        email: q.email.as_deref(),
        status: q.status,
    };
    let bookings = admin::search(&state.db, &search, limit, offset).await?;
    Ok(axum::Json(BookingList { bookings }))
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

/// Sales and revenue of one show (admin).
#[utoipa::path(get, path = "/v1/shows/{id}/sales", tag = "admin",
    responses((status = 200, body = Sales), (status = 404, body = Problem)))]
pub async fn show_sales(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Sales>, ApiError> {
    let show = fetch_show(&state.db, id).await?;
    let by_status = admin::count_by_status(&state.db, id).await?;
    let revenue_cents = admin::revenue_cents(&state.db, id).await?;
    let refunds = refunds::counts(&state.db, id).await?;
    let checked_in = tickets::checked_in(&state.db, id).await?;
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
