//! Owns `shows`: a show's facts, and the counters of what is held and
//! booked out of its capacity, which only the show's deciding transaction
//! changes (under the `version` check).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::ShowKind;

/// A show as clients see it, with its live availability.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShowView {
    pub id: Uuid,
    pub name: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub kind: ShowKind,
    pub capacity: i32,
    /// Seats or tickets still on sale right now.
    pub available: i32,
    pub held: i32,
    pub booked: i32,
    /// General admission ticket price; seated shows price per section.
    pub price_cents: Option<i64>,
    pub max_tickets_per_customer: Option<i32>,
}

/// A show to create. Seated shows get their sections and seats from
/// [`super::seats`] in the same transaction.
pub struct NewShow<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub venue: &'a str,
    pub starts_at: DateTime<Utc>,
    pub kind: ShowKind,
    pub capacity: i32,
    /// General admission only.
    pub price_cents: Option<i64>,
    pub max_tickets_per_customer: Option<i32>,
    /// The operator who made it.
    pub created_by: &'a str,
}

pub async fn create(conn: &mut PgConnection, show: &NewShow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO shows (id, name, venue, starts_at, kind, capacity, price_cents,
                            max_tickets_per_customer, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        show.id,
        show.name,
        show.venue,
        show.starts_at,
        show.kind as ShowKind,
        show.capacity,
        show.price_cents,
        show.max_tickets_per_customer,
        show.created_by
    )
    .execute(conn)
    .await
    .map(drop)
}

pub async fn view(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<ShowView>, sqlx::Error> {
    sqlx::query_as!(
        ShowView,
        r#"SELECT id, name, venue, starts_at, kind AS "kind: ShowKind", capacity,
                  capacity - held - booked AS "available!", held, booked, price_cents,
                  max_tickets_per_customer
           FROM shows WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

/// Shows soonest first, a page at a time.
pub async fn list(
    db: impl PgExecutor<'_>,
    limit: i64,
    offset: i64,
) -> Result<Vec<ShowView>, sqlx::Error> {
    sqlx::query_as!(
        ShowView,
        r#"SELECT id, name, venue, starts_at, kind AS "kind: ShowKind", capacity,
                  capacity - held - booked AS "available!", held, booked, price_cents,
                  max_tickets_per_customer
           FROM shows ORDER BY starts_at, id LIMIT $1 OFFSET $2"#,
        limit,
        offset
    )
    .fetch_all(db)
    .await
}

/// What validating a booking request needs of its show.
pub struct Terms {
    pub kind: ShowKind,
    pub price_cents: Option<i64>,
}

pub async fn terms(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Terms>, sqlx::Error> {
    sqlx::query_as!(
        Terms,
        r#"SELECT kind AS "kind: ShowKind", price_cents FROM shows WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

/// A show as its deciding transaction reads it.
pub struct ForDeciding {
    pub id: Uuid,
    pub name: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub kind: ShowKind,
    pub capacity: i32,
    pub held: i32,
    pub booked: i32,
    pub version: i64,
    pub max_tickets_per_customer: Option<i32>,
    pub waitlist_tail: i64,
}

/// The shows `ids` names (those that exist), in one statement however many.
pub async fn load_for_deciding(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<ForDeciding>, sqlx::Error> {
    sqlx::query_as!(
        ForDeciding,
        r#"SELECT id, name, venue, starts_at, kind AS "kind: ShowKind", capacity, held, booked, version,
                  max_tickets_per_customer, waitlist_tail
           FROM shows WHERE id = ANY($1)"#,
        ids
    )
    .fetch_all(conn)
    .await
}

/// What a run changed in the counters, applied under the version read.
pub struct CountersChange {
    pub id: Uuid,
    pub version: i64,
    pub held: i32,
    pub booked: i32,
    pub waitlist_tail: i64,
}

/// Applies `changes` (one statement, however many shows) if each show is
/// still at its version; `false` if any was changed since (a conflict: the
/// caller rolls back).
pub async fn persist_counters(
    conn: &mut PgConnection,
    changes: &[CountersChange],
) -> Result<bool, sqlx::Error> {
    if changes.is_empty() {
        return Ok(true);
    }
    let ids: Vec<Uuid> = changes.iter().map(|c| c.id).collect();
    let versions: Vec<i64> = changes.iter().map(|c| c.version).collect();
    let held: Vec<i32> = changes.iter().map(|c| c.held).collect();
    let booked: Vec<i32> = changes.iter().map(|c| c.booked).collect();
    let tails: Vec<i64> = changes.iter().map(|c| c.waitlist_tail).collect();
    let updated = sqlx::query!(
        "UPDATE shows SET held = shows.held + t.held, booked = shows.booked + t.booked,
                waitlist_tail = t.tail, version = shows.version + 1
         FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::int[], $5::bigint[])
              AS t(id, version, held, booked, tail)
         WHERE shows.id = t.id AND shows.version = t.version",
        &ids,
        &versions,
        &held,
        &booked,
        &tails
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == ids.len() as u64)
}

/// Shows that have started with bookings still on their waiting list.
pub async fn started_with_waitlist(conn: &mut PgConnection) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM shows s
         WHERE starts_at <= now() AND waitlist_tail > 0
           AND (SELECT true FROM bookings b
                WHERE b.show_id = s.id AND booking_waiting_for_offer(b.status) LIMIT 1)"
    )
    .fetch_all(conn)
    .await
}
