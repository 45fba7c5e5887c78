//! Owns `sections` and `seats`: a seated show's map, and each seat's live
//! status and owner, which only the show's deciding transaction changes
//! (under each seat's `version` check). Every seat list is read through the
//! `seat_places` view, ordered by its `seat_order` (see the migration
//! `20261207000001_store_rules.sql`): the seat order is written once.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::SeatStatus;
use crate::store::bookings::BookedSeat;

/// One seat of the seat map, with its live status.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeatMapEntry {
    pub id: Uuid,
    pub section: String,
    pub row: String,
    pub number: i32,
    pub price_cents: i64,
    pub status: SeatStatus,
}

/// Adds a section and its rows of seats (`rows`: label and seat count) to
/// a new show, in the caller's transaction.
pub async fn create_section(
    conn: &mut PgConnection,
    show_id: Uuid,
    position: i32,
    name: &str,
    price_cents: i64,
    rows: &[(&str, i32)],
) -> Result<(), sqlx::Error> {
    let section_id = Uuid::new_v4();
    sqlx::query!(
        "INSERT INTO sections (id, show_id, name, price_cents, position) VALUES ($1, $2, $3, $4, $5)",
        section_id,
        show_id,
        name,
        price_cents,
        position
    )
    .execute(&mut *conn)
    .await?;
    let (labels, numbers): (Vec<&str>, Vec<i32>) = rows
        .iter()
        .flat_map(|&(row, seats)| (1..=seats).map(move |n| (row, n)))
        .unzip();
    sqlx::query!(
        "INSERT INTO seats (id, show_id, section_id, row_label, number, price_cents)
         SELECT gen_random_uuid(), $1, $2, r, n, $3
         FROM unnest($4::text[], $5::int[]) AS t(r, n)",
        show_id,
        section_id,
        price_cents,
        &labels as &[&str],
        &numbers
    )
    .execute(conn)
    .await
    .map(drop)
}

/// Every seat of a show, in seat order.
pub async fn of_show(
    db: impl PgExecutor<'_>,
    show_id: Uuid,
) -> Result<Vec<BookedSeat>, sqlx::Error> {
    sqlx::query_as!(
        BookedSeat,
        r#"SELECT id AS "id!", section AS "section!", row AS "row!", number AS "number!",
                  price_cents AS "price_cents!"
           FROM seat_places WHERE show_id = $1 ORDER BY seat_order"#,
        show_id
    )
    .fetch_all(db)
    .await
}

/// The seat map: every seat of a show with its status, in seat order.
pub async fn map(db: impl PgExecutor<'_>, show_id: Uuid) -> Result<Vec<SeatMapEntry>, sqlx::Error> {
    sqlx::query_as!(
        SeatMapEntry,
        r#"SELECT id AS "id!", section AS "section!", row AS "row!", number AS "number!",
                  price_cents AS "price_cents!", status AS "status!: SeatStatus"
           FROM seat_places WHERE show_id = $1 ORDER BY seat_order"#,
        show_id
    )
    .fetch_all(db)
    .await
}

/// A seat as the deciding transaction reads it.
pub struct ForDeciding {
    /// The booking whose seat list it was read for, if any.
    pub booking_id: Option<Uuid>,
    pub id: Uuid,
    pub status: SeatStatus,
    pub owner: Option<Uuid>,
    pub version: i64,
    pub section: String,
    pub section_rank: i32,
    pub row: String,
    /// Sorts rows bytewise in seat order (the schema's `seat_row_key`).
    pub row_key: String,
    pub number: i32,
    pub price_cents: i64,
}

/// The seats the bookings `ids` asked for or were given, each booking's
/// in seat order.
pub async fn of_bookings(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<ForDeciding>, sqlx::Error> {
    sqlx::query_as!(
        ForDeciding,
        r#"SELECT bs.booking_id AS "booking_id?", s.id AS "id!", s.status AS "status!: SeatStatus",
                  s.booking_id AS owner, s.version AS "version!", s.section AS "section!",
                  s.section_rank AS "section_rank!", s.row AS "row!", s.row_key AS "row_key!",
                  s.number AS "number!", s.price_cents AS "price_cents!"
           FROM booking_seats bs
           JOIN seat_places s ON s.id = bs.seat_id
           WHERE bs.booking_id = ANY($1)
           ORDER BY s.seat_order"#,
        ids
    )
    .fetch_all(conn)
    .await
}

/// Every seat of a show in `status` (to pick best-available seats from).
pub async fn of_show_in(
    conn: &mut PgConnection,
    show_id: Uuid,
    status: SeatStatus,
) -> Result<Vec<ForDeciding>, sqlx::Error> {
    sqlx::query_as!(
        ForDeciding,
        r#"SELECT NULL::uuid AS "booking_id?", id AS "id!", status AS "status!: SeatStatus",
                  booking_id AS owner, version AS "version!", section AS "section!",
                  section_rank AS "section_rank!", row AS "row!", row_key AS "row_key!",
                  number AS "number!", price_cents AS "price_cents!"
           FROM seat_places WHERE show_id = $1 AND status = $2"#,
        show_id,
        status as SeatStatus
    )
    .fetch_all(conn)
    .await
}

/// The section names of a show.
pub async fn section_names(
    conn: &mut PgConnection,
    show_id: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!("SELECT name FROM sections WHERE show_id = $1", show_id)
        .fetch_all(conn)
        .await
}

/// A seat's new status and owner, to write under the version it was read at.
pub struct SeatChange {
    pub id: Uuid,
    pub version: i64,
    pub status: SeatStatus,
    pub owner: Option<Uuid>,
}

/// Writes `changes` if every seat is still at its version; `false` if any
/// was changed since (a conflict: the caller rolls back).
pub async fn persist(conn: &mut PgConnection, changes: &[SeatChange]) -> Result<bool, sqlx::Error> {
    if changes.is_empty() {
        return Ok(true);
    }
    let ids: Vec<Uuid> = changes.iter().map(|c| c.id).collect();
    let versions: Vec<i64> = changes.iter().map(|c| c.version).collect();
    let statuses: Vec<SeatStatus> = changes.iter().map(|c| c.status).collect();
    let owners: Vec<Option<Uuid>> = changes.iter().map(|c| c.owner).collect();
    let updated = sqlx::query!(
        "UPDATE seats SET status = t.status, booking_id = t.owner, version = seats.version + 1
         FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::uuid[]) AS t(id, version, status, owner)
         WHERE seats.id = t.id AND seats.version = t.version",
        &ids,
        &versions,
        &statuses as &[SeatStatus],
        &owners as &[Option<Uuid>]
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == ids.len() as u64)
}
