//! The raw commit rate of the worker's deciding transaction in PostgreSQL
//! on this machine, without HTTP, RabbitMQ or any logic around it.
//!
//! It runs in a scratch database on the same server with the real schema
//! (the migrations), so that no service of the system under test reacts to
//! the rows it writes (the outbox relay would publish its events, the
//! requeue sweep would republish its queued bookings). Each client decides
//! general-admission bookings of a show of its own, so clients never
//! conflict: this is the ceiling, not a contention test. The statements are
//! those of the worker's `hold_batch` (`worker/src/decide.rs`) for a
//! general-admission show: read the bookings and the show, version-checked
//! update of the show's counters, version-checked update of the bookings,
//! audit rows, seat labels (none for general admission), outbox events with
//! the same JSON snapshot; one commit.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::domain::BookingStatus;
use shared::messages::{BookingEvent, BookingSnapshot, EventKind};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::stats::per_second;

/// The actor the benchmark signs its audit rows with.
const ACTOR: &str = "worker-bench";

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseLimit {
    pub clients: usize,
    pub one_per_commit: CommitRate,
    pub batched: CommitRate,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommitRate {
    pub bookings_per_commit: usize,
    pub commits: usize,
    pub bookings: usize,
    pub seconds: f64,
    pub commits_per_s: f64,
    pub bookings_per_s: f64,
    /// Version checks that failed (must be 0: clients have separate shows).
    pub conflicts: usize,
}

pub struct Settings {
    /// A database URL on the server to measure; the scratch database is
    /// created next to it.
    pub admin_url: String,
    pub clients: usize,
    pub duration: Duration,
    pub batch: usize,
}

pub async fn measure(settings: &Settings) -> anyhow::Result<DatabaseLimit> {
    let name = format!("bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&settings.admin_url)
        .await
        .context("connecting to PostgreSQL")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let (base, _) = settings
        .admin_url
        .rsplit_once('/')
        .context("database URL has a path")?;
    let result = measure_in(&format!("{base}/{name}"), settings).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    let _ = admin.close().await;
    result
}

async fn measure_in(url: &str, settings: &Settings) -> anyhow::Result<DatabaseLimit> {
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(settings.clients).unwrap_or(u32::MAX))
        .connect(url)
        .await?;
    sqlx::migrate!("../migrations").run(&pool).await?;
    let one_per_commit = run(&pool, settings, 1).await?;
    let batched = run(&pool, settings, settings.batch).await?;
    pool.close().await;
    Ok(DatabaseLimit {
        clients: settings.clients,
        one_per_commit,
        batched,
    })
}

/// Every client decides its own queued bookings, `batch` per transaction,
/// for the configured duration.
async fn run(pool: &PgPool, settings: &Settings, batch: usize) -> anyhow::Result<CommitRate> {
    // More queued bookings than this kind of machine decides in the time
    // (seen: about 4 k commits/s at 8 clients, 40 k bookings/s in runs of
    // 50); a client that runs out stops early, and the rate is taken over
    // the time the clients ran.
    let per_second_per_client = if batch == 1 { 1_000.0 } else { 8_000.0 };
    let per_client = (per_second_per_client * settings.duration.as_secs_f64()).ceil() as usize;
    let mut shows = Vec::new();
    for _ in 0..settings.clients {
        shows.push(prepare(pool, per_client).await?);
    }
    let started = Instant::now();
    let deadline = started + settings.duration;
    let clients: Vec<_> = shows
        .into_iter()
        .map(|(show, bookings)| {
            let pool = pool.clone();
            tokio::spawn(async move { client(&pool, show, bookings, batch, deadline).await })
        })
        .collect();
    let (mut commits, mut bookings, mut conflicts) = (0, 0, 0);
    let mut finished = started;
    for handle in clients {
        let (c, b, k, at) = handle.await??;
        commits += c;
        bookings += b;
        conflicts += k;
        finished = finished.max(at);
    }
    let seconds = finished.duration_since(started).as_secs_f64();
    Ok(CommitRate {
        bookings_per_commit: batch,
        commits,
        bookings,
        seconds,
        commits_per_s: per_second(commits, seconds),
        bookings_per_s: per_second(bookings, seconds),
        conflicts,
    })
}

/// A show of its own (with room for everything) and `count` queued
/// general-admission bookings of 1–4 tickets, as the API records them.
async fn prepare(pool: &PgPool, count: usize) -> anyhow::Result<(Uuid, Vec<Uuid>)> {
    let show = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO shows (id, name, venue, starts_at, kind, capacity, price_cents)
         VALUES ($1, 'Bench Limits', 'The Lab', '2030-06-01T19:00:00Z', 'general_admission', 2000000000, 2500)",
    )
    .bind(show)
    .execute(pool)
    .await?;
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    sqlx::query(
        "INSERT INTO bookings (id, show_id, email, name, quantity, total_cents)
         SELECT id, $2, 'limits-' || n || '@bench.test', 'Bench Client', 1 + n % 4, (1 + n % 4) * 2500
         FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n)",
    )
    .bind(&ids)
    .bind(show)
    .execute(pool)
    .await?;
    Ok((show, ids))
}

