//! Owns no table: the readiness ping, the least a database can answer.

use sqlx::PgExecutor;

/// Whether the database answers at all.
pub async fn ping(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(db).await.map(drop)
}
