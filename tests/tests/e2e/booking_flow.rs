//! The booking path, end to end: request → held → confirm → confirmed →
//! email; contention for seats and capacity; cancellation; idempotency.

use reqwest::Method;
use serde_json::json;
use tests::mailbox::{expected_message_id, message_id, unique_address, wait_for_messages};
use tests::System;

#[tokio::test]
async fn a_general_admission_booking_is_held_confirmed_and_emailed_with_its_ticket_codes() {
    let sys = System::start().await;
    let show = sys.ga_show(100).await;
    let email = unique_address("ga");

    let res = sys
        .book(
            &show,
            json!({"email": email, "name": "Ada Lovelace", "quantity": 3}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let queued: serde_json::Value = res.json().await.unwrap();
    assert_eq!(queued["status"], "queued");
    let id = queued["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/bookings/{id}"));

    let held = sys.decided(id).await;
    assert_eq!(held["status"], "held", "{held}");
    assert!(held["hold_expires_at"].is_string());
    assert_eq!(held["total_cents"], 7500);
    assert_eq!(sys.show(&show).await["available"], 97);

    let confirmed = sys.confirm(id).await;
    let codes: Vec<String> = confirmed["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 3);
    assert!(confirmed["hold_expires_at"].is_null());
    let show_now = sys.show(&show).await;
    assert_eq!(
        (show_now["available"].as_i64(), show_now["booked"].as_i64()),
        (Some(97), Some(3))
    );

    let mails = wait_for_messages(&email, 1).await;
    assert_eq!(mails.len(), 1, "exactly one confirmation");
    let mail = &mails[0];
    assert_eq!(mail["subject"], "Your tickets for Open Air");
    let expected = expected_message_id(id, "confirmation");
    assert_eq!(message_id(mail), Some(expected.as_str()));
    for code in &codes {
        assert!(
            mail["text"].as_str().unwrap().contains(code),
            "text part lacks {code}"
        );
        assert!(
            mail["html"].as_str().unwrap().contains(code),
            "html part lacks {code}"
        );
    }
    sys.finish().await;
}

#[tokio::test]
async fn a_seated_booking_is_confirmed_with_one_ticket_per_seat_each_paired_with_its_seat_in_the_email(
) {
    let sys = System::start().await;
    let show = sys.seated_show(2, 5).await;
    let seats = sys.seat_ids(&show).await;
    let email = unique_address("seated");

    let id = sys
        .book_accepted(
            &show,
            json!({"email": email, "name": "Grace", "seat_ids": [seats[1], seats[2]]}),
        )
        .await;
    let held = sys.decided(&id).await;
    assert_eq!(held["status"], "held", "{held}");
    assert_eq!(held["total_cents"], 8000);
    assert_eq!(held["seats"].as_array().unwrap().len(), 2);
    let map = sys.seat_map(&show).await;
    assert_eq!(map["seats"][1]["status"], "held");
    assert_eq!(map["seats"][0]["status"], "available");

    let confirmed = sys.confirm(&id).await;
    let tickets = confirmed["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 2);
    assert!(tickets.iter().all(|t| t["seat_id"].is_string()));
    assert_eq!(sys.seat_map(&show).await["seats"][2]["status"], "booked");

    // Each code is printed next to the seat it admits to.
    let mail = &wait_for_messages(&email, 1).await[0];
    let text = mail["text"].as_str().unwrap();
    for ticket in tickets {
        let seat = confirmed["seats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == ticket["seat_id"])
            .unwrap();
        let line = format!(
            "{}  Stalls, row {}, seat {}",
            ticket["code"].as_str().unwrap(),
            seat["row"].as_str().unwrap(),
            seat["number"]
        );
        assert!(text.contains(&line), "{line:?} not in {text}");
    }
    sys.finish().await;
}

#[tokio::test]
async fn two_requests_for_the_same_seat_hold_one_and_reject_the_other() {
    let sys = System::start().await;
    let show = sys.seated_show(1, 4).await;
    let seats = sys.seat_ids(&show).await;
    let body =
        |n| json!({"email": unique_address(n), "name": "Rival", "seat_ids": [seats[0], seats[1]]});

    let (a, b) = tokio::join!(
        sys.book_accepted(&show, body("a")),
        sys.book_accepted(&show, body("b"))
    );
    let (a, b) = (sys.decided(&a).await, sys.decided(&b).await);
    let mut statuses = [a["status"].as_str().unwrap(), b["status"].as_str().unwrap()];
    statuses.sort();
    assert_eq!(statuses, ["held", "rejected"]);
    let rejected = if a["status"] == "rejected" { &a } else { &b };
    assert_eq!(rejected["reason"], "seats_unavailable");
    assert_eq!(sys.show(&show).await["available"], 2);
    sys.finish().await;
}

#[tokio::test]
async fn asking_for_more_than_remains_is_rejected_as_sold_out() {
    let sys = System::start().await;
    let show = sys.ga_show(5).await;
    let first = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("a"), "name": "A", "quantity": 4}),
        )
        .await;
    assert_eq!(sys.decided(&first).await["status"], "held");
    let second = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("b"), "name": "B", "quantity": 2}),
        )
        .await;
    let second = sys.decided(&second).await;
    assert_eq!(
        (second["status"].as_str(), second["reason"].as_str()),
        (Some("rejected"), Some("sold_out"))
    );
    let last = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("c"), "name": "C", "quantity": 1}),
        )
        .await;
    assert_eq!(
        sys.decided(&last).await["status"],
        "held",
        "the last ticket still sells"
    );
    assert_eq!(sys.show(&show).await["available"], 0);
    sys.finish().await;
}

