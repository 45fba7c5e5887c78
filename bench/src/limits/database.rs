//! The raw commit rate of the worker's deciding transaction in PostgreSQL
//! on this machine, without HTTP, RabbitMQ or any logic around it.
//!
//! It runs in a scratch database on the same server with the real schema
//! (the migrations), so that no service of the system under test reacts to
//! the rows it writes (the outbox relay would publish its events, the
//! requeue sweep would republish its queued bookings). Each client decides
//! general-admission bookings of a show of its own, so clients never
//! conflict: this is the ceiling, not a contention test. It runs the worker's
//! own load, decide and write (`worker::apply::apply_run`) for a
//! general-admission show: read the show and the bookings, version-checked
//! update of the show's counters and of the bookings, audit rows, outbox
//! events; one commit.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use serde::Serialize;
use shared::domain::BookingStatus;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;
use worker::decide::{Command, Rules, Verdict};
use worker::error::DecideError;

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

/// One deciding transaction, the worker's own (`worker::apply`): every
/// booking of the run is held. Returns `false` (rolled back) if a version
/// check failed.
async fn decide(conn: &mut PgConnection, show_id: Uuid, ids: &[Uuid]) -> anyhow::Result<bool> {
    let commands: Vec<Command> = ids.iter().copied().map(Command::Request).collect();
    let rules = Rules {
        now: Utc::now(),
        hold: chrono::Duration::minutes(5),
    };
    let mut tx = conn.begin().await?;
    let decided = match worker::apply::apply_run(
        &mut tx,
        show_id,
        &commands,
        &rules,
        &worker::persist::Actors::worker(ACTOR),
    )
    .await
    {
        Ok(decided) => decided,
        Err(DecideError::Conflict(_)) => return Ok(false),
        Err(err) => return Err(err.into()),
    };
    let held = decided
        .verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Applied(d) if d.to == BookingStatus::Held))
        .count();
    if held != ids.len() {
        bail!("the benchmark show is sold out or its bookings are missing");
    }
    tx.commit().await?;
    Ok(true)
}
