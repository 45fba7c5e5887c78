//! `worker replay-dead-letters`: the operator's way back from a dead-letter
//! queue once the cause is fixed. Each dead letter is published again to
//! where it came from (a booking command to its show's shard, an event to
//! the events exchange) with a publisher confirm, and only then removed.
//! Replays are idempotent: workers and the notifier skip what is done.

use anyhow::Context;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::FieldTable;
use shared::amqp::{self, header, Outgoing, Publisher};
use shared::messages::{BookingEvent, ShardMessage};
use shared::topology::{
    Topology, EVENTS_EXCHANGE, NOTIFIER_DEAD_QUEUE, REQUESTS_DEAD_QUEUE, WEBHOOKS_DEAD_QUEUE,
    WEBHOOKS_QUEUE,
};

/// The dead-letter queues whose messages can be replayed.
const REPLAYABLE: [&str; 3] = [
    REQUESTS_DEAD_QUEUE,
    NOTIFIER_DEAD_QUEUE,
    WEBHOOKS_DEAD_QUEUE,
];

/// What one replay did.
#[derive(Debug, Default)]
pub struct Summary {
    pub replayed: u32,
    /// Messages that cannot be understood stay in the dead-letter queue.
    pub kept: u32,
}

pub async fn run(
    amqp_url: &str,
    topology: Topology,
    queue: &str,
    limit: u32,
) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        REPLAYABLE.contains(&queue),
        "can replay {}, not {queue}",
        REPLAYABLE.join(", ")
    );
    let conn = amqp::connect(amqp_url, "replay-dead-letters")
        .await
        .context("connecting to RabbitMQ")?;
    let channel = conn.create_channel().await?;
    topology.declare(&conn).await?;
    let publisher = Publisher::new(amqp_url, "replay-dead-letters publisher", topology);
    // Only what is there now: kept messages go back to the queue and must
    // not be fetched again in this run.
    let waiting = shared::topology::waiting(&channel, queue).await?;
    let mut summary = Summary::default();
    for _ in 0..waiting.min(limit) {
        let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await?
        else {
            break;
        };
        let delivery = &message.delivery;
        let target = if queue == REQUESTS_DEAD_QUEUE {
            // Every show of a message is of the same shard.
            serde_json::from_slice::<ShardMessage>(&delivery.data)
                .ok()
                .and_then(|m| {
                    m.into_commands()
                        .first()
                        .map(|c| topology.shard_of(c.show_id()))
                })
                .map(|shard| ("", Topology::shard_queue(shard)))
        } else {
            serde_json::from_slice::<BookingEvent>(&delivery.data)
                .ok()
                .map(|e| match queue {
                    // Straight back to the fan-out (the default exchange
                    // routes by queue name), not to every event consumer.
                    WEBHOOKS_DEAD_QUEUE => ("", WEBHOOKS_QUEUE.to_owned()),
                    _ => (EVENTS_EXCHANGE, e.kind.routing_key()),
                })
        };
        let Some((exchange, routing_key)) = target else {
            summary.kept += 1;
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await?;
            continue;
        };
        let mut headers = FieldTable::default();
        header(&mut headers, "x-booking-replayed-from", queue);
        publisher
            .publish(Outgoing {
                exchange,
                routing_key: &routing_key,
                payload: &delivery.data,
                message_id: amqp::message_id(delivery),
                headers,
                mandatory: true,
            })
            .await?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        summary.replayed += 1;
    }
    amqp::close_connection(&conn, "replay done").await;
    Ok(summary)
}
