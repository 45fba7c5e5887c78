//! The OpenAPI document (`/openapi.json`) and interactive docs (`/docs`).

use axum::http::Method;
use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, PathItem, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Access;
use crate::routes::{self, admin, bookings, events, operators, shows, tickets, webhooks};
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
        tickets::check_in,
        operators::create_token, operators::list_tokens, operators::revoke_token,
    ),
    modifiers(&OperatorAuth),
    tags((name = "shows"), (name = "bookings"), (name = "admin"), (name = "webhooks"),
         (name = "tickets"), (name = "operators"))
)]
pub struct ApiDoc;

/// The name of the bearer scheme; a requirement's scopes name the role.
pub const SECURITY_SCHEME: &str = "operator_token";

/// Security requirements and their 401/403 answers, written from the
/// routes' own declarations (`routes::declared`), not per annotation.
struct OperatorAuth;

impl Modify for OperatorAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`ADMIN_TOKEN` (role admin) or an operator token (`bko_…`) made by \
                         `POST /v1/operators/tokens`. The requirement's scope is the role \
                         needed; `admin` may do all, `box_office` all a `viewer` may.",
                    ))
                    .build(),
            ),
        );
        for declared in routes::declared() {
            let Some(role) = declared.access.role() else {
                continue;
            };
            let Some(operation) = openapi
                .paths
                .paths
                .get_mut(declared.path)
                .and_then(|item| operation(item, &declared.method))
            else {
                continue;
            };
            let needed = SecurityRequirement::new(SECURITY_SCHEME, [role.as_str()]);
            operation.security = Some(match declared.access {
                // Anonymous, or a token with the role.
                Access::OptionalRole(_) => vec![SecurityRequirement::default(), needed],
                _ => vec![needed],
            });
            for (status, description) in [
                (
                    "401",
                    "No valid operator token (missing, unknown or revoked)".to_owned(),
                ),
                (
                    "403",
                    format!("The token lacks the role `{}`", role.as_str()),
                ),
            ] {
                let problem = ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/problem+json",
                        Content::new(Some(Ref::from_schema_name("Problem"))),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .insert(status.to_owned(), problem.into());
            }
        }
    }
}

fn operation<'a>(item: &'a mut PathItem, method: &Method) -> Option<&'a mut Operation> {
    match *method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        _ => None,
    }
}

pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
    fn every_route_is_documented_with_the_role_it_declares() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for declared in routes::declared() {
            let method = declared.method.as_str().to_lowercase();
            let operation = &doc["paths"][declared.path][&method];
            let what = format!("{method} {}", declared.path);
            assert!(operation.is_object(), "{what} is not documented");
            let security = &operation["security"];
            match declared.access {
                Access::Public => assert!(security.is_null(), "{what}: {security}"),
                Access::OptionalRole(role) | Access::Role(role) => {
                    let needed = json!({ SECURITY_SCHEME: [role.as_str()] });
                    let requirements = security.as_array().expect("a security requirement");
                    assert!(requirements.contains(&needed), "{what}: {security}");
                    let anonymous = requirements.contains(&json!({}));
                    assert_eq!(
                        anonymous,
                        matches!(declared.access, Access::OptionalRole(_)),
                        "{what}"
                    );
                    for status in ["401", "403"] {
                        assert!(
                            operation["responses"][status].is_object(),
                            "{what} {status}"
                        );
                    }
                }
            }
        }
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
