//! The v1 HTTP API (PRODUCT.md §5).

pub mod admin;
pub mod bookings;
pub mod events;
pub mod shows;
pub mod webhooks;

use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::rate_limit;
use crate::startup::AppState;

pub fn router(state: &AppState) -> Router<AppState> {
    let mut submit = post(bookings::create_booking);
    // Around the handler, so a refused request is not read or recorded.
    if let Some(limiter) = &state.rate_limit {
        submit = submit.route_layer(from_fn_with_state(limiter.clone(), rate_limit::check));
    }
    Router::new()
        .route("/v1/shows", post(shows::create_show).get(shows::list_shows))
        .route("/v1/shows/{id}", get(shows::get_show))
        .route("/v1/shows/{id}/seats", get(shows::seat_map))
        .route("/v1/shows/{id}/sales", get(admin::show_sales))
        .route("/v1/shows/{id}/bookings", submit)
        .route("/v1/bookings", get(admin::list_bookings))
        .route("/v1/bookings/{id}", get(bookings::get_booking))
        .route("/v1/bookings/{id}/events", get(events::booking_events))
        .route("/v1/bookings/{id}/confirm", post(bookings::confirm_booking))
        .route("/v1/bookings/{id}/cancel", post(bookings::cancel_booking))
        .route(
            "/v1/webhooks",
            post(webhooks::create_webhook).get(webhooks::list_webhooks),
        )
        .route("/v1/webhooks/{id}", delete(webhooks::delete_webhook))
        .route(
            "/v1/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
}
