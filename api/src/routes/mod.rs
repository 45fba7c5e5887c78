//! The v1 HTTP API (docs/API.md).

pub mod admin;
pub mod bookings;
pub mod events;
pub mod operators;
pub mod qr;
pub mod shows;
pub mod storefront;
pub mod tickets;
pub mod webhooks;

use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use crate::auth::{self, Access, Role};
use crate::rate_limit;
use crate::state::AppState;
use crate::stream_limit;

/// A route and who may call it.
#[derive(Debug, Clone)]
pub struct Declared {
    pub method: Method,
    /// As the OpenAPI document writes it (`/v1/shows/{id}`).
    pub path: &'static str,
    pub access: Access,
    /// Behind the per-client rate limit (`RATE_LIMIT_PER_SECOND`).
    pub rate_limited: bool,
    /// An event stream, behind the caps on open streams
    /// ([`crate::stream_limit`]).
    pub streamed: bool,
}

/// A declared route and its handler.
struct Route {
    declared: Declared,
    handler: MethodRouter<AppState>,
}

impl Route {
    fn rate_limited(mut self) -> Self {
        self.declared.rate_limited = true;
        self
    }

    fn streamed(mut self) -> Self {
        self.declared.streamed = true;
        self
    }
}

/// Every route with who may call it: the one place a route declares its
/// role. The router's guards, the OpenAPI document's security requirements
/// and the role tests are all made from this list.
fn routes() -> Vec<Route> {
    use Access::{OptionalRole, Public, Role as Needs};
    use Method as M;
    let viewer = Needs(Role::Viewer);
    let box_office = Needs(Role::BoxOffice);
    let admin = Needs(Role::Admin);
    vec![
        route(M::POST, "/v1/shows", admin, shows::create_show),
        route(M::GET, "/v1/shows", Public, shows::list_shows),
        route(M::GET, "/v1/shows/{id}", Public, shows::get_show),
        route(M::GET, "/v1/shows/{id}/seats", Public, shows::seat_map),
        route(M::GET, "/v1/shows/{id}/events", Public, events::show_events).streamed(),
        route(M::GET, "/v1/shows/{id}/sales", viewer, admin::show_sales),
        route(
            M::POST,
            "/v1/shows/{id}/bookings",
            Public,
            bookings::create_booking,
        )
        .rate_limited(),
        route(M::GET, "/v1/bookings", viewer, admin::list_bookings),
        route(M::GET, "/v1/bookings/{id}", Public, bookings::get_booking),
        route(
            M::GET,
            "/v1/bookings/{id}/events",
            Public,
            events::booking_events,
        )
        .streamed(),
        route(
            M::GET,
            "/v1/bookings/{id}/tickets/{code}/qr",
            Public,
            qr::ticket_qr,
        ),
        route(
            M::POST,
            "/v1/bookings/{id}/confirm",
            Public,
            bookings::confirm_booking,
        ),
        // Customers cancel their own; a box office's token names it the actor.
        route(
            M::POST,
            "/v1/bookings/{id}/cancel",
            OptionalRole(Role::BoxOffice),
            bookings::cancel_booking,
        ),
        route(
            M::POST,
            "/v1/tickets/{code}/check-in",
            box_office,
            tickets::check_in,
        ),
        route(
            M::POST,
            "/v1/operators/tokens",
            admin,
            operators::create_token,
        ),
        route(
            M::GET,
            "/v1/operators/tokens",
            admin,
            operators::list_tokens,
        ),
        route(
            M::DELETE,
            "/v1/operators/tokens/{id}",
            admin,
            operators::revoke_token,
        ),
        route(M::POST, "/v1/webhooks", admin, webhooks::create_webhook),
        route(M::GET, "/v1/webhooks", admin, webhooks::list_webhooks),
        route(
            M::DELETE,
            "/v1/webhooks/{id}",
            admin,
            webhooks::delete_webhook,
        ),
        route(
            M::GET,
            "/v1/webhooks/{id}/deliveries",
            admin,
            webhooks::list_deliveries,
        ),
    ]
}

fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
    Route {
        declared: Declared {
            method,
            path,
            access,
            rate_limited: false,
            streamed: false,
        },
        handler: on(filter, handler),
    }
}

/// What [`routes`] declares, without the handlers.
pub fn declared() -> Vec<Declared> {
    routes().into_iter().map(|route| route.declared).collect()
}

/// The routes, each behind the guards its declaration asks for: the rate
/// limit first (a refused request is neither authenticated, read nor
/// recorded), then the role.
pub fn router(state: &AppState) -> Router<AppState> {
    routes().into_iter().fold(Router::new(), |router, route| {
        let Route {
            declared,
            mut handler,
        } = route;
        if let Access::OptionalRole(_) | Access::Role(_) = declared.access {
            let access = declared.access;
            handler = handler.route_layer(from_fn_with_state(
                state.clone(),
                move |state, req, next| auth::guard(state, access, req, next),
            ));
        }
        if let (true, Some(limiter)) = (declared.rate_limited, &state.rate_limit) {
            handler = handler.route_layer(from_fn_with_state(limiter.clone(), rate_limit::check));
        }
        if declared.streamed {
            handler = handler.route_layer(from_fn_with_state(
                state.streams.clone(),
                stream_limit::check,
            ));
        }
        router.route(declared.path, handler)
    })
}
