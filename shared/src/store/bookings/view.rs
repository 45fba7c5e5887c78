//! A booking as its customer sees it: what `GET /v1/bookings/{id}` answers,
//! what an event stream sends and what a webhook carries. One loader, so
//! the three can never disagree.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Lines;
use crate::domain::{BookingStatus, Reason};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BookedSeat {
    pub id: Uuid,
    pub section: String,
    pub row: String,
    pub number: i32,
    pub price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ticket {
    pub code: String,
    pub seat_id: Option<Uuid>,
}

/// A booking as its customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BookingView {
    pub id: Uuid,
    pub show_id: Uuid,
    pub status: BookingStatus,
    /// Why it was rejected or ended, or why the last confirm failed.
    pub reason: Option<Reason>,
    pub email: String,
    pub name: String,
    pub quantity: i32,
    pub seats: Vec<BookedSeat>,
    /// Unknown (null) while a best-available request waits for its seats.
    pub total_cents: Option<i64>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// While `queued`: the place in line, the number of this show's
    /// accepted, undecided requests up to and including this one (1 = next
    /// to be decided). Never under-states, never grows.
    pub position: Option<i64>,
    /// Whether the request asked to wait when sold out.
    pub waitlist: bool,
    /// While `waitlisted`: the place in line (1 = first to be offered).
    pub waitlist_position: Option<i64>,
    /// Paid back, once the payment gateway has made the refund (a
    /// cancelled paid booking); null until then.
    pub refunded_cents: Option<i64>,
    pub tickets: Vec<Ticket>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A view with where it stands in its show's line, for those who keep
/// positions current without loading the booking again (the event streams).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub view: BookingView,
    /// The booking's number in its show's line (null for bookings made
    /// before numbers existed).
    pub accepted_seq: Option<i64>,
}

impl BookingView {
    /// The position of a queued booking numbered `seq` when the smallest
    /// number still queued in its show is `head`.
    pub fn place(seq: i64, head: i64) -> i64 {
        (seq - head + 1).max(1)
    }
}

/// Loads one booking, or `None` if there is no such booking.
pub async fn load(
    db: &PgPool,
    lines: &Lines,
    id: Uuid,
) -> Result<Option<BookingView>, sqlx::Error> {
    Ok(load_many(db, lines, &[id]).await?.pop().map(|l| l.view))
}

