//! The notifier: booking events in, emails and signed webhooks out.

mod calendar;
mod consumer;
mod email;
mod mailer;
mod qr;
mod webhooks;

use std::sync::Arc;

use shared::config::ExposeSecret;
use shared::db::Plans;
use shared::service::Service;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::Notify;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::service::run("notifier", Plans::Default, work).await
}

async fn work(service: Service) -> anyhow::Result<()> {
    let (config, db, tasks) = (&service.config, &service.db, &service.tasks);
    let topology = service.topology();
    let publisher = service.publisher();
    let notifier = Arc::new(consumer::Notifier {
        db: db.clone(),
        mailer: mailer::Mailer::new(
            config.smtp_url.expose_secret(),
            &config.mail_from,
            config.email_concurrency,
        )?,
        templates: email::Templates::default(),
        dead_letters: publisher.clone(),
        amqp_url: config.amqp_url.expose_secret().to_owned(),
        topology,
        sending: consumer::Sending::new(config.email_concurrency),
        max_attempts: config.max_attempts,
    });
    let wake = Arc::new(Notify::new());
    let fanout = Arc::new(webhooks::fanout::Fanout {
        db: db.clone(),
        lines: shared::store::bookings::Lines::default(),
        dead_letters: publisher.clone(),
        amqp_url: config.amqp_url.expose_secret().to_owned(),
        topology,
        prefetch: 32,
        wake: wake.clone(),
        pace: webhooks::pace::Pace::new(&config.webhooks),
    });
    let sweeper = Arc::new(webhooks::delivery::Sweeper::new(
        bookkeeping(db, config.db_pool_size),
        config.webhooks,
        publisher.clone(),
        wake,
    )?);

    service.serve_ops(publisher);
    tasks.spawn(|cancel| notifier.run(cancel));
    tasks.spawn(|cancel| fanout.run(cancel));
    tasks.spawn(|cancel| sweeper.run(cancel));
    Ok(())
}

/// A pool for the webhook sweeper's bookkeeping (leases, recorded
/// attempts), whose commits do not wait for the WAL flush: a database crash
/// that loses its last moments only makes deliveries happen again, which
/// receivers dedupe by `webhook-id`, and a sale's commits do not queue
/// behind a flush per delivery batch. The fan-out keeps synchronous
/// commits: it acks events once their deliveries are written.
fn bookkeeping(db: &PgPool, max_connections: u32) -> PgPool {
    let options = (*db.connect_options())
        .clone()
        .options([("synchronous_commit", "off")]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect_lazy_with(options)
}
