//! Per-customer ticket limits (`max_tickets_per_customer`), decided in order
//! by the show's worker like everything else.

use futures::future::join_all;
use serde_json::json;
use tests::{System, TestApp};

#[tokio::test]
async fn requests_past_the_per_customer_limit_are_rejected_even_when_concurrent() {
    let sys = System::start().await;
    let show = sys
        .create_show(json!({
            "name": "Hot Ticket", "venue": "The Arena", "starts_at": "2030-06-01T19:00:00Z",
            "capacity": 100, "price_cents": 5000, "max_tickets_per_customer": 4
        }))
        .await;
    assert_eq!(show["max_tickets_per_customer"], 4);
    let show = show["id"].as_str().unwrap().to_owned();

    // One customer (the email's case varies) sends 10 requests of 1 or 2
    // tickets at once; another customer's request is not affected.
    let requests = (0..10).map(|i| {
        let email = if i % 2 == 0 {
            "Scalper@Example.com"
        } else {
            "scalper@example.COM"
        };
        let body = json!({"email": email, "name": "S", "quantity": 1 + i % 2});
        sys.book_accepted(&show, body)
    });
    let mine = join_all(requests).await;
    let other = sys
        .book_accepted(
            &show,
            json!({"email": "fan@example.com", "name": "F", "quantity": 4}),
        )
        .await;

    let mut held = 0;
    for id in &mine {
        let booking = sys.decided(id).await;
        match booking["status"].as_str().unwrap() {
            "held" => held += booking["quantity"].as_i64().unwrap(),
            "rejected" => assert_eq!(booking["reason"], "limit_exceeded", "{booking}"),
            other => panic!("unexpected {other}: {booking}"),
        }
    }
    // Five requests of 1 and five of 2, in any order, always fill the
    // limit exactly: never more, and none refused while there was room.
    assert_eq!(held, 4, "the customer holds {held} tickets, the limit is 4");
    assert_eq!(sys.decided(&other).await["status"], "held");

    // Cancelling gives the customer room again.
    let first_held = {
        let mut found = None;
        for id in &mine {
            if sys.booking(id).await["status"] == "held" {
                found = Some(id.clone());
                break;
            }
        }
        found.expect("one request was held")
    };
    let res = sys
        .post(&format!("/v1/bookings/{first_held}/cancel"), json!({}))
        .await;
    assert_eq!(res.status(), 202);
    sys.wait_for(&first_held, "cancelled", |b| b["status"] == "cancelled")
        .await;
    let again = sys
        .book_accepted(
            &show,
            json!({"email": "scalper@example.com", "name": "S", "quantity": 1}),
        )
        .await;
    assert_eq!(sys.decided(&again).await["status"], "held");
    sys.finish().await;
}

#[tokio::test]
async fn a_show_refuses_a_limit_below_one() {
    let sys = TestApp::spawn().await;
    let res = sys
        .admin(reqwest::Method::POST, "/v1/shows")
        .json(&json!({
            "name": "Hot Ticket", "venue": "The Arena", "starts_at": "2030-06-01T19:00:00Z",
            "capacity": 100, "price_cents": 5000, "max_tickets_per_customer": 0
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "max_tickets_per_customer");
    sys.finish().await;
}
