//! The workers' sweeps over bookings: holds that ran out, waiting lists of
//! shows that started, and requests an API crash left unpublished.

use std::time::Duration;

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// A booking due for a command, and its show.
pub struct Due {
    pub id: Uuid,
    pub show_id: Uuid,
}

/// Up to 1,000 holds past their expiry whose expiry was not asked for in
/// the last `ask_again_after`, locked for the caller's transaction
/// (`SKIP LOCKED`: sweepers share them).
pub async fn lock_expired_holds(
    conn: &mut PgConnection,
    ask_again_after: Duration,
) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as!(
        Due,
        "SELECT id, show_id FROM bookings
         WHERE booking_on_hold(status) AND hold_expires_at <= now()
           AND (expiry_requested_at IS NULL
                OR expiry_requested_at < now() - make_interval(secs => $1))
         ORDER BY hold_expires_at LIMIT 1000
         FOR UPDATE SKIP LOCKED",
        ask_again_after.as_secs_f64()
    )
    .fetch_all(conn)
    .await
}

/// Up to 1,000 waitlisted bookings of `shows`, as [`lock_expired_holds`].
pub async fn lock_waitlisted(
    conn: &mut PgConnection,
    shows: &[Uuid],
    ask_again_after: Duration,
) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as!(
        Due,
        "SELECT id, show_id FROM bookings
         WHERE booking_waiting_for_offer(status) AND show_id = ANY($2)
           AND (expiry_requested_at IS NULL
                OR expiry_requested_at < now() - make_interval(secs => $1))
         LIMIT 1000
         FOR UPDATE SKIP LOCKED",
        ask_again_after.as_secs_f64(),
        shows
    )
    .fetch_all(conn)
    .await
}

/// Notes that an expiry was asked for (its command is in the outbox).
pub async fn mark_expiry_requested(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bookings SET expiry_requested_at = now() WHERE id = ANY($1)",
        ids
    )
    .execute(conn)
    .await
    .map(drop)
}

/// Up to 1,000 requests still in line (not dead-lettered) recorded more
/// than `older_than` ago, oldest first.
pub async fn stale_in_line(
    db: impl PgExecutor<'_>,
    older_than: Duration,
) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as!(
        Due,
        "SELECT id, show_id FROM bookings
         WHERE booking_in_line(status, dead_lettered_at)
           AND created_at < now() - make_interval(secs => $1)
         ORDER BY created_at LIMIT 1000",
        older_than.as_secs_f64()
    )
    .fetch_all(db)
    .await
}

/// How many requests wait in line, counted up to `at_most`: enough to tell
/// a sale's backlog from none without counting a long line whole. Read in
/// line order so that the line index is the one way to read it cheaply:
/// unordered, statistics taken when most of a young sale was queued made
/// the planner expect queued rows everywhere and scan the whole table.
pub async fn in_line_up_to(db: impl PgExecutor<'_>, at_most: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "waiting!" FROM
             (SELECT 1 FROM bookings WHERE booking_in_line(status, dead_lettered_at)
              ORDER BY show_id, accepted_seq LIMIT $1) AS line"#,
        at_most
    )
    .fetch_one(db)
    .await
}
