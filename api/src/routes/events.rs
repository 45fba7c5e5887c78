//! Server-Sent Events: `GET /v1/bookings/{id}/events`, a booking's changes
//! pushed by this process's [`Hub`](crate::live::Hub), and
//! `GET /v1/shows/{id}/events`, a show's availability and seats pushed by
//! its [`ShowFeed`](crate::show_feed::ShowFeed).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::Path;
use crate::live::{Current, Subscription, View};
use crate::show_feed::{self, Availability, SeatState, Snapshot};
use crate::state::AppState;

const STREAMS_PER_CLIENT: &str = "This client address already holds its most open event streams \
    (`STREAMS_PER_CLIENT`, default 100; code `too_many_streams`): close one first";
const STREAMS_IN_ALL: &str = "The server holds its most open event streams (`MAX_STREAMS`; code \
    `streams_unavailable`), or the database is unavailable; retry after Retry-After";

/// Follow a booking instead of polling it. The stream starts with an event
/// `booking` whose data is the JSON `GET /v1/bookings/{id}` answers, sends
/// one more on each change a client can see (status, reason, hold, place in
/// line, waiting-list position, tickets) and ends after a final status
/// (`confirmed`, `rejected`, `expired`, `cancelled`): a booking already
/// there gets that one event. Comment lines (`:`) keep an idle stream open
/// through proxies. Streams also end when the process shuts down;
/// reconnect to resume (the first event is again the current state).
#[utoipa::path(get, path = "/v1/bookings/{id}/events", tag = "bookings",
    responses(
        (status = 200, content_type = "text/event-stream", body = BookingEvent,
            description = "`event: booking` with `data:` the booking as JSON (see BookingView): at once, then again on each change; ends after a final status"),
        (status = 404, body = Problem),
        (status = 429, body = Problem, description = STREAMS_PER_CLIENT),
        (status = 503, body = Problem, description = STREAMS_IN_ALL)))]
#[tracing::instrument(skip_all, fields(booking_id = %id))]
pub async fn booking_events(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let mut sub = state.live.subscribe(id);
    sub.first().await?;
    Ok(serve(
        &state,
        futures::stream::unfold(Next::Current(sub), next),
    ))
}

/// `events` as an event stream: comment lines every keep-alive interval
/// while idle, and an end when the process starts draining.
fn serve(state: &AppState, events: impl Stream<Item = Event> + Send + 'static) -> Response {
    let events = events
        .map(Ok::<_, Infallible>)
        .take_until(state.draining.clone().cancelled_owned());
    let keep_alive = KeepAlive::new().interval(state.live.keep_alive());
    Sse::new(events).keep_alive(keep_alive).into_response()
}

/// One event of the stream as an event-stream parser reads it: the
/// document's `text/event-stream` schema describes each event.
pub struct BookingEvent;

impl utoipa::PartialSchema for BookingEvent {
    fn schema() -> RefOr<Schema> {
        let booking = serde_json::json!({"$ref": "#/components/schemas/BookingView"});
        let data = ObjectBuilder::new().extensions(Some(
            ExtensionsBuilder::new()
                .add("contentSchema", booking)
                .build(),
        ));
        event_schema(&["booking"], data)
    }
}

/// An event as the document describes it: its name, one of `names`, and
/// its `data`, a JSON text that `data` says more of.
fn event_schema(names: &[&str], data: ObjectBuilder) -> RefOr<Schema> {
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names.iter().copied()));
    let data = data
        .schema_type(Type::String)
        .content_media_type("application/json");
    ObjectBuilder::new()
        .property("event", name)
        .required("event")
        .property("data", data)
        .required("data")
        .into()
}

impl utoipa::ToSchema for BookingEvent {}

/// Where a stream is.
enum Next {
    /// Send the subscription's current view.
    Current(Subscription),
    /// Wait for the view to change, then send it.
    Changed(Subscription),
    Done,
}

