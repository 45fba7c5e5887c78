//! Bookings: submit (202 + poll), read, confirm, cancel.
//!
//! The HTTP side of bookings; what a submission does is the bookings
//! service's ([`crate::bookings`]): record as `queued` (so a poll and an
//! idempotent retry can answer at once), publish the command with a
//! publisher confirm, and only then answer 202. If the publish fails the
//! client gets 503 with `Retry-After`, and nothing half-done remains.

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::domain::BookingStatus;
use shared::lifecycle::{transition, CommandKind, Transition};
use shared::messages::BookingCommand;
pub use shared::store::bookings::{BookedSeat, BookingView, Ticket};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Operator;
use crate::bookings;
pub use crate::bookings::NewBooking;
use crate::entity_tag;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::validation::{self, TOKEN_CHARS};

/// `payment_token` for the test gateway: `tok_visa` succeeds,
/// `tok_chargeDeclined` is declined.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    #[schema(schema_with = validation::text_schema::<TOKEN_CHARS>)]
    pub payment_token: String,
}

/// 1 to 255 visible ASCII characters (what a header value may hold), not
/// only spaces: the document's pattern for the header says the same.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key) if !key.trim().is_empty() && key.len() <= 255 => {
                Ok(Some(key.trim().to_owned()))
            }
            _ => Err(ApiError::invalid(
                "Idempotency-Key",
                "must be 1 to 255 visible characters",
            )),
        },
    }
}

/// `202 Accepted` with the booking and where to poll it.
fn accepted(view: BookingView) -> Response {
    let location = format!("/v1/bookings/{}", view.id);
    let mut response = (StatusCode::ACCEPTED, axum::Json(view)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Submit a booking request. Answers 202 once RabbitMQ has confirmed it.
/// Submissions are rate limited per client address (a burst, then a steady
/// rate): past the limit the answer is 429 and nothing is recorded. While
/// the limit is on, answers carry it in the `RateLimit-Policy` and
/// `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-10.
#[utoipa::path(post, path = "/v1/shows/{id}/bookings", tag = "bookings", request_body = NewBooking,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body return the same booking",
        nullable = false, min_length = 1, max_length = 255, pattern = "^[\\t\\x20-\\x7E]*[\\x21-\\x7E][\\t\\x20-\\x7E]*$")),
    responses(
        (status = 202, body = BookingView, description = "Queued; poll the Location", headers(
            ("Location" = String, description = "where to poll the booking"),
            ("RateLimit-Policy" = String, description = r#"the limit, e.g. `"bookings";q=20;w=2`: 20 requests in any 2 s"#),
            ("RateLimit" = String, description = r#"what remains of it, e.g. `"bookings";r=19`"#))),
        (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, description = "Past this client address's limit (code `rate_limited`); nothing was recorded", headers(
            ("Retry-After" = u64, description = "whole seconds (at least 1) until a request is allowed again"),
            ("RateLimit-Policy" = String, description = r#"the limit, e.g. `"bookings";q=20;w=2`"#),
            ("RateLimit" = String, description = r#"`"bookings";r=0;t=<Retry-After>`"#))),
        (status = 503, body = Problem, description = "Queue unavailable; retry after Retry-After")))]
#[tracing::instrument(skip_all, fields(show_id = %show_id, booking_id))]
pub async fn create_booking(
    State(state): State<AppState>,
    Path(show_id): Path<Uuid>,
    headers: HeaderMap,
    Json(req): Json<NewBooking>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    bookings::submit(&state, show_id, key, &req)
        .await
        .map(accepted)
}

/// Poll a booking. The answer carries an `ETag`, a digest of the body; a
/// poll whose `If-None-Match` still matches gets `304 Not Modified` and no
/// body, so polling an unchanged booking transfers nothing.
#[utoipa::path(get, path = "/v1/bookings/{id}", tag = "bookings",
    params(("If-None-Match" = Option<String>, Header, description = "an ETag from an earlier answer")),
    responses(
        (status = 200, body = BookingView, headers(("ETag" = String, description = "digest of the body"))),
        (status = 304, description = "Unchanged since the ETag given in If-None-Match"),
        (status = 404, body = Problem)))]
pub async fn get_booking(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let view = bookings::load(&state, id).await?;
    let body = serde_json::to_vec(&view).expect("booking views serialize");
    let tag = entity_tag::of(&body);
    let unchanged = entity_tag::unchanged(&headers, &tag);
    // Caches may keep the answer but must ask again before reusing it.
    let common = [
        (header::ETAG, tag),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
    ];
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((common, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Whether `command` may be queued for a booking that is `status`: the
/// lifecycle's refusals are `409`s with their code.
fn admit(status: BookingStatus, command: CommandKind) -> Result<Transition, ApiError> {
    transition(status, command).map_err(|refusal| ApiError::Conflict {
        code: refusal.code(),
        detail: format!("{refusal}; this one is {status}"),
    })
}

/// Confirm a held booking with a payment token. The payment is taken by the
/// worker, in order with everything else for the show; poll for the outcome.
#[utoipa::path(post, path = "/v1/bookings/{id}/confirm", tag = "bookings", request_body = ConfirmRequest,
    responses(
        (status = 202, body = BookingView, description = "Confirmation queued; poll the Location"),
        (status = 200, body = BookingView, description = "Already confirmed"),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
#[tracing::instrument(skip_all, fields(booking_id = %id))]
pub async fn confirm_booking(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Json(req): Json<ConfirmRequest>,
) -> Result<Response, ApiError> {
    // Not stored here, but carried to the worker and its payment gateway.
    if let Some(invalid) = validation::text("payment_token", &req.payment_token, TOKEN_CHARS) {
        return Err(ApiError::Validation(vec![invalid]));
    }
    let token = req.payment_token.trim();
    let view = bookings::load(&state, id).await?;
    if admit(view.status, CommandKind::Confirm)? == Transition::AlreadyDone {
        return Ok(axum::Json(view).into_response());
    }
    let command = BookingCommand::Confirm {
        booking_id: id,
        show_id: view.show_id,
        payment_token: token.to_owned(),
    };
    state.publisher.send_command(&command).await?;
    Ok(accepted(view))
}

/// Cancel a booking (queued, held or confirmed); its seats go back on sale.
#[utoipa::path(post, path = "/v1/bookings/{id}/cancel", tag = "bookings",
    responses(
        (status = 202, body = BookingView, description = "Cancellation queued; poll the Location"),
        (status = 200, body = BookingView, description = "Already cancelled"),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
#[tracing::instrument(skip_all, fields(booking_id = %id))]
pub async fn cancel_booking(
    operator: Option<Extension<Operator>>,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let view = bookings::load(&state, id).await?;
    if admit(view.status, CommandKind::Cancel)? == Transition::AlreadyDone {
        return Ok(axum::Json(view).into_response());
    }
    let command = BookingCommand::Cancel {
        booking_id: id,
        show_id: view.show_id,
        by: operator.map(|Extension(op)| op.name.to_string()),
    };
    state.publisher.send_command(&command).await?;
    Ok(accepted(view))
}
