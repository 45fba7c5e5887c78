//! Consumes the booking-request shard queues this worker owns (see
//! [`crate::claims`]) and decides their commands in order. Each owned shard
//! has a task that takes whatever is ready (up to [`MAX_BATCH`] messages,
//! each one command or a batch of requests), decides each show's run of
//! commands in order, all shows of the batch in one transaction with what
//! the other shards have ready ([`Combiner`]; if that fails, each show in
//! its own), and acks the messages only after the transaction committed.
//! A crash at any instant leaves unacked messages that RabbitMQ
//! redelivers; deciding is idempotent.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lapin::message::Delivery;
use lapin::Connection;
use shared::amqp::consume::{self, Queue, Settle, Settler};
use shared::amqp::{self, Part, Publisher};
use shared::messages::{BookingCommand, ShardMessage};
use shared::retry::{Failure, Retry, Tried};
use shared::topology::{self, Topology};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::apply::{Applier, Outcome};
use crate::backlog::Backlog;
use crate::claims::Claims;
use crate::combiner::{Combiner, MAX_COMMANDS};
use crate::error::DecideError;
use crate::payment::PaymentGateway;

/// Most messages taken together; bounded by the prefetch as well.
const MAX_BATCH: usize = 500;
/// How long stopping a shard (finishing its batch, closing its channel) may take.
const STOP_WITHIN: Duration = Duration::from_secs(10);
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
    applier: Arc<Applier<G>>,
    combiner: Combiner,
    dead_letters: Arc<Publisher>,
    backlog: Arc<Backlog>,
}

/// Why consuming stopped (the session reconnects after any of these).
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Consume(#[from] consume::ConsumeError),
    #[error("shard claims: {0}")]
    Claims(#[from] sqlx::Error),
    #[error("the connection to RabbitMQ was lost")]
    ConnectionLost,
    #[error("a shard consumer stopped by itself")]
    ShardStopped,
    #[error("a shard consumer panicked: {0}")]
    ShardPanicked(String),
}

/// How trying to decide a run of commands ended. `Interrupted`: shutdown
/// or hand-over while a dependency was down; what is left of the batch
/// stays unacked and is redelivered.
type Decided = Tried<Vec<Outcome>, DecideError>;

/// A shard being consumed.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<(), ConsumeError>>,
}

impl Running {
    /// Stops after the batch in hand; its unacked prefetch goes back to the queue.
    /// A shard whose broker went away can hang in lapin (seen after a
    /// broker restart): after [`STOP_WITHIN`] it is aborted, so the session
    /// still reconnects and gives its claims back.
    async fn stop(mut self) -> Result<(), ConsumeError> {
        self.stop.cancel();
        match tokio::time::timeout(STOP_WITHIN, &mut self.task).await {
            Ok(joined) => joined.unwrap_or(Ok(())),
            Err(_) => {
                self.task.abort();
                tracing::warn!("a shard consumer did not stop in time, aborted it");
                Ok(())
            }
        }
    }
}

