//! The API's writes: new requests recorded as `queued` (group commit), and
//! a request withdrawn when its publish failed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::{Trail, ACTOR_API};
use crate::domain::BookingStatus;

/// A booking to record as `queued`.
pub struct NewRow<'a> {
    pub id: Uuid,
    pub show_id: Uuid,
    pub email: &'a str,
    pub name: &'a str,
    pub quantity: i32,
    /// Unknown until the worker picks a best-available request's seats.
    pub total_cents: Option<i64>,
    /// Named seats asked for.
    pub seat_ids: &'a [Uuid],
    /// Best available: only in this section.
    pub section: Option<&'a str>,
    pub waitlist: bool,
    /// Idempotency key and request hash, if the client sent a key.
    pub key: Option<(&'a str, &'a [u8])>,
}

/// A booking written by [`record`].
pub struct Created {
    pub show_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// Its number in its show's line.
    pub accepted_seq: Option<i64>,
}

/// One statement for the whole batch: claim the keys, insert the bookings
/// whose key was claimed (or that have none), their seats and their first
/// audit rows. Each show's new rows take the next numbers of its line in
/// batch order; the line tails are locked in show order so that two
/// batches never wait for each other's locks in a cycle. Rows whose key
/// was taken already are left out of the answer.
pub async fn record(
    db: &PgPool,
    rows: &[NewRow<'_>],
) -> Result<HashMap<Uuid, Created>, sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let shows: Vec<Uuid> = rows.iter().map(|r| r.show_id).collect();
    let emails: Vec<&str> = rows.iter().map(|r| r.email).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    let quantities: Vec<i32> = rows.iter().map(|r| r.quantity).collect();
    let totals: Vec<Option<i64>> = rows.iter().map(|r| r.total_cents).collect();
    let sections: Vec<Option<&str>> = rows.iter().map(|r| r.section).collect();
    let waitlists: Vec<bool> = rows.iter().map(|r| r.waitlist).collect();
    let keys: Vec<Option<&str>> = rows.iter().map(|r| r.key.map(|(k, _)| k)).collect();
    let hashes: Vec<Option<&[u8]>> = rows.iter().map(|r| r.key.map(|(_, h)| h)).collect();
    let (seat_owners, seat_ids): (Vec<Uuid>, Vec<Uuid>) = rows
        .iter()
        .flat_map(|r| r.seat_ids.iter().map(|seat| (r.id, *seat)))
        .unzip();
    let created = sqlx::query_as!(
        RecordedRow,
        r#"WITH input AS (
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[],
                                    $6::bigint[], $7::text[], $8::bytea[], $11::text[], $12::bool[])
                   WITH ORDINALITY AS t(id, show_id, email, name, quantity, total, key, hash, section, waitlist, ord)
           ), claimed AS (
               INSERT INTO idempotency_keys (key, request_hash, booking_id)
               SELECT key, hash, id FROM input WHERE key IS NOT NULL
               ON CONFLICT (key) DO NOTHING
               RETURNING booking_id
           ), fresh AS (
               SELECT input.*,
                      row_number() OVER (PARTITION BY show_id ORDER BY ord) AS n,
                      count(*) OVER (PARTITION BY show_id) AS per_show
               FROM input
               WHERE key IS NULL OR id IN (SELECT booking_id FROM claimed)
           ), tails AS (
               INSERT INTO show_queue_tails (show_id, tail)
               SELECT show_id, count(*) FROM fresh GROUP BY show_id ORDER BY show_id
               ON CONFLICT (show_id) DO UPDATE SET tail = show_queue_tails.tail + EXCLUDED.tail
               RETURNING show_id, tail
           ), booking AS (
               INSERT INTO bookings (id, show_id, email, name, quantity, total_cents, section, waitlist,
                                     accepted_seq, status)
               SELECT id, fresh.show_id, email, name, quantity, total, section, waitlist,
                      tails.tail - per_show + n, $13
               FROM fresh JOIN tails ON tails.show_id = fresh.show_id
               RETURNING id, show_id, created_at, accepted_seq
           ), seats AS (
               INSERT INTO booking_seats (booking_id, seat_id, show_id)
               SELECT booking.id, s.seat, booking.show_id
               FROM booking JOIN unnest($9::uuid[], $10::uuid[]) AS s(owner, seat) ON s.owner = booking.id
           ), audit AS (
               INSERT INTO booking_audit (booking_id, show_id, from_status, to_status, actor)
               SELECT id, show_id, NULL, $13, $14 FROM booking
           )
           SELECT id AS "id!", show_id AS "show_id!", created_at AS "created_at!", accepted_seq FROM booking"#,
        &ids,
        &shows,
        &emails as &[&str],
        &names as &[&str],
        &quantities,
        &totals as &[Option<i64>],
        &keys as &[Option<&str>],
        &hashes as &[Option<&[u8]>],
        &seat_owners,
        &seat_ids,
        &sections as &[Option<&str>],
        &waitlists,
        BookingStatus::Queued as BookingStatus,
        ACTOR_API
    )
    .fetch_all(db)
    .await?;
    Ok(by_id(created))
}

