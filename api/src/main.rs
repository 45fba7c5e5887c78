use std::future::IntoFuture;

use anyhow::Context;
use shared::config::ExposeSecret;
use shared::Config;

/// Thousands of open event streams, each holding hyper's buffers, leave
/// glibc's heap fragmented, and every other request then pays for it in
/// `malloc` (its free chunks sorted and merged over and over). mimalloc
/// keeps free lists per page and does not slow down so. It is built
/// without transparent huge pages (`no_thp` in `Cargo.toml`), which would
/// round its memory up in 2 MiB steps: half as much resident memory again
/// under 10,000 streams (348 MiB instead of about 237).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let metrics = shared::telemetry::init("api");
    let config = Config::from_env()?;
    let shutdown = shared::shutdown::on_signal();
    let Some(db) = shared::db::connect_and_migrate(
        config.database_url.expose_secret(),
        config.db_pool_size,
        shared::db::Plans::Default,
        &shutdown,
    )
    .await?
    else {
        return Ok(());
    };
    let state = api::startup::AppState {
        draining: shutdown.child_token(),
        ..api::startup::AppState::new(&config, db)?
    };
    let topology = shared::topology::Topology::of(&config);
    api::live::spawn(&state, config.amqp_url.expose_secret(), topology, &shutdown);
    state
        .operators
        .clone()
        .spawn_reloading(state.db.clone(), shutdown.child_token());
    api::rate_limit::spawn_pruning(&state, &shutdown);
    if let Err(err) = state.publisher.ensure_connected().await {
        // Not fatal: the API answers 503 for bookings until the broker is back.
        tracing::warn!(error = %err, "RabbitMQ not reachable yet");
    }
    let listener = tokio::net::TcpListener::bind(config.api_addr)
        .await
        .with_context(|| format!("binding {}", config.api_addr))?;
    tracing::info!(addr = %config.api_addr, "api listening");
    // One routing table for all connections: serving the `Router` itself
    // would rebuild it for each (about 16 KiB per open event stream). Each
    // connection's service is that table plus the peer's address, which
    // the rate limit needs.
    let app = api::startup::app(state, metrics)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    // On the signal: stop accepting, finish the requests in flight (their
    // publishes included), then exit.
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.child_token().cancelled_owned());
    shared::shutdown::drain(&shutdown, config.shutdown_grace, server.into_future()).await?;
    tracing::info!("api stopped");
    Ok(())
}