impl<G: PaymentGateway> ShardConsumer<G> {
    pub fn new(
        settings: Settings,
        applier: Arc<Applier<G>>,
        dead_letters: Arc<Publisher>,
        backlog: Arc<Backlog>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            combiner: Combiner::start(applier.clone()),
            applier,
            dead_letters,
            backlog,
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
    ) -> Result<(), ConsumeError> {
        let mut claims = Claims::new(&self.settings.database_url, self.settings.topology.shards)?;
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
            if !conn.status().connected() {
                break Err(ConsumeError::ConnectionLost);
            }
            let owned: BTreeSet<u16> = running.keys().copied().collect();
            match claims.rebalance(&owned).await {
                Ok(plan) => {
                    for shard in plan.stop {
                        if let Some(shard_task) = running.remove(&shard) {
                            let _ = shard_task.stop().await;
                        }
                        self.backlog.forget(shard);
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
        // Every shard's token is a child of `cancel`, so on shutdown all of
        // them stop taking batches at once; this only waits for them. A lost
        // connection leaves them nothing to finish: the broker has put their
        // unacked messages back already, and waiting on a dead channel can
        // hang in lapin, which would hold the failover up for `STOP_WITHIN`.
        let lost = !conn.status().connected();
        for shard in running.keys() {
            self.backlog.forget(*shard);
        }
        join_all(running.into_values().map(|shard_task| async move {
            if lost {
                // Gone before the claims are given back with the session.
                shard_task.task.abort();
                let _ = shard_task.task.await;
            } else {
                let _ = shard_task.stop().await;
            }
        }))
        .await;
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
    ) -> Result<(), ConsumeError> {
        let name = Topology::shard_queue(shard);
        let tag = format!("worker-{}-shard-{shard:02}", std::process::id());
        let queue = Queue {
            name: &name,
            prefetch: self.settings.prefetch,
            tag: &tag,
            no_ack: false,
        };
        let settler = Settler {
            dead_letters: &self.dead_letters,
            queue: &name,
            dead_queue: topology::REQUESTS_DEAD_QUEUE,
        };
        tracing::info!(shard, "consuming shard");
        let result = consume::batches(&conn, queue, MAX_BATCH, &stop, |batch| {
            self.handle_batch(&settler, shard, batch, &stop)
        })
        .await;
        tracing::info!(shard, "stopped consuming shard");
        result
    }

    /// Decides a batch: each show's commands, in order, as one run, at
    /// most [`MAX_COMMANDS`] commands to a transaction.
    async fn handle_batch(
        &self,
        settler: &Settler<'_>,
        shard: u16,
        batch: Vec<Delivery>,
        stop: &CancellationToken,
    ) -> Result<ControlFlow<()>, ConsumeError> {
        let mut chunk: Vec<Item> = Vec::new();
        let mut commands = 0;
        for delivery in batch {
            let message = match serde_json::from_slice::<ShardMessage>(&delivery.data) {
                Ok(message) => message,
                Err(err) => {
                    metrics::counter!("worker_messages_total", "outcome" => "unparseable")
                        .increment(1);
                    tracing::error!(error = %err, queue = settler.queue, "unparseable message, dead-lettering");
                    let settle = Settle::DeadLetter {
                        reason: format!("unparseable: {err}"),
                        attempts: 1,
                    };
                    settler.settle(&delivery, settle).await?;
                    continue;
                }
            };
            let item = Item {
                delivery,
                batched: message.is_batch(),
                commands: message.into_commands(),
            };
            if item.commands.is_empty() {
                settler.ack(&item.delivery).await?;
                continue;
            }
            for command in &item.commands {
                self.backlog.seen(shard, command.show_id());
            }
            if commands + item.commands.len() > MAX_COMMANDS && !chunk.is_empty() {
                if self
                    .handle_chunk(settler, std::mem::take(&mut chunk), stop)
                    .await?
                    .is_break()
                {
                    return Ok(ControlFlow::Break(()));
                }
                commands = 0;
            }
            commands += item.commands.len();
            chunk.push(item);
        }
        if chunk.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        self.handle_chunk(settler, chunk, stop).await
    }

    /// Decides the commands of a chunk's messages: every show's run in one
    /// transaction, with other shards' (see [`Combiner`]), or each show on
    /// its own if that fails. A message (which may carry several shows) is
    /// acked once all its commands are settled.
    async fn handle_chunk(
        &self,
        settler: &Settler<'_>,
        chunk: Vec<Item>,
        stop: &CancellationToken,
    ) -> Result<ControlFlow<()>, ConsumeError> {
        let mut settling = Settling::new(settler, &chunk);
        let runs = runs_of(&chunk);
        let together = runs
            .iter()
            .map(|(show, run)| (*show, commands_of(run)))
            .collect();
        if let Some(outcomes) = self.combiner.decide(together).await {
            for ((_, run), outcomes) in runs.iter().zip(outcomes) {
                for ((item, command), outcome) in run.iter().zip(outcomes) {
                    record(command, outcome);
                    settling.settled(*item).await?;
                }
            }
            return Ok(ControlFlow::Continue(()));
        }
        for (show, run) in &runs {
            if self
                .decide_run(&mut settling, *show, run, stop)
                .await?
                .is_break()
            {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// A run of one show's commands: one transaction. If it fails for good,
    /// each command is tried alone so that one poison request does not
    /// take the others down with it, not even those of its own message.
    async fn decide_run(
        &self,
        settling: &mut Settling<'_, '_>,
        show: Uuid,
        run: &Run,
        stop: &CancellationToken,
    ) -> Result<ControlFlow<()>, ConsumeError> {
        let commands = commands_of(run);
        match self.try_decide(show, &commands, stop).await {
            Tried::Done(outcomes) => {
                for ((item, command), outcome) in run.iter().zip(outcomes) {
                    record(command, outcome);
                    settling.settled(*item).await?;
                }
            }
            Tried::Interrupted => return Ok(ControlFlow::Break(())),
            Tried::GaveUp { error, attempts } if run.len() == 1 => {
                let (item, command) = &run[0];
                self.give_up(settling, *item, command, &error.to_string(), attempts)
                    .await?;
            }
            Tried::GaveUp { .. } => {
                for (item, command) in run {
                    match self
                        .try_decide(show, std::slice::from_ref(command), stop)
                        .await
                    {
                        Tried::Done(outcomes) => {
                            record(command, outcomes[0]);
                            settling.settled(*item).await?;
                        }
                        Tried::GaveUp { error, attempts } => {
                            self.give_up(settling, *item, command, &error.to_string(), attempts)
                                .await?;
                        }
                        // The message's decided commands are skipped
                        // when it comes again.
                        Tried::Interrupted => return Ok(ControlFlow::Break(())),
                    }
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Decides with exponential backoff and jitter: without limit while a
    /// dependency is down (the message is fine and must not be
    /// dead-lettered for it), up to `max_attempts` for anything else.
    async fn try_decide(
        &self,
        show: Uuid,
        commands: &[BookingCommand],
        stop: &CancellationToken,
    ) -> Decided {
        let span = match commands {
            [one] => tracing::info_span!(
                "decide",
                show_id = %show,
                command = %one.kind(),
                booking_id = %one.booking_id(),
            ),
            many => tracing::info_span!("decide", show_id = %show, commands = many.len()),
        };
        let retry = Retry {
            what: "decision",
            first: Duration::from_millis(20),
            max_attempts: self.settings.max_attempts,
            cancel: stop,
        };
        let failure = |err: &DecideError| {
            if matches!(err, DecideError::Conflict(_)) {
                metrics::counter!("worker_version_conflicts_total").increment(1);
            }
            match err.is_outage() {
                true => Failure::Outage,
                false => Failure::Counted,
            }
        };
        retry
            .run(|| self.applier.apply(show, commands), failure)
            .instrument(span)
            .await
    }

    /// Dead-letters a command that failed every attempt (on its own if it
    /// came in a batch: one booking per dead letter, as an operator reads
    /// and replays them), marks its booking and counts it settled.
    async fn give_up(
        &self,
        settling: &mut Settling<'_, '_>,
        item: usize,
        command: &BookingCommand,
        error: &str,
        attempts: u32,
    ) -> Result<(), ConsumeError> {
        metrics::counter!("worker_messages_total", "outcome" => "dead_lettered").increment(1);
        tracing::error!(booking_id = %command.booking_id(), error, attempts, "giving up, dead-lettering");
        let carrier = &settling.items[item];
        let part = carrier.batched.then(|| Part {
            booking_id: command.booking_id(),
            payload: serde_json::to_vec(command).expect("commands always serialize"),
        });
        settling
            .settler
            .dead_letter(&carrier.delivery, part.as_ref(), error, attempts)
            .await
            .map_err(consume::ConsumeError::from)?;
        if let Err(err) = self.applier.mark_dead_lettered(command.booking_id()).await {
            tracing::error!(error = %err, "could not mark the booking as dead-lettered");
        }
        settling.settled(item).await
    }
}

/// A shard queue's message and the commands it carries: one, or the
/// requests of a batch (of one show or several).
struct Item {
    delivery: Delivery,
    /// Whether it was a batch (of however many).
    batched: bool,
    commands: Vec<BookingCommand>,
}

/// One show's commands of a chunk, in order, each with the index of the
/// message that carried it.
type Run = Vec<(usize, BookingCommand)>;

/// The chunk's commands grouped into runs per show, shows in the order
/// they first come.
fn runs_of(chunk: &[Item]) -> Vec<(Uuid, Run)> {
    let mut runs: Vec<(Uuid, Run)> = Vec::new();
    for (index, item) in chunk.iter().enumerate() {
        for command in &item.commands {
            let show = command.show_id();
            let entry = (index, command.clone());
            match runs.iter_mut().find(|(s, _)| *s == show) {
                Some((_, run)) => run.push(entry),
                None => runs.push((show, vec![entry])),
            }
        }
    }
    runs
}

/// The commands of `run`, in order.
fn commands_of(run: &Run) -> Vec<BookingCommand> {
    run.iter().map(|(_, command)| command.clone()).collect()
}

/// Acks each message of a chunk as soon as all its commands are settled
/// (decided or dead-lettered), not before: a message cut off by a stop
/// comes again, and its decided commands are skipped then.
struct Settling<'s, 'c> {
    settler: &'s Settler<'s>,
    items: &'c [Item],
    unsettled: Vec<usize>,
}

impl<'s, 'c> Settling<'s, 'c> {
    fn new(settler: &'s Settler<'s>, items: &'c [Item]) -> Self {
        let unsettled = items.iter().map(|item| item.commands.len()).collect();
        Self {
            settler,
            items,
            unsettled,
        }
    }

    /// One command of message `item` is settled.
    async fn settled(&mut self, item: usize) -> Result<(), ConsumeError> {
        self.unsettled[item] -= 1;
        if self.unsettled[item] == 0 {
            self.settler.ack(&self.items[item].delivery).await?;
        }
        Ok(())
    }
}

/// Removes shard tasks that ended by themselves; any such end means the
/// channel or connection failed.
async fn reap(running: &mut BTreeMap<u16, Running>) -> Option<ConsumeError> {
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
            Ok(Ok(())) => ConsumeError::ShardStopped,
            Err(join) => ConsumeError::ShardPanicked(join.to_string()),
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
            tracing::info!(booking_id = %command.booking_id(), %why, "skipped");
            "skipped"
        }
    };
    metrics::counter!("worker_messages_total", "outcome" => label).increment(1);
}
