//! A booking as its customer sees it: what `GET /v1/bookings/{id}` answers,
//! what an event stream sends and what a webhook carries. One loader, so
//! the three can never disagree.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

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

/// Where this process has seen its shows' lines start, so that the next
/// read of a line's head starts there instead of at the line's first
/// index entry.
///
/// A line's head never moves back: a booking leaves the line for good
/// (`queued` has no way back, and a dead-lettered request is decided when
/// it is replayed), and one that joins takes a number above every number
/// visible before it. So a head read once is a floor for every later read
/// of that show, by any process. Reading from the floor matters in a sale:
/// the index keeps an entry for every booking decided since the table's
/// last vacuum, all of them in front of the head, and a read from the start
/// would step over tens of thousands of them on every poll.
#[derive(Debug, Default)]
pub struct Lines {
    floors: Mutex<Floors>,
}

/// Recently read shows' floors; the coldest goes when there are too many.
#[derive(Debug, Default)]
struct Floors {
    by_show: HashMap<Uuid, Floor>,
    reads: u64,
}

#[derive(Debug, Clone, Copy)]
struct Floor {
    head: i64,
    read: u64,
}

impl Lines {
    /// Shows whose floors are kept: the busy ones of the moment. A show
    /// without one is read from its line's start, once.
    const KEPT: usize = 64;

    /// The floors of every show kept, as two parallel arrays for SQL.
    fn floors(&self) -> (Vec<Uuid>, Vec<i64>) {
        let floors = self.floors.lock().unwrap_or_else(PoisonError::into_inner);
        floors
            .by_show
            .iter()
            .map(|(show, f)| (*show, f.head))
            .unzip()
    }

    /// Heads just read: each raises its show's floor.
    fn read(&self, heads: impl IntoIterator<Item = (Uuid, i64)>) {
        let mut floors = self.floors.lock().unwrap_or_else(PoisonError::into_inner);
        for (show, head) in heads {
            floors.reads += 1;
            let read = floors.reads;
            let floor = floors.by_show.entry(show).or_insert(Floor { head, read });
            floor.head = floor.head.max(head);
            floor.read = read;
        }
        while floors.by_show.len() > Self::KEPT {
            let coldest = floors.by_show.iter().min_by_key(|(_, f)| f.read);
            let Some((&show, _)) = coldest else { break };
            floors.by_show.remove(&show);
        }
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
                  CASE WHEN status = 'queued' AND dead_lettered_at IS NULL THEN
                      (SELECT min(h.accepted_seq) FROM bookings h
                       WHERE h.show_id = b.show_id AND h.status = 'queued'
                         AND h.dead_lettered_at IS NULL
                         AND h.accepted_seq >= coalesce(
                             (SELECT f.floor_seq FROM unnest($2::uuid[], $3::bigint[]) AS f(show_id, floor_seq)
                              WHERE f.show_id = b.show_id), 0))
                  END AS head,
                  CASE WHEN status = 'waitlisted' THEN
                      (SELECT count(*) FROM bookings w
                       WHERE w.show_id = b.show_id AND w.status = 'waitlisted'
                         AND w.waitlist_seq <= b.waitlist_seq)
                  END AS waitlist_position,
                  (SELECT coalesce(json_agg(json_build_object(
                              'id', s.id, 'section', sec.name, 'row', s.row_label,
                              'number', s.number, 'price_cents', s.price_cents)
                          ORDER BY sec.position, length(s.row_label), s.row_label, s.number), '[]')
                   FROM booking_seats bs
                   JOIN seats s ON s.id = bs.seat_id
                   JOIN sections sec ON sec.id = s.section_id
                   WHERE bs.booking_id = b.id) AS "seats!: Json<Vec<BookedSeat>>",
                  CASE WHEN status = 'confirmed' THEN
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
                         WHERE show_id = s.id AND status = 'queued' AND dead_lettered_at IS NULL
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shows_floor_only_rises() {
        let (lines, show) = (Lines::default(), Uuid::new_v4());
        lines.read([(show, 10)]);
        // A read that started earlier and finished later.
        lines.read([(show, 7)]);
        assert_eq!(lines.floors(), (vec![show], vec![10]));
        lines.read([(show, 12)]);
        assert_eq!(lines.floors(), (vec![show], vec![12]));
    }

    #[test]
    fn only_the_most_recently_read_shows_keep_their_floors() {
        let lines = Lines::default();
        let shows: Vec<Uuid> = (0..Lines::KEPT + 10).map(|_| Uuid::new_v4()).collect();
        for show in &shows {
            lines.read([(*show, 1)]);
        }
        // The first show is read again, so it is no longer the coldest.
        lines.read([(shows[0], 2)]);
        lines.read([(Uuid::new_v4(), 1)]);
        let (kept, _) = lines.floors();
        assert_eq!(kept.len(), Lines::KEPT);
        assert!(kept.contains(&shows[0]));
        assert!(!kept.contains(&shows[11]));
        assert!(kept.contains(&shows[Lines::KEPT + 9]));
    }
}
