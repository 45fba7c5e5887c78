//! Bookings: submit (202 + poll), read, confirm, cancel.
//!
//! The API records the booking as `queued` (so a poll and an idempotent
//! retry can answer at once), publishes the command with a publisher confirm,
//! and only then answers 202. If the publish fails the row is removed again
//! and the client gets 503 with `Retry-After`: nothing half-done remains.

use std::collections::HashSet;

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::domain::{BookingStatus, ShowKind, MAX_TICKETS_PER_BOOKING};
use shared::lifecycle::{transition, CommandKind, Transition};
use shared::messages::BookingCommand;
pub use shared::view::{self, BookedSeat, BookingView, Ticket};
use utoipa::openapi::schema::{
    Array, ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Operator;
use crate::error::{ApiError, FieldError, Problem};
use crate::extract::{Json, Path};
use crate::integer;
use crate::recorder::{self, Recorded};
use crate::startup::AppState;
use crate::validation::{self, NAME_CHARS, SECTION_CHARS, TOKEN_CHARS};

/// A booking request: `quantity` (general admission, or seated best
/// available) or `seat_ids` (seated). Which one a show takes, and whether
/// the seats and the section are the show's, is checked against the show
/// (a 422 otherwise).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBooking {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[schema(schema_with = validation::text_schema::<NAME_CHARS>)]
    pub name: String,
    /// Number of tickets: general admission, or seated best available
    /// (the worker picks adjacent seats where it can). With `seat_ids`,
    /// their number.
    #[serde(default, deserialize_with = "integer::optional")]
    #[schema(minimum = 1, maximum = 10)]
    pub quantity: Option<i32>,
    #[schema(schema_with = seat_ids_schema)]
    pub seat_ids: Option<Vec<Uuid>>,
    /// Seated best available: only seats in this section (by name).
    #[schema(schema_with = validation::optional_text_schema::<SECTION_CHARS>)]
    pub section: Option<String>,
    /// With `quantity`: join the waiting list (`waitlisted`) instead of
    /// being rejected `sold_out`.
    #[serde(default)]
    pub waitlist: bool,
}

impl NewBooking {
    /// The document's account of what [`validate`] takes whatever the
    /// show: each request has exactly one of these shapes (`oneOf`).
    pub fn shapes() -> serde_json::Value {
        serde_json::json!([
            {
                "title": "By quantity",
                "required": ["quantity"],
                "properties": {
                    "quantity": {"type": "integer"},
                    "seat_ids": {"type": "null"}
                }
            },
            {
                "title": "Named seats",
                "required": ["seat_ids"],
                "properties": {
                    "seat_ids": {"type": "array"},
                    "section": {"type": "null"},
                    "waitlist": {"const": false}
                }
            }
        ])
    }
}

fn seat_ids_schema() -> Array {
    let id = ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(id)
        .min_items(Some(1))
        .max_items(Some(MAX_TICKETS_PER_BOOKING as usize))
        .unique_items(true)
        .description(Some(
            "Seated: the seats wanted (ids from the seat map), each once.",
        ))
        .build()
}

/// `payment_token` for the test gateway: `tok_visa` succeeds,
/// `tok_chargeDeclined` is declined.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    #[schema(schema_with = validation::text_schema::<TOKEN_CHARS>)]
    pub payment_token: String,
}

/// A booking request that passed validation against its show.
struct Validated {
    quantity: i32,
    seat_ids: Vec<Uuid>,
    seats: Vec<BookedSeat>,
    /// Best available: only in this section.
    section: Option<String>,
    /// None until the worker has picked a best-available request's seats.
    total_cents: Option<i64>,
}

fn validate_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.chars().all(|c| c.is_ascii_graphic() || !c.is_ascii())
}