/// Those of `ids` already recorded, as [`record`] answered them: after a
/// [`record`] whose outcome is unknown (its connection broke, say, in a
/// failover) they are the ones it committed. The ids are the API's own, so
/// a row found is that request's.
pub async fn recorded(db: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, Created>, sqlx::Error> {
    let rows = sqlx::query_as!(
        RecordedRow,
        "SELECT id, show_id, created_at, accepted_seq FROM bookings WHERE id = ANY($1)",
        ids
    )
    .fetch_all(db)
    .await?;
    Ok(by_id(rows))
}

/// A recorded booking as [`record`] and [`recorded`] read it back.
struct RecordedRow {
    id: Uuid,
    show_id: Uuid,
    created_at: DateTime<Utc>,
    accepted_seq: Option<i64>,
}

fn by_id(rows: Vec<RecordedRow>) -> HashMap<Uuid, Created> {
    rows.into_iter()
        .map(|r| {
            let created = Created {
                show_id: r.show_id,
                created_at: r.created_at,
                accepted_seq: r.accepted_seq,
            };
            (r.id, created)
        })
        .collect()
}

/// Whether `err` says that one of the rows [`record`] wrote exists already:
/// after an unknown outcome, the earlier try committed after all.
pub fn is_recorded_already(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.constraint() == Some("bookings_pkey"))
}

/// The booking an idempotency key was first used for, with the hash of
/// the request that used it.
pub struct KeyHolder {
    pub booking_id: Uuid,
    pub request_hash: Vec<u8>,
}

pub async fn key_holder(
    db: impl PgExecutor<'_>,
    key: &str,
) -> Result<Option<KeyHolder>, sqlx::Error> {
    sqlx::query_as!(
        KeyHolder,
        "SELECT booking_id, request_hash FROM idempotency_keys WHERE key = $1",
        key
    )
    .fetch_optional(db)
    .await
}

/// Takes back a request whose publish failed, unless a worker decided it
/// already (a confirm can time out after the broker took it): the booking,
/// its seats and its key go, so that a retry with the same key starts
/// afresh; the audit trail keeps its history and says it was withdrawn.
/// `true` if it was withdrawn.
pub async fn withdraw(db: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let show_id = sqlx::query_scalar!(
        "SELECT show_id FROM bookings WHERE id = $1 AND status = $2 FOR UPDATE",
        id,
        BookingStatus::Queued as BookingStatus
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(show_id) = show_id else {
        return Ok(false);
    };
    sqlx::query!("DELETE FROM idempotency_keys WHERE booking_id = $1", id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM booking_seats WHERE booking_id = $1", id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM bookings WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "INSERT INTO booking_audit (booking_id, show_id, from_status, to_status, actor)
         VALUES ($1, $2, $3, $4, $5)",
        id,
        show_id,
        BookingStatus::Queued as BookingStatus,
        Trail::Withdrawn as Trail,
        ACTOR_API
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
