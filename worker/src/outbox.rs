//! The one way out for what a state change must tell the world: rows
//! written to the outbox in the transaction that made the change (events
//! for `booking.events`, commands for a show's shard queue), and the relay
//! that publishes them with publisher confirms, then marks them published.
//! `FOR UPDATE SKIP LOCKED` lets every worker run a relay without two of
//! them taking the same rows. A crash between the confirm and the mark
//! publishes a row twice; consumers deduplicate (by event id, or because
//! deciding a command again changes nothing). Each batch's events go out
//! together, as one message for the live hubs and the webhook fan-out
//! (`events.batch`), and only those that someone consumes one by one (the
//! notifier's emails) also go out on their own: a sale's decisions cost
//! RabbitMQ a message per batch rather than per event.

use std::time::Duration;

use futures::future::{join, join_all};
use serde::Deserialize;
use shared::amqp::Publisher;
use shared::lifecycle::EventKind;
use shared::messages::{BookingCommand, BookingEvent, EventRef};
use shared::store::outbox::{self, NewRow, Topic};
use shared::sweep::SweepError;
use shared::topology;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BATCH: i64 = 200;
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Records events in the caller's transaction.
pub async fn insert_events(
    conn: &mut PgConnection,
    events: &[BookingEvent],
) -> Result<(), sqlx::Error> {
    let rows = events.iter().map(|e| NewRow {
        id: e.event_id,
        show_id: e.booking.show_id,
        booking_id: e.booking.id,
        kind: e.kind.as_str(),
        payload: serde_json::to_value(e).expect("events serialize"),
    });
    outbox::insert(conn, Topic::Event, rows).await
}

/// Records commands for the shard queues in the caller's transaction.
pub async fn insert_commands(
    conn: &mut PgConnection,
    commands: &[BookingCommand],
) -> Result<(), sqlx::Error> {
    let rows = commands.iter().map(|c| NewRow {
        id: Uuid::now_v7(),
        show_id: c.show_id(),
        booking_id: c.booking_id(),
        kind: c.kind().as_str(),
        payload: serde_json::to_value(c).expect("commands serialize"),
    });
    outbox::insert(conn, Topic::Command, rows).await
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

/// Publishes up to one batch; returns how many rows went out.
async fn relay_batch(db: &PgPool, publisher: &Publisher) -> Result<usize, SweepError> {
    let mut tx = db.begin().await?;
    let rows = outbox::lock_unpublished(&mut tx, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let outgoing: Vec<_> = rows
        .iter()
        .map(|row| parse(row.topic, &row.kind, &row.payload))
        .collect();
    let events = event_batch(
        rows.iter()
            .zip(&outgoing)
            .filter_map(|(row, out)| match out {
                Ok(Outgoing::Event(_)) => Some(&row.payload),
                _ => None,
            }),
    );
    // All publishes go out on the shared channel at once; each awaits only
    // its own confirm, so the batch costs about one round trip.
    let publishes = rows.iter().zip(&outgoing).map(|(row, out)| async move {
        match out {
            Ok(Outgoing::Command(command)) => publisher.send_command(command).await,
            // Its batch carries it to everyone else.
            Ok(Outgoing::Event(kind)) if !topology::published_alone(*kind) => Ok(()),
            Ok(Outgoing::Event(kind)) => {
                let payload = serde_json::to_vec(&row.payload).expect("json re-serializes");
                publisher
                    .send_event(row.id, row.booking_id, *kind, &payload)
                    .await
            }
            // Only this crate writes the outbox, so this is a bug or a
            // version skew; kept, such a row would stop the relay for good.
            Err(why) => {
                metrics::counter!("worker_outbox_malformed_total").increment(1);
                tracing::error!(outbox_id = %row.id, why, "dropping a malformed outbox row");
                Ok(())
            }
        }
    });
    let batch = async {
        match &events {
            Some(batch) => publisher.send_event_batch(batch).await,
            None => Ok(()),
        }
    };
    let (published, batch) = join(join_all(publishes), batch).await;
    for result in published {
        result?;
    }
    batch?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    outbox::mark_published(&mut tx, &ids).await?;
    tx.commit().await?;
    metrics::counter!("worker_outbox_published_total").increment(ids.len() as u64);
    Ok(ids.len())
}

/// The events of a relay batch as one JSON array of [`EventRef`]s for
/// [`shared::topology::EVENT_BATCH_KEY`]; `None` if there are none.
fn event_batch<'a>(events: impl Iterator<Item = &'a serde_json::Value>) -> Option<Vec<u8>> {
    let refs: Vec<EventRef> = events
        .filter_map(|payload| match EventRef::deserialize(payload) {
            Ok(event) => Some(event),
            // Only this crate writes events, so this is a bug or a version
            // skew; the event still goes out to its other consumers.
            Err(err) => {
                tracing::error!(error = %err, "an outbox event has no booking or time");
                None
            }
        })
        .collect();
    (!refs.is_empty()).then(|| serde_json::to_vec(&refs).expect("event refs serialize"))
}

enum Outgoing {
    Event(EventKind),
    Command(BookingCommand),
}

fn parse(topic: Topic, kind: &str, payload: &serde_json::Value) -> Result<Outgoing, String> {
    match topic {
        Topic::Command => serde_json::from_value(payload.clone())
            .map(Outgoing::Command)
            .map_err(|e| e.to_string()),
        Topic::Event => kind
            .parse()
            .map(Outgoing::Event)
            .map_err(|e: shared::names::UnknownName| e.to_string()),
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

    #[test]
    fn an_event_batch_refers_to_every_event_without_its_snapshot() {
        let (held, reminder) = (event("held", 1), event("reminder", 2));
        let batch = event_batch([&held, &reminder].into_iter()).unwrap();
        let refs = shared::messages::decode_events(&batch).unwrap();
        let ids: Vec<Uuid> = refs.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, [Uuid::from_u128(1), Uuid::from_u128(2)]);
        assert_eq!(refs[1].booking.id, Uuid::from_u128(102));
        // Consumers read the booking from the database: no snapshot.
        assert!(!String::from_utf8(batch).unwrap().contains("a@example.com"));
    }

    #[test]
    fn a_relay_batch_without_events_sends_no_event_batch() {
        assert!(event_batch(std::iter::empty()).is_none());
    }
}
