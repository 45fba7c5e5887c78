//! PostgreSQL pool and migrations.

use std::time::Duration;

use backon::Retryable;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;

/// Migrations compiled into every binary. sqlx takes a PostgreSQL advisory
/// lock while migrating, so several processes starting together are safe.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How statements on a pool are planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// PostgreSQL's default: a prepared statement may switch to a generic
    /// plan. Right for single-row statements on a key.
    Default,
    /// Plan every execution for its parameters. Batch statements (`id =
    /// ANY($1)`, `FROM unnest(...)`) otherwise keep a generic plan made while
    /// the table was small — a sequential scan — long after it has grown;
    /// one plan per batch costs little.
    PerExecution,
}

/// Opens a pool (waiting for the database with backoff) and applies any
/// pending migrations. Returns `None` if cancelled before the database came.
pub async fn connect_and_migrate(
    url: &str,
    max_connections: u32,
    plans: Plans,
    cancel: &CancellationToken,
) -> Result<Option<PgPool>, sqlx::migrate::MigrateError> {
    let mut options = PgConnectOptions::from_str(url)?;
    if plans == Plans::PerExecution {
        options = options.options([("plan_cache_mode", "force_custom_plan")]);
    }
    let connect = || async {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options.clone())
            .await
    };
    let retrying = connect.retry(crate::retry::forever()).notify(
        |err, wait| tracing::warn!(error = %err, ?wait, "PostgreSQL not reachable, retrying"),
    );
    let pool = tokio::select! {
        pool = retrying => pool.expect("retries forever"),
        () = cancel.cancelled() => return Ok(None),
    };
    MIGRATOR.run(&pool).await?;
    Ok(Some(pool))
}

/// A pool for reads that may lag behind the primary (`DATABASE_READ_URL`,
/// a proxy in front of the replicas, or else the primary itself). It
/// connects on first use, so a service starts while the replicas are still
/// coming up.
///
/// Its statements are planned for each execution's parameters
/// ([`Plans::PerExecution`]): a search's plan depends on which of its
/// filters are given (a generic plan would scan every show). And without
/// parallel workers: a search is a few milliseconds, less than starting
/// them takes, and a plan would start them even for a branch it skips.
pub fn replica_pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.options([
        ("plan_cache_mode", "force_custom_plan"),
        ("max_parallel_workers_per_gather", "0"),
    ]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// Whether an error means the database could not be reached (worth
/// retrying) rather than that the statement itself is wrong. A failover
/// shows as several of these: connections to the old primary break
/// (I/O, protocol, admin or crash shutdown), new ones are refused until the
/// proxy finds the new one, and one that still reaches a node just demoted
/// to a replica is refused writes (read-only transaction).
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(
                &*code,
                // serialization_failure, deadlock_detected, admin_shutdown,
                // crash_shutdown, cannot_connect_now, too_many_connections,
                // read_only_sql_transaction, and connection_exception's
                // class
                "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "25006"
            ) || code.starts_with("08")
        }),
        _ => false,
    }
}
