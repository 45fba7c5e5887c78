//! The sale comes first. Webhooks compete with the sale for the same
//! PostgreSQL and CPU: at full speed a delivery costs about as much as
//! deciding a booking, so a partner subscribed to every event would slow a
//! flash sale by a third. While booking requests wait to be decided (at
//! least `WEBHOOK_SALE_BACKLOG` of them), the fan-out therefore takes
//! events at a trickle, `WEBHOOK_SALE_RATE` per second per notifier; the
//! rest wait, durable, in `webhooks.events`, and are delivered at full speed
//! once the backlog is gone. Nothing is lost or reordered, only late: a
//! partner hears of a sale's bookings when the sale has been decided.
//! Emails and event streams are not paced.
//!
//! The requests are counted in the database, not in the shard queues,
//! whose messages carry a batch of requests each.

use std::time::Duration;

use std::convert::Infallible;

use shared::config::WebhookSettings;
use shared::store::bookings::sweeps;
use sqlx::PgPool;
use tokio::sync::watch;

/// How often the backlog is read.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Whether booking requests are waiting, as last read, and the pace the
/// fan-out keeps while they are.
pub struct Pace {
    sale: watch::Sender<bool>,
    backlog: u32,
    rate: f64,
}

impl Pace {
    pub fn new(settings: &WebhookSettings) -> Self {
        Self {
            sale: watch::Sender::new(false),
            backlog: settings.sale_backlog,
            rate: settings.sale_rate as f64,
        }
    }

    /// Reads the requests waiting every [`LOOK_EVERY`], for good. A
    /// backlog of 0 switches pacing off; a failed read keeps the last.
    pub async fn watch(&self, db: &PgPool) -> Infallible {
        if self.backlog == 0 {
            return std::future::pending().await;
        }
        loop {
            match sweeps::in_line_up_to(db, self.backlog.into()).await {
                Ok(waiting) => self.observe(u32::try_from(waiting).unwrap_or(u32::MAX)),
                Err(err) => tracing::debug!(error = %err, "could not count the requests waiting"),
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    /// Takes a reading of the backlog: a sale is on while
    /// at least `WEBHOOK_SALE_BACKLOG` requests wait.
    fn observe(&self, waiting: u32) {
        let sale = waiting >= self.backlog;
        self.sale.send_if_modified(|was| {
            if *was == sale {
                return false;
            }
            if sale {
                tracing::info!(
                    waiting,
                    "booking requests are waiting: webhooks slow down for the sale"
                );
            } else {
                tracing::info!(
                    waiting,
                    "the sale's backlog is gone: webhooks at full speed"
                );
            }
            *was = sale;
            true
        });
    }

    /// Waits before `events` more events are fanned out, for as long as
    /// they take at the sale's pace; at once when no sale is on, and cut
    /// short when the sale's backlog is gone.
    pub async fn admit(&self, events: usize) {
        let mut sale = self.sale.subscribe();
        if !*sale.borrow_and_update() || events == 0 {
            return;
        }
        let wait = Duration::from_secs_f64(events as f64 / self.rate);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = sale.wait_for(|on| !on) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    fn pace(backlog: u32, rate: u64) -> Pace {
        Pace::new(&WebhookSettings {
            allow_private_networks: false,
            timeout: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            retry_for: Duration::from_secs(3900),
            sale_backlog: backlog,
            sale_rate: rate,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_backlog_events_go_at_once() {
        let pace = pace(1000, 10);
        pace.observe(999);
        let start = Instant::now();
        pace.admit(256).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn during_a_sale_a_batch_waits_as_long_as_the_rate_asks() {
        let pace = pace(1000, 10);
        pace.observe(1000);
        let start = Instant::now();
        pace.admit(25).await;
        assert_eq!(start.elapsed(), Duration::from_millis(2500));
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_the_backlog_lets_a_waiting_batch_go() {
        let pace = std::sync::Arc::new(pace(1000, 1));
        pace.observe(5000);
        let start = Instant::now();
        let waiting = tokio::spawn({
            let pace = pace.clone();
            async move { pace.admit(256).await }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        pace.observe(10);
        waiting.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
