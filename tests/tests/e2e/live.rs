//! `GET /v1/bookings/{id}/events`: a booking's changes pushed as
//! Server-Sent Events by the API's hub, which follows the broker's booking
//! events (docs/API.md#push-instead-of-busy-polling).

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use shared::amqp::Publisher;
use shared::topology::Topology;
use tests::history::History;
use tests::load::Request;
use tests::mailbox::unique_address;
use tests::sse::{self, EventStream, SseEvent};
use tests::system::{management_call, Sandbox};
use tests::{Options, System};

const FINAL: [&str; 4] = ["confirmed", "rejected", "expired", "cancelled"];

async fn open(sys: &Sandbox, client: &reqwest::Client, id: &str) -> EventStream {
    let url = format!("{}/v1/bookings/{id}/events", sys.base_url);
    match EventStream::open(client, &url).await {
        Ok(stream) => stream,
        Err(res) => panic!("{url}: {} {}", res.status(), res.text().await.unwrap()),
    }
}

/// A booking accepted (and recorded in `history`) while the worker is
/// paused, so it stays `queued` until the test resumes `worker-0` (on a
/// show of its own); returns its id.
async fn queued_booking(
    sys: &System,
    history: &History,
    capacity: i32,
    tag: &str,
    quantity: i32,
) -> String {
    let show = sys.ga_show(capacity).await;
    sys.pause("worker-0");
    let request = Request {
        body: json!({"email": unique_address(tag), "name": "L", "quantity": quantity}),
        show,
        quantity,
    };
    let booked = history.submit(sys, request).await;
    assert!(booked.accepted(), "booking: {}", booked.status);
    booked.id.unwrap()
}

