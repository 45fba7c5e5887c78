//! The broker's part: a 202 only after RabbitMQ confirmed; poison messages
//! end in the dead-letter queue.

use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{json, Value};
use tests::mailbox::unique_address;
use tests::system::management;
use tests::{Options, System};

#[tokio::test]
async fn without_a_broker_bookings_get_503_with_retry_after_and_leave_nothing_behind() {
    // A port nothing listens on stands in for a broker that is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sys = System::start_with(Options {
        amqp_url: Some(format!("amqp://guest:guest@127.0.0.1:{port}/%2f")),
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(10).await;
    let started = Instant::now();
    let res = sys
        .book(
            &show,
            json!({"email": unique_address("down"), "name": "D", "quantity": 1}),
        )
        .await;
    assert_eq!(res.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503 must come quickly"
    );
    assert!(res.headers().contains_key("retry-after"));
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "temporarily_unavailable");
    assert!(
        sys.bookings_of(&show).await.is_empty(),
        "a refused booking must not remain"
    );
    assert_eq!(sys.show(&show).await["available"], 10);
    sys.finish().await;
}

async fn management_call(method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let (base, user, pass) = management();
    let mut req = Client::new()
        .request(method, format!("{base}{path}"))
        .basic_auth(user, Some(pass));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap_or(Value::Null)
}

#[tokio::test]
async fn an_unparseable_message_is_dead_lettered_with_its_reason_and_the_queue_keeps_flowing() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    let vhost = &sys.vhost;
    let published = management_call(
        reqwest::Method::POST,
        &format!("/api/exchanges/{vhost}/amq.default/publish"),
        Some(
            json!({"properties": {"delivery_mode": 2}, "routing_key": "booking.requests.shard-00",
                    "payload": "this is not a command", "payload_encoding": "string"}),
        ),
    )
    .await;
    assert_eq!(published["routed"], true);

    let id = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("after"), "name": "A", "quantity": 1}),
        )
        .await;
    assert_eq!(
        sys.decided(&id).await["status"],
        "held",
        "valid messages still flow"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let got = management_call(
            reqwest::Method::POST,
            &format!("/api/queues/{vhost}/booking.requests.dead/get"),
            Some(json!({"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"})),
        )
        .await;
        if let Some(first) = got.as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead["payload"], "this is not a command");
    let headers = &dead["properties"]["headers"];
    assert!(
        headers["x-booking-death-reason"]
            .as_str()
            .unwrap()
            .starts_with("unparseable"),
        "{headers}"
    );
    assert_eq!(
        headers["x-booking-source-queue"],
        "booking.requests.shard-00"
    );
    assert!(headers["x-booking-attempts"].as_i64().unwrap() >= 1);
    sys.finish().await;
}
