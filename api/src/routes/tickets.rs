//! Tickets at the door (box office): each ticket lets one person in.

use axum::extract::{Extension, State};
use shared::domain::BookingStatus;
use shared::store::tickets;
pub use shared::store::tickets::CheckedIn;

use crate::auth::Operator;
use crate::error::{ApiError, Problem};
use crate::extract::Path;
use crate::state::AppState;
use crate::validation;

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
    let scanned = tickets::check_in(&state.db, &code, &by.name).await?;
    let Some(checked_in) = scanned else {
        return Err(refusal(&state, &code).await);
    };
    tracing::info!(booking_id = %checked_in.booking_id, show_id = %checked_in.show_id, by = &*by.name, "ticket checked in");
    Ok(axum::Json(checked_in))
}

/// Why a scan let nobody in: no such ticket, its booking is no longer
/// confirmed, or it was checked in before.
async fn refusal(state: &AppState, code: &str) -> ApiError {
    let found = tickets::find(&state.db, code).await;
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
