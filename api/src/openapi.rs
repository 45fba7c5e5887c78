//! The OpenAPI document (`/openapi.json`) and interactive docs (`/docs`).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::routes::{admin, bookings, events, shows, webhooks};
use crate::startup::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Booking API", description = "Queue-driven ticket booking: submit, get 202, poll."),
    paths(
        shows::create_show, shows::list_shows, shows::get_show, shows::seat_map,
        bookings::create_booking, bookings::get_booking, bookings::confirm_booking, bookings::cancel_booking,
        events::booking_events,
        admin::list_bookings, admin::show_sales,
        webhooks::create_webhook, webhooks::list_webhooks, webhooks::delete_webhook,
        webhooks::list_deliveries,
    ),
    modifiers(&AdminAuth),
    tags((name = "shows"), (name = "bookings"), (name = "admin"), (name = "webhooks"))
)]
pub struct ApiDoc;

struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_the_v1_1_fields_and_answers() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let booking = &doc["components"]["schemas"]["BookingView"]["properties"];
        for field in [
            "position",
            "waitlist",
            "waitlist_position",
            "refunded_cents",
        ] {
            assert!(booking[field].is_object(), "BookingView lacks {field}");
        }
        let sales = &doc["components"]["schemas"]["Sales"]["properties"];
        assert!(sales["refunds"].is_object() && sales["waitlisted"].is_object());
        let poll = &doc["paths"]["/v1/bookings/{id}"]["get"]["responses"];
        assert!(poll["304"].is_object(), "{poll}");
        assert!(poll["200"]["headers"]["ETag"].is_object(), "{poll}");
        let events = &doc["paths"]["/v1/bookings/{id}/events"]["get"]["responses"];
        assert!(
            events["200"]["content"]["text/event-stream"].is_object(),
            "{events}"
        );
        assert!(events["404"].is_object(), "{events}");
    }

    #[test]
    fn the_document_describes_the_webhook_endpoints() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = &doc["paths"];
        assert!(paths["/v1/webhooks"]["post"]["responses"]["201"].is_object());
        assert!(paths["/v1/webhooks"]["get"].is_object());
        assert!(paths["/v1/webhooks/{id}"]["delete"]["responses"]["204"].is_object());
        assert!(paths["/v1/webhooks/{id}/deliveries"]["get"].is_object());
        let schemas = &doc["components"]["schemas"];
        let events = &schemas["WebhookEvent"]["enum"];
        assert_eq!(events.as_array().map(Vec::len), Some(6), "{events}");
        assert!(schemas["CreatedWebhook"].is_object());
        assert!(schemas["Delivery"]["properties"]["attempts"].is_object());
    }

    #[test]
    fn the_document_describes_the_rate_limit_on_booking_submissions() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let submit = &doc["paths"]["/v1/shows/{id}/bookings"]["post"]["responses"];
        for header in ["Retry-After", "RateLimit-Policy", "RateLimit"] {
            assert!(submit["429"]["headers"][header].is_object(), "{submit}");
        }
        assert!(
            submit["202"]["headers"]["RateLimit"].is_object(),
            "{submit}"
        );
    }
}
