//! The RabbitMQ topology, declared idempotently by every service at start
//! and after every reconnect, so no process depends on another having run.
//!
//! ```text
//! api ──▶ (default exchange, the show's shard: [`Topology::shard_of`])
//!            ├─▶ booking.requests.shard-00  (quorum, single active consumer)
//!            ├─▶ …
//!            └─▶ booking.requests.shard-NN ──▶ worker
//!                      │ (delivery limit / poison)
//!                      ▼
//!            booking.dead-letter (direct) ──▶ booking.requests.dead
//!                                         └─▶ notifier.emails.dead
//!                                         └─▶ webhooks.events.dead
//!                                         └─▶ webhooks.deliveries.dead
//! worker (outbox relay) ──▶ booking.events (topic, booking.<kind>)
//!                                         ├─▶ notifier.emails ──▶ notifier
//!                                         └─▶ booking.events.live.api-<pid>
//!                                               (one per api process, its own)
//!                          booking.events (webhooks.batch: a relay batch's
//!                                          webhook events in one message)
//!                                         └─▶ webhooks.events ──▶ notifier
//! ```

use std::num::NonZeroU16;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

use crate::lifecycle::EventKind;
use crate::webhooks::WebhookEvent;

/// The prefix of the shard queues' names. Also the name of the
/// consistent-hash exchange that routed to them before publishers chose
/// the shard themselves; declaring the topology deletes it, so that a
/// publisher of that time fails loudly rather than route a show elsewhere.
pub const REQUESTS_EXCHANGE: &str = "booking.requests";
pub const DEAD_LETTER_EXCHANGE: &str = "booking.dead-letter";
pub const REQUESTS_DEAD_QUEUE: &str = "booking.requests.dead";
pub const EVENTS_EXCHANGE: &str = "booking.events";
pub const NOTIFIER_QUEUE: &str = "notifier.emails";
pub const NOTIFIER_DEAD_QUEUE: &str = "notifier.emails.dead";
/// Booking events the notifier fans out to webhook deliveries.
pub const WEBHOOKS_QUEUE: &str = "webhooks.events";
/// The routing key on `booking.events` of the messages that carry, each,
/// every event of one outbox relay batch as a list of
/// [`crate::messages::EventRef`]s: what the live hubs and the webhook
/// fan-out follow. During a sale RabbitMQ then handles a message per batch
/// of up to 200 events instead of one per event.
pub const EVENT_BATCH_KEY: &str = "events.batch";
/// The key the webhook batches had when they carried only webhook events.
const OLD_WEBHOOK_BATCH_KEY: &str = "webhooks.batch";
pub const WEBHOOKS_DEAD_QUEUE: &str = "webhooks.events.dead";
/// Deliveries that failed for good, one message each, for operators.
pub const WEBHOOK_DELIVERIES_DEAD_QUEUE: &str = "webhooks.deliveries.dead";

/// Events the notifier turns into emails: the only ones also published
/// one by one, as `booking.<kind>` with the whole [`BookingEvent`] (see
/// [`published_alone`]).
///
/// [`BookingEvent`]: crate::messages::BookingEvent
const EMAILED: [EventKind; 5] = [
    EventKind::Confirmed,
    EventKind::Cancelled,
    EventKind::Expired,
    EventKind::Reminder,
    EventKind::Offered,
];

/// Whether the relay publishes events of `kind` on their own as well as
/// in its batch: only those someone consumes one by one (the notifier's
/// emails), so that a sale's `held` and `rejected` cost RabbitMQ nothing
/// beyond their share of a batch.
pub fn published_alone(kind: EventKind) -> bool {
    EMAILED.contains(&kind)
}

/// The queue through which one API process follows booking events for its
/// open event streams (exclusive and auto-delete: it lives and dies with
/// the process's connection, so it is declared by its consumer, not here).
pub fn live_queue(pid: u32) -> String {
    format!("{EVENTS_EXCHANGE}.live.api-{pid}")
}

/// Header names a consumer sets when it dead-letters a message itself.
pub const HEADER_DEATH_REASON: &str = "x-booking-death-reason";
pub const HEADER_ATTEMPTS: &str = "x-booking-attempts";
pub const HEADER_SOURCE_QUEUE: &str = "x-booking-source-queue";
/// How many requests a shard queue's message carries (a message of
/// requests recorded together; see [`crate::messages::RequestBatch`]).
pub const HEADER_REQUESTS: &str = "x-requests";