/// Loads the bookings `ids` names (unknown ones are left out), in one
/// statement whatever their number: a poll is one round trip.
pub async fn load_many(
    db: &PgPool,
    lines: &Lines,
    ids: &[Uuid],
) -> Result<Vec<Loaded>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // The head of a queued booking's line is the first entry of a partial
    // index at or past the show's floor (see [`Lines`]). It is read per
    // queued booking, beside the booking's own key lookup: a separate scan
    // for the batch's shows was planned, on a young table, as a walk of
    // that whole index. The waiting-list count reads only the waiting
    // ahead of the booking; tickets are valid only while the booking is
    // confirmed.
    let (floor_shows, floors) = lines.floors();
    let rows = sqlx::query!(
        r#"SELECT b.id, b.show_id, b.status AS "status: BookingStatus", b.reason AS "reason: Reason", b.email, b.name,
                  b.quantity, b.total_cents, b.hold_expires_at, b.waitlist, b.refunded_cents, b.created_at,
                  b.updated_at, b.accepted_seq,
                  CASE WHEN booking_in_line(b.status, b.dead_lettered_at) THEN
                      (SELECT min(h.accepted_seq) FROM bookings h
                       WHERE h.show_id = b.show_id AND booking_in_line(h.status, h.dead_lettered_at)
                         AND h.accepted_seq >= coalesce(
                             (SELECT f.floor_seq FROM unnest($2::uuid[], $3::bigint[]) AS f(show_id, floor_seq)
                              WHERE f.show_id = b.show_id), 0))
                  END AS head,
                  CASE WHEN booking_waiting_for_offer(b.status) THEN
                      (SELECT count(*) FROM bookings w
                       WHERE w.show_id = b.show_id AND booking_waiting_for_offer(w.status)
                         AND w.waitlist_seq <= b.waitlist_seq)
                  END AS waitlist_position,
                  (SELECT coalesce(json_agg(json_build_object(
                              'id', s.id, 'section', s.section, 'row', s.row,
                              'number', s.number, 'price_cents', s.price_cents)
                          ORDER BY s.seat_order), '[]')
                   FROM booking_seats bs
                   JOIN seat_places s ON s.id = bs.seat_id
                   WHERE bs.booking_id = b.id) AS "seats!: Json<Vec<BookedSeat>>",
                  CASE WHEN booking_confirmed(b.status) THEN
                      (SELECT json_agg(json_build_object('code', t.code, 'seat_id', t.seat_id) ORDER BY t.code)
                       FROM tickets t WHERE t.booking_id = b.id)
                  END AS "tickets: Json<Vec<Ticket>>"
           FROM bookings b
           WHERE b.id = ANY($1)"#,
        ids,
        &floor_shows,
        &floors
    )
    .fetch_all(db)
    .await?;
    lines.read(rows.iter().filter_map(|b| Some((b.show_id, b.head?))));
    Ok(rows
        .into_iter()
        .map(|b| Loaded {
            accepted_seq: b.accepted_seq,
            view: BookingView {
                id: b.id,
                show_id: b.show_id,
                status: b.status,
                reason: b.reason,
                email: b.email,
                name: b.name,
                quantity: b.quantity,
                seats: b.seats.0,
                total_cents: b.total_cents,
                hold_expires_at: b.hold_expires_at,
                position: b
                    .accepted_seq
                    .zip(b.head)
                    .map(|(seq, head)| BookingView::place(seq, head)),
                waitlist: b.waitlist,
                waitlist_position: b.waitlist_position,
                refunded_cents: b.refunded_cents,
                tickets: b.tickets.map(|t| t.0).unwrap_or_default(),
                created_at: b.created_at,
                updated_at: b.updated_at,
            },
        })
        .collect())
}

/// How many requests wait in each of `shows`' lines, from its head to its
/// tail (shows with nobody queued are left out): counted from the line's
/// numbers, so one index lookup per show however long the line.
pub async fn line_lengths(
    db: &PgPool,
    lines: &Lines,
    shows: &[Uuid],
) -> Result<HashMap<Uuid, i64>, sqlx::Error> {
    let heads = line_heads(db, lines, shows).await?;
    let queued: Vec<Uuid> = heads.keys().copied().collect();
    let tails = sqlx::query!(
        "SELECT show_id, tail FROM show_queue_tails WHERE show_id = ANY($1)",
        &queued
    )
    .fetch_all(db)
    .await?;
    Ok(tails
        .into_iter()
        .filter_map(|t| Some((t.show_id, t.tail - heads.get(&t.show_id)? + 1)))
        .collect())
}

/// The head of each of `shows`' lines: the smallest number still queued
/// (shows with nobody queued are left out).
pub async fn line_heads(
    db: &PgPool,
    lines: &Lines,
    shows: &[Uuid],
) -> Result<HashMap<Uuid, i64>, sqlx::Error> {
    let (floor_shows, floors) = lines.floors();
    let rows = sqlx::query!(
        r#"SELECT s.id AS "show_id!", h.head AS "head!"
           FROM unnest($1::uuid[]) AS s(id)
                LEFT JOIN unnest($2::uuid[], $3::bigint[]) AS f(show_id, floor_seq) ON f.show_id = s.id,
                LATERAL (SELECT min(accepted_seq) AS head FROM bookings
                         WHERE show_id = s.id AND booking_in_line(status, dead_lettered_at)
                           AND accepted_seq >= coalesce(f.floor_seq, 0)) h
           WHERE h.head IS NOT NULL"#,
        shows,
        &floor_shows,
        &floors
    )
    .fetch_all(db)
    .await?;
    let heads: HashMap<Uuid, i64> = rows.into_iter().map(|r| (r.show_id, r.head)).collect();
    lines.read(heads.iter().map(|(show, head)| (*show, *head)));
    Ok(heads)
}
