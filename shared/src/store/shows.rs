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
    pub description: Option<String>,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub venue_address: Option<String>,
    /// WGS 84 degrees; both or neither.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// With `near`: how far the show is from there, in km.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<f64>,
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
    pub catalog: Listing<'a>,
    /// The operator who made it.
    pub created_by: &'a str,
}

/// What the catalog says of a show beyond its terms.
#[derive(Default)]
pub struct Listing<'a> {
    pub description: Option<&'a str>,
    pub category: Option<&'a str>,
    pub tags: Vec<String>,
    pub venue_address: Option<&'a str>,
    /// `(latitude, longitude)`, WGS 84 degrees.
    pub position: Option<(f64, f64)>,
}

pub async fn create(conn: &mut PgConnection, show: &NewShow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO shows (id, name, venue, starts_at, kind, capacity, price_cents,
                            max_tickets_per_customer, created_by, description, category, tags,
                            venue_address, latitude, longitude)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        show.id,
        show.name,
        show.venue,
        show.starts_at,
        show.kind as ShowKind,
        show.capacity,
        show.price_cents,
        show.max_tickets_per_customer,
        show.created_by,
        show.catalog.description,
        show.catalog.category,
        &show.catalog.tags,
        show.catalog.venue_address,
        show.catalog.position.map(|(lat, _)| lat),
        show.catalog.position.map(|(_, lng)| lng)
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
                  max_tickets_per_customer, description, category, tags, venue_address,
                  latitude, longitude, NULL::float8 AS distance_km
           FROM shows WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

/// A search of the catalog (`GET /v1/shows`): every filter given must hold.
#[derive(Debug, Default, Clone, PartialEq, Hash, Eq)]
pub struct Search {
    /// Full text, as a web search box takes it (`websearch_to_tsquery`).
    pub text: Option<String>,
    /// Lower case.
    pub category: Option<String>,
    /// Lower case; all of them.
    pub tags: Vec<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub near: Option<Near>,
    /// Only shows with tickets on sale now.
    pub available: bool,
    pub limit: i64,
    pub offset: i64,
}

/// Shows within `radius_km` of a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    pub latitude: f64,
    pub longitude: f64,
    pub radius_km: f64,
}

// Searches are cache keys; a validated `Near` has no NaN, so equality is
// total.
impl Eq for Near {}

impl std::hash::Hash for Near {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for x in [self.latitude, self.longitude, self.radius_km] {
            x.to_bits().hash(state);
        }
    }
}

