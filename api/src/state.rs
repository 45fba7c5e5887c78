//! What the handlers and middleware reach: [`AppState`], and the parts of
//! it that middleware takes on their own ([`FromRef`]), so that the
//! components below the routes never depend on the whole state.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use shared::amqp::Publisher;
use shared::config::{ExposeSecret, TrustedProxies};
use shared::service::Tasks;
use shared::store::bookings::Lines;
use shared::topology::Topology;
use shared::Config;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::auth::{Gate, Operators};
use crate::catalog::Catalog;
use crate::dispatcher::Dispatcher;
use crate::live::Hub;
use crate::rate_limit::Limiter;
use crate::recorder::Recorder;
use crate::search::Answers;
use crate::show_feed::ShowFeed;
use crate::stream_limit::StreamLimit;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The primary: every write, and every read that must see them.
    pub db: PgPool,
    /// Reads that may lag behind the primary (the show list, a show's page
    /// and seat map): the replicas when `DATABASE_READ_URL` is set, else
    /// a small pool of its own on the primary. A booking's own reads never come from here, so a client
    /// that got its `202` always finds its booking.
    pub reads: PgPool,
    pub catalog: Arc<Catalog>,
    /// Recent answers to `GET /v1/shows`, each kept up to a second.
    pub answers: Answers,
    pub recorder: Recorder,
    /// Publishes new requests, a message per show for those recorded together.
    pub dispatcher: Dispatcher,
    pub publisher: Arc<Publisher>,
    /// The tokens accepted: `ADMIN_TOKEN` and the live operator tokens.
    pub operators: Arc<Operators>,
    /// Whether webhook URLs may point at loopback or private addresses.
    pub allow_private_webhooks: bool,
    /// Cancelled when the process starts draining: `/readyz` answers 503
    /// and event streams end.
    pub draining: CancellationToken,
    /// Where this process has seen its shows' lines start, for every
    /// read of a place in line (polls, streams, the `202`).
    pub lines: Arc<Lines>,
    /// Open event streams and what they watch.
    pub live: Arc<Hub>,
    /// The shows open show streams watch.
    pub show_feed: Arc<ShowFeed>,
    /// Caps on open event streams, per client address and in all.
    pub streams: Arc<StreamLimit>,
    /// The per-client limit on booking submissions; `None` when off.
    pub rate_limit: Option<Arc<Limiter>>,
    /// The longest a request may take before it is answered `503`.
    pub request_timeout: Duration,
}

impl AppState {
    /// The state the api serves with; its background work (the recorder,
    /// the dispatcher) runs on `tasks`.
    pub fn new(config: &Config, db: PgPool, tasks: &Tasks) -> anyhow::Result<Self> {
        let admin_token = config
            .admin_token
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .ok_or_else(|| anyhow::anyhow!("ADMIN_TOKEN must be set for the api"))?;
        // Without replicas, reads still get a pool of their own on the
        // primary: a sale's group commits and polls then never keep a
        // browsing customer waiting for a connection, nor the other way round.
        let reads = match &config.database_read_url {
            Some(url) => shared::db::replica_pool(url.expose_secret(), config.db_pool_size)?,
            None => shared::db::replica_pool(
                config.database_url.expose_secret(),
                (config.db_pool_size / 4).max(2),
            )?,
        };
        Ok(Self {
            reads,
            allow_private_webhooks: config.webhooks.allow_private_networks,
            live: Arc::new(Hub::new(config.sse_keep_alive)),
            streams: Arc::new(StreamLimit::new(
                config.streams_per_client,
                config.max_streams,
                file_limit(),
                config.trusted_proxies.clone(),
            )),
            request_timeout: config.request_timeout,
            rate_limit: config
                .rate_limit
                .map(|limit| Arc::new(Limiter::new(limit, config.trusted_proxies.clone()))),
            ..Self::on(
                db,
                config.amqp_url.expose_secret(),
                Topology::of(config),
                admin_token,
                tasks,
            )
        })
    }

    /// The state from the few settings it needs, for callers without a
    /// whole [`Config`] (in-process tests, which drain nothing); no rate
    /// limit.
    pub fn with(db: PgPool, amqp_url: &str, topology: Topology, admin_token: &str) -> Self {
        Self::on(db, amqp_url, topology, admin_token, &Tasks::default())
    }

    fn on(
        db: PgPool,
        amqp_url: &str,
        topology: Topology,
        admin_token: &str,
        tasks: &Tasks,
    ) -> Self {
        let name = format!("api {}", std::process::id());
        let lines = Arc::new(Lines::default());
        let publisher = Arc::new(Publisher::new(amqp_url, &name, topology));
        Self {
            catalog: Arc::default(),
            answers: Answers::default(),
            recorder: Recorder::start(db.clone(), lines.clone(), tasks),
            lines,
            reads: db.clone(),
            db,
            dispatcher: Dispatcher::start(publisher.clone(), tasks),
            publisher,
            operators: Arc::new(Operators::new(admin_token)),
            allow_private_webhooks: false,
            draining: CancellationToken::new(),
            live: Arc::new(Hub::new(shared::config::DEFAULT_SSE_KEEP_ALIVE)),
            show_feed: Arc::default(),
            streams: Arc::new(StreamLimit::new(
                shared::config::DEFAULT_STREAMS_PER_CLIENT,
                None,
                file_limit(),
                TrustedProxies::default(),
            )),
            rate_limit: None,
            request_timeout: shared::config::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// The process's limit on open file descriptors (its soft limit; `main`
/// raises it to the hard one first).
fn file_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

impl FromRef<AppState> for Gate {
    fn from_ref(state: &AppState) -> Self {
        Gate {
            operators: state.operators.clone(),
            db: state.db.clone(),
        }
    }
}
