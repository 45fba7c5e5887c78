//! The `worker` binary: configuration, the worker's tasks, shutdown.

use std::sync::Arc;

use shared::amqp::Publisher;
use shared::config::ExposeSecret;
use shared::topology::Topology;
use shared::Config;
use tokio_util::task::TaskTracker;
use worker::{apply, consumer, expiry, outbox, payment, refunds, reminders, replay, requeue};

/// The booking worker. Without a subcommand it runs the worker.
#[derive(clap::Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Publish dead letters again to where they came from, once their cause
    /// is fixed. Idempotent: what is already done is skipped.
    ReplayDeadLetters {
        /// `booking.requests.dead`, `notifier.emails.dead` or `webhooks.events.dead`.
        #[arg(long, default_value = shared::topology::REQUESTS_DEAD_QUEUE)]
        queue: String,
        /// Replay at most this many messages.
        #[arg(long, default_value_t = u32::MAX)]
        limit: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    let metrics = shared::telemetry::init("worker");
    let config = Config::from_env()?;
    if let Some(Command::ReplayDeadLetters { queue, limit }) = cli.command {
        let topology = Topology::of(&config);
        let summary = replay::run(config.amqp_url.expose_secret(), topology, &queue, limit).await?;
        println!(
            "replayed {} message(s) from {queue}; kept {} that cannot be parsed",
            summary.replayed, summary.kept
        );
        return Ok(());
    }
    let shutdown = shared::shutdown::on_signal();
    let Some(db) = shared::db::connect_and_migrate(
        config.database_url.expose_secret(),
        config.db_pool_size,
        shared::db::Plans::PerExecution,
        &shutdown,
    )
    .await?
    else {
        return Ok(());
    };
    let topology = Topology::of(&config);
    let publisher = Arc::new(Publisher::new(
        config.amqp_url.expose_secret(),
        &format!("worker {} publisher", std::process::id()),
        topology,
    ));
    let actor = format!("worker-{}", std::process::id());
    let gateway = payment::TestGateway::new(db.clone(), config.test_gateway);
    let applier = Arc::new(apply::Applier::new(
        db.clone(),
        gateway.clone(),
        config.hold_duration,
        actor,
    ));
    let consumer = consumer::ShardConsumer::new(
        consumer::Settings {
            amqp_url: config.amqp_url.expose_secret().to_owned(),
            database_url: config.database_url.expose_secret().to_owned(),
            topology,
            prefetch: config.prefetch,
            max_attempts: config.max_attempts,
        },
        applier.clone(),
        publisher.clone(),
    );

    shared::ops::spawn_untracked(
        config.metrics_addr,
        metrics,
        db.clone(),
        publisher.clone(),
        &shutdown,
    );
    let tasks = TaskTracker::new();
    tasks.spawn(consumer.run(shutdown.child_token()));
    tasks.spawn({
        let (db, publisher, cancel) = (db.clone(), publisher.clone(), shutdown.child_token());
        async move { outbox::run(db, &publisher, cancel).await }
    });
    tasks.spawn(expiry::run(db.clone(), shutdown.child_token()));
    tasks.spawn(refunds::run(
        db.clone(),
        gateway,
        config.refund_timeout,
        shutdown.child_token(),
    ));
    tasks.spawn(reminders::run(
        db.clone(),
        config.reminder_lead,
        shutdown.child_token(),
    ));
    tasks.spawn({
        let (db, publisher, cancel) = (db.clone(), publisher, shutdown.child_token());
        let older_than = config.requeue_after;
        async move { requeue::run(db, &publisher, older_than, cancel).await }
    });
    tasks.close();
    shared::shutdown::drain(&shutdown, config.shutdown_grace, tasks.wait()).await;
    db.close().await;
    tracing::info!("worker stopped");
    Ok(())
}
