//! Owns `webhook_endpoints`, `webhook_deliveries` and `webhook_attempts`:
//! the endpoints admins register, one delivery row per event and endpoint
//! (fanned out and swept by the notifier), and every POST of one.
//!
//! Statuses are parameters, except "pending" where the sweeper's partial
//! index `webhook_deliveries_due_idx` depends on it: there the statements
//! say `webhook_delivery_pending(status)` (migration
//! `20261207000002_webhook_predicates.sql`), which PostgreSQL inlines, so
//! even a generic plan keeps the index.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::webhooks::{DeliveryStatus, WebhookEvent, ROUTING_LOCK};

/// A live endpoint, without its secret.
#[derive(Debug)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub created_at: DateTime<Utc>,
}

/// One event's delivery to an endpoint, as admins see it.
#[derive(Debug)]
pub struct DeliverySummary {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: WebhookEvent,
    pub status: DeliveryStatus,
    pub booking_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One POST of a delivery and how the endpoint answered.
#[derive(Debug)]
pub struct AttemptRecord {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// Deliveries to queue, column by column: one statement's `unnest`.
#[derive(Debug, Default)]
pub struct NewDeliveries {
    event_ids: Vec<Uuid>,
    types: Vec<&'static str>,
    booking_ids: Vec<Uuid>,
    show_ids: Vec<Uuid>,
    payloads: Vec<serde_json::Value>,
}

impl NewDeliveries {
    /// Adds an event, for every live endpoint subscribed to `event_type`.
    pub fn push(
        &mut self,
        event_id: Uuid,
        event_type: WebhookEvent,
        booking_id: Uuid,
        show_id: Uuid,
        payload: serde_json::Value,
    ) {
        self.event_ids.push(event_id);
        self.types.push(event_type.as_str());
        self.booking_ids.push(booking_id);
        self.show_ids.push(show_id);
        self.payloads.push(payload);
    }
}

/// A leased delivery and where it goes.
// No `Debug`: it holds the endpoint's secret.
pub struct Due {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub booking_id: Uuid,
    pub show_id: Uuid,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub url: String,
    pub secret: String,
}

/// A POST that got no 2xx.
#[derive(Debug)]
pub struct FailedAttempt<'a> {
    pub delivery_id: Uuid,
    /// Counting from 1.
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<&'a str>,
    /// When the POST started.
    pub at: DateTime<Utc>,
}

/// Takes the routing lock (see [`ROUTING_LOCK`]) until the transaction on
/// `tx` ends.
pub async fn lock_routing(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", ROUTING_LOCK)
        .execute(tx)
        .await
        .map(drop)
}

/// Registers an endpoint; returns when it was created.
pub async fn create_endpoint(
    db: impl PgExecutor<'_>,
    id: Uuid,
    url: &str,
    events: &[WebhookEvent],
    secret: &str,
) -> Result<DateTime<Utc>, sqlx::Error> {
    let names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
    sqlx::query_scalar!(
        "INSERT INTO webhook_endpoints (id, url, events, secret) VALUES ($1, $2, $3, $4)
         RETURNING created_at",
        id,
        url,
        &names as &[&str],
        secret
    )
    .fetch_one(db)
    .await
}

/// The live endpoints, oldest first.
pub async fn list_endpoints(db: impl PgExecutor<'_>) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        r#"SELECT id, url, events AS "events: Vec<WebhookEvent>", created_at
           FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY created_at, id"#
    )
    .fetch_all(db)
    .await
}

/// Whether `id` is a live endpoint.
pub async fn endpoint_is_live(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    let known = sqlx::query_scalar!(
        "SELECT 1 AS one FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL",
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(known.is_some())
}

/// Whether any endpoint is live.
pub async fn any_endpoint_live(db: impl PgExecutor<'_>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE deleted_at IS NULL) AS "live!""#
    )
    .fetch_one(db)
    .await
}

