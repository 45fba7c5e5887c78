//! What must hold in the database after any burst, crash or restart,
//! checked directly with SQL (the API shows only one booking at a time).

use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

async fn count(db: &PgPool, sql: &str, show: Uuid) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .bind(show)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Waits (up to `limit`) until no booking of `show` is queued any more.
pub async fn wait_all_decided(db: &PgPool, show: Uuid, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let queued = count(
            db,
            "SELECT count(*) FROM bookings WHERE show_id = $1 AND status = 'queued'",
            show,
        )
        .await;
        if queued == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queued} bookings of {show} still queued after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// No oversell and no double booking, every way we can count it:
/// the show's counters add up to its capacity and agree with its live
/// bookings, and (seated) every seat of a live booking belongs to it alone.
pub async fn assert_not_oversold(db: &PgPool, show: Uuid) {
    let found = oversold(db, show).await;
    assert!(found.is_empty(), "{}", found.join("; "));
}

/// What [`assert_not_oversold`] finds wrong with `show`, if anything.
pub async fn oversold(db: &PgPool, show: Uuid) -> Vec<String> {
    let mut found = Vec::new();
    let (capacity, held, booked): (i32, i32, i32) =
        sqlx::query_as("SELECT capacity, held, booked FROM shows WHERE id = $1")
            .bind(show)
            .fetch_one(db)
            .await
            .unwrap();
    if held < 0 || booked < 0 || held + booked > capacity {
        found.push(format!(
            "{show}: held {held} + booked {booked} > {capacity}"
        ));
    }
    let live_held = count(db, "SELECT coalesce(sum(quantity), 0)::bigint FROM bookings WHERE show_id = $1 AND status = 'held'", show).await;
    let live_booked =
        count(db, "SELECT coalesce(sum(quantity), 0)::bigint FROM bookings WHERE show_id = $1 AND status = 'confirmed'", show).await;
    if (i64::from(held), i64::from(booked)) != (live_held, live_booked) {
        found.push(format!(
            "{show}: counters disagree with bookings: held {held}, booked {booked}, \
             yet live bookings hold {live_held} and own {live_booked}"
        ));
    }

    let seats = count(db, "SELECT count(*) FROM seats WHERE show_id = $1", show).await;
    if seats > 0 {
        if seats != i64::from(capacity) {
            found.push(format!(
                "{show}: {seats} seats for a capacity of {capacity}"
            ));
        }
        let taken = count(
            db,
            "SELECT count(*) FROM seats WHERE show_id = $1 AND status <> 'available'",
            show,
        )
        .await;
        if taken != live_held + live_booked {
            found.push(format!(
                "{show}: seat statuses disagree with bookings: {taken} seats taken, \
                 live bookings have {}",
                live_held + live_booked
            ));
        }
        let foreign = count(
            db,
            "SELECT count(*) FROM bookings b
             JOIN booking_seats bs ON bs.booking_id = b.id
             JOIN seats s ON s.id = bs.seat_id
             WHERE b.show_id = $1 AND b.status IN ('held', 'confirmed') AND s.booking_id IS DISTINCT FROM b.id",
            show,
        )
        .await;
        if foreign != 0 {
            found.push(format!(
                "{show}: a live booking lacks a seat it holds (seat in two bookings), {foreign} times"
            ));
        }
    }
    found
}

/// Every decided booking went from `queued` to its decision (held,
/// rejected or waitlisted) exactly once, and wrote exactly one event for it
/// to the outbox.
pub async fn assert_decided_once(db: &PgPool, show: Uuid) {
    let found = decided_more_than_once(db, show).await;
    assert!(found.is_empty(), "{}", found.join("; "));
}

/// What [`assert_decided_once`] finds wrong with `show`, if anything.
pub async fn decided_more_than_once(db: &PgPool, show: Uuid) -> Vec<String> {
    let mut found = Vec::new();
    let twice = count(
        db,
        "SELECT count(*) FROM (SELECT booking_id FROM booking_audit
           WHERE show_id = $1 AND from_status = 'queued' GROUP BY booking_id HAVING count(*) <> 1) t",
        show,
    )
    .await;
    if twice != 0 {
        found.push(format!("{show}: {twice} bookings decided more than once"));
    }
    let events = count(
        db,
        "SELECT count(*) FROM (SELECT b.id FROM bookings b
           LEFT JOIN outbox_events o ON o.booking_id = b.id AND o.kind IN ('held', 'rejected', 'waitlisted')
           WHERE b.show_id = $1 AND b.status <> 'queued' GROUP BY b.id HAVING count(o.event_id) <> 1) t",
        show,
    )
    .await;
    if events != 0 {
        found.push(format!(
            "{show}: {events} decisions with a lost or duplicated event"
        ));
    }
    found
}

/// Waits until the outbox relays have published every event.
pub async fn wait_outbox_drained(db: &PgPool, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(db)
                .await
                .unwrap();
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} events never published"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many decisions each worker made (the audit trail names them).
pub async fn decisions_by_worker(db: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT actor, count(*) FROM booking_audit
         WHERE from_status = 'queued' AND actor LIKE 'worker-%' GROUP BY actor ORDER BY actor",
    )
    .fetch_all(db)
    .await
    .unwrap()
}
