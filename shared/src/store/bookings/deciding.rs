//! The deciding transaction's reads and writes of bookings: what a run of
//! commands for one show needs, and its outcome written under each
//! booking's `version`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{BookingStatus, Reason};

/// A booking as the deciding transaction reads it.
pub struct ForDeciding {
    pub id: Uuid,
    pub show_id: Uuid,
    pub status: BookingStatus,
    pub reason: Option<Reason>,
    pub quantity: i32,
    pub version: i64,
    pub email: String,
    pub name: String,
    pub total_cents: Option<i64>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub payment_ref: Option<String>,
    pub section: Option<String>,
    pub waitlist: bool,
    pub waitlist_seq: Option<i64>,
    pub accepted_seq: Option<i64>,
}

/// The bookings `ids` names (those that exist).
pub async fn load_for_deciding(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<ForDeciding>, sqlx::Error> {
    sqlx::query_as!(
        ForDeciding,
        r#"SELECT id, show_id, status AS "status: BookingStatus", reason AS "reason: Reason",
                  quantity, version, email, name, total_cents, hold_expires_at, payment_ref,
                  section, waitlist, waitlist_seq, accepted_seq
           FROM bookings WHERE id = ANY($1)"#,
        ids
    )
    .fetch_all(conn)
    .await
}

/// One waitlisted booking at the head of its (section, size) queue.
pub struct Waiting {
    pub id: Uuid,
    pub seq: i64,
    /// `""` for general admission or any section.
    pub section: String,
    pub size: i32,
}

/// The first `most / n` waitlisted bookings of every queue of size `n` (1
/// to `max_size`) for each of `sections` (`""`: no section), in join order.
pub async fn waitlist_heads(
    conn: &mut PgConnection,
    show_id: Uuid,
    sections: &[String],
    most: i32,
    max_size: i32,
) -> Result<Vec<Waiting>, sqlx::Error> {
    sqlx::query_as!(
        Waiting,
        r#"SELECT w.id AS "id!", w.waitlist_seq AS "seq!", k.section AS "section!", q.n AS "size!"
           FROM unnest($2::text[]) AS k(section), generate_series(1, $4::int) AS q(n),
                LATERAL (SELECT id, waitlist_seq FROM bookings
                         WHERE show_id = $1 AND booking_waiting_for_offer(status)
                           AND coalesce(section, '') = k.section AND quantity = q.n
                         ORDER BY waitlist_seq LIMIT $3 / q.n) w"#,
        show_id,
        sections,
        most,
        max_size
    )
    .fetch_all(conn)
    .await
}

/// Held + confirmed tickets of this show per customer (lowercased email),
/// for those of `customers` who have any.
pub async fn tickets_per_customer(
    conn: &mut PgConnection,
    show_id: Uuid,
    customers: &[String],
) -> Result<Vec<(String, i32)>, sqlx::Error> {
    Ok(sqlx::query!(
        r#"SELECT lower(email) AS "customer!", sum(quantity)::int AS "tickets!"
           FROM bookings
           WHERE show_id = $1 AND lower(email) = ANY($2) AND booking_holds_tickets(status)
           GROUP BY lower(email)"#,
        show_id,
        customers
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|c| (c.customer, c.tickets))
    .collect())
}

/// A booking's state at the end of a run, to write under the version it
/// was read at.
pub struct Outcome<'a> {
    pub id: Uuid,
    pub version: i64,
    pub status: BookingStatus,
    pub reason: Option<Reason>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub payment_ref: Option<&'a str>,
    pub total_cents: Option<i64>,
    pub waitlist_seq: Option<i64>,
}