/// Decides `bookings` in runs of `batch` until they run out or time is up;
/// returns commits, bookings, conflicts and when it stopped.
async fn client(
    pool: &PgPool,
    show: Uuid,
    bookings: Vec<Uuid>,
    batch: usize,
    deadline: Instant,
) -> anyhow::Result<(usize, usize, usize, Instant)> {
    let mut conn = pool.acquire().await?;
    let (mut commits, mut decided, mut conflicts) = (0, 0, 0);
    for run in bookings.chunks(batch) {
        if Instant::now() >= deadline {
            break;
        }
        if decide(&mut conn, show, run).await? {
            commits += 1;
            decided += run.len();
        } else {
            conflicts += 1;
        }
    }
    Ok((commits, decided, conflicts, Instant::now()))
}

/// One deciding transaction: every booking of the run is held. Returns
/// `false` (rolled back) if a version check failed.
async fn decide(conn: &mut PgConnection, show_id: Uuid, ids: &[Uuid]) -> anyhow::Result<bool> {
    let mut tx = conn.begin().await?;
    let bookings = sqlx::query(
        "SELECT id, show_id, status, quantity, version, email, name, total_cents, hold_expires_at, payment_ref
         FROM bookings WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    let show = sqlx::query(
        "SELECT id, name, venue, starts_at, kind, capacity, held, booked, version FROM shows WHERE id = $1",
    )
    .bind(show_id)
    .fetch_one(&mut *tx)
    .await?;
    if bookings.len() != ids.len() {
        bail!("prepared bookings are missing");
    }
    let quantity: i32 = bookings.iter().map(|b| b.get::<i32, _>("quantity")).sum();
    let available =
        show.get::<i32, _>("capacity") - show.get::<i32, _>("held") - show.get::<i32, _>("booked");
    if available < quantity {
        bail!("the benchmark show is sold out");
    }
    let updated = sqlx::query(
        "UPDATE shows SET held = held + $3, booked = booked + $4, version = version + 1
         WHERE id = $1 AND version = $2",
    )
    .bind(show_id)
    .bind(show.get::<i64, _>("version"))
    .bind(quantity)
    .bind(0_i32)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated != 1 {
        return Ok(false);
    }

    let expires = Utc::now() + chrono::Duration::minutes(5);
    let versions: Vec<i64> = bookings.iter().map(|b| b.get("version")).collect();
    let booking_ids: Vec<Uuid> = bookings.iter().map(|b| b.get("id")).collect();
    let statuses = vec!["held"; ids.len()];
    let reasons: Vec<Option<&str>> = vec![None; ids.len()];
    let expiries: Vec<Option<DateTime<Utc>>> = vec![Some(expires); ids.len()];
    let updated = sqlx::query(
        "UPDATE bookings SET status = t.status, reason = t.reason, hold_expires_at = t.expires,
                dead_lettered_at = NULL, version = bookings.version + 1, updated_at = now()
         FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])
              AS t(id, version, status, reason, expires)
         WHERE bookings.id = t.id AND bookings.version = t.version",
    )
    .bind(&booking_ids)
    .bind(&versions)
    .bind(&statuses)
    .bind(&reasons)
    .bind(&expiries)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated != ids.len() as u64 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO booking_audit (booking_id, show_id, from_status, to_status, reason, actor)
         SELECT t.id, $2, 'queued', t.status, t.reason, $5
         FROM unnest($1::uuid[], $3::text[], $4::text[]) AS t(id, status, reason)",
    )
    .bind(&booking_ids)
    .bind(show_id)
    .bind(&statuses)
    .bind(&reasons)
    .bind(ACTOR)
    .execute(&mut *tx)
    .await?;
    // The worker reads the seat labels for the event snapshots; a general
    // admission booking has none, but the query runs all the same.
    sqlx::query(
        "SELECT bs.booking_id, sec.name AS section, s.row_label AS row, s.number, s.price_cents
         FROM booking_seats bs
         JOIN seats s ON s.id = bs.seat_id
         JOIN sections sec ON sec.id = s.section_id
         WHERE bs.booking_id = ANY($1) ORDER BY sec.position, s.row_label, s.number",
    )
    .bind(&booking_ids)
    .fetch_all(&mut *tx)
    .await?;

    let events: Vec<BookingEvent> = bookings
        .iter()
        .map(|b| BookingEvent {
            event_id: Uuid::now_v7(),
            kind: EventKind::Held,
            occurred_at: Utc::now(),
            booking: BookingSnapshot {
                id: b.get("id"),
                show_id,
                show_name: show.get("name"),
                venue: show.get("venue"),
                starts_at: show.get("starts_at"),
                email: b.get("email"),
                name: b.get("name"),
                status: BookingStatus::Held,
                reason: None,
                quantity: b.get("quantity"),
                seats: Vec::new(),
                total_cents: b.get("total_cents"),
                hold_expires_at: Some(expires),
                tickets: Vec::new(),
            },
        })
        .collect();
    let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let shows = vec![show_id; events.len()];
    let kinds = vec![EventKind::Held.as_str(); events.len()];
    let payloads = events
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "INSERT INTO outbox (id, show_id, booking_id, kind, payload)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::jsonb[])",
    )
    .bind(&event_ids)
    .bind(&shows)
    .bind(&booking_ids)
    .bind(&kinds)
    .bind(&payloads)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
