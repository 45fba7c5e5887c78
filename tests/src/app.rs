//! The API inside the test's own process, for tests that need only the HTTP
//! app (validation, problem details, authentication): no `api`, `worker` or
//! `notifier` processes to start and wait for, just the router serving on a
//! random port against a sandbox of its own (fresh, migrated database and
//! vhost), as zero-to-production's `spawn_app` does. Nothing decides the
//! bookings it accepts: flows and faults use [`crate::System`].

use std::net::SocketAddr;
use std::sync::OnceLock;

use api::startup::app;
use api::state::AppState;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use shared::topology::Topology;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::system::{Sandbox, ADMIN_TOKEN};
use crate::Options;

/// The services' default `DELIVERY_LIMIT`, which [`System`](crate::System)
/// keeps too.
const DELIVERY_LIMIT: u32 = 10;

pub struct TestApp {
    sandbox: Sandbox,
    server: JoinHandle<()>,
}

impl std::ops::Deref for TestApp {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl TestApp {
    /// Builds the app as the `api` binary does (but without a rate limit)
    /// and serves it, peer addresses included, until
    /// [`finish`](Self::finish).
    pub async fn spawn() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,sqlx=warn".into()),
            )
            .with_test_writer()
            .try_init();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let options = Options::default();
        let sandbox = Sandbox::create(&options, base_url).await;
        let db = PgPoolOptions::new()
            .max_connections(8)
            .connect(&sandbox.database_url)
            .await
            .unwrap();
        shared::db::MIGRATOR.run(&db).await.unwrap();
        let topology = Topology {
            shards: options.shards,
            delivery_limit: DELIVERY_LIMIT,
            quorum_group_size: None,
        };
        let state = AppState::with(db, &sandbox.amqp_url, topology, ADMIN_TOKEN);
        let server = tokio::spawn(async move {
            let app = app(state, metrics());
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serving the app");
        });
        Self { sandbox, server }
    }

    /// Stops serving and removes the database and vhost.
    pub async fn finish(self) {
        self.server.abort();
        let _ = self.server.await;
        self.sandbox.remove().await;
    }
}

/// One Prometheus recorder per process, as in the binary.
fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("no other metrics recorder in a test process")
        })
        .clone()
}
