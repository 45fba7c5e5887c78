//! Consumes the booking-request shard queues this worker owns (see
//! [`crate::claims`]) and decides their commands in order. Each owned shard
//! has a task that takes whatever is ready (up to [`MAX_BATCH`] messages),
//! decides each show's run of requests in one transaction, and acks the
//! messages only after that transaction committed. A crash at any instant
//! leaves unacked messages that RabbitMQ redelivers; deciding is idempotent.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use shared::amqp::{self, Publisher};
use shared::messages::BookingCommand;
use shared::topology::{self, Topology};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::claims::Claims;
use crate::decide::{DecideError, Decider, Outcome};
use crate::payment::PaymentGateway;

/// Most messages decided together; bounded by the prefetch as well.
const MAX_BATCH: usize = 500;
/// How often a worker looks at the shard claims (and so the failover time).
const CLAIM_EVERY: Duration = Duration::from_secs(1);

pub struct Settings {
    pub amqp_url: String,
    pub database_url: String,
    pub topology: Topology,
    pub prefetch: u16,
    pub max_attempts: u32,
}

pub struct ShardConsumer<G> {
    settings: Settings,
    decider: Arc<Decider<G>>,
    dead_letters: Arc<Publisher>,
}

/// How a unit of work ended.
enum Verdict<T> {
    Decided(T),
    /// Failed on every bounded attempt.
    Failed {
        error: String,
        attempts: u32,
    },
    /// Shutdown or hand-over while a dependency was down: leave it unacked.
    Interrupted,
}

/// A shard being consumed.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<lapin::Result<()>>,
}

