//! Tickets at the door (box office): each ticket lets one person in.

use axum::extract::{Extension, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::domain::BookingStatus;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Operator;
use crate::error::{ApiError, Problem};
use crate::extract::Path;
use crate::routes::bookings::BookedSeat;
use crate::startup::AppState;
use crate::validation;

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

/// Check a ticket in at the door (box office). Only the first scan of a
/// valid ticket lets someone in: two doors scanning one ticket at the same
/// instant get one `200` and one `409 already_checked_in`.
#[utoipa::path(post, path = "/v1/tickets/{code}/check-in", tag = "tickets",
    params(("code" = String, Path, description = "the ticket code, as on the ticket")),
    responses(
        (status = 200, body = CheckedIn, description = "Let in: the first scan of a valid ticket"),
        (status = 404, body = Problem, description = "No such ticket"),
        (status = 409, body = Problem,
            description = "`already_checked_in` (with `checked_in_at`, the first scan), or `not_valid`: its booking is no longer confirmed")))]
#[tracing::instrument(skip_all, fields(ticket = %code))]
pub async fn check_in(
    Extension(by): Extension<Operator>,
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<axum::Json<CheckedIn>, ApiError> {
    if validation::storable("code", &code).is_some() {
        // No ticket's code holds a NUL, which PostgreSQL could not compare.
        return Err(ApiError::NotFound("ticket"));
    }
    // The row lock orders concurrent scans: the second one re-reads the
    // ticket after the first committed, finds it checked in and matches
    // nothing.
    let scanned = sqlx::query!(
        r#"WITH scan AS (
               UPDATE tickets t SET checked_in_at = now(), checked_in_by = $2
               FROM bookings b
               WHERE t.code = $1 AND b.id = t.booking_id AND b.status = 'confirmed'
                 AND t.checked_in_at IS NULL
               RETURNING t.code, t.booking_id, t.show_id, t.seat_id, t.checked_in_at, t.checked_in_by)
           SELECT scan.code AS "code!", scan.booking_id AS "booking_id!", scan.show_id AS "show_id!",
                  scan.checked_in_at AS "checked_in_at!", scan.checked_in_by AS "checked_in_by!",
                  s.id AS "seat_id?", sec.name AS "section?", s.row_label AS "row?",
                  s.number AS "number?", s.price_cents AS "price_cents?"
           FROM scan
           LEFT JOIN seats s ON s.id = scan.seat_id
           LEFT JOIN sections sec ON sec.id = s.section_id"#,
        code,
        &*by.name
    )
    .fetch_optional(&state.db)
    .await?;
    let Some(t) = scanned else {
        return Err(refusal(&state, &code).await);
    };
    tracing::info!(booking_id = %t.booking_id, show_id = %t.show_id, by = &*by.name, "ticket checked in");
    let seat = match (t.seat_id, t.section, t.row, t.number, t.price_cents) {
        (Some(id), Some(section), Some(row), Some(number), Some(price_cents)) => Some(BookedSeat {
            id,
            section,
            row,
            number,
            price_cents,
        }),
        _ => None,
    };
    Ok(axum::Json(CheckedIn {
        code: t.code,
        booking_id: t.booking_id,
        show_id: t.show_id,
        seat,
        checked_in_at: t.checked_in_at,
        checked_in_by: t.checked_in_by,
    }))
}

/// Why a scan let nobody in: no such ticket, its booking is no longer
/// confirmed, or it was checked in before.
async fn refusal(state: &AppState, code: &str) -> ApiError {
    let found = sqlx::query!(
        r#"SELECT t.checked_in_at, b.status AS "status: BookingStatus"
           FROM tickets t JOIN bookings b ON b.id = t.booking_id WHERE t.code = $1"#,
        code
    )
    .fetch_optional(&state.db)
    .await;
    match found {
        Err(err) => err.into(),
        Ok(None) => ApiError::NotFound("ticket"),
        Ok(Some(t)) if t.status != BookingStatus::Confirmed => ApiError::Conflict {
            code: "not_valid",
            detail: format!(
                "this ticket's booking is {}: the ticket is not valid",
                t.status.as_str()
            ),
        },
        Ok(Some(t)) => match t.checked_in_at {
            Some(at) => ApiError::AlreadyCheckedIn(at),
            // Its booking was confirmed again in between (cannot happen
            // today: a confirmed booking only ends): ask to scan again.
            None => ApiError::Conflict {
                code: "not_valid",
                detail: "the ticket changed while it was scanned; scan it again".to_owned(),
            },
        },
    }
}