/// Writes each booking's outcome if it is still at its version; `false`
/// if any was changed since (a conflict: the caller rolls back).
pub async fn persist(
    conn: &mut PgConnection,
    outcomes: &[Outcome<'_>],
) -> Result<bool, sqlx::Error> {
    if outcomes.is_empty() {
        return Ok(true);
    }
    let ids: Vec<Uuid> = outcomes.iter().map(|o| o.id).collect();
    let versions: Vec<i64> = outcomes.iter().map(|o| o.version).collect();
    let statuses: Vec<BookingStatus> = outcomes.iter().map(|o| o.status).collect();
    let reasons: Vec<Option<Reason>> = outcomes.iter().map(|o| o.reason).collect();
    let expiries: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.hold_expires_at).collect();
    let payments: Vec<Option<&str>> = outcomes.iter().map(|o| o.payment_ref).collect();
    let totals: Vec<Option<i64>> = outcomes.iter().map(|o| o.total_cents).collect();
    let places: Vec<Option<i64>> = outcomes.iter().map(|o| o.waitlist_seq).collect();
    let updated = sqlx::query!(
        "UPDATE bookings SET status = t.status, reason = t.reason, hold_expires_at = t.expires,
                payment_ref = t.payment_ref, total_cents = t.total, waitlist_seq = t.place,
                dead_lettered_at = NULL, version = bookings.version + 1, updated_at = now()
         FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                     $7::bigint[], $8::bigint[])
              AS t(id, version, status, reason, expires, payment_ref, total, place)
         WHERE bookings.id = t.id AND bookings.version = t.version",
        &ids,
        &versions,
        &statuses as &[BookingStatus],
        &reasons as &[Option<Reason>],
        &expiries as &[Option<DateTime<Utc>>],
        &payments as &[Option<&str>],
        &totals as &[Option<i64>],
        &places as &[Option<i64>]
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == ids.len() as u64)
}

/// Seats picked for best-available bookings become theirs, as named seats
/// are from the start: `(booking, seat)` pairs.
pub async fn add_seats(
    conn: &mut PgConnection,
    show_id: Uuid,
    bookings: &[Uuid],
    seats: &[Uuid],
) -> Result<(), sqlx::Error> {
    if seats.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "INSERT INTO booking_seats (booking_id, seat_id, show_id)
         SELECT booking, seat, $1 FROM unnest($2::uuid[], $3::uuid[]) AS t(booking, seat)",
        show_id,
        bookings,
        seats
    )
    .execute(conn)
    .await
    .map(drop)
}

/// One state change for the audit trail.
pub struct AuditEntry<'a> {
    pub booking_id: Uuid,
    pub show_id: Uuid,
    pub from: BookingStatus,
    pub to: BookingStatus,
    pub reason: Option<Reason>,
    pub actor: &'a str,
}

/// Appends `entries` to the audit trail, in one statement however many
/// shows they are of.
pub async fn audit(conn: &mut PgConnection, entries: &[AuditEntry<'_>]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = entries.iter().map(|e| e.booking_id).collect();
    let shows: Vec<Uuid> = entries.iter().map(|e| e.show_id).collect();
    let froms: Vec<BookingStatus> = entries.iter().map(|e| e.from).collect();
    let tos: Vec<BookingStatus> = entries.iter().map(|e| e.to).collect();
    let reasons: Vec<Option<Reason>> = entries.iter().map(|e| e.reason).collect();
    let actors: Vec<&str> = entries.iter().map(|e| e.actor).collect();
    sqlx::query!(
        "INSERT INTO booking_audit (booking_id, show_id, from_status, to_status, reason, actor)
         SELECT t.id, t.show_id, t.from_status, t.to_status, t.reason, t.actor
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
              AS t(id, show_id, from_status, to_status, reason, actor)",
        &ids,
        &shows,
        &froms as &[BookingStatus],
        &tos as &[BookingStatus],
        &reasons as &[Option<Reason>],
        &actors as &[&str]
    )
    .execute(conn)
    .await
    .map(drop)
}

/// Marks a booking whose request was dead-lettered, so the requeue sweep
/// leaves it to the operator's replay instead of looping it.
pub async fn mark_dead_lettered(db: &PgPool, booking_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bookings SET dead_lettered_at = now() WHERE id = $1 AND status = $2",
        booking_id,
        BookingStatus::Queued as BookingStatus
    )
    .execute(db)
    .await
    .map(drop)
}

/// What charging a confirm needs to know of its booking before the
/// deciding transaction.
pub struct ToCharge {
    pub status: BookingStatus,
    pub total_cents: Option<i64>,
    /// Whether its hold has run out (`None` if it has none).
    pub due: Option<bool>,
}

pub async fn to_charge(db: &PgPool, booking_id: Uuid) -> Result<Option<ToCharge>, sqlx::Error> {
    sqlx::query_as!(
        ToCharge,
        r#"SELECT status AS "status: BookingStatus", total_cents,
                  hold_expires_at <= now() AS "due?"
           FROM bookings WHERE id = $1"#,
        booking_id
    )
    .fetch_optional(db)
    .await
}
