//! Consuming a queue, the same way in every service: on a channel of its
//! own (inside [`super::reconnecting`], which makes a new connection when
//! this one fails), manual acks, at most `prefetch` messages unacked. A
//! handler says what became of each message ([`Settle`]) and
//! [`Settler::settle`] acks it, dead-letters it or leaves it for
//! redelivery, only after the handler's work was taken over downstream
//! (committed, sent); or, for a consumer that needs no acks, takes them
//! as they come. Two ways to take messages: [`batches`] (what is
//! ready, up to N, handled together) and [`concurrently`] (each on its
//! own, a bounded number at once).

use std::future::Future;
use std::ops::ControlFlow;

use futures::{FutureExt, StreamExt, TryStreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;

use super::{close_channel, previous_deliveries, Part, PublishError, Publisher};

/// What to consume.
pub struct Queue<'a> {
    pub name: &'a str,
    /// Unacknowledged messages in hand at most.
    pub prefetch: u16,
    /// The consumer's tag, shown in the management UI.
    pub tag: &'a str,
    /// No acks: the broker forgets a message once sent. Only for a
    /// consumer that loses nothing by a lost message (its state is read
    /// from the database anyway); `prefetch` does not apply.
    pub no_ack: bool,
}

/// Why consuming stopped; the subscription is then made again on a new
/// connection.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("dead-lettering a message failed: {0}")]
    DeadLetter(#[from] PublishError),
    #[error("the broker ended the subscription")]
    SubscriptionEnded,
}

/// What becomes of a message its handler is done with.
#[derive(Debug)]
pub enum Settle {
    /// Handled (or nothing to do): acked.
    Ack,
    /// Left unacked, so RabbitMQ delivers it again: shutdown came while a
    /// dependency was waited for.
    Later,
    /// It can never be handled: moved to the dead-letter queue, then acked.
    DeadLetter {
        reason: String,
        /// Attempts this process made at it.
        attempts: u32,
    },
}

/// Settles the messages of one queue, dead-lettering to another.
pub struct Settler<'a> {
    pub dead_letters: &'a Publisher,
    pub queue: &'a str,
    pub dead_queue: &'a str,
}

impl Settler<'_> {
    /// Acks `delivery`, dead-letters then acks it, or leaves it unacked.
    pub async fn settle(&self, delivery: &Delivery, settle: Settle) -> Result<(), ConsumeError> {
        match settle {
            Settle::Ack => {}
            Settle::Later => return Ok(()),
            Settle::DeadLetter { reason, attempts } => {
                self.dead_letter(delivery, None, &reason, attempts).await?;
            }
        }
        self.ack(delivery).await
    }

    /// Moves a copy of `delivery` (or only its `part`) to the dead-letter
    /// queue with why and after how many attempts (this process's plus the
    /// deliveries before), leaving the ack to the caller: for a handler
    /// that has more to do in between.
    pub async fn dead_letter(
        &self,
        delivery: &Delivery,
        part: Option<&Part>,
        reason: &str,
        attempts: u32,
    ) -> Result<(), PublishError> {
        let attempts = attempts + previous_deliveries(delivery);
        self.dead_letters
            .dead_letter(
                delivery,
                part,
                self.queue,
                self.dead_queue,
                reason,
                attempts,
            )
            .await
    }

    pub async fn ack(&self, delivery: &Delivery) -> Result<(), ConsumeError> {
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }
}

/// Takes messages from `queue` a batch at a time until `cancel` fires or
/// `handle` breaks: whatever has arrived, up to `max_batch` messages, goes
/// to `handle` at once, and the next batch only after it returned
/// (meanwhile the next gathers, up to the prefetch). A handler that
/// settles every message of a batch before it continues may ack a batch
/// with `multiple`: every earlier message of the channel is settled.
pub async fn batches<F, Fut, E>(
    conn: &Connection,
    queue: Queue<'_>,
    max_batch: usize,
    cancel: &CancellationToken,
    mut handle: F,
) -> Result<(), E>
where
    F: FnMut(Vec<Delivery>) -> Fut,
    Fut: Future<Output = Result<ControlFlow<()>, E>>,
    E: From<ConsumeError>,
{
    let (channel, mut consumer) = subscribe(conn, &queue).await?;
    let result = async {
        loop {
            let first = tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(()),
                next = consumer.next() => next,
            };
            let mut batch = match first {
                Some(Ok(delivery)) => vec![delivery],
                Some(Err(err)) => return Err(ConsumeError::from(err).into()),
                None => return Err(ConsumeError::SubscriptionEnded.into()),
            };
            // Take what is already here without waiting for more.
            while batch.len() < max_batch {
                match consumer.next().now_or_never() {
                    Some(Some(Ok(delivery))) => batch.push(delivery),
                    _ => break,
                }
            }
            if handle(batch).await?.is_break() {
                return Ok(());
            }
        }
    }
    .await;
    close_channel(&channel, "stopping").await;
    result
}

/// Takes messages from `queue` and handles up to its prefetch at once,
/// each in a task of its own, until `cancel` fires; then finishes the ones
/// in hand. A handler runs to its end even when the channel fails: one cut
/// off between its work and the record of it would repeat the work when
/// the message comes again.
pub async fn concurrently<F, Fut, E>(
    conn: &Connection,
    queue: Queue<'_>,
    cancel: CancellationToken,
    mut handle: F,
) -> Result<(), E>
where
    F: FnMut(Delivery) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: From<ConsumeError> + Send + 'static,
{
    let (channel, consumer) = subscribe(conn, &queue).await?;
    let result = consumer
        .take_until(cancel.cancelled_owned())
        .map_err(|err| E::from(err.into()))
        .try_for_each_concurrent(usize::from(queue.prefetch), |delivery| {
            let handling = tokio::spawn(handle(delivery));
            async move {
                match handling.await {
                    Ok(handled) => handled,
                    Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                    Err(_) => Ok(()),
                }
            }
        })
        .await;
    close_channel(&channel, "stopping").await;
    result
}

/// A consumer of `queue` on a channel of its own. Closed by the caller,
/// not on drop: a channel still closing when the connection is closed can
/// leave that close unanswered.
async fn subscribe(
    conn: &Connection,
    queue: &Queue<'_>,
) -> Result<(Channel, lapin::Consumer), ConsumeError> {
    let channel = conn.create_channel().await?;
    if !queue.no_ack {
        channel
            .basic_qos(queue.prefetch, BasicQosOptions::default())
            .await?;
    }
    let options = BasicConsumeOptions {
        no_ack: queue.no_ack,
        ..Default::default()
    };
    let consumer = channel
        .basic_consume(
            queue.name.into(),
            queue.tag.into(),
            options,
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = queue.name, "consuming");
    Ok((channel, consumer))
}
