//! The `worker` binary: configuration, the worker's tasks, shutdown.

use std::sync::Arc;

use shared::config::ExposeSecret;
use shared::db::Plans;
use shared::service::{Service, Starting};
use shared::topology::Topology;
use worker::backlog::Backlog;
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
    let starting = Starting::new("worker")?;
    if let Some(Command::ReplayDeadLetters { queue, limit }) = cli.command {
        let config = &starting.config;
        let topology = Topology::of(config);
        let summary = replay::run(config.amqp_url.expose_secret(), topology, &queue, limit).await?;
        println!(
            "replayed {} message(s) from {queue}; kept {} that cannot be parsed",
            summary.replayed, summary.kept
        );
        return Ok(());
    }
    starting.run(Plans::PerExecution, work).await
}

async fn work(service: Service) -> anyhow::Result<()> {
    let (config, db, tasks) = (&service.config, &service.db, &service.tasks);
    let publisher = service.publisher();
    let actor = format!("worker-{}", std::process::id());
    let gateway = payment::TestGateway::new(db.clone(), config.test_gateway);
    let applier = Arc::new(apply::Applier::new(
        db.clone(),
        gateway.clone(),
        config.hold_duration,
        actor,
    ));
    let backlog = Arc::new(Backlog::default());
    let consumer = consumer::ShardConsumer::new(
        consumer::Settings {
            amqp_url: config.amqp_url.expose_secret().to_owned(),
            database_url: config.database_url.expose_secret().to_owned(),
            topology: service.topology(),
            prefetch: config.prefetch,
            max_attempts: config.max_attempts,
        },
        applier.clone(),
        publisher.clone(),
        backlog.clone(),
    );

    service.serve_ops(publisher.clone());
    tasks.spawn(|cancel| consumer.run(cancel));
    tasks.spawn({
        let db = db.clone();
        move |cancel| async move { backlog.run(db, cancel).await }
    });
    tasks.spawn({
        let (db, publisher) = (db.clone(), publisher.clone());
        move |cancel| async move { outbox::run(db, &publisher, cancel).await }
    });
    tasks.spawn(|cancel| expiry::run(db.clone(), cancel));
    tasks.spawn(|cancel| refunds::run(db.clone(), gateway, config.refund_timeout, cancel));
    tasks.spawn(|cancel| reminders::run(db.clone(), config.reminder_lead, cancel));
    tasks.spawn({
        let (db, older_than) = (db.clone(), config.requeue_after);
        move |cancel| async move { requeue::run(db, &publisher, older_than, cancel).await }
    });
    Ok(())
}