/// Deletes an endpoint and cancels its pending deliveries, in one
/// transaction; returns how many were cancelled, or `None` if there is no
/// such endpoint. Fan-out inserts under a share lock on the endpoint row, so
/// once this commits no new delivery can appear for it.
pub async fn delete_endpoint(db: &PgPool, id: Uuid) -> Result<Option<u64>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let deleted = sqlx::query_scalar!(
        "UPDATE webhook_endpoints SET deleted_at = coalesce(deleted_at, now())
         WHERE id = $1 RETURNING id",
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if deleted.is_none() {
        return Ok(None);
    }
    let cancelled = sqlx::query!(
        "UPDATE webhook_deliveries SET status = $2
         WHERE endpoint_id = $1 AND webhook_delivery_pending(status)",
        id,
        DeliveryStatus::Cancelled as DeliveryStatus
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Some(cancelled))
}

/// The endpoint's `limit` latest deliveries, newest first.
pub async fn recent_deliveries(
    db: impl PgExecutor<'_>,
    endpoint_id: Uuid,
    limit: i64,
) -> Result<Vec<DeliverySummary>, sqlx::Error> {
    sqlx::query_as!(
        DeliverySummary,
        r#"SELECT id, event_id, event_type AS "event_type: WebhookEvent",
                  status AS "status: DeliveryStatus", booking_id, created_at, delivered_at
           FROM webhook_deliveries WHERE endpoint_id = $1
           ORDER BY created_at DESC, id DESC LIMIT $2"#,
        endpoint_id,
        limit
    )
    .fetch_all(db)
    .await
}

/// The attempts of these deliveries, by delivery, newest first.
pub async fn attempts_of(
    db: impl PgExecutor<'_>,
    delivery_ids: &[Uuid],
) -> Result<Vec<AttemptRecord>, sqlx::Error> {
    sqlx::query_as!(
        AttemptRecord,
        "SELECT delivery_id, attempt, status_code, error, at FROM webhook_attempts
         WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt DESC",
        delivery_ids
    )
    .fetch_all(db)
    .await
}

/// The event types some live endpoint subscribes to.
pub async fn wanted_event_types(db: impl PgExecutor<'_>) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT unnest(events) AS "event_type!" FROM webhook_endpoints
           WHERE deleted_at IS NULL"#
    )
    .fetch_all(db)
    .await
}

/// Queues each event for every live endpoint subscribed to its type;
/// returns how many deliveries are new (an event already queued for an
/// endpoint adds nothing). Share locks: an endpoint being deleted (which
/// cancels its pending deliveries) waits for this statement, or this sees
/// it deleted.
pub async fn queue_deliveries(
    db: impl PgExecutor<'_>,
    rows: &NewDeliveries,
) -> Result<u64, sqlx::Error> {
    let created = sqlx::query!(
        "INSERT INTO webhook_deliveries
             (id, endpoint_id, event_id, event_type, booking_id, show_id, payload)
         SELECT gen_random_uuid(), e.id, v.event_id, v.event_type, v.booking_id, v.show_id, v.payload
         FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::jsonb[])
              AS v(event_id, event_type, booking_id, show_id, payload)
         JOIN webhook_endpoints e ON e.deleted_at IS NULL AND e.events @> ARRAY[v.event_type]
         FOR SHARE OF e
         ON CONFLICT (endpoint_id, event_id) DO NOTHING",
        &rows.event_ids,
        &rows.types as &[&str],
        &rows.booking_ids,
        &rows.show_ids,
        &rows.payloads
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(created)
}

