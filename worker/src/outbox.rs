//! The one way out for what a state change must tell the world: rows
//! written to the outbox in the transaction that made the change (the
//! events it decided, of however many shows, in one row; commands for a
//! show's shard queue, a row each), and the relay that publishes them with
//! publisher confirms, then marks them published. `FOR UPDATE SKIP LOCKED`
//! lets every worker run a relay without two of them taking the same rows.
//! A crash between the confirm and the mark publishes a row twice;
//! consumers deduplicate (by event id, or because deciding a command again
//! changes nothing). A round's events go out together, as messages of up to
//! [`EVENTS_PER_MESSAGE`] references for the live hubs and the webhook
//! fan-out (`events.batch`), and only those that someone consumes one by
//! one (the notifier's emails) also go out on their own, with the booking's
//! snapshot: a sale's decisions cost PostgreSQL a row per transaction and
//! RabbitMQ a message per round rather than one each.

use std::time::Duration;

use futures::future::{join, join_all};
use serde::Deserialize;
use shared::amqp::Publisher;
use shared::messages::{BookingCommand, BookingEvent, EventRef};
use shared::store::outbox::{self, NewCommand, Topic, Unpublished};
use shared::sweep::SweepError;
use shared::topology;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BATCH: i64 = 200;
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Most event references in one `events.batch` message (about 150 bytes
/// each).
const EVENTS_PER_MESSAGE: usize = 500;

/// Records events in the caller's transaction, as one row. An event that
/// is published alone keeps the booking's snapshot (the notifier renders
/// its email from it); the others only need to say which booking changed,
/// and are stored as references.
pub async fn insert_events(
    conn: &mut PgConnection,
    events: &[BookingEvent],
) -> Result<(), sqlx::Error> {
    let stored = events
        .iter()
        .map(|event| {
            if topology::published_alone(event.kind) {
                serde_json::to_value(event)
            } else {
                serde_json::to_value(event.reference())
            }
            .expect("events serialize")
        })
        .collect();
    outbox::insert_events(conn, serde_json::Value::Array(stored)).await
}

/// Records commands for the shard queues in the caller's transaction.
pub async fn insert_commands(
    conn: &mut PgConnection,
    commands: &[BookingCommand],
) -> Result<(), sqlx::Error> {
    let rows = commands.iter().map(|c| NewCommand {
        id: Uuid::now_v7(),
        show_id: c.show_id(),
        booking_id: c.booking_id(),
        kind: c.kind().as_str(),
        payload: serde_json::to_value(c).expect("commands serialize"),
    });
    outbox::insert_commands(conn, rows).await
}

/// Relays until `cancel` fires.
pub async fn run(db: PgPool, publisher: &Publisher, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        let wait = match relay_batch(&db, publisher).await {
            Ok(n) if n as i64 == BATCH => Duration::ZERO,
            Ok(_) => IDLE_POLL,
            Err(err) => {
                tracing::warn!(error = %err, "outbox relay failed, retrying");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => {}
        }
    }
}

/// Publishes up to one batch of rows; returns how many rows went out.
async fn relay_batch(db: &PgPool, publisher: &Publisher) -> Result<usize, SweepError> {
    let mut tx = db.begin().await?;
    let rows = outbox::lock_unpublished(&mut tx, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut commands = Vec::new();
    let mut events = Vec::new();
    for row in &rows {
        match unpack(row) {
            Ok(Unpacked::Command(command)) => commands.push(command),
            Ok(Unpacked::Events(found)) => events.extend(found),
            // Only this crate writes the outbox, so this is a bug or a
            // version skew; kept, such a row would stop the relay for good.
            Err(why) => {
                metrics::counter!("worker_outbox_malformed_total").increment(1);
                tracing::error!(outbox_id = %row.id, why, "dropping a malformed outbox row");
            }
        }
    }
    let refs: Vec<&EventRef> = events.iter().map(|(event, _)| event).collect();
    let batches: Vec<Vec<u8>> = refs
        .chunks(EVENTS_PER_MESSAGE)
        .map(|chunk| serde_json::to_vec(chunk).expect("event refs serialize"))
        .collect();
    // All publishes go out on the shared channel at once; each awaits only
    // its own confirm, so the round costs about one round trip.
    let alone = events
        .iter()
        .filter(|(event, _)| topology::published_alone(event.kind))
        .map(|(event, payload)| async move {
            let payload = serde_json::to_vec(payload).expect("json re-serializes");
            publisher
                .send_event(event.event_id, event.booking.id, event.kind, &payload)
                .await
        });
    let publishes = join_all(
        commands
            .iter()
            .map(|command| futures::future::Either::Left(publisher.send_command(command)))
            .chain(alone.map(futures::future::Either::Right)),
    );
    let batched = join_all(
        batches
            .iter()
            .map(|batch| publisher.send_event_batch(batch)),
    );
    let (published, batched) = join(publishes, batched).await;
    for result in published.into_iter().chain(batched) {
        result?;
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    outbox::mark_published(&mut tx, &ids).await?;
    tx.commit().await?;
    metrics::counter!("worker_outbox_published_total").increment(ids.len() as u64);
    Ok(ids.len())
}

/// What an outbox row carries.
enum Unpacked<'a> {
    /// Each event as its reference, with the JSON to publish it alone.
    Events(Vec<(EventRef, &'a serde_json::Value)>),
    Command(BookingCommand),
}

fn unpack(row: &Unpublished) -> Result<Unpacked<'_>, String> {
    fn event(payload: &serde_json::Value) -> Result<(EventRef, &serde_json::Value), String> {
        EventRef::deserialize(payload)
            .map(|event| (event, payload))
            .map_err(|e| e.to_string())
    }
    match row.topic {
        Topic::Command => serde_json::from_value(row.payload.clone())
            .map(Unpacked::Command)
            .map_err(|e| e.to_string()),
        Topic::Event => Ok(Unpacked::Events(vec![event(&row.payload)?])),
        Topic::Events => match &row.payload {
            serde_json::Value::Array(list) => list
                .iter()
                .map(event)
                .collect::<Result<_, _>>()
                .map(Unpacked::Events),
            _ => Err("a row of events that is not a list".to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, n: u8) -> serde_json::Value {
        json!({"event_id": Uuid::from_u128(n.into()), "kind": kind,
               "occurred_at": "2030-01-01T00:00:00Z",
               "booking": {"id": Uuid::from_u128(100 + u128::from(n)),
                           "show_id": Uuid::nil(), "email": "a@example.com"}})
    }

    fn row(topic: Topic, payload: serde_json::Value) -> Unpublished {
        Unpublished {
            id: Uuid::nil(),
            topic,
            payload,
        }
    }

    fn events(row: &Unpublished) -> Vec<(Uuid, &serde_json::Value)> {
        match unpack(row) {
            Ok(Unpacked::Events(found)) => {
                found.into_iter().map(|(e, p)| (e.event_id, p)).collect()
            }
            _ => panic!("not events"),
        }
    }

    #[test]
    fn a_row_of_events_unpacks_into_each_event_with_its_own_json() {
        let (held, reminder) = (event("held", 1), event("reminder", 2));
        let row = row(Topic::Events, json!([held, reminder]));
        assert_eq!(
            events(&row),
            [(Uuid::from_u128(1), &held), (Uuid::from_u128(2), &reminder)]
        );
    }

    #[test]
    fn a_single_event_row_unpacks_as_one_event() {
        let held = event("held", 1);
        let row = row(Topic::Event, held.clone());
        assert_eq!(events(&row), [(Uuid::from_u128(1), &held)]);
    }

    #[test]
    fn malformed_rows_are_told_apart() {
        assert!(unpack(&row(Topic::Events, json!({"not": "a list"}))).is_err());
        assert!(unpack(&row(Topic::Events, json!([{"kind": "held"}]))).is_err());
        assert!(unpack(&row(Topic::Command, json!({"type": "nonsense"}))).is_err());
    }
}
