//! Builds the application: routes and middleware over the state.

use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderName, Request};
use axum::Router;
use shared::telemetry::PrometheusHandle;
use tower::timeout::TimeoutLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// The whole HTTP application, ready to serve.
pub fn app(state: AppState, metrics: PrometheusHandle) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let request_timeout = state.request_timeout;
    let ready = shared::ops::unless_draining(
        shared::ops::db_and_broker_ready(state.db.clone(), state.publisher.clone()),
        state.draining.clone(),
    );
    Router::new()
        .merge(crate::routes::router(&state))
        .merge(crate::openapi::router())
        .merge(crate::routes::storefront::router())
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state.clone())
        .merge(shared::ops::router(metrics, ready))
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                        let id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        tracing::info_span!("http", method = %req.method(), uri = %req.uri(), request_id = id)
                    }),
                )
                // A request past its time is answered like any other outage
                // (503): its booking, if the database took it before the
                // time ran out, is published by the requeue sweep.
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::TimedOut
                }))
                .layer(TimeoutLayer::new(request_timeout))
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
}