impl Running {
    /// Stops after the batch in hand; its unacked prefetch goes back to the queue.
    async fn stop(self) -> lapin::Result<()> {
        self.stop.cancel();
        self.task.await.unwrap_or(Ok(()))
    }
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
            |conn| self.clone().session(conn, cancel.clone()),
        )
        .await;
    }

    /// One AMQP connection's life: every second, claim or give back shards
    /// and start or stop their consumers accordingly.
    async fn session(
        self: Arc<Self>,
        conn: Arc<Connection>,
        cancel: CancellationToken,
    ) -> lapin::Result<()> {
        let mut claims = Claims::new(&self.settings.database_url, self.settings.topology.shards)
            .map_err(|e| io_error(&format!("bad DATABASE_URL: {e}")))?;
        let mut running: BTreeMap<u16, Running> = BTreeMap::new();
        let mut tick = tokio::time::interval(CLAIM_EVERY);
        let result = loop {
            tokio::select! {
                () = cancel.cancelled() => break Ok(()),
                _ = tick.tick() => {}
            }
            if let Some(err) = reap(&mut running).await {
                break Err(err);
            }
            let owned: BTreeSet<u16> = running.keys().copied().collect();
            match claims.rebalance(&owned).await {
                Ok(plan) => {
                    for shard in plan.stop {
                        if let Some(shard_task) = running.remove(&shard) {
                            let _ = shard_task.stop().await;
                        }
                        claims.release(shard).await;
                    }
                    for shard in plan.start {
                        let stop = cancel.child_token();
                        running.insert(shard, self.clone().spawn_shard(conn.clone(), shard, stop));
                    }
                }
                // Keep consuming what we have (single active consumer still
                // guards order); claims are retried on the next pass.
                Err(err) => tracing::warn!(error = %err, "shard claims unavailable"),
            }
            metrics::gauge!("worker_shards_owned").set(running.len() as f64);
        };
        for (_, shard_task) in running {
            let _ = shard_task.stop().await;
        }
        metrics::gauge!("worker_shards_owned").set(0.0);
        result
    }

    /// `stop` is a child of the session's token: shutdown stops every shard
    /// at once, a hand-over only this one.
    fn spawn_shard(
        self: Arc<Self>,
        conn: Arc<Connection>,
        shard: u16,
        stop: CancellationToken,
    ) -> Running {
        let task = tokio::spawn(self.consume_shard(conn, shard, stop.clone()));
        Running { stop, task }
    }

    async fn consume_shard(
        self: Arc<Self>,
        conn: Arc<Connection>,
        shard: u16,
        stop: CancellationToken,
    ) -> lapin::Result<()> {
        let queue = Topology::shard_queue(shard);
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(self.settings.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("worker-{}-shard-{shard:02}", std::process::id());
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(shard, "consuming shard");
        let result = loop {
            let first = tokio::select! {
                biased;
                () = stop.cancelled() => break Ok(()),
                next = consumer.next() => next,
            };
            let mut batch = match first {
                Some(Ok(delivery)) => vec![delivery],
                Some(Err(err)) => break Err(err),
                None => break Err(io_error("the broker ended the subscription")),
            };
            // Take what is already here without waiting for more.
            while batch.len() < MAX_BATCH {
                match consumer.next().now_or_never() {
                    Some(Some(Ok(delivery))) => batch.push(delivery),
                    _ => break,
                }
            }
            match self.handle_batch(&queue, batch, &stop).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(err) => break Err(err),
            }
        };
        let _ = channel.close(200, "shard released".into()).await;
        tracing::info!(shard, "stopped consuming shard");
        result
    }

    /// Decides a batch in order per show. Returns `false` if interrupted.
    async fn handle_batch(
        &self,
        queue: &str,
        batch: Vec<Delivery>,
        stop: &CancellationToken,
    ) -> lapin::Result<bool> {
        let mut per_show: Vec<(Uuid, Vec<(Delivery, BookingCommand)>)> = Vec::new();
        for delivery in batch {
            match serde_json::from_slice::<BookingCommand>(&delivery.data) {
                Ok(command) => {
                    let show = command.show_id();
                    match per_show.iter_mut().find(|(s, _)| *s == show) {
                        Some((_, items)) => items.push((delivery, command)),
                        None => per_show.push((show, vec![(delivery, command)])),
                    }
                }
                Err(err) => {
                    metrics::counter!("worker_messages_total", "outcome" => "unparseable")
                        .increment(1);
                    tracing::error!(error = %err, queue, "unparseable message, dead-lettering");
                    self.dead_letter(queue, &delivery, &format!("unparseable: {err}"), 1)
                        .await?;
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                }
            }
        }
        for (show, items) in &per_show {
            let mut rest = items.as_slice();
            while !rest.is_empty() {
                let run = rest
                    .iter()
                    .take_while(|(_, c)| matches!(c, BookingCommand::Request { .. }))
                    .count();
                let done = if run > 0 {
                    let (requests, tail) = rest.split_at(run);
                    rest = tail;
                    self.decide_requests(queue, *show, requests, stop).await?
                } else {
                    let (one, tail) = rest.split_first().expect("not empty");
                    rest = tail;
                    self.decide_one(queue, one, stop).await?
                };
                if !done {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// A run of consecutive requests for one show: one transaction. If it
    /// fails for good, each request is tried alone so that one poison
    /// message does not take the others down with it.
    async fn decide_requests(
        &self,
        queue: &str,
        show: Uuid,
        requests: &[(Delivery, BookingCommand)],
        stop: &CancellationToken,
    ) -> lapin::Result<bool> {
        let ids: Vec<Uuid> = requests.iter().map(|(_, c)| c.booking_id()).collect();
        let span = tracing::info_span!("decide", show_id = %show, requests = ids.len());
        let verdict = self
            .retrying(stop, || self.decider.hold_batch(show, &ids))
            .instrument(span)
            .await;
        match verdict {
            Verdict::Decided(outcomes) => {
                for ((delivery, command), outcome) in requests.iter().zip(outcomes) {
                    record(command, outcome);
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                }
                Ok(true)
            }
            Verdict::Failed { .. } if requests.len() > 1 => {
                for one in requests {
                    if !self.decide_one(queue, one, stop).await? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Verdict::Failed { error, attempts } => {
                self.give_up(queue, &requests[0], &error, attempts).await?;
                Ok(true)
            }
            Verdict::Interrupted => Ok(false),
        }
    }

    async fn decide_one(
        &self,
        queue: &str,
        item: &(Delivery, BookingCommand),
        stop: &CancellationToken,
    ) -> lapin::Result<bool> {
        let (delivery, command) = item;
        let span = tracing::info_span!(
            "command",
            command = command.name(),
            booking_id = %command.booking_id(),
            show_id = %command.show_id(),
        );
        match self
            .retrying(stop, || self.decider.apply(command))
            .instrument(span)
            .await
        {
            Verdict::Decided(outcome) => {
                record(command, outcome);
                delivery.acker.ack(BasicAckOptions::default()).await?;
                Ok(true)
            }
            Verdict::Failed { error, attempts } => {
                self.give_up(queue, item, &error, attempts).await?;
                Ok(true)
            }
            Verdict::Interrupted => Ok(false),
        }
    }

    /// Dead-letters a message that failed every attempt, then acks it.
    async fn give_up(
        &self,
        queue: &str,
        (delivery, command): &(Delivery, BookingCommand),
        error: &str,
        attempts: u32,
    ) -> lapin::Result<()> {
        metrics::counter!("worker_messages_total", "outcome" => "dead_lettered").increment(1);
        tracing::error!(booking_id = %command.booking_id(), error, attempts, "giving up, dead-lettering");
        let attempts = attempts + amqp::previous_deliveries(delivery);
        self.dead_letter(queue, delivery, error, attempts).await?;
        if let Err(err) = self.decider.mark_dead_lettered(command.booking_id()).await {
            tracing::error!(error = %err, "could not mark the booking as dead-lettered");
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Runs `op` with exponential backoff and jitter: without limit while a
    /// dependency is down (the message is fine and must not be dead-lettered
    /// for it), up to `max_attempts` for anything else.
    async fn retrying<T, F, Fut>(&self, stop: &CancellationToken, mut op: F) -> Verdict<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DecideError>>,
    {
        let mut delays = shared::retry::delays(Duration::from_millis(20));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let err = match op().await {
                Ok(value) => return Verdict::Decided(value),
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

/// Removes shard tasks that ended by themselves; any such end means the
/// channel or connection failed.
async fn reap(running: &mut BTreeMap<u16, Running>) -> Option<lapin::Error> {
    let ended: Vec<u16> = running
        .iter()
        .filter(|(_, r)| r.task.is_finished())
        .map(|(s, _)| *s)
        .collect();
    let mut failure = None;
    for shard in ended {
        let shard_task = running.remove(&shard).expect("listed");
        let err = match shard_task.task.await {
            Ok(Err(err)) => err,
            Ok(Ok(())) => io_error("a shard consumer stopped"),
            Err(join) => io_error(&format!("a shard consumer panicked: {join}")),
        };
        tracing::warn!(shard, error = %err, "shard consumer ended");
        failure.get_or_insert(err);
    }
    failure
}

fn record(command: &BookingCommand, outcome: Outcome) {
    let label = match outcome {
        Outcome::Applied(kind) => kind.as_str(),
        Outcome::Skipped(why) => {
            tracing::info!(booking_id = %command.booking_id(), why, "skipped");
            "skipped"
        }
    };
    metrics::counter!("worker_messages_total", "outcome" => label).increment(1);
}

fn io_error(what: &str) -> lapin::Error {
    lapin::ErrorKind::IOError(Arc::new(std::io::Error::other(what.to_owned()))).into()
}
