//! Refunds: cancelling a paid booking pays it back exactly once, whatever
//! dies or fails on the way (docs/API.md#refunds). The worker's refund sweeper
//! is what calls the gateway, so killing the worker covers both "the
//! process that decides the cancel" and "the process that calls the
//! gateway"; the test gateway's ledger counts the refunds it made, and the
//! history checker judges each test's bookings, payments and cancels.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;
use tests::history::History;
use tests::load::Request;
use tests::mailbox::{unique_address, wait_for_messages};
use tests::{Options, System};

/// What the test gateway made: one row per refunded charge, and how often
/// it was asked.
async fn ledger(db: &PgPool) -> Vec<(String, i64, i32)> {
    sqlx::query_as(
        "SELECT reference, amount_cents, asks FROM test_gateway_refunds ORDER BY reference",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// Books `quantity` general-admission tickets for `email` and pays.
async fn paid_booking(
    sys: &System,
    history: &History,
    show: &str,
    email: &str,
    quantity: i32,
) -> Value {
    let request = Request {
        show: show.to_owned(),
        body: json!({"email": email, "name": "Ada", "quantity": quantity}),
        quantity,
    };
    let booked = history.submit(sys, request).await;
    assert!(booked.accepted(), "booking: {}", booked.status);
    let id = booked.id.unwrap();
    sys.wait_for(&id, "held", |b| b["status"] == "held").await;
    assert_eq!(history.confirm(sys, &id, "tok_visa").await, 202);
    sys.wait_for(&id, "confirmed", |b| b["status"] == "confirmed")
        .await
}

async fn cancel(sys: &System, history: &History, id: &str) {
    assert_eq!(history.cancel(sys, id).await, 202, "cancelling {id}");
}

async fn wait_refunded(sys: &System, id: &str, cents: i64) -> Value {
    sys.wait_for(id, "refunded", |b| b["refunded_cents"] == cents)
        .await
}

/// The refund row the cancel wrote: attempts so far and the last error.
async fn refund_row(db: &PgPool, booking: &str) -> Option<(i32, Option<String>)> {
    sqlx::query_as("SELECT attempts, last_error FROM refunds WHERE booking_id = $1::uuid")
        .bind(booking)
        .fetch_optional(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn cancelling_a_paid_booking_refunds_it_once_and_the_email_says_how_much() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    let history = History::new();
    let email = unique_address("refund");
    let booking = paid_booking(&sys, &history, &show, &email, 2).await;
    let id = booking["id"].as_str().unwrap();
    assert_eq!(booking["refunded_cents"], Value::Null);
    cancel(&sys, &history, id).await;
    let cancelled = wait_refunded(&sys, id, 5000).await;
    assert_eq!(cancelled["status"], "cancelled");

    // A second cancel answers "already cancelled" and refunds nothing more.
    assert_eq!(history.cancel(&sys, id).await, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let db = sys.db().await;
    let made = ledger(db).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].1, 5000);
    assert_eq!(sys.booking(id).await["refunded_cents"], 5000);

    let sales = sys.sales(&show).await;
    assert_eq!(
        sales["refunds"],
        json!({"completed": 1, "refunded_cents": 5000, "pending": 0, "pending_cents": 0}),
        "{sales}"
    );
    assert_eq!(sales["revenue_cents"], 0, "{sales}");

    // Confirmation, then the cancellation with the amount.
    let mails = wait_for_messages(&email, 2).await;
    let cancellation = mails
        .iter()
        .find(|m| {
            m["subject"]
                .as_str()
                .unwrap()
                .starts_with("Booking cancelled")
        })
        .expect("a cancellation email");
    let text = cancellation["text"].as_str().unwrap();
    assert!(text.contains("Your payment of 50.00 is refunded"), "{text}");
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

#[tokio::test]
async fn a_worker_killed_right_after_a_cancel_was_accepted_still_refunds_exactly_once() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    let history = History::new();
    let booking = paid_booking(&sys, &history, &show, &unique_address("killed"), 3).await;
    let id = booking["id"].as_str().unwrap();
    cancel(&sys, &history, id).await;
    sys.kill("worker-0");
    sys.restart("worker-0").await;
    wait_refunded(&sys, id, 7500).await;
    let made = ledger(sys.db().await).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].1, 7500);
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

#[tokio::test]
async fn a_worker_killed_while_the_gateway_refunds_asks_again_and_it_is_refunded_once() {
    // The gateway records the refund, then takes 2 s to answer: long
    // enough to kill the worker between the refund and our record of it.
    let sys = System::start_with(Options {
        extra_env: vec![
            ("TEST_GATEWAY_REFUND_DELAY_MS".into(), "2000".into()),
            ("REFUND_TIMEOUT_SECONDS".into(), "3".into()),
        ],
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(10).await;
    let history = History::new();
    let booking = paid_booking(&sys, &history, &show, &unique_address("midcall"), 1).await;
    let id = booking["id"].as_str().unwrap();
    cancel(&sys, &history, id).await;
    let db = sys.db().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger(db).await.is_empty() {
        assert!(Instant::now() < deadline, "the gateway was never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sys.kill("worker-0");
    assert_eq!(sys.booking(id).await["refunded_cents"], Value::Null);
    sys.restart_with("worker-0", &[("TEST_GATEWAY_REFUND_DELAY_MS", "0".into())])
        .await;
    wait_refunded(&sys, id, 2500).await;
    let made = ledger(db).await;
    // Asked twice, refunded once.
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!((made[0].1, made[0].2), (2500, 2), "{made:?}");
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

#[tokio::test]
async fn a_gateway_outage_delays_a_refund_but_does_not_lose_it() {
    let sys = System::start_with(Options {
        extra_env: vec![("TEST_GATEWAY_REFUNDS_DOWN".into(), "true".into())],
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(10).await;
    let history = History::new();
    let booking = paid_booking(&sys, &history, &show, &unique_address("outage"), 2).await;
    let id = booking["id"].as_str().unwrap();
    cancel(&sys, &history, id).await;
    let db = sys.db().await;
    // The worker keeps asking, backing off, and says why it failed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((attempts, error)) = refund_row(db, id).await {
            if attempts >= 2 {
                assert!(error.unwrap().contains("refunds are down"));
                break;
            }
        }
        assert!(Instant::now() < deadline, "no retried refund");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let booking = sys.booking(id).await;
    assert_eq!(booking["status"], "cancelled");
    assert_eq!(booking["refunded_cents"], Value::Null);
    let sales = sys.sales(&show).await;
    assert_eq!(sales["refunds"]["pending"], 1, "{sales}");
    assert_eq!(sales["refunds"]["pending_cents"], 5000, "{sales}");
    assert!(ledger(db).await.is_empty());

    // The gateway comes back (the worker restarts without the outage).
    sys.terminate("worker-0", Duration::from_secs(30)).await;
    sys.restart_with("worker-0", &[("TEST_GATEWAY_REFUNDS_DOWN", "false".into())])
        .await;
    wait_refunded(&sys, id, 5000).await;
    assert_eq!(ledger(db).await.len(), 1);
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}
