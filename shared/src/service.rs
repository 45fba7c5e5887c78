//! What every binary does around its own work, in one place: logs and
//! metrics, the typed configuration, the shutdown token, the database, the
//! ops routes, and a tracker for background tasks that draining waits for
//! (see [`crate::shutdown`]).

use std::future::Future;
use std::sync::Arc;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::amqp::Publisher;
use crate::db::{self, Plans};
use crate::telemetry::{self, PrometheusHandle};
use crate::topology::Topology;
use crate::Config;

/// Where a process's background tasks run. Each is on the tracker, so that
/// draining waits for it, and watches a child of the shutdown token, so
/// that it stops taking work when the signal comes.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Tasks {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            shutdown,
        }
    }

    /// Spawns `task`, handing it a child of the shutdown token.
    pub fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task(self.shutdown.child_token()));
    }

    /// Spawns a task that ends by itself once its work runs out, not at
    /// the signal (one whose work comes from requests still being served).
    pub fn spawn_until_done<Fut>(&self, task: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// A child of the shutdown token, for what is not a task of its own.
    pub fn child_token(&self) -> CancellationToken {
        self.shutdown.child_token()
    }
}

/// A binary whose logs, metrics and configuration are set up; [`run`](Self::run)
/// starts it. Split from [`run`] for the worker's subcommands, which need
/// the configuration but no service.
pub struct Starting {
    name: &'static str,
    pub config: Config,
    metrics: PrometheusHandle,
}

/// What a running service's start-up hands its own code.
pub struct Service {
    name: &'static str,
    pub config: Config,
    pub metrics: PrometheusHandle,
    pub db: PgPool,
    pub tasks: Tasks,
}

/// Sets up the service `name` and runs it (see [`Starting::run`]).
pub async fn run<F, Fut>(name: &'static str, plans: Plans, start: F) -> anyhow::Result<()>
where
    F: FnOnce(Service) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    Starting::new(name)?.run(plans, start).await
}

impl Starting {
    /// Installs logs and metrics, then reads the configuration.
    pub fn new(name: &'static str) -> anyhow::Result<Self> {
        let metrics = telemetry::init(name);
        let config = Config::from_env()?;
        Ok(Self {
            name,
            config,
            metrics,
        })
    }

    /// Connects to the database (migrating it) and runs `start`, which
    /// spawns the service's tasks on [`Service::tasks`] and may serve in
    /// the foreground. Returns once `start` and every task ended, or exits
    /// the process when they are still running `SHUTDOWN_GRACE_SECONDS`
    /// after the signal. A signal before the database came ends it cleanly.
    pub async fn run<F, Fut>(self, plans: Plans, start: F) -> anyhow::Result<()>
    where
        F: FnOnce(Service) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let Self {
            name,
            config,
            metrics,
        } = self;
        let shutdown = crate::shutdown::on_signal();
        let Some(db) = db::connect_and_migrate(
            config.database_url.expose_secret(),
            config.db_pool_size,
            plans,
            &shutdown,
        )
        .await?
        else {
            return Ok(());
        };
        let grace = config.shutdown_grace;
        let tasks = Tasks::new(shutdown.clone());
        let tracker = tasks.tracker.clone();
        let service = Service {
            name,
            config,
            metrics,
            db: db.clone(),
            tasks,
        };
        let work = async {
            let started = start(service).await;
            if started.is_err() {
                // The tasks already spawned stop too.
                shutdown.cancel();
            }
            tracker.close();
            tracker.wait().await;
            started
        };
        let result = crate::shutdown::drain(&shutdown, grace, work).await;
        db.close().await;
        tracing::info!("{name} stopped");
        result
    }
}

impl Service {
    /// The broker's shape, from the configuration.
    pub fn topology(&self) -> Topology {
        Topology::of(&self.config)
    }

    /// A publisher named after this process.
    pub fn publisher(&self) -> Arc<Publisher> {
        Arc::new(Publisher::new(
            self.config.amqp_url.expose_secret(),
            &format!("{} {} publisher", self.name, std::process::id()),
            self.topology(),
        ))
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` on `METRICS_ADDR`, ready
    /// while the database and `publisher`'s broker answer. Not a tracked
    /// task: it answers `503 draining` until the process exits.
    pub fn serve_ops(&self, publisher: Arc<Publisher>) {
        crate::ops::spawn_untracked(
            self.config.metrics_addr,
            self.metrics.clone(),
            self.db.clone(),
            publisher,
            &self.tasks.shutdown,
        );
    }
}
