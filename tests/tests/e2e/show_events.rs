//! `GET /v1/shows/{id}/events` (PRODUCT.md §5b "Show events"): a show's
//! availability and seat changes pushed in batches, and the caps on open
//! event streams that keep one client from taking them all.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tests::sse::{self, EventStream, SseEvent};
use tests::system::Sandbox;
use tests::{Options, System};

const WITHIN: Duration = Duration::from_secs(10);

async fn open(sys: &Sandbox, client: &reqwest::Client, show: &str) -> EventStream {
    let url = format!("{}/v1/shows/{show}/events", sys.base_url);
    match EventStream::open(client, &url).await {
        Ok(stream) => stream,
        Err(res) => panic!("{url}: {} {}", res.status(), res.text().await.unwrap()),
    }
}

async fn next(stream: &mut EventStream) -> SseEvent {
    stream
        .next_within(WITHIN)
        .await
        .expect("the stream goes on")
}

/// Reads events until `done` holds for the latest seat statuses (by id),
/// applying each `seats` event to `statuses`; returns the last
/// availability seen.
async fn follow(
    stream: &mut EventStream,
    statuses: &mut std::collections::HashMap<String, String>,
    done: impl Fn(&std::collections::HashMap<String, String>, &Value) -> bool,
) -> Value {
    let mut availability = Value::Null;
    loop {
        let event = next(stream).await;
        match event.event.as_deref() {
            Some("availability") => availability = event.json(),
            Some("seats") => {
                for seat in event.json().as_array().unwrap() {
                    statuses.insert(
                        seat["id"].as_str().unwrap().to_owned(),
                        seat["status"].as_str().unwrap().to_owned(),
                    );
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
        if done(statuses, &availability) {
            return availability;
        }
    }
}

#[tokio::test]
async fn a_show_stream_starts_with_the_whole_state_then_pushes_what_changes() {
    let sys = System::start().await;
    let show = sys.seated_show(1, 4).await;
    let seats = sys.seat_ids(&show).await;
    let client = sse::client();
    let mut stream = open(&sys, &client, &show).await;

    let first = next(&mut stream).await;
    assert_eq!(first.event.as_deref(), Some("show"));
    assert_eq!(first.json(), sys.show(&show).await);
    let availability = next(&mut stream).await;
    assert_eq!(availability.event.as_deref(), Some("availability"));
    assert_eq!(
        availability.json(),
        json!({"available": 4, "held": 0, "booked": 0,
               "sections": [{"name": "Stalls", "available": 4, "held": 0, "booked": 0}]})
    );
    let all = next(&mut stream).await;
    assert_eq!(all.event.as_deref(), Some("seats"));
    let mut statuses: std::collections::HashMap<String, String> = all
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), 4);
    assert!(statuses.values().all(|s| s == "available"));

    let body = json!({"email": "s@example.com", "name": "S", "seat_ids": [seats[0], seats[1]]});
    let id = sys.book_accepted(&show, body).await;
    let held = |s: &std::collections::HashMap<String, String>, _: &Value| {
        s[&seats[0]] == "held" && s[&seats[1]] == "held"
    };
    let availability = follow(&mut stream, &mut statuses, held).await;
    assert_eq!(availability["held"], 2);
    assert_eq!(statuses[&seats[2]], "available");

    sys.confirm(&id).await;
    let booked = |s: &std::collections::HashMap<String, String>, a: &Value| {
        s[&seats[0]] == "booked" && s[&seats[1]] == "booked" && a["booked"] == 2
    };
    let availability = follow(&mut stream, &mut statuses, booked).await;
    assert_eq!(availability["sections"][0]["booked"], 2);
    assert_eq!(availability["available"], 2);
    sys.finish().await;
}

#[tokio::test]
async fn a_sale_reaches_a_show_stream_in_batches_not_one_event_per_booking() {
    let sys = System::start().await;
    let show = sys.ga_show(100).await;
    let client = sse::client();
    let mut stream = open(&sys, &client, &show).await;
    assert_eq!(next(&mut stream).await.event.as_deref(), Some("show"));
    assert_eq!(next(&mut stream).await.json()["available"], 100);

    let started = Instant::now();
    let requests = (0..40).map(|i| {
        let body = json!({"email": format!("b{i}@example.com"), "name": "B", "quantity": 1});
        sys.book_accepted(&show, body)
    });
    futures::future::join_all(requests).await;
    let mut batches = 0;
    loop {
        let event = next(&mut stream).await;
        assert_eq!(
            event.event.as_deref(),
            Some("availability"),
            "a GA show has no seats"
        );
        batches += 1;
        if event.json()["held"] == 40 {
            break;
        }
    }
    let elapsed = started.elapsed();
    // At most one batch per 250 ms, give or take the first one.
    let most = elapsed.as_millis() / 250 + 2;
    assert!(batches as u128 <= most, "{batches} batches in {elapsed:?}");
    assert!(batches < 40, "{batches} events for 40 bookings");
    sys.finish().await;
}

#[tokio::test]
async fn an_unknown_show_has_no_stream() {
    let sys = System::start().await;
    let url = format!("{}/v1/shows/{}/events", sys.base_url, uuid::Uuid::new_v4());
    let Err(res) = EventStream::open(&sse::client(), &url).await else {
        panic!("a stream for no show");
    };
    assert_eq!(res.status(), 404);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "show_not_found");
    sys.finish().await;
}