#[tokio::test]
async fn a_declined_payment_keeps_the_hold_with_the_reason() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    let id = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("d"), "name": "D", "quantity": 2}),
        )
        .await;
    let held = sys.decided(&id).await;
    let res = sys
        .post(
            &format!("/v1/bookings/{id}/confirm"),
            json!({"payment_token": "tok_chargeDeclined"}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let declined = sys
        .wait_for(&id, "declined", |b| b["reason"] == "payment_declined")
        .await;
    assert_eq!(declined["status"], "held");
    assert_eq!(
        declined["hold_expires_at"], held["hold_expires_at"],
        "a decline does not extend the hold"
    );
    assert!(declined["tickets"].as_array().unwrap().is_empty());
    assert_eq!(sys.show(&show).await["held"], 2);

    // A good card afterwards still confirms it.
    let confirmed = sys.confirm(&id).await;
    assert!(confirmed["reason"].is_null());
    sys.finish().await;
}

#[tokio::test]
async fn cancelling_returns_the_seats_to_sale_and_emails_the_customer() {
    let sys = System::start().await;
    let show = sys.seated_show(1, 3).await;
    let seats = sys.seat_ids(&show).await;
    let email = unique_address("cancel");
    let id = sys
        .book_accepted(
            &show,
            json!({"email": email, "name": "C", "seat_ids": [seats[0]]}),
        )
        .await;
    assert_eq!(sys.decided(&id).await["status"], "held");
    sys.confirm(&id).await;

    let res = sys
        .post(&format!("/v1/bookings/{id}/cancel"), json!({}))
        .await;
    assert_eq!(res.status(), 202);
    let cancelled = sys
        .wait_for(&id, "cancelled", |b| b["status"] == "cancelled")
        .await;
    assert_eq!(cancelled["reason"], "cancelled_by_customer");
    assert_eq!(sys.seat_map(&show).await["seats"][0]["status"], "available");
    assert_eq!(sys.show(&show).await["available"], 3);

    // The released seat sells again.
    let again = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("next"), "name": "N", "seat_ids": [seats[0]]}),
        )
        .await;
    assert_eq!(sys.decided(&again).await["status"], "held");

    let mails = wait_for_messages(&email, 2).await;
    assert!(mails.iter().any(|m| m["subject"]
        .as_str()
        .unwrap()
        .starts_with("Booking cancelled")));
    // Cancelling twice is harmless.
    assert_eq!(
        sys.post(&format!("/v1/bookings/{id}/cancel"), json!({}))
            .await
            .status(),
        200
    );
    sys.finish().await;
}

#[tokio::test]
async fn the_same_idempotency_key_twice_makes_one_booking() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    let body = json!({"email": unique_address("idem"), "name": "I", "quantity": 1});
    let send = |body: serde_json::Value| {
        sys.request(Method::POST, &format!("/v1/shows/{show}/bookings"))
            .header("Idempotency-Key", "order-42")
            .json(&body)
            .send()
    };
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let second = send(body.clone()).await.unwrap();
    assert_eq!(second.status(), 202);
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);

    let mut other = body.clone();
    other["quantity"] = json!(2);
    let refused = send(other).await.unwrap();
    assert_eq!(refused.status(), 422);
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "idempotency_key_reused");

    sys.decided(first["id"].as_str().unwrap()).await;
    assert_eq!(sys.bookings_of(&show).await.len(), 1);
    assert_eq!(sys.show(&show).await["available"], 9);
    sys.finish().await;
}

/// A poll that sends the ETag of the last answer gets `304` and no body
/// while nothing changed, and `200` with a new tag once the booking moved.
#[tokio::test]
async fn polling_with_the_last_etag_answers_304_until_the_booking_changes() {
    let sys = System::start().await;
    let show = sys.ga_show(5).await;
    let id = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("etag"), "name": "Ada", "quantity": 1}),
        )
        .await;
    sys.wait_for(&id, "held", |b| b["status"] == "held").await;
    let path = format!("/v1/bookings/{id}");
    let poll = |tag: Option<String>| {
        let mut req = sys.request(Method::GET, &path);
        if let Some(tag) = tag {
            req = req.header("if-none-match", tag);
        }
        req.send()
    };

    let first = poll(None).await.unwrap();
    assert_eq!(first.status(), 200);
    let tag = first.headers()["etag"].to_str().unwrap().to_owned();
    let unchanged = poll(Some(tag.clone())).await.unwrap();
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()["etag"], tag.as_str());
    assert!(unchanged.bytes().await.unwrap().is_empty());

    sys.confirm(&id).await;
    let changed = poll(Some(tag.clone())).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], tag.as_str());
    let booking: serde_json::Value = changed.json().await.unwrap();
    assert_eq!(booking["status"], "confirmed");
    sys.finish().await;
}
