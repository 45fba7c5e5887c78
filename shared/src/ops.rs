//! `/healthz`, `/readyz` and `/metrics`, served by every service: the api on
//! its own port, workers and the notifier on `METRICS_ADDR`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::amqp::Publisher;

/// Answers whether the service can do its work right now.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Not ready once `draining` is cancelled (the process got SIGTERM and
/// finishes what it holds), otherwise whatever `ready` says: load balancers
/// stop sending work to a process that is on its way out.
pub fn unless_draining(ready: ReadinessCheck, draining: CancellationToken) -> ReadinessCheck {
    Arc::new(move || {
        if draining.is_cancelled() {
            return Box::pin(async { Err("draining".to_owned()) });
        }
        ready()
    })
}

/// Ready when the database answers and a publisher channel is open.
pub fn db_and_broker_ready(db: sqlx::PgPool, publisher: Arc<Publisher>) -> ReadinessCheck {
    Arc::new(move || {
        let (db, publisher) = (db.clone(), publisher.clone());
        Box::pin(async move {
            crate::store::health::ping(&db)
                .await
                .map_err(|e| format!("database: {e}"))?;
            publisher
                .ensure_connected()
                .await
                .map_err(|e| format!("rabbitmq: {e}"))
        })
    })
}

#[derive(Clone)]
struct OpsState {
    metrics: PrometheusHandle,
    ready: ReadinessCheck,
}

/// Routes for health, readiness and metrics, mergeable into any router.
pub fn router<S: Clone + Send + Sync + 'static>(
    metrics: PrometheusHandle,
    ready: ReadinessCheck,
) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(OpsState { metrics, ready })
}

async fn readyz(State(state): State<OpsState>) -> (StatusCode, String) {
    match (state.ready)().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn render_metrics(State(state): State<OpsState>) -> String {
    state.metrics.render()
}

/// Serves a worker's or the notifier's ops routes on `addr` (ready when the
/// database and broker answer, `503 draining` once `shutdown` fired), on a
/// task of its own that is not waited for: it answers until the process
/// exits.
pub fn spawn_untracked(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    db: sqlx::PgPool,
    publisher: Arc<Publisher>,
    shutdown: &CancellationToken,
) {
    let ready = unless_draining(db_and_broker_ready(db, publisher), shutdown.child_token());
    tokio::spawn(async move {
        if let Err(err) = serve(addr, metrics, ready).await {
            tracing::error!(error = %err, "ops server failed");
        }
    });
}

/// Serves the ops routes on `addr` for as long as the process lives:
/// through draining too, so that `/readyz` can tell (see [`unless_draining`]).
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    ready: ReadinessCheck,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, router::<()>(metrics, ready)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readyz_turns_503_draining_once_shutdown_began() {
        let root = CancellationToken::new();
        let always_ready: ReadinessCheck = Arc::new(|| Box::pin(async { Ok(()) }));
        let state = OpsState {
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
            ready: unless_draining(always_ready, root.child_token()),
        };
        assert_eq!(
            readyz(State(state.clone())).await,
            (StatusCode::OK, "ready".to_owned())
        );
        root.cancel();
        assert_eq!(
            readyz(State(state)).await,
            (StatusCode::SERVICE_UNAVAILABLE, "draining".to_owned())
        );
    }
}
