//! The OpenAPI document (`/openapi.json`) and interactive docs (`/docs`).

use axum::http::Method;
use axum::Router;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, ContentBuilder, PathItem, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Access;
use crate::error::PROBLEM;
use crate::routes::bookings::NewBooking;
use crate::routes::shows::NewShow;
use crate::routes::{self, admin, bookings, events, operators, qr, shows, tickets, webhooks};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Booking API", description = "Queue-driven ticket booking: submit, get 202, poll."),
    paths(
        shows::create_show, shows::list_shows, shows::get_show, shows::seat_map,
        bookings::create_booking, bookings::get_booking, bookings::confirm_booking, bookings::cancel_booking,
        events::booking_events, events::show_events, qr::ticket_qr,
        admin::list_bookings, admin::show_sales,
        webhooks::create_webhook, webhooks::list_webhooks, webhooks::delete_webhook,
        webhooks::list_deliveries,
        tickets::check_in,
        operators::create_token, operators::list_tokens, operators::revoke_token,
    ),
    // Referred to from schemas built by hand (`uniqueItems`), not derived.
    components(schemas(shows::NewSection, shows::NewRow)),
    // The roles first: the problems' 401s follow from their requirements.
    modifiers(&OperatorAuth, &Problems, &Shapes),
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
                        PROBLEM,
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

/// What every operation may answer besides its own outcomes, said once:
/// errors are problem details (`application/problem+json`); `400` for a
/// path, query or body that does not parse; `503` while the database or
/// the broker is unavailable (or the request outlasts its time limit).
/// (`401` and `403` come with each operation's role, see [`OperatorAuth`].)
struct Problems;

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                answers_problems(operation);
            }
        }
    }
}

fn answers_problems(operation: &mut Operation) {
    let parses_input = operation.request_body.is_some()
        || operation
            .parameters
            .iter()
            .flatten()
            .any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query));
    let responses = &mut operation.responses.responses;
    for (status, description, applies) in [
        (
            "400",
            "The path, query or body does not parse",
            parses_input,
        ),
        (
            "503",
            "Temporarily unavailable; retry after Retry-After",
            true,
        ),
    ] {
        if applies && !responses.contains_key(status) {
            let problem = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content(PROBLEM, problem);
            responses.insert(status.to_owned(), response.build().into());
        }
    }
    let errors = responses
        .iter_mut()
        .filter(|(status, _)| status.as_str() >= "400");
    for (_, response) in errors {
        if let RefOr::T(response) = response {
            if let Some(json) = response.content.shift_remove("application/json") {
                response.content.insert(PROBLEM.to_owned(), json);
            }
        }
    }
}

/// Request bodies whose fields depend on each other take one of a few
/// shapes (`oneOf` beside the object's own schema), as their types say.
struct Shapes;

impl Modify for Shapes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, shapes) in [
            ("NewShow", NewShow::shapes()),
            ("NewBooking", NewBooking::shapes()),
        ] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
                let extensions = object.extensions.get_or_insert_with(Default::default);
                extensions.insert("oneOf".to_owned(), shapes);
            }
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::domain::MAX_TICKETS_PER_BOOKING;

    use super::*;
    use crate::routes::shows::{Page, MAX_CAPACITY, MAX_PRICE_CENTS, MAX_SEATS_PER_ROW};
    use crate::search;
    use crate::validation::{CATEGORY_CHARS, MAX_TAGS};

    #[test]
    fn the_documents_limits_are_the_ones_validation_checks() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let shows = "/components/schemas/NewShow/properties";
        for (pointer, limit) in [
            (format!("{shows}/capacity/maximum"), json!(MAX_CAPACITY)),
            (
                format!("{shows}/price_cents/maximum"),
                json!(MAX_PRICE_CENTS),
            ),
            (
                "/components/schemas/NewSection/properties/price_cents/maximum".to_owned(),
                json!(MAX_PRICE_CENTS),
            ),
            (
                "/components/schemas/NewRow/properties/seats/maximum".to_owned(),
                json!(MAX_SEATS_PER_ROW),
            ),
            (
                "/components/schemas/NewBooking/properties/quantity/maximum".to_owned(),
                json!(MAX_TICKETS_PER_BOOKING),
            ),
        ] {
            assert_eq!(doc.pointer(&pointer), Some(&limit), "{pointer}");
        }
        let search = doc["paths"]["/v1/shows"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let param = |name: &str| &search.iter().find(|p| p["name"] == name).unwrap()["schema"];
        assert_eq!(param("limit")["maximum"], json!(Page::MAX_LIMIT));
        assert_eq!(param("q")["maxLength"], json!(search::MAX_QUERY_CHARS));
        assert_eq!(
            param("radius_km")["maximum"].as_f64(),
            Some(search::MAX_RADIUS_KM)
        );
        assert_eq!(param("category")["maxLength"], json!(CATEGORY_CHARS));
        assert_eq!(param("tag")["maxItems"], json!(MAX_TAGS));
        for body in ["NewShow", "NewBooking"] {
            let shapes = &doc["components"]["schemas"][body]["oneOf"];
            assert_eq!(shapes.as_array().map(Vec::len), Some(2), "{body}");
        }
    }

    #[test]
    fn every_error_is_documented_as_a_problem_and_every_input_may_be_malformed() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                let answers = |status: &str| responses.contains_key(status);
                assert!(answers("503"), "{method} {path}");
                let takes_input = operation.get("requestBody").is_some()
                    || operation["parameters"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|p| p["in"] != "header"));
                assert_eq!(answers("400"), takes_input, "{method} {path}");
                assert_eq!(
                    answers("401"),
                    operation.get("security").is_some(),
                    "{method} {path}"
                );
                for (status, response) in responses.iter().filter(|(s, _)| s.as_str() >= "400") {
                    let content: Vec<&String> =
                        response["content"].as_object().unwrap().keys().collect();
                    assert_eq!(content, [PROBLEM], "{method} {path} {status}");
                }
            }
        }
    }

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