/// The shows `search` finds. With text, by relevance: first the shows
/// whose name holds every word, then those whose name, venue, category and
/// tags do, then those that need the description too; within each of these
/// tiers, soonest first. Else nearest first with `near`, else soonest first.
///
/// Relevance is these tiers rather than `ts_rank`: ranking must read every
/// match, and a common word matches thousands of shows (measured with
/// 100,000 shows during a sale: `ts_rank` made text searches p50 50 ms,
/// p99 160 ms). Each tier is its own branch, sorted and cut at the page's
/// end, so a broad word is read in `starts_at` order and stops after a
/// page, and a rare one is found through the text index and sorted. The
/// page is cut from the tiers in their order, so that a page the first
/// tier fills never reads the others: PostgreSQL runs the branches of a
/// `UNION ALL` one after the other, unless in parallel, which the read
/// pool turns off ([`crate::db::replica_pool`]). Only the page's shows
/// are read in full.
///
/// Nearest first reads the shows in the order of their chord on the unit
/// sphere (the migration's `sphere_point`, indexed) up to the page's last
/// one, then sorts only the shows as near as that one (ties by time).
///
/// Tags are matched by their hashes, which the index the tiers walk
/// holds (the tags themselves may not fit in it), and the page's shows
/// against the tags themselves: a hash collision could shorten a page,
/// never list a show without its tags.
pub async fn search(
    db: impl PgExecutor<'_>,
    search: &Search,
) -> Result<Vec<ShowView>, sqlx::Error> {
    let near = search.near;
    sqlx::query_as!(
        ShowView,
        r#"WITH matching AS NOT MATERIALIZED (
               SELECT id, starts_at, latitude, longitude, name_words, listing_words, document,
                      sphere_point(latitude, longitude) <-> sphere_point($7, $8) AS chord
               FROM shows
               WHERE ($2::text IS NULL OR lower(category) = $2)
                 AND (cardinality($3::text[]) = 0 OR tag_hashes @> tag_hashes($3))
                 AND ($4::timestamptz IS NULL OR starts_at >= $4)
                 AND ($5::timestamptz IS NULL OR starts_at < $5)
                 AND (NOT $6 OR (capacity - held - booked > 0 AND starts_at > now()))
                 AND ($7::float8 IS NULL
                      OR (sphere_point(latitude, longitude)
                              <@ cube_enlarge(sphere_point($7, $8), sphere_chord($9), 3)
                          AND great_circle_km($7, $8, latitude, longitude) <= $9))
           ),
           -- Nearest first: the chord to the page's last show (to the
           -- radius when fewer are that near).
           page_end AS (
               SELECT coalesce(
                   (SELECT chord FROM matching
                    WHERE $1::text IS NULL AND $7 IS NOT NULL
                    ORDER BY chord
                    OFFSET $10::bigint + $11::bigint - 1 LIMIT 1),
                   sphere_chord($9)) AS chord
           ),
           page AS (
               SELECT * FROM (
                   (SELECT 0 AS tier, id, starts_at, chord FROM matching
                    WHERE ($1 IS NULL OR name_words @@ websearch_to_tsquery('english', $1))
                      AND ($1 IS NOT NULL OR $7 IS NULL
                           OR (sphere_point(latitude, longitude)
                                   <@ cube_enlarge(sphere_point($7, $8),
                                                   (SELECT chord FROM page_end), 3)
                               AND chord <= (SELECT chord FROM page_end)))
                    ORDER BY CASE WHEN $1 IS NULL THEN chord END, starts_at, id
                    LIMIT $10 + $11)
                   UNION ALL
                   (SELECT 1 AS tier, id, starts_at, chord FROM matching
                    WHERE listing_words @@ websearch_to_tsquery('english', $1)
                      AND NOT name_words @@ websearch_to_tsquery('english', $1)
                    ORDER BY starts_at, id
                    LIMIT $10 + $11)
                   UNION ALL
                   (SELECT 2 AS tier, id, starts_at, chord FROM matching
                    WHERE document @@ websearch_to_tsquery('english', $1)
                      AND NOT listing_words @@ websearch_to_tsquery('english', $1)
                    ORDER BY starts_at, id
                    LIMIT $10 + $11)
               ) AS tiers
               LIMIT $10 OFFSET $11
           )
           SELECT s.id AS "id!", s.name AS "name!", s.venue AS "venue!",
                  s.starts_at AS "starts_at!", s.kind AS "kind!: ShowKind",
                  s.capacity AS "capacity!", s.capacity - s.held - s.booked AS "available!",
                  s.held AS "held!", s.booked AS "booked!", s.price_cents,
                  s.max_tickets_per_customer, s.description, s.category, s.tags AS "tags!",
                  s.venue_address, s.latitude, s.longitude,
                  great_circle_km($7, $8, s.latitude, s.longitude) AS distance_km
           FROM page JOIN shows s USING (id)
           WHERE lower_tags(s.tags) @> $3
           ORDER BY page.tier, CASE WHEN $1 IS NULL THEN page.chord END, page.starts_at, page.id"#,
        search.text,
        search.category,
        &search.tags,
        search.from,
        search.to,
        search.available,
        near.map(|n| n.latitude),
        near.map(|n| n.longitude),
        near.map(|n| n.radius_km),
        search.limit,
        search.offset
    )
    .fetch_all(db)
    .await
}

/// How many shows there are.
pub async fn count(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM shows"#)
        .fetch_one(db)
        .await
}

/// Vacuums `shows` and gathers its statistics, for a tool that has just
/// created thousands of shows at once (the benchmark's catalog): otherwise
/// autovacuum does both later, in the middle of whatever runs next, and
/// searches are planned without statistics until it does.
pub async fn vacuum_and_analyze(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("VACUUM (ANALYZE) shows")
        .execute(db)
        .await
        .map(drop)
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