/// The body `GET /v1/bookings/{id}` answers, as text.
async fn polled(sys: &Sandbox, id: &str) -> String {
    let res = sys
        .request(Method::GET, &format!("/v1/bookings/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// A `booking` event; returns its booking.
fn booking(event: SseEvent) -> Value {
    assert_eq!(event.event.as_deref(), Some("booking"), "{event:?}");
    event.json()
}

#[tokio::test]
async fn a_stream_sees_queued_held_confirmed_in_order_and_then_closes() {
    let sys = System::start_with(Options {
        extra_env: vec![("SSE_KEEP_ALIVE_SECONDS".into(), "1".into())],
        ..Options::default()
    })
    .await;
    let history = History::new();
    let id = queued_booking(&sys, &history, 10, "live", 2).await;
    let client = sse::client();
    let mut stream = open(&sys, &client, &id).await;

    let first = stream.next_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(first.event.as_deref(), Some("booking"));
    assert_eq!(
        first.data,
        polled(&sys, &id).await,
        "the first event is the poll"
    );
    assert_eq!(first.json()["status"], "queued");

    // Nothing changes while the worker is stopped: only keep-alive comments.
    let idle = tokio::time::timeout(Duration::from_millis(2500), stream.next()).await;
    assert!(idle.is_err(), "an event while nothing changed: {idle:?}");
    assert!(stream.comments() >= 1, "no keep-alive within 2.5 s");

    sys.resume("worker-0");
    let held = stream.next_within(Duration::from_secs(20)).await.unwrap();
    assert_eq!(held.data, polled(&sys, &id).await);
    let held = booking(held);
    assert_eq!(held["status"], "held");
    assert!(held["hold_expires_at"].is_string());

    assert_eq!(history.confirm(&sys, &id, "tok_visa").await, 202);
    let confirmed = stream.next_within(Duration::from_secs(20)).await.unwrap();
    assert_eq!(confirmed.data, polled(&sys, &id).await);
    let confirmed = booking(confirmed);
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(confirmed["tickets"].as_array().unwrap().len(), 2);
    assert_eq!(stream.next_within(Duration::from_secs(5)).await, None);
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

/// Statuses a stream sent, in order, until it ended.
async fn statuses_until_closed(mut stream: EventStream) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(event) = stream.next_within(Duration::from_secs(90)).await {
        seen.push(booking(event)["status"].as_str().unwrap().to_owned());
    }
    seen
}

/// Kilobytes of one `/proc/<pid>/status` line (`VmRSS`, `VmHWM`).
fn memory_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} for {pid}"))
}

async fn wait_for_api_metric(sys: &System, metric: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = sys.api_metric(metric).await;
        if now == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{metric} is {now:?}, not {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_thousand_streams_on_one_api_all_get_their_final_event() {
    const BOOKINGS: usize = 1_000;
    const TICKETS: i32 = 400;
    let sys = System::start_with(Options {
        hold_seconds: 2,
        ..Options::default()
    })
    .await;
    // No emails for the expiries: the shared mail sink is not under test.
    sys.kill("notifier");
    let show = sys.ga_show(TICKETS).await;
    sys.pause("worker-0");
    let ids: Vec<String> = futures::stream::iter(0..BOOKINGS)
        .map(|i| {
            let email = format!("live-{i}-{}", unique_address("many"));
            let show = &show;
            let sys = &sys;
            async move {
                sys.book_accepted(show, json!({"email": email, "name": "M", "quantity": 1}))
                    .await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    let api = sys.pids().into_iter().find(|(l, _)| l == "api").unwrap().1;
    let before = memory_kb(api, "VmRSS");
    let client = sse::client();
    let mut streams: Vec<EventStream> = futures::stream::iter(&ids)
        .map(|id| open(&sys, &client, id))
        .buffer_unordered(100)
        .collect()
        .await;
    for stream in &mut streams {
        let first = stream.next_within(Duration::from_secs(30)).await.unwrap();
        assert_eq!(booking(first)["status"], "queued");
    }
    wait_for_api_metric(&sys, "api_live_streams", BOOKINGS as f64).await;
    eprintln!(
        "api VmRSS {before} kB before, {} kB with {BOOKINGS} open streams (VmHWM {} kB)",
        memory_kb(api, "VmRSS"),
        memory_kb(api, "VmHWM")
    );

    sys.resume("worker-0");
    let readers: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(statuses_until_closed(s)))
        .collect();
    let mut finals = std::collections::BTreeMap::<String, usize>::new();
    for reader in readers {
        let seen = reader.await.unwrap();
        let last = seen.last().expect("at least the first event");
        assert!(FINAL.contains(&last.as_str()), "ended after {seen:?}");
        assert!(
            seen.iter()
                .rev()
                .skip(1)
                .all(|s| !FINAL.contains(&s.as_str())),
            "a final status before the end: {seen:?}"
        );
        *finals.entry(last.clone()).or_default() += 1;
    }
    let expected = [
        ("expired".to_owned(), TICKETS as usize),
        ("rejected".to_owned(), BOOKINGS - TICKETS as usize),
    ];
    assert_eq!(finals, expected.into_iter().collect());
    // Every stream's end released its booking from the hub.
    wait_for_api_metric(&sys, "api_live_streams", 0.0).await;
    wait_for_api_metric(&sys, "api_live_bookings", 0.0).await;
    sys.finish().await;
}

#[tokio::test]
async fn a_final_booking_gets_one_event_and_an_unknown_one_a_404() {
    let sys = System::start().await;
    let show = sys.ga_show(1).await;
    let body = |tag| json!({"email": unique_address(tag), "name": "F", "quantity": 1});
    let first = sys.book_accepted(&show, body("first")).await;
    sys.decided(&first).await;
    let second = sys.book_accepted(&show, body("second")).await;
    assert_eq!(sys.decided(&second).await["status"], "rejected");

    let client = sse::client();
    let mut stream = open(&sys, &client, &second).await;
    let only = stream.next_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(only.data, polled(&sys, &second).await);
    assert_eq!(booking(only)["reason"], "sold_out");
    assert_eq!(stream.next_within(Duration::from_secs(5)).await, None);

    let unknown = format!(
        "{}/v1/bookings/{}/events",
        sys.base_url,
        uuid::Uuid::new_v4()
    );
    let res = EventStream::open(&client, &unknown)
        .await
        .err()
        .expect("no stream for an unknown booking");
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "booking_not_found");
    sys.finish().await;
}

#[tokio::test]
async fn open_streams_end_when_the_api_drains() {
    let sys = System::start().await;
    let history = History::new();
    let id = queued_booking(&sys, &history, 5, "drain", 1).await;
    let client = sse::client();
    let mut stream = open(&sys, &client, &id).await;
    let first = stream.next_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(booking(first)["status"], "queued");
    let reader = tokio::spawn(async move { stream.next_within(Duration::from_secs(10)).await });

    let status = sys.terminate("api", Duration::from_secs(10)).await;
    assert!(status.success(), "api exited with {status}");
    assert_eq!(reader.await.unwrap(), None, "the stream ended");
    sys.resume("worker-0");
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

/// Stands in for a worker deciding `id` (rejected, sold out): the row, and
/// the event the hub follows.
async fn decide_behind_the_workers_back(sys: &System, show: &str, id: &str) {
    let booking = uuid::Uuid::parse_str(id).unwrap();
    sqlx::query("UPDATE bookings SET status = 'rejected', reason = 'sold_out' WHERE id = $1")
        .bind(booking)
        .execute(sys.db().await)
        .await
        .unwrap();
    let publisher = Publisher::new(
        &sys.amqp_url,
        "test decider",
        Topology {
            shards: Options::default().shards,
            delivery_limit: 10,
            quorum_group_size: None,
        },
    );
    // As the outbox relay sends it: in a batch of references.
    let batch = json!([{"event_id": uuid::Uuid::new_v4(), "kind": "rejected",
                        "occurred_at": chrono::Utc::now(),
                        "booking": {"id": id, "show_id": show}}]);
    publisher
        .send_event_batch(batch.to_string().as_bytes())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_queued_streams_place_in_line_falls_as_the_line_moves() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    sys.pause("worker-0");
    let mut line = Vec::new();
    for n in 0..3 {
        let body =
            json!({"email": unique_address(&format!("line{n}")), "name": "Q", "quantity": 1});
        line.push(sys.book_accepted(&show, body).await);
    }
    let client = sse::client();
    let mut stream = open(&sys, &client, &line[2]).await;
    let first = booking(stream.next_within(Duration::from_secs(10)).await.unwrap());
    assert_eq!(
        (first["status"].as_str(), first["position"].as_i64()),
        (Some("queued"), Some(3))
    );

    // Each decision ahead moves it up one place, pushed without a poll.
    for (ahead, expected) in [(&line[0], 2), (&line[1], 1)] {
        decide_behind_the_workers_back(&sys, &show, ahead).await;
        let moved = stream.next_within(Duration::from_secs(10)).await.unwrap();
        assert_eq!(moved.data, polled(&sys, &line[2]).await);
        let moved = booking(moved);
        assert_eq!(
            (moved["status"].as_str(), moved["position"].as_i64()),
            (Some("queued"), Some(expected))
        );
    }

    sys.resume("worker-0");
    let held = booking(stream.next_within(Duration::from_secs(20)).await.unwrap());
    assert_eq!(held["status"], "held");
    assert!(held["position"].is_null());
    sys.finish().await;
}

/// Closes the API hub's broker connection through the management API, as
/// a broker restart or a network cut would.
async fn cut_the_hubs_connection(sys: &System) {
    let vhost = sys.vhost.as_deref().expect("a vhost of its own");
    let deadline = Instant::now() + Duration::from_secs(15);
    let name = loop {
        let connections = management_call(
            Method::GET,
            &format!("/api/vhosts/{vhost}/connections"),
            None,
        )
        .await;
        let live = connections.as_array().into_iter().flatten().find(|c| {
            c["client_properties"]["connection_name"]
                .as_str()
                .is_some_and(|n| n.starts_with("api ") && n.ends_with(" live"))
        });
        if let Some(live) = live {
            break live["name"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no live connection: {connections}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut path = reqwest::Url::parse("http://management/api/connections/").unwrap();
    path.path_segments_mut().unwrap().pop_if_empty().push(&name);
    management_call(Method::DELETE, path.path(), None).await;
}

#[tokio::test]
async fn a_stream_learns_what_happened_while_the_hub_was_cut_off_from_the_broker() {
    let sys = System::start().await;
    let history = History::new();
    let id = queued_booking(&sys, &history, 5, "cut", 1).await;
    let client = sse::client();
    let mut stream = open(&sys, &client, &id).await;
    let first = booking(stream.next_within(Duration::from_secs(10)).await.unwrap());
    assert_eq!(first["status"], "queued");

    // Decided while the hub reconnects: its event most likely finds no
    // queue of this API's; the hub reloads what it watches once back.
    cut_the_hubs_connection(&sys).await;
    sys.resume("worker-0");
    let held = booking(stream.next_within(Duration::from_secs(30)).await.unwrap());
    assert_eq!(held["status"], "held");
    let subscriptions = sys.log("api").matches("watching booking events").count();
    assert_eq!(subscriptions, 2, "the hub subscribed again");
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}