/// A stream opened as if from `client` (the api trusts the test's proxy
/// address, so `X-Forwarded-For` names the client).
async fn open_as(
    sys: &Sandbox,
    http: &reqwest::Client,
    path: &str,
    client: &str,
) -> Result<EventStream, reqwest::Response> {
    let request = http
        .get(format!("{}{path}", sys.base_url))
        .header("x-forwarded-for", client);
    EventStream::open_with(request).await
}

async fn refused(result: Result<EventStream, reqwest::Response>, status: u16, code: &str) -> Value {
    let Err(res) = result else {
        panic!("a stream past the cap was opened");
    };
    assert_eq!(res.status(), status);
    assert!(res.headers().contains_key("retry-after"));
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], code, "{problem}");
    problem
}

#[tokio::test]
async fn event_streams_are_capped_per_client_address_and_in_all_while_booking_goes_on() {
    let options = Options {
        extra_env: vec![
            ("STREAMS_PER_CLIENT".into(), "3".into()),
            ("MAX_STREAMS".into(), "5".into()),
            ("TRUSTED_PROXIES".into(), "127.0.0.1".into()),
            // A closed stream is noticed at its next write.
            ("SSE_KEEP_ALIVE_SECONDS".into(), "1".into()),
        ],
        ..Options::default()
    };
    let sys = System::start_with(options).await;
    let show = sys.ga_show(10).await;
    let booking = sys
        .book_accepted(
            &show,
            json!({"email": "o@example.com", "name": "O", "quantity": 1}),
        )
        .await;
    let http = sse::client();
    let show_path = format!("/v1/shows/{show}/events");
    let booking_path = format!("/v1/bookings/{booking}/events");

    // One client: three streams of either kind, then 429.
    let mut mine = Vec::new();
    for path in [&show_path, &booking_path, &show_path] {
        mine.push(
            open_as(&sys, &http, path, "192.0.2.1")
                .await
                .expect("within the cap"),
        );
    }
    let problem = refused(
        open_as(&sys, &http, &show_path, "192.0.2.1").await,
        429,
        "too_many_streams",
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains('3'));
    // Others are not held up by it.
    let mut others = Vec::new();
    for client in ["192.0.2.2", "192.0.2.3"] {
        others.push(
            open_as(&sys, &http, &show_path, client)
                .await
                .expect("another client"),
        );
    }
    // Five in all: everyone is refused with 503, yet booking goes on.
    refused(
        open_as(&sys, &http, &show_path, "192.0.2.4").await,
        503,
        "streams_unavailable",
    )
    .await;
    let during = sys
        .book_accepted(
            &show,
            json!({"email": "n@example.com", "name": "N", "quantity": 1}),
        )
        .await;
    sys.wait_for(&during, "decided", |b| b["status"] == "held")
        .await;
    let polled = sys
        .request(Method::GET, &format!("/v1/bookings/{during}"))
        .send()
        .await
        .unwrap();
    assert_eq!(polled.status(), 200);

    // A closed stream frees its place at once, for its client and in all.
    drop(mine.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match open_as(&sys, &http, &show_path, "192.0.2.4").await {
            Ok(stream) => {
                others.push(stream);
                break;
            }
            Err(res) => assert!(Instant::now() < deadline, "still refused: {}", res.status()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sys.finish().await;
}