async fn validate(
    state: &AppState,
    show_id: Uuid,
    req: &NewBooking,
) -> Result<Validated, ApiError> {
    let show = state
        .catalog
        .get(&state.db, show_id)
        .await?
        .ok_or(ApiError::NotFound("show"))?;

    let mut errors = Vec::new();
    let email = req.email.trim();
    if let Some(unstorable) = validation::storable("email", email) {
        errors.push(unstorable);
    } else if !validate_email(email) {
        errors.push(FieldError::new("email", "must be a valid email address"));
    }
    errors.extend(validation::text("name", &req.name, NAME_CHARS));
    let limit = format!("must be 1 to {MAX_TICKETS_PER_BOOKING}");
    let validated = match show.kind {
        ShowKind::GeneralAdmission => {
            for (field, given) in [
                ("seat_ids", req.seat_ids.is_some()),
                ("section", req.section.is_some()),
            ] {
                if given {
                    errors.push(FieldError::new(
                        field,
                        "this show is general admission: give quantity",
                    ));
                }
            }
            quantity(req, &mut errors, "is required for general admission").map(|q| Validated {
                quantity: q,
                seat_ids: Vec::new(),
                seats: Vec::new(),
                section: None,
                total_cents: Some(i64::from(q) * show.price_cents.unwrap_or(0)),
            })
        }
        ShowKind::Seated if req.seat_ids.is_none() => {
            let section = req.section.as_deref();
            if let Some(section) = section {
                if let Some(invalid) = validation::text("section", section, SECTION_CHARS) {
                    errors.push(invalid);
                } else if !show.sections.contains(section.trim()) {
                    errors.push(FieldError::new("section", "no such section in this show"));
                }
            }
            quantity(
                req,
                &mut errors,
                "give seat_ids, or quantity for the best available",
            )
            .map(|q| Validated {
                quantity: q,
                seat_ids: Vec::new(),
                seats: Vec::new(),
                section: section.map(|s| s.trim().to_owned()),
                total_cents: None,
            })
        }
        ShowKind::Seated => {
            if req.waitlist {
                errors.push(FieldError::new(
                    "waitlist",
                    "only a request by quantity can wait; named seats cannot",
                ));
            }
            if req.section.is_some() {
                errors.push(FieldError::new(
                    "section",
                    "goes with quantity (best available), not seat_ids",
                ));
            }
            let seat_ids = req.seat_ids.clone().unwrap_or_default();
            let distinct: HashSet<_> = seat_ids.iter().collect();
            if seat_ids.is_empty() || seat_ids.len() > MAX_TICKETS_PER_BOOKING as usize {
                errors.push(FieldError::new("seat_ids", limit));
            } else if distinct.len() != seat_ids.len() {
                errors.push(FieldError::new("seat_ids", "must not repeat a seat"));
            }
            if req.quantity.is_some_and(|q| q as usize != seat_ids.len()) {
                errors.push(FieldError::new(
                    "quantity",
                    "must equal the number of seat_ids when given",
                ));
            }
            let mut found: Vec<&(usize, BookedSeat)> = distinct
                .iter()
                .filter_map(|id| show.seats.get(*id))
                .collect();
            found.sort_by_key(|(place, _)| *place);
            let seats: Vec<BookedSeat> = found.into_iter().map(|(_, seat)| seat.clone()).collect();
            if !seat_ids.is_empty() && seats.len() != distinct.len() {
                errors.push(FieldError::new(
                    "seat_ids",
                    "some seats do not belong to this show",
                ));
            }
            Some(Validated {
                quantity: seat_ids.len() as i32,
                total_cents: Some(seats.iter().map(|s| s.price_cents).sum()),
                seat_ids,
                seats,
                section: None,
            })
        }
    };
    match validated {
        Some(v) if errors.is_empty() => Ok(v),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// The requested quantity, if present and within bounds.
fn quantity(req: &NewBooking, errors: &mut Vec<FieldError>, missing: &str) -> Option<i32> {
    match req.quantity {
        Some(q) if (1..=MAX_TICKETS_PER_BOOKING).contains(&q) => Some(q),
        Some(_) => {
            errors.push(FieldError::new(
                "quantity",
                format!("must be 1 to {MAX_TICKETS_PER_BOOKING}"),
            ));
            None
        }
        None => {
            errors.push(FieldError::new("quantity", missing));
            None
        }
    }
}

/// What makes two requests "the same" for an Idempotency-Key.
fn request_hash(show_id: Uuid, req: &NewBooking, v: &Validated) -> Vec<u8> {
    let mut seats = v.seat_ids.clone();
    seats.sort();
    let canonical = serde_json::json!({
        "show_id": show_id,
        "email": req.email.trim(),
        "name": req.name.trim(),
        "quantity": v.quantity,
        "seat_ids": seats,
        "section": v.section,
        "waitlist": req.waitlist,
    });
    Sha256::digest(canonical.to_string().as_bytes()).to_vec()
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
    let v = validate(&state, show_id, &req).await?;
    let id = Uuid::new_v4();
    tracing::Span::current().record("booking_id", tracing::field::display(id));

    let key = key.map(|key| {
        let hash = request_hash(show_id, &req, &v);
        (key, hash)
    });
    let recorded = state
        .recorder
        .record(recorder::NewBooking {
            id,
            show_id,
            email: req.email.trim().to_owned(),
            name: req.name.trim().to_owned(),
            quantity: v.quantity,
            total_cents: v.total_cents,
            seat_ids: v.seat_ids.clone(),
            section: v.section.clone(),
            waitlist: req.waitlist,
            key: key.clone(),
        })
        .await?;
    let (created_at, position) = match recorded {
        Recorded::Created { at, position } => (at, position),
        Recorded::KeyTaken => {
            let (key, hash) = key.expect("only a key can be taken");
            return replay(&state, &key, &hash).await;
        }
    };

    let command = BookingCommand::Request {
        booking_id: id,
        show_id,
    };
    if let Err(err) = state.publisher.send_command(&command).await {
        withdraw(&state, id).await;
        return Err(err.into());
    }
    metrics::counter!("api_bookings_accepted_total").increment(1);
    // Answered from what was just written: no read on the hot path.
    Ok(accepted(BookingView {
        id,
        show_id,
        status: BookingStatus::Queued,
        reason: None,
        email: req.email.trim().to_owned(),
        name: req.name.trim().to_owned(),
        quantity: v.quantity,
        seats: v.seats,
        total_cents: v.total_cents,
        hold_expires_at: None,
        position,
        waitlist: req.waitlist,
        waitlist_position: None,
        refunded_cents: None,
        tickets: Vec::new(),
        created_at,
        updated_at: created_at,
    }))
}

/// The same Idempotency-Key again: the same body gets the original booking,
/// a different body is refused.
async fn replay(state: &AppState, key: &str, hash: &[u8]) -> Result<Response, ApiError> {
    let original = sqlx::query!(
        "SELECT request_hash, booking_id FROM idempotency_keys WHERE key = $1",
        key
    )
    .fetch_one(&state.db)
    .await?;
    if original.request_hash != hash {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let view = load_booking(state, original.booking_id).await?;
    if view.status == BookingStatus::Queued {
        // The first attempt may have died between its commit and its
        // publish; publishing again is safe because workers deduplicate.
        state
            .publisher
            .send_command(&BookingCommand::Request {
                booking_id: view.id,
                show_id: view.show_id,
            })
            .await?;
    }
    Ok(accepted(view))
}

/// Removes a booking whose request never reached the queue, unless a worker
/// already decided it (a confirm can time out after the broker took it).
async fn withdraw(state: &AppState, id: Uuid) {
    let result = async {
        let mut tx = state.db.begin().await?;
        let still_queued = sqlx::query_scalar!(
            "SELECT 1 AS one FROM bookings WHERE id = $1 AND status = 'queued' FOR UPDATE",
            id
        )
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if still_queued {
            sqlx::query!("DELETE FROM idempotency_keys WHERE booking_id = $1", id)
                .execute(&mut *tx)
                .await?;
            sqlx::query!("DELETE FROM booking_seats WHERE booking_id = $1", id)
                .execute(&mut *tx)
                .await?;
            sqlx::query!("DELETE FROM booking_audit WHERE booking_id = $1", id)
                .execute(&mut *tx)
                .await?;
            sqlx::query!("DELETE FROM bookings WHERE id = $1", id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
    .await;
    if let Err(err) = result {
        // The worker's requeue sweep will publish it later instead.
        tracing::warn!(booking_id = %id, error = %err, "could not withdraw unpublished booking");
    }
}

pub(crate) async fn load_booking(state: &AppState, id: Uuid) -> Result<BookingView, ApiError> {
    view::load(&state.db, &state.lines, id)
        .await?
        .ok_or(ApiError::NotFound("booking"))
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
    let view = load_booking(&state, id).await?;
    let body = serde_json::to_vec(&view).expect("booking views serialize");
    let tag = etag(&body);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match_hits(v, &tag));
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

/// A strong entity tag: the first 128 bits of the body's SHA-256, quoted.
fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// `If-None-Match` (RFC 9110 §13.1.2): `*`, or a list of tags compared
/// weakly (a `W/` prefix does not matter for a GET).
fn none_match_hits(header: &str, tag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
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
    let view = load_booking(&state, id).await?;
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
    let view = load_booking(&state, id).await?;
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

#[cfg(test)]
mod tests {
    use super::{etag, none_match_hits, validate_email};

    #[test]
    fn if_none_match_hits_the_same_tag_weak_or_strong_in_a_list_or_a_star() {
        let tag = etag(b"{}");
        assert_eq!(tag.len(), 34);
        assert!(none_match_hits(&tag, &tag));
        assert!(none_match_hits(&format!("W/{tag}"), &tag));
        assert!(none_match_hits(&format!("\"x\", {tag}"), &tag));
        assert!(none_match_hits("*", &tag));
        assert!(!none_match_hits(&etag(b"[]"), &tag));
        assert!(!none_match_hits("", &tag));
    }

    #[test]
    fn plausible_emails_pass_and_broken_ones_fail() {
        assert!(validate_email("ada@example.com"));
        assert!(validate_email("a.b+tag@sub.example.org"));
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
            "ada@.com",
        ] {
            assert!(!validate_email(bad), "{bad:?} should be rejected");
        }
    }
}