async fn next(at: Next) -> Option<(Event, Next)> {
    let mut sub = match at {
        Next::Done => return None,
        Next::Current(sub) => sub,
        Next::Changed(mut sub) => {
            sub.view.changed().await.ok()?;
            sub
        }
    };
    // Only views follow the first one.
    let Current::View(view) = sub.view.borrow_and_update().clone() else {
        return None;
    };
    let then = if view.last {
        Next::Done
    } else {
        Next::Changed(sub)
    };
    Some((event(&view), then))
}

fn event(view: &View) -> Event {
    Event::default().event("booking").data(&view.json)
}

/// Follow a show's availability instead of polling it: what a show page or
/// a seat map needs to stay current. The stream starts with an event
/// `show` (the show as `GET /v1/shows/{id}` answers it), an event
/// `availability` and, for a seated show, an event `seats` listing every
/// seat's status; then, batched at most every 250 ms while anything
/// changes, `availability` (`available`, `held`, `booked`, and per
/// section) when it changed and `seats` with the seats whose status
/// changed. Comment lines keep an idle stream open; streams end when the
/// process shuts down (reconnect: the first events are again the whole
/// state).
#[utoipa::path(get, path = "/v1/shows/{id}/events", tag = "shows",
    responses(
        (status = 200, content_type = "text/event-stream", body = ShowEvent,
            description = "`event: show` (data: ShowView), `event: availability` (data: Availability), `event: seats` (data: [SeatState])"),
        (status = 404, body = Problem),
        (status = 429, body = Problem, description = STREAMS_PER_CLIENT),
        (status = 503, body = Problem, description = STREAMS_IN_ALL)))]
#[tracing::instrument(skip_all, fields(show_id = %id))]
pub async fn show_events(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let mut sub = state.show_feed.subscribe(id);
    let first = sub.first().await?;
    let opening = futures::stream::iter(opening(&first));
    let changes = futures::stream::unfold((sub, first), |(mut sub, last)| async move {
        sub.state.changed().await.ok()?;
        let Current::View(now) = sub.state.borrow_and_update().clone() else {
            return None;
        };
        let events = changed(&last, &now);
        Some((futures::stream::iter(events), (sub, now)))
    })
    .flatten();
    Ok(serve(&state, opening.chain(changes)))
}

/// The events a new stream starts with: the whole state.
fn opening(now: &Snapshot) -> Vec<Event> {
    let mut events = vec![
        Event::default().event("show").data(&now.show),
        availability(&now.availability),
    ];
    if !now.seats.is_empty() {
        events.push(seats(&now.seats));
    }
    events
}

/// The events that take a stream from `last` to `now`.
fn changed(last: &Snapshot, now: &Snapshot) -> Vec<Event> {
    let mut events = Vec::new();
    if now.availability != last.availability {
        events.push(availability(&now.availability));
    }
    // The watch keeps only the latest snapshot: a stream that missed one
    // compares for itself.
    let seats_changed = if now.version == last.version + 1 {
        now.changed.clone()
    } else {
        show_feed::changes(&last.seats, &now.seats)
    };
    if !seats_changed.is_empty() {
        events.push(seats(&seats_changed));
    }
    events
}

fn availability(availability: &Availability) -> Event {
    let json = serde_json::to_string(availability).expect("availability serializes");
    Event::default().event("availability").data(json)
}

fn seats(seats: &[SeatState]) -> Event {
    let json = serde_json::to_string(seats).expect("seat states serialize");
    Event::default().event("seats").data(json)
}

/// One event of a show's stream, for the document.
pub struct ShowEvent;

impl utoipa::PartialSchema for ShowEvent {
    fn schema() -> RefOr<Schema> {
        let data = ObjectBuilder::new().description(Some(
            "show: a ShowView; availability: an Availability; seats: an array of SeatState",
        ));
        event_schema(&["show", "availability", "seats"], data)
    }
}

impl utoipa::ToSchema for ShowEvent {}