/// Shape of the topology that must agree across all processes.
#[derive(Debug, Clone, Copy)]
pub struct Topology {
    pub shards: u16,
    pub delivery_limit: u32,
    /// Replicas of each quorum queue (`x-quorum-initial-group-size`); `None`
    /// leaves it to the broker (3, or every node of a smaller cluster).
    pub quorum_group_size: Option<NonZeroU16>,
}

impl Topology {
    pub fn of(config: &crate::Config) -> Self {
        Self {
            shards: config.shards,
            delivery_limit: config.delivery_limit,
            quorum_group_size: config.quorum_initial_group_size,
        }
    }

    /// The shard that carries `show_id`'s commands, in order. Every
    /// process computes it (so that a publisher can put several shows of one
    /// shard in one message), which is why it must never change for a given
    /// number of shards: FNV-1a over the id's bytes, the same on any build
    /// and platform, and spread evenly whatever version the UUID is.
    pub fn shard_of(&self, show_id: uuid::Uuid) -> u16 {
        let hash = show_id
            .as_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        u16::try_from(hash % u64::from(self.shards)).expect("below a u16")
    }

    pub fn shard_queue(shard: u16) -> String {
        format!("{REQUESTS_EXCHANGE}.shard-{shard:02}")
    }

    pub fn shard_queues(&self) -> impl Iterator<Item = (u16, String)> {
        (0..self.shards).map(|s| (s, Self::shard_queue(s)))
    }

    /// Declares every exchange, queue and binding. Safe to call any number of
    /// times from any number of processes. A queue that exists with other
    /// arguments (say, after `DELIVERY_LIMIT` changed) is used as it is:
    /// RabbitMQ cannot change a queue's arguments, and refusing to start
    /// would stop the whole system over a tunable.
    pub async fn declare(&self, conn: &Connection) -> lapin::Result<()> {
        let mut channel = conn.create_channel().await?;
        let channel = &mut channel;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        // Deleting an exchange that is not there is fine.
        channel
            .exchange_delete(REQUESTS_EXCHANGE.into(), ExchangeDeleteOptions::default())
            .await?;
        channel
            .exchange_declare(
                DEAD_LETTER_EXCHANGE.into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                EVENTS_EXCHANGE.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;

        for dead in [
            REQUESTS_DEAD_QUEUE,
            NOTIFIER_DEAD_QUEUE,
            WEBHOOKS_DEAD_QUEUE,
            WEBHOOK_DELIVERIES_DEAD_QUEUE,
        ] {
            declare_queue(conn, channel, dead, self.quorum_args()).await?;
            bind(channel, dead, DEAD_LETTER_EXCHANGE, dead).await?;
        }

        for (_, queue) in self.shard_queues() {
            let mut args = self.work_queue_args(REQUESTS_DEAD_QUEUE);
            // One consumer at a time per shard keeps each show's order.
            args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
            declare_queue(conn, channel, &queue, args).await?;
        }

        declare_queue(
            conn,
            channel,
            NOTIFIER_QUEUE,
            self.work_queue_args(NOTIFIER_DEAD_QUEUE),
        )
        .await?;
        for kind in EMAILED {
            bind(
                channel,
                NOTIFIER_QUEUE,
                EVENTS_EXCHANGE,
                &kind.routing_key(),
            )
            .await?;
        }

        declare_queue(
            conn,
            channel,
            WEBHOOKS_QUEUE,
            self.work_queue_args(WEBHOOKS_DEAD_QUEUE),
        )
        .await?;
        // Bound only while some endpoint is live (see `bind_webhook_events`),
        // and no longer to each event's own key: a queue declared before the
        // relay batched webhook events would otherwise get every one twice.
        for key in WebhookEvent::routing_keys() {
            unbind(channel, WEBHOOKS_QUEUE, EVENTS_EXCHANGE, &key).await?;
        }
        unbind(
            channel,
            WEBHOOKS_QUEUE,
            EVENTS_EXCHANGE,
            OLD_WEBHOOK_BATCH_KEY,
        )
        .await?;
        let _ = channel.close(200, "topology declared".into()).await;
        Ok(())
    }

    /// A quorum queue whose messages that crash consumers too often end in
    /// `dead_queue` (via the dead-letter exchange) instead of looping.
    fn work_queue_args(&self, dead_queue: &str) -> FieldTable {
        let mut args = self.quorum_args();
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(self.delivery_limit.into()),
        );
        args.insert("x-dead-letter-exchange".into(), long(DEAD_LETTER_EXCHANGE));
        args.insert("x-dead-letter-routing-key".into(), long(dead_queue));
        args
    }

