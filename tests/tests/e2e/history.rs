//! The history checker (`tests/src/history.rs`) that judges every fault
//! test: a clean history passes, and each broken promise, forged into the
//! final state behind the services' back, is named in the verdict.

use std::time::{Duration, Instant};

use serde_json::json;
use tests::history::{Action, History, Op, Rule};
use tests::load::Request;
use tests::mailbox::{unique_address, wait_for_messages};
use tests::System;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use uuid::Uuid;

/// A two-ticket request for `email`.
fn pair(show: &str, email: &str) -> Request {
    Request {
        show: show.to_owned(),
        body: json!({"email": email, "name": "Ada", "quantity": 2}),
        quantity: 2,
    }
}

/// Sends an email straight to the SMTP sink, as a notifier repeating one
/// after a crash would (without a `Message-ID`).
async fn send_copy(to: &str, subject: &str) {
    let url = reqwest::Url::parse(&std::env::var("TEST_SMTP_URL").unwrap()).unwrap();
    let smtp = TcpStream::connect((url.host_str().unwrap(), url.port().unwrap()))
        .await
        .unwrap();
    let mut smtp = BufReader::new(smtp);
    let mut reply = String::new();
    for line in [
        "HELO tests".to_owned(),
        "MAIL FROM:<tickets@booking.test>".to_owned(),
        format!("RCPT TO:<{to}>"),
        "DATA".to_owned(),
        format!("To: {to}\r\nSubject: {subject}\r\n\r\nA copy.\r\n."),
        "QUIT".to_owned(),
    ] {
        reply.clear();
        smtp.read_line(&mut reply).await.unwrap();
        assert!(!reply.starts_with(['4', '5']), "SMTP: {reply}");
        smtp.write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_history_checker_passes_a_kept_history_and_names_every_broken_promise() {
    let sys = System::start().await;
    let show = sys.ga_show(2).await;
    let history = History::new();
    // A is accepted before B is sent; both want the only two tickets.
    let email = unique_address("checked");
    let a = history.submit(&sys, pair(&show, &email)).await;
    let b = history
        .submit(&sys, pair(&show, &unique_address("second")))
        .await;
    let (a, b) = (a.id.unwrap(), b.id.unwrap());
    assert_eq!(sys.decided(&a).await["status"], "held");
    assert_eq!(sys.decided(&b).await["status"], "rejected");
    assert_eq!(history.confirm(&sys, &a, "tok_visa").await, 202);
    sys.wait_for(&a, "confirmed", |b| b["status"] == "confirmed")
        .await;
    assert_eq!(history.cancel(&sys, &a).await, 202);
    sys.wait_for(&a, "refunded", |b| b["refunded_cents"] == 5000)
        .await;
    wait_for_messages(&email, 2).await;
    history.check(&sys).await.assert_clean();

    // Each promise broken once, behind the services' back.
    sqlx::raw_sql(&format!(
        "-- B was decided first and got the tickets A, ahead of it, was refused.
         UPDATE booking_audit SET
           to_status = CASE booking_id WHEN '{a}' THEN 'rejected' ELSE 'held' END,
           reason = CASE booking_id WHEN '{a}' THEN 'sold_out' END
         WHERE from_status = 'queued' AND booking_id IN ('{a}', '{b}');
         -- The show counts a hold no booking has.
         UPDATE shows SET held = 1 WHERE id = '{show}';
         -- The gateway never paid A back.
         DELETE FROM test_gateway_refunds;
         -- One of A's tickets moved to B, which never paid.
         UPDATE tickets SET booking_id = '{b}'
         WHERE code = (SELECT min(code) FROM tickets WHERE booking_id = '{a}');"
    ))
    .execute(sys.db().await)
    .await
    .unwrap();
    // A second, different confirmation to A's customer.
    send_copy(&email, "Your tickets for Open Air").await;
    // A 202 for a booking that does not exist.
    let now = Instant::now();
    history.record(Op {
        action: Action::Book(pair(&show, &unique_address("lost"))),
        sent: now - Duration::from_millis(5),
        answered: now,
        status: 202,
        booking: Some(Uuid::new_v4()),
    });

    let verdict = history.check(&sys).await;
    println!("{verdict}");
    for rule in [
        Rule::PerShowOrder,
        Rule::NoOversell,
        Rule::RefundOnce,
        Rule::TicketCodes,
        Rule::EmailOnce,
        Rule::AcceptedIsFinal,
    ] {
        assert!(
            verdict.violations.iter().any(|v| v.rule == rule),
            "{rule} not found broken: {verdict}"
        );
    }
    sys.finish().await;
}
