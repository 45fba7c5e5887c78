//! Owns the workers' shard claims: a session-level advisory lock per shard,
//! held on a worker's own claim session, and those sessions, counted in
//! `pg_stat_activity` as the live workers. Every call takes that session's
//! connection: the locks are its own and die with it.

use sqlx::PgConnection;

/// Names each worker's claim session; counting them counts live workers.
pub const APPLICATION_NAME: &str = "booking-worker-claims";
/// First key of the advisory locks (the second is the shard number), so they
/// cannot collide with other users of advisory locks in the database.
const LOCK_SPACE: i32 = 0x626b_7368; // "bksh"

/// Claims `shard` for this session, unless another session holds it.
pub async fn try_claim(conn: &mut PgConnection, shard: u16) -> Result<bool, sqlx::Error> {
    let locked = sqlx::query_scalar!(
        "SELECT pg_try_advisory_lock($1, $2)",
        LOCK_SPACE,
        i32::from(shard)
    )
    .fetch_one(conn)
    .await?;
    Ok(locked.unwrap_or(false))
}

/// Gives `shard` back.
pub async fn release(conn: &mut PgConnection, shard: u16) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT pg_advisory_unlock($1, $2)",
        LOCK_SPACE,
        i32::from(shard)
    )
    .fetch_one(conn)
    .await
    .map(drop)
}

/// The claim sessions open on this database, this one included.
pub async fn live_workers(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "live!" FROM pg_stat_activity
           WHERE application_name = $1 AND datname = current_database()"#,
        APPLICATION_NAME
    )
    .fetch_one(conn)
    .await
}
