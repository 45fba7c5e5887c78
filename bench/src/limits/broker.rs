//! The raw rate of RabbitMQ on this machine for the system's own message:
//! persistent publishes with pipelined publisher confirms into a quorum
//! queue shaped like a booking shard queue, consumed with manual acks on a
//! second connection at the same time. Nothing the system does per request
//! can be cheaper than this round trip through the broker, so it is the
//! yardstick for the booking throughput.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation};
use serde::Serialize;
use shared::messages::BookingCommand;
use uuid::Uuid;

use crate::stats::per_second;

/// Acknowledge every this many deliveries at once (`multiple`), as a
/// consumer that batches does.
const ACK_EVERY: u64 = 50;
/// Give up if the messages have not all come back by then.
const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Serialize)]
pub struct BrokerLimit {
    pub messages: usize,
    /// Size of one booking request command as the API publishes it.
    pub message_bytes: usize,
    pub in_flight: usize,
    pub prefetch: u16,
    /// First publish to last confirm.
    pub publish_per_s: f64,
    /// First publish to last ack: the rate the broker sustains end to end.
    pub end_to_end_per_s: f64,
    pub seconds: f64,
}

pub struct Settings {
    pub amqp_url: String,
    pub messages: usize,
    pub in_flight: usize,
    pub prefetch: u16,
}

pub async fn measure(settings: &Settings) -> anyhow::Result<BrokerLimit> {
    let queue = format!("bench.limits.{}", Uuid::new_v4().simple());
    let publisher = shared::amqp::connect(&settings.amqp_url, "bench limits publisher")
        .await
        .context("connecting to RabbitMQ")?;
    let consumer = shared::amqp::connect(&settings.amqp_url, "bench limits consumer").await?;
    let channel = publisher.create_channel().await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            shard_like_arguments(),
        )
        .await?;

    let consuming = tokio::spawn(consume(
        consumer,
        queue.clone(),
        settings.messages,
        settings.prefetch,
    ));
    let started = Instant::now();
    let published = tokio::time::timeout(
        TIMEOUT,
        publish(&channel, &queue, settings.messages, settings.in_flight),
    )
    .await;
    let consumed = tokio::time::timeout(TIMEOUT, consuming).await;
    let cleanup = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = publisher.close(200, "done".into()).await;

    let (message_bytes, confirmed_at) = published.context("publishing timed out")??;
    let acked_at = consumed.context("consuming timed out")???;
    cleanup.context("deleting the benchmark queue")?;
    let seconds = acked_at.duration_since(started).as_secs_f64();
    Ok(BrokerLimit {
        messages: settings.messages,
        message_bytes,
        in_flight: settings.in_flight,
        prefetch: settings.prefetch,
        publish_per_s: per_second(
            settings.messages,
            confirmed_at.duration_since(started).as_secs_f64(),
        ),
        end_to_end_per_s: per_second(settings.messages, seconds),
        seconds,
    })
}

/// The arguments of a booking shard queue (quorum, one active consumer, a
/// delivery limit), so the broker does the same work per message.
fn shard_like_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(5));
    args
}

/// Publishes `count` commands with at most `in_flight` unconfirmed; returns
/// the size of one message and when the last confirm came.
async fn publish(
    channel: &lapin::Channel,
    queue: &str,
    count: usize,
    in_flight: usize,
) -> anyhow::Result<(usize, Instant)> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut pending = FuturesUnordered::new();
    let mut size = 0;
    for _ in 0..count {
        let command = BookingCommand::Request {
            booking_id: Uuid::new_v4(),
            show_id: Uuid::new_v4(),
        };
        let payload = serde_json::to_vec(&command)?;
        size = payload.len();
        // The same properties and headers as the API's `send_command`.
        let mut headers = FieldTable::default();
        shared::amqp::header(
            &mut headers,
            "x-booking-id",
            &command.booking_id().to_string(),
        );
        shared::amqp::header(&mut headers, "x-command", command.kind().as_str());
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(ShortString::from(Uuid::now_v7().to_string()))
            .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
            .with_headers(headers);
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        pending.push(
            channel
                .basic_publish("".into(), queue.into(), options, &payload, properties)
                .await?,
        );
        while pending.len() >= in_flight {
            confirmed(pending.next().await)?;
        }
    }
    while let Some(confirmation) = pending.next().await {
        confirmed(Some(confirmation))?;
    }
    Ok((size, Instant::now()))
}

fn confirmed(confirmation: Option<lapin::Result<Confirmation>>) -> anyhow::Result<()> {
    match confirmation {
        Some(Ok(Confirmation::Ack(None))) | None => Ok(()),
        Some(Ok(other)) => bail!("the broker did not take a message: {other:?}"),
        Some(Err(err)) => Err(err.into()),
    }
}

/// Consumes `count` messages, acking in groups; returns when the last ack
/// was sent.
async fn consume(
    conn: lapin::Connection,
    queue: String,
    count: usize,
    prefetch: u16,
) -> anyhow::Result<Instant> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut deliveries = channel
        .basic_consume(
            queue.as_str().into(),
            "bench-limits".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut received = 0;
    while received < count {
        let delivery = deliveries
            .next()
            .await
            .context("the subscription ended")??;
        received += 1;
        if delivery.delivery_tag % ACK_EVERY == 0 || received == count {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    let done = Instant::now();
    let _ = conn.close(200, "done".into()).await;
    Ok(done)
}
