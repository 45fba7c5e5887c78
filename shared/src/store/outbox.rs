//! Owns `outbox`: what a state change must tell the world, written in the
//! transaction that made the change and published later by the relay.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::names::named_enum;

named_enum! {
    /// Where the relay publishes a row.
    pub enum Topic {
        /// One booking event, to `booking.events` (rows written before
        /// events were written a show and transaction at a time).
        Event = "event",
        /// The events of one show that one transaction decided, a JSON
        /// array, to `booking.events`.
        Events = "events",
        /// A command for a show's shard queue.
        Command = "command",
    }
}

/// A command to write.
pub struct NewCommand {
    pub id: Uuid,
    pub show_id: Uuid,
    pub booking_id: Uuid,
    pub kind: &'static str,
    pub payload: serde_json::Value,
}

/// Writes `commands` in the caller's transaction, a row each.
pub async fn insert_commands(
    conn: &mut PgConnection,
    commands: impl Iterator<Item = NewCommand>,
) -> Result<(), sqlx::Error> {
    let (mut ids, mut shows, mut bookings, mut kinds, mut payloads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in commands {
        ids.push(row.id);
        shows.push(row.show_id);
        bookings.push(row.booking_id);
        kinds.push(row.kind);
        payloads.push(row.payload);
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "INSERT INTO outbox (id, show_id, booking_id, kind, payload, topic)
         SELECT t.*, $6 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::jsonb[])
              AS t(id, show_id, booking_id, kind, payload)",
        &ids,
        &shows,
        &bookings,
        &kinds as &[&str],
        &payloads,
        Topic::Command as Topic
    )
    .execute(conn)
    .await
    .map(drop)
}

/// Writes `events` (a JSON array, of any number of shows) in the caller's
/// transaction as one row; nothing for an empty array.
pub async fn insert_events(
    conn: &mut PgConnection,
    events: serde_json::Value,
) -> Result<(), sqlx::Error> {
    if events.as_array().is_some_and(Vec::is_empty) {
        return Ok(());
    }
    sqlx::query!(
        "INSERT INTO outbox (id, payload, topic) VALUES ($1, $2, $3)",
        Uuid::now_v7(),
        events,
        Topic::Events as Topic
    )
    .execute(conn)
    .await
    .map(drop)
}

/// A row waiting to be published.
pub struct Unpublished {
    pub id: Uuid,
    pub topic: Topic,
    pub payload: serde_json::Value,
}

/// The oldest `limit` unpublished rows, locked for the caller's
/// transaction (`SKIP LOCKED`: relays share the work).
pub async fn lock_unpublished(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<Unpublished>, sqlx::Error> {
    sqlx::query_as!(
        Unpublished,
        r#"SELECT id, topic AS "topic: Topic", payload FROM outbox
           WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"#,
        limit
    )
    .fetch_all(conn)
    .await
}

pub async fn mark_published(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE outbox SET published_at = now() WHERE id = ANY($1)",
        ids
    )
    .execute(conn)
    .await
    .map(drop)
}
