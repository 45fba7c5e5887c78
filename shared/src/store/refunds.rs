//! Owns `refunds` (one per charge to pay back, keyed by the charge's
//! reference) and the built-in test gateway's ledger,
//! `test_gateway_refunds`. A refund made adds to its booking's
//! `refunded_cents` in the same statement.

use std::time::Duration;

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

/// A refund to make: the charge's reference, its booking and the amount.
pub struct Owed<'a> {
    pub reference: &'a str,
    pub booking_id: Uuid,
    pub amount_cents: i64,
}

/// Records refunds in the deciding transaction; once per charge, however
/// often the run is decided again.
pub async fn record(conn: &mut PgConnection, owed: &[Owed<'_>]) -> Result<(), sqlx::Error> {
    if owed.is_empty() {
        return Ok(());
    }
    let references: Vec<&str> = owed.iter().map(|r| r.reference).collect();
    let bookings: Vec<Uuid> = owed.iter().map(|r| r.booking_id).collect();
    let amounts: Vec<i64> = owed.iter().map(|r| r.amount_cents).collect();
    sqlx::query!(
        "INSERT INTO refunds (reference, booking_id, amount_cents)
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[])
         ON CONFLICT (reference) DO NOTHING",
        &references as &[&str],
        &bookings,
        &amounts
    )
    .execute(conn)
    .await
    .map(drop)
}

/// A refund leased for an attempt.
pub struct Leased {
    pub reference: String,
    pub booking_id: Uuid,
    pub amount_cents: i64,
    /// This attempt's number, from 1.
    pub attempts: i32,
}

/// Claims up to `limit` due refunds for `lease`: their next attempt moves
/// past it, so nobody else asks while this one does.
pub async fn lease_due(
    db: impl PgExecutor<'_>,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Leased>, sqlx::Error> {
    sqlx::query_as!(
        Leased,
        "WITH due AS (
             SELECT reference FROM refunds
             WHERE refunded_at IS NULL AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         UPDATE refunds r SET attempts = r.attempts + 1,
                              next_attempt_at = now() + make_interval(secs => $2)
         FROM due WHERE r.reference = due.reference
         RETURNING r.reference, r.booking_id, r.amount_cents, r.attempts",
        limit,
        lease.as_secs_f64()
    )
    .fetch_all(db)
    .await
}

/// Marks a refund made and adds it to its booking's `refunded_cents`; a
/// second call for the same refund changes nothing.
pub async fn mark_refunded(db: impl PgExecutor<'_>, reference: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH done AS (
             UPDATE refunds SET refunded_at = now(), last_error = NULL
             WHERE reference = $1 AND refunded_at IS NULL
             RETURNING booking_id, amount_cents)
         UPDATE bookings b SET refunded_cents = coalesce(b.refunded_cents, 0) + done.amount_cents,
                               version = b.version + 1, updated_at = now()
         FROM done WHERE b.id = done.booking_id",
        reference
    )
    .execute(db)
    .await
    .map(drop)
}

/// Records a failed attempt and when to try again.
pub async fn record_failure(
    db: impl PgExecutor<'_>,
    reference: &str,
    error: &str,
    retry_in: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE refunds SET last_error = $2, next_attempt_at = now() + make_interval(secs => $3)
         WHERE reference = $1 AND refunded_at IS NULL",
        reference,
        error,
        retry_in.as_secs_f64()
    )
    .execute(db)
    .await
    .map(drop)
}

/// Refunds of a show's bookings: made, and still to be made (the gateway
/// has not said yes yet; the worker keeps asking).
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundCounts {
    pub completed: i64,
    pub refunded_cents: i64,
    pub pending: i64,
    pub pending_cents: i64,
}

pub async fn counts(db: impl PgExecutor<'_>, show_id: Uuid) -> Result<RefundCounts, sqlx::Error> {
    sqlx::query_as!(
        RefundCounts,
        r#"SELECT count(*) FILTER (WHERE r.refunded_at IS NOT NULL) AS "completed!",
                  coalesce(sum(r.amount_cents) FILTER (WHERE r.refunded_at IS NOT NULL), 0)::bigint
                      AS "refunded_cents!",
                  count(*) FILTER (WHERE r.refunded_at IS NULL) AS "pending!",
                  coalesce(sum(r.amount_cents) FILTER (WHERE r.refunded_at IS NULL), 0)::bigint
                      AS "pending_cents!"
           FROM refunds r JOIN bookings b ON b.id = r.booking_id
           WHERE b.show_id = $1"#,
        show_id
    )
    .fetch_one(db)
    .await
}

/// The test gateway's ledger: one row per refunded charge, counting how
/// often it was asked.
pub async fn test_gateway_refund(
    db: impl PgExecutor<'_>,
    reference: &str,
    amount_cents: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO test_gateway_refunds (reference, amount_cents) VALUES ($1, $2)
         ON CONFLICT (reference) DO UPDATE SET asks = test_gateway_refunds.asks + 1",
        reference,
        amount_cents
    )
    .execute(db)
    .await
    .map(drop)
}
