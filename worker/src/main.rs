//! The booking worker: decides booking commands per show, relays the outbox,
//! expires holds and recovers requests an API crash left unpublished.

mod consumer;
mod decide;
mod expiry;
mod outbox;
mod payment;
mod requeue;

use std::sync::Arc;

use shared::amqp::Publisher;
use shared::topology::Topology;
use shared::Config;
use tokio_util::task::TaskTracker;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let metrics = shared::telemetry::init("worker");
    let config = Config::from_env()?;
    let cancel = shared::shutdown::on_signal();
    let Some(db) =
        shared::db::connect_and_migrate(&config.database_url, config.db_pool_size, &cancel).await?
    else {
        return Ok(());
    };
    let topology = Topology {
        shards: config.shards,
        delivery_limit: config.delivery_limit,
    };
    let publisher = Arc::new(Publisher::new(
        &config.amqp_url,
        &format!("worker {} publisher", std::process::id()),
        topology,
    ));
    let decider = Arc::new(decide::Decider::new(
        db.clone(),
        payment::TestGateway,
        config.hold_duration,
    ));
    let consumer = consumer::ShardConsumer::new(
        consumer::Settings {
            amqp_url: config.amqp_url.clone(),
            topology,
            prefetch: config.prefetch,
            max_attempts: config.max_attempts,
        },
        decider.clone(),
        publisher.clone(),
    );

    let tasks = TaskTracker::new();
    tasks.spawn(consumer.run(cancel.clone()));
    tasks.spawn({
        let (db, publisher, cancel) = (db.clone(), publisher.clone(), cancel.clone());
        async move { outbox::run(db, &publisher, cancel).await }
    });
    tasks.spawn(expiry::run(db.clone(), decider, cancel.clone()));
    tasks.spawn({
        let (db, publisher, cancel) = (db.clone(), publisher.clone(), cancel.clone());
        let older_than = config.requeue_after;
        async move { requeue::run(db, &publisher, older_than, cancel).await }
    });
    let ready = shared::ops::db_and_broker_ready(db.clone(), publisher.clone());
    tasks.spawn(async move {
        if let Err(err) = shared::ops::serve(config.metrics_addr, metrics, ready, cancel).await {
            tracing::error!(error = %err, "ops server failed");
        }
    });
    tasks.close();
    tasks.wait().await;
    db.close().await;
    tracing::info!("worker stopped");
    Ok(())
}