/// Leases up to `limit` due deliveries of live endpoints, each endpoint's
/// oldest first: at most `per_endpoint` of one, or `free[i]` of `busy[i]`.
/// Their next attempt moves `lease` away, so nobody else POSTs them
/// meanwhile.
pub async fn lease_due(
    db: impl PgExecutor<'_>,
    busy: &[Uuid],
    free: &[i64],
    per_endpoint: i64,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as!(
        Due,
        "WITH due AS (
             SELECT d.id, e.url, e.secret
             FROM webhook_endpoints e
             CROSS JOIN LATERAL (
                 SELECT id FROM webhook_deliveries
                 WHERE endpoint_id = e.id AND webhook_delivery_pending(status)
                   AND next_attempt_at <= now()
                 ORDER BY next_attempt_at
                 LIMIT coalesce((SELECT b.free FROM unnest($1::uuid[], $2::bigint[]) AS b(id, free)
                                 WHERE b.id = e.id), $3)
                 FOR UPDATE SKIP LOCKED) d
             WHERE e.deleted_at IS NULL
             LIMIT $4)
         UPDATE webhook_deliveries w SET next_attempt_at = now() + make_interval(secs => $5)
         FROM due WHERE w.id = due.id
         RETURNING w.id, w.endpoint_id, w.event_id, w.event_type, w.booking_id, w.show_id,
                   w.payload, w.attempts, due.url, due.secret",
        busy,
        free,
        per_endpoint,
        limit,
        lease.as_secs_f64()
    )
    .fetch_all(db)
    .await
}

/// Makes leased deliveries that are still pending due again at once.
pub async fn hand_back(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE webhook_deliveries SET next_attempt_at = now()
         WHERE id = ANY($1) AND status = $2",
        ids,
        DeliveryStatus::Pending as DeliveryStatus
    )
    .execute(db)
    .await
    .map(drop)
}

/// Marks pending deliveries delivered, with their answering attempts, in
/// one statement: `ids[i]` was answered `status_codes[i]` to a POST started
/// at `started[i]`.
pub async fn record_delivered(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    status_codes: &[Option<i32>],
    started: &[DateTime<Utc>],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH a AS (
             SELECT * FROM unnest($1::uuid[], $2::int4[], $3::timestamptz[])
                 AS a(id, status_code, started)),
         d AS (
             UPDATE webhook_deliveries w
             SET status = $4, delivered_at = now(), attempts = w.attempts + 1,
                 first_attempt_at = coalesce(w.first_attempt_at, a.started),
                 last_status_code = a.status_code, last_error = NULL
             FROM a WHERE w.id = a.id AND w.status = $5
             RETURNING w.id, w.attempts, a.status_code, a.started)
         INSERT INTO webhook_attempts (delivery_id, attempt, status_code, at)
         SELECT id, attempts, status_code, started FROM d
         ON CONFLICT DO NOTHING",
        ids,
        status_codes as &[Option<i32>],
        started,
        DeliveryStatus::Delivered as DeliveryStatus,
        DeliveryStatus::Pending as DeliveryStatus
    )
    .execute(db)
    .await
    .map(drop)
}

/// Records a failed attempt on a pending delivery: due again `retry_in`
/// from now, or failed once `retry_for` has passed since its first attempt.
/// Returns its status now, or `None` if it was no longer pending (cancelled
/// while in flight). The attempt itself is [`record_attempt`]'s.
pub async fn record_failure(
    db: impl PgExecutor<'_>,
    failed: &FailedAttempt<'_>,
    retry_in: Duration,
    retry_for: Duration,
) -> Result<Option<DeliveryStatus>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"UPDATE webhook_deliveries
           SET attempts = $2, last_status_code = $3, last_error = $4,
               first_attempt_at = coalesce(first_attempt_at, $5),
               next_attempt_at = now() + make_interval(secs => $6),
               status = CASE WHEN now() >= coalesce(first_attempt_at, $5) + make_interval(secs => $7)
                             THEN $8 ELSE $9 END
           WHERE id = $1 AND status = $9
           RETURNING status AS "status: DeliveryStatus""#,
        failed.delivery_id,
        failed.attempt,
        failed.status_code,
        failed.error,
        failed.at,
        retry_in.as_secs_f64(),
        retry_for.as_secs_f64(),
        DeliveryStatus::Failed as DeliveryStatus,
        DeliveryStatus::Pending as DeliveryStatus
    )
    .fetch_optional(db)
    .await
}

/// Records a failed attempt for the deliveries' history (once: a repeat
/// changes nothing).
pub async fn record_attempt(
    db: impl PgExecutor<'_>,
    failed: &FailedAttempt<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        failed.delivery_id,
        failed.attempt,
        failed.status_code,
        failed.error,
        failed.at
    )
    .execute(db)
    .await
    .map(drop)
}
