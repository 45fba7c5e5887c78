//! Consumes the booking-request shard queues and decides each command in
//! order. One task per shard handles one message at a time and acks it only
//! after its transaction committed, so a crash at any instant leaves the
//! message unacked and RabbitMQ redelivers it (the decision is idempotent).
//!
//! Each shard queue has single active consumer: every worker subscribes to
//! every shard, RabbitMQ delivers a shard to one of them at a time and hands
//! it to another when that worker's connection dies.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use shared::amqp::{self, Publisher};
use shared::messages::BookingCommand;
use shared::topology::{self, Topology};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::decide::{DecideError, Decider, Outcome};
use crate::payment::PaymentGateway;

pub struct Settings {
    pub amqp_url: String,
    pub topology: Topology,
    pub prefetch: u16,
    pub max_attempts: u32,
}

pub struct ShardConsumer<G> {
    settings: Settings,
    decider: Arc<Decider<G>>,
    dead_letters: Arc<Publisher>,
}

/// How a message ended.
enum Verdict {
    Decided(Outcome),
    /// Failed on every bounded attempt: dead-letter it.
    Failed {
        error: String,
        attempts: u32,
    },
    /// Shutdown while a dependency was down: leave it for redelivery.
    Interrupted,
}

impl<G: PaymentGateway> ShardConsumer<G> {
    pub fn new(
        settings: Settings,
        decider: Arc<Decider<G>>,
        dead_letters: Arc<Publisher>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            decider,
            dead_letters,
        })
    }

    /// Consumes until `cancel` fires, reconnecting whenever the broker goes.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let name = format!("worker {} consumer", std::process::id());
        let settings = &self.settings;
        amqp::reconnecting(
            &settings.amqp_url,
            &name,
            &settings.topology,
            &cancel,
            |conn| self.clone().consume_all(conn, cancel.clone()),
        )
        .await;
    }

    /// Subscribes to every shard on `conn` and returns when any subscription
    /// ends (broker gone) or on shutdown, after every shard task finished its
    /// current message.
    async fn consume_all(
        self: Arc<Self>,
        conn: Arc<Connection>,
        cancel: CancellationToken,
    ) -> lapin::Result<()> {
        let stop = cancel.child_token();
        let mut tasks = JoinSet::new();
        for (shard, queue) in self.settings.topology.shard_queues() {
            let channel = conn.create_channel().await?;
            channel
                .basic_qos(self.settings.prefetch, BasicQosOptions::default())
                .await?;
            let tag = format!("worker-{}-shard-{shard:02}", std::process::id());
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let this = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let mut consumer = consumer;
                loop {
                    let delivery = tokio::select! {
                        biased;
                        () = stop.cancelled() => return Ok(()),
                        next = consumer.next() => next,
                    };
                    match delivery {
                        Some(Ok(delivery)) => {
                            if !this.handle(&queue, delivery, &stop).await? {
                                return Ok(());
                            }
                        }
                        Some(Err(err)) => return Err(err),
                        None => return Ok(()),
                    }
                }
            });
        }
        tracing::info!(
            shards = self.settings.topology.shards,
            "subscribed to all shard queues"
        );
        let mut result = Ok(());
        while let Some(joined) = tasks.join_next().await {
            // One shard ending means the connection is in trouble: stop the
            // others after their current message and reconnect.
            stop.cancel();
            if let Ok(Err(err)) = joined {
                result = Err(err);
            }
        }
        if result.is_ok() && !cancel.is_cancelled() {
            result = Err(io_error("a shard subscription ended"));
        }
        result
    }

    /// Decides one delivery and acks it. Returns `false` when the message was
    /// left unacked because of shutdown.
    async fn handle(
        &self,
        queue: &str,
        delivery: Delivery,
        stop: &CancellationToken,
    ) -> lapin::Result<bool> {
        let command = match serde_json::from_slice::<BookingCommand>(&delivery.data) {
            Ok(command) => command,
            Err(err) => {
                metrics::counter!("worker_messages_total", "outcome" => "unparseable").increment(1);
                tracing::error!(error = %err, queue, "unparseable message, dead-lettering");
                self.dead_letter(queue, &delivery, &format!("unparseable: {err}"), 1)
                    .await?;
                delivery.acker.ack(BasicAckOptions::default()).await?;
                return Ok(true);
            }
        };
        let span = tracing::info_span!(
            "command",
            command = command.name(),
            booking_id = %command.booking_id(),
            show_id = %command.show_id(),
        );
        async {
            let started = std::time::Instant::now();
            match self.decide(&command, stop).await {
                Verdict::Decided(outcome) => {
                    let label = match outcome {
                        Outcome::Applied(kind) => kind.as_str(),
                        Outcome::Skipped(why) => {
                            tracing::info!(why, "skipped");
                            "skipped"
                        }
                    };
                    metrics::counter!("worker_messages_total", "outcome" => label).increment(1);
                    metrics::histogram!("worker_decision_seconds").record(started.elapsed().as_secs_f64());
                    tracing::debug!(outcome = label, "decided");
                }
                Verdict::Failed { error, attempts } => {
                    metrics::counter!("worker_messages_total", "outcome" => "dead_lettered").increment(1);
                    tracing::error!(error, attempts, "giving up, dead-lettering");
                    let previous = amqp::previous_deliveries(&delivery);
                    self.dead_letter(queue, &delivery, &error, attempts + previous).await?;
                    if let BookingCommand::Request { booking_id, .. } = command {
                        // The client must still see a final state.
                        if let Err(err) = self.decider.reject_undeliverable(booking_id).await {
                            tracing::error!(error = %err, "could not mark dead-lettered booking rejected");
                        }
                    }
                }
                Verdict::Interrupted => return Ok(false),
            }
            delivery.acker.ack(BasicAckOptions::default()).await?;
            Ok(true)
        }
        .instrument(span)
        .await
    }

    /// Applies a command, retrying with exponential backoff and jitter:
    /// without limit while a dependency is down (the message is fine), up to
    /// `max_attempts` for anything else (conflicts, bugs, bad data).
    async fn decide(&self, command: &BookingCommand, stop: &CancellationToken) -> Verdict {
        let mut delays = shared::retry::delays(Duration::from_millis(20));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let err = match self.decider.apply(command).await {
                Ok(outcome) => return Verdict::Decided(outcome),
                Err(err) => err,
            };
            if matches!(err, DecideError::Conflict(_)) {
                metrics::counter!("worker_version_conflicts_total").increment(1);
            }
            if !err.is_outage() && attempts >= self.settings.max_attempts {
                return Verdict::Failed {
                    error: err.to_string(),
                    attempts,
                };
            }
            let wait = delays.next().unwrap_or(Duration::from_secs(5));
            tracing::warn!(error = %err, attempts, ?wait, "decision failed, retrying");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return Verdict::Interrupted,
            }
        }
    }

    async fn dead_letter(
        &self,
        queue: &str,
        delivery: &Delivery,
        reason: &str,
        attempts: u32,
    ) -> lapin::Result<()> {
        self.dead_letters
            .dead_letter(
                delivery,
                queue,
                topology::REQUESTS_DEAD_QUEUE,
                reason,
                attempts,
            )
            .await
            .map_err(|err| match err {
                amqp::PublishError::Unavailable(e) => e,
                other => io_error(&other.to_string()),
            })
    }
}

fn io_error(what: &str) -> lapin::Error {
    lapin::ErrorKind::IOError(Arc::new(std::io::Error::other(what.to_owned()))).into()
}
