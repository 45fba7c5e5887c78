use anyhow::Context;
use api::state::AppState;
use shared::config::ExposeSecret;
use shared::service::Service;

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
    shared::service::run("api", shared::db::Plans::Default, serve).await
}

async fn serve(service: Service) -> anyhow::Result<()> {
    let Service {
        config,
        metrics,
        db,
        tasks,
        ..
    } = service;
    // Each event stream holds a descriptor: take all the system allows
    // (the stream cap is then set from it, see `stream_limit`).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => tracing::info!(files, "file descriptor limit"),
        Err(err) => tracing::warn!(error = %err, "could not raise the file descriptor limit"),
    }
    let state = AppState {
        draining: tasks.child_token(),
        ..AppState::new(&config, db, &tasks)?
    };
    let topology = shared::topology::Topology::of(&config);
    api::live::spawn(
        state.live.clone(),
        state.show_feed.clone(),
        state.db.clone(),
        state.lines.clone(),
        config.amqp_url.expose_secret(),
        topology,
        &tasks,
    );
    api::show_feed::spawn(state.show_feed.clone(), state.reads.clone(), &tasks);
    tracing::info!(max_streams = state.streams.total(), "event streams capped");
    state
        .operators
        .clone()
        .spawn_reloading(state.db.clone(), &tasks);
    if let Some(limiter) = state.rate_limit.clone() {
        api::rate_limit::spawn_pruning(limiter, &tasks);
    }
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
    // publishes included), then return; the recorder ends once the last
    // request let go of it.
    axum::serve(listener, app)
        .with_graceful_shutdown(tasks.child_token().cancelled_owned())
        .await?;
    Ok(())
}