    /// A durable, replicated queue. With a replication factor set (a
    /// cluster), leaders are also spread over the nodes (`balanced`) rather
    /// than all put on the node of whichever process declared first, so that
    /// the shards' work is shared by the cluster. Both are arguments the
    /// broker compares on every declaration, so they are sent only when
    /// configured: a deployment that never set them declares as before.
    fn quorum_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long("quorum"));
        if let Some(size) = self.quorum_group_size {
            args.insert(
                "x-quorum-initial-group-size".into(),
                AMQPValue::LongLongInt(size.get().into()),
            );
            args.insert("x-queue-leader-locator".into(), long("balanced"));
        }
        args
    }
}

fn long(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

async fn declare_queue(
    conn: &Connection,
    channel: &mut Channel,
    name: &str,
    args: FieldTable,
) -> lapin::Result<()> {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(ShortString::from(name), options, args)
        .await;
    match declared {
        Ok(_) => Ok(()),
        Err(err) if is_precondition_failed(&err) => {
            tracing::warn!(queue = name, error = %err, "queue exists with other arguments; using it as it is");
            // The broker closed the channel over the mismatch: carry on with
            // a new one, and make sure the queue is really there.
            *channel = conn.create_channel().await?;
            waiting(channel, name).await.map(drop)
        }
        Err(err) => Err(err),
    }
}

/// How many messages `queue` holds ready for a consumer (those delivered
/// and not yet acked are not counted). A queue that does not exist is an
/// error, and closes `channel`.
pub async fn waiting(channel: &Channel, queue: &str) -> lapin::Result<u32> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(ShortString::from(queue), passive, FieldTable::default())
        .await
        .map(|q| q.message_count())
}

fn is_precondition_failed(err: &lapin::Error) -> bool {
    matches!(err.kind(), lapin::ErrorKind::ProtocolError(e)
        if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
}

/// Routes webhook events to `webhooks.events`, or (`on == false`) stops
/// routing them. The queue is bound only while some endpoint is live, so
/// that a deployment without webhooks pays nothing for them: the relay's
/// batches go nowhere, and there is no fan-out. Idempotent both ways.
pub async fn bind_webhook_events(channel: &Channel, on: bool) -> lapin::Result<()> {
    if on {
        bind(channel, WEBHOOKS_QUEUE, EVENTS_EXCHANGE, EVENT_BATCH_KEY).await
    } else {
        unbind(channel, WEBHOOKS_QUEUE, EVENTS_EXCHANGE, EVENT_BATCH_KEY).await
    }
}

/// Removes a binding; one that does not exist is fine.
async fn unbind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    channel
        .queue_unbind(
            queue.into(),
            exchange.into(),
            key.into(),
            FieldTable::default(),
        )
        .await
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_queue_names_sort_in_shard_order() {
        let t = Topology {
            shards: 12,
            delivery_limit: 5,
            quorum_group_size: None,
        };
        let names: Vec<_> = t.shard_queues().map(|(_, q)| q).collect();
        assert_eq!(names[0], "booking.requests.shard-00");
        assert_eq!(names[11], "booking.requests.shard-11");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    fn sixteen_shards() -> Topology {
        Topology {
            shards: 16,
            delivery_limit: 5,
            quorum_group_size: None,
        }
    }

    #[test]
    fn a_show_keeps_its_shard_across_builds() {
        // Publishers and replays of different versions must agree: these
        // values may never change.
        let t = sixteen_shards();
        let show = |s: &str| uuid::Uuid::parse_str(s).unwrap();
        // Worked out by hand from FNV-1a's definition.
        assert_eq!(t.shard_of(show("00000000-0000-0000-0000-000000000000")), 5);
        assert_eq!(t.shard_of(show("5402b347-44cf-4cd2-ad89-97bcff87a86a")), 3);
    }

    #[test]
    fn shows_spread_evenly_over_shards_whatever_their_uuid_version() {
        let t = sixteen_shards();
        for make in [uuid::Uuid::new_v4 as fn() -> uuid::Uuid, uuid::Uuid::now_v7] {
            let mut per_shard = [0_u32; 16];
            for _ in 0..16_000 {
                per_shard[usize::from(t.shard_of(make()))] += 1;
            }
            // 1,000 expected each; ±15 % is over four standard deviations.
            assert!(
                per_shard.iter().all(|n| (850..=1150).contains(n)),
                "{per_shard:?}"
            );
        }
    }
}
