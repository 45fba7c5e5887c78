//! `GET /v1/bookings/{id}/events`: a booking's changes as Server-Sent
//! Events, pushed by this process's [`Hub`](crate::live::Hub).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::Path;
use crate::live::{Current, Subscription, View};
use crate::state::AppState;

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
        (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(booking_id = %id))]
pub async fn booking_events(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let mut sub = state.live.subscribe(id);
    sub.first().await?;
    let events = futures::stream::unfold(Next::Current(sub), next)
        .take_until(state.draining.cancelled_owned());
    let keep_alive = KeepAlive::new().interval(state.live.keep_alive());
    Ok(Sse::new(events).keep_alive(keep_alive).into_response())
}

/// One event of the stream as an event-stream parser reads it: the
/// document's `text/event-stream` schema describes each event.
pub struct BookingEvent;

impl utoipa::PartialSchema for BookingEvent {
    fn schema() -> RefOr<Schema> {
        let name = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["booking"]));
        let booking = serde_json::json!({"$ref": "#/components/schemas/BookingView"});
        let data = ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/json")
            .extensions(Some(
                ExtensionsBuilder::new()
                    .add("contentSchema", booking)
                    .build(),
            ));
        ObjectBuilder::new()
            .property("event", name)
            .required("event")
            .property("data", data)
            .required("data")
            .into()
    }
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

async fn next(at: Next) -> Option<(Result<Event, Infallible>, Next)> {
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
    Some((Ok(event(&view)), then))
}

fn event(view: &View) -> Event {
    Event::default().event("booking").data(&view.json)
}
