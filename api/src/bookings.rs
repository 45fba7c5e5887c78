//! The bookings service: a request is validated against its show into a
//! [`BookingRequest`] (with the seats it names, for the answer), recorded
//! (group commit, [`crate::recorder`]), published with a confirm (a
//! message per show for requests recorded together,
//! [`crate::dispatcher`]), and withdrawn again if the publish fails.
//! The routes only translate HTTP to and from these calls.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::domain::{
    BookingId, BookingRequest, BookingStatus, Cents, CustomerEmail, ShowId, ShowKind, Wanted,
    MAX_TICKETS_PER_BOOKING,
};
use shared::messages::BookingCommand;
use shared::store::bookings::{record, view, BookedSeat, BookingView};
use utoipa::openapi::schema::{
    Array, ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, FieldError};
use crate::integer;
use crate::recorder::Recorded;
use crate::state::AppState;
use crate::validation::{self, NAME_CHARS, SECTION_CHARS};

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

/// What a request asks for, once checked against its show.
struct Asked {
    wanted: Wanted,
    seats: Vec<BookedSeat>,
    total: Option<Cents>,
}

/// What a booking's request keeps of its time, after recording and
/// publishing, to withdraw a booking whose publish failed and answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);
/// What recording leaves of a request's time for the publish at least: a
/// confirm that does not come in this long is tried on another node.
const PUBLISH_AT_LEAST: Duration = Duration::from_secs(2);

/// Validates, records, publishes: the booking as answered with `202`. The
/// same `key` and body again answer the original booking; a different body
/// with the same key is refused. If the publish fails the booking is
/// withdrawn and the error answered: nothing half-done remains.
pub async fn submit(
    state: &AppState,
    show_id: Uuid,
    key: Option<String>,
    body: &NewBooking,
) -> Result<BookingView, ApiError> {
    // The request's time, shared out so that its limit never cuts a
    // recorded booking off before its publish (or its withdrawal) has run.
    let answer_by = Instant::now() + state.request_timeout.saturating_sub(ANSWER_MARGIN);
    let record_by = answer_by - PUBLISH_AT_LEAST;
    let (request, seats) = validate(state, ShowId(show_id), body).await?;
    tracing::Span::current().record("booking_id", tracing::field::display(request.id));
    let key = key.map(|key| {
        let hash = request_hash(&request);
        (key, hash)
    });
    // A database that stops answering holds the recording until
    // `record_by`: the booking may still commit once it goes on, so the
    // `503` is in doubt, like one after a crash (see the guarantees).
    let recorded = tokio::time::timeout_at(
        record_by.into(),
        state.recorder.record(request.clone(), key.clone()),
    )
    .await
    .map_err(|_| ApiError::TimedOut)??;
    let (created_at, position) = match recorded {
        Recorded::Created { at, position } => (at, position),
        Recorded::KeyTaken => {
            let (key, hash) = key.expect("only a key can be taken");
            return replay(state, &key, &hash).await;
        }
    };
    let published = state
        .dispatcher
        .publish(show_id, request.id.0, answer_by)
        .await;
    if let Err(err) = published {
        withdraw(state, request.id).await;
        return Err(err.into());
    }
    metrics::counter!("api_bookings_accepted_total").increment(1);
    // Answered from what was just written: no read on the hot path.
    Ok(BookingView {
        id: request.id.0,
        show_id,
        status: BookingStatus::Queued,
        reason: None,
        email: request.email.as_str().to_owned(),
        quantity: request.wanted.quantity(),
        name: request.name,
        seats,
        total_cents: request.total.map(|c| c.0),
        hold_expires_at: None,
        position,
        waitlist: request.waitlist,
        waitlist_position: None,
        refunded_cents: None,
        tickets: Vec::new(),
        created_at,
        updated_at: created_at,
    })
}

/// A booking as its customer sees it, or `404`.
pub async fn load(state: &AppState, id: Uuid) -> Result<BookingView, ApiError> {
    view::load(&state.db, &state.lines, id)
        .await?
        .ok_or(ApiError::NotFound("booking"))
}

async fn validate(
    state: &AppState,
    show_id: ShowId,
    req: &NewBooking,
) -> Result<(BookingRequest, Vec<BookedSeat>), ApiError> {
    let show = state
        .catalog
        .get(&state.db, show_id.0)
        .await?
        .ok_or(ApiError::NotFound("show"))?;

    let mut errors = Vec::new();
    let email = match validation::storable("email", &req.email) {
        Some(unstorable) => Err(unstorable),
        None => {
            CustomerEmail::parse(&req.email).map_err(|e| FieldError::new("email", e.to_string()))
        }
    };
    let email = email.map_err(|invalid| errors.push(invalid)).ok();
    errors.extend(validation::text("name", &req.name, NAME_CHARS));
    let limit = format!("must be 1 to {MAX_TICKETS_PER_BOOKING}");
    let validated: Option<Asked> = match show.kind {
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
            quantity(req, &mut errors, "is required for general admission").map(|q| Asked {
                wanted: Wanted::Quantity(q),
                seats: Vec::new(),
                total: Some(Cents(show.price_cents.unwrap_or(0)) * q),
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
            .map(|q| Asked {
                wanted: Wanted::BestAvailable {
                    quantity: q,
                    section: section.map(|s| s.trim().to_owned()),
                },
                seats: Vec::new(),
                total: None,
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
            Some(Asked {
                total: Some(seats.iter().map(|s| Cents(s.price_cents)).sum()),
                wanted: Wanted::Seats(seat_ids),
                seats,
            })
        }
    };
    match (validated, email) {
        (Some(asked), Some(email)) if errors.is_empty() => Ok((
            BookingRequest {
                id: BookingId::random(),
                show_id,
                email,
                name: req.name.trim().to_owned(),
                wanted: asked.wanted,
                waitlist: req.waitlist,
                total: asked.total,
            },
            asked.seats,
        )),
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
fn request_hash(request: &BookingRequest) -> Vec<u8> {
    let mut seats = request.wanted.seats().to_vec();
    seats.sort();
    let canonical = serde_json::json!({
        "show_id": request.show_id.0,
        "email": request.email.as_str(),
        "name": request.name,
        "quantity": request.wanted.quantity(),
        "seat_ids": seats,
        "section": request.wanted.section(),
        "waitlist": request.waitlist,
    });
    Sha256::digest(canonical.to_string().as_bytes()).to_vec()
}

/// The same Idempotency-Key again: the same body gets the original booking,
/// a different body is refused.
async fn replay(state: &AppState, key: &str, hash: &[u8]) -> Result<BookingView, ApiError> {
    let original = record::key_holder(&state.db, key)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    if original.request_hash != hash {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let view = load(state, original.booking_id).await?;
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
    Ok(view)
}

/// Takes back a booking whose request never reached the queue (see
/// [`record::withdraw`]).
async fn withdraw(state: &AppState, id: BookingId) {
    if let Err(err) = record::withdraw(&state.db, id.0).await {
        // The worker's requeue sweep will publish it later instead.
        tracing::warn!(booking_id = %id, error = %err, "could not withdraw unpublished booking");
    }
}
