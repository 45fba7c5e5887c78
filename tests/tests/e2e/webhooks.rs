//! Signed webhooks (docs/API.md#webhooks): every booking event reaches every
//! subscribed endpoint at least once, signed, whatever the endpoint or the
//! notifier does meanwhile; a slow endpoint delays nobody else; an endpoint
//! that never answers 2xx ends with failed, dead-lettered deliveries.
//! Receivers are small servers inside the test ([`tests::receiver`]), so
//! the services run with `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tests::history::History;
use tests::load::{ga_request, submit_all};
use tests::mailbox::{unique_address, wait_for_messages};
use tests::receiver::{Mode, Received, Receiver};
use tests::system::{dead_letters, management_call};
use tests::{Options, System, TestApp};

const ALL_EVENTS: [&str; 6] = [
    "booking.held",
    "booking.rejected",
    "booking.waitlisted",
    "booking.confirmed",
    "booking.cancelled",
    "booking.expired",
];

fn env(pairs: &[(&str, &str)]) -> Options {
    Options {
        extra_env: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Options::default()
    }
}

/// Registers `receiver` for `events`; returns the endpoint's id.
async fn subscribe(sys: &System, receiver: &Receiver, events: &[&str]) -> String {
    let res = sys
        .admin(Method::POST, "/v1/webhooks")
        .json(&json!({"url": receiver.url(), "events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let created: Value = res.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{created}");
    receiver.set_secret(secret);
    created["id"].as_str().unwrap().to_owned()
}

async fn deliveries(sys: &System, endpoint: &str) -> Vec<Value> {
    let res = sys
        .admin(Method::GET, &format!("/v1/webhooks/{endpoint}/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    list["deliveries"].as_array().unwrap().clone()
}

/// The statuses of an endpoint's deliveries, from the database (a deleted
/// endpoint's are no longer listed by the API).
async fn delivery_statuses(sys: &System, endpoint: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT status FROM webhook_deliveries WHERE endpoint_id = $1::uuid")
        .bind(endpoint)
        .fetch_all(sys.db().await)
        .await
        .unwrap()
}

/// Polls an endpoint's deliveries until `done` holds for them (30 s).
async fn wait_deliveries(
    sys: &System,
    endpoint: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = deliveries(sys, endpoint).await;
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never {what}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn received_pairs(received: &[Received]) -> HashSet<(String, String)> {
    received
        .iter()
        .map(|r| (r.event_type().to_owned(), r.booking_id().to_owned()))
        .collect()
}

async fn book(sys: &System, show: &str, quantity: i32, waitlist: bool) -> String {
    sys.book_accepted(
        show,
        json!({"email": unique_address("hook"), "name": "Ada", "quantity": quantity, "waitlist": waitlist}),
    )
    .await
}

#[tokio::test]
async fn a_receiver_down_for_30_seconds_gets_every_event_signed_with_a_stable_id() {
    let sys = System::start_with(env(&[("WEBHOOK_BACKOFF_MAX_SECONDS", "2")])).await;
    let receiver = Receiver::start(Mode::Ok).await;
    let endpoint = subscribe(&sys, &receiver, &ALL_EVENTS).await;
    receiver.stop();
    let down_since = Instant::now();

    // held, confirmed, waitlisted, rejected, cancelled, and held again
    // (the waitlisted booking is offered the returned tickets).
    let show = sys.ga_show(2).await;
    let first = book(&sys, &show, 2, false).await;
    sys.wait_for(&first, "held", |b| b["status"] == "held")
        .await;
    sys.confirm(&first).await;
    let waiting = book(&sys, &show, 1, true).await;
    sys.wait_for(&waiting, "waitlisted", |b| b["status"] == "waitlisted")
        .await;
    let refused = book(&sys, &show, 1, false).await;
    sys.wait_for(&refused, "rejected", |b| b["status"] == "rejected")
        .await;
    let res = sys
        .post(&format!("/v1/bookings/{first}/cancel"), json!({}))
        .await;
    assert_eq!(res.status(), 202);
    sys.wait_for(&waiting, "offered", |b| b["status"] == "held")
        .await;
    let expected: HashSet<(String, String)> = [
        ("booking.held", &first),
        ("booking.confirmed", &first),
        ("booking.waitlisted", &waiting),
        ("booking.rejected", &refused),
        ("booking.cancelled", &first),
        ("booking.held", &waiting),
    ]
    .into_iter()
    .map(|(t, b)| (t.to_owned(), b.clone()))
    .collect();

    // Attempts fail while it is down, and are recorded as failed.
    wait_deliveries(&sys, &endpoint, "attempted", |list| {
        list.len() == expected.len()
            && list
                .iter()
                .all(|d| !d["attempts"].as_array().unwrap().is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_since.elapsed())).await;
    assert!(receiver.received().is_empty());
    receiver.resume().await;

    let received = receiver
        .wait_until("every event", Duration::from_secs(30), |r| {
            received_pairs(r) == expected
        })
        .await;
    for r in &received {
        assert!(r.verified, "bad signature: {r:?}");
        assert!(r.body["timestamp"].is_string(), "{:?}", r.body);
        assert!((chrono::Utc::now().timestamp() - r.timestamp).abs() < 120);
    }
    // The same event always carries the same webhook-id, and the booking
    // as the API shows it.
    let mut ids: HashMap<String, (String, String)> = HashMap::new();
    for r in &received {
        let pair = (r.event_type().to_owned(), r.booking_id().to_owned());
        assert_eq!(
            ids.entry(r.webhook_id.clone()).or_insert(pair.clone()),
            &pair
        );
        assert!(r.body["data"]["status"].is_string(), "{:?}", r.body);
        assert!(r.body["data"]["quantity"].is_number(), "{:?}", r.body);
        assert!(r.body["data"]["waitlist"].is_boolean(), "{:?}", r.body);
        assert!(r.body["data"]["created_at"].is_string(), "{:?}", r.body);
    }
    assert_eq!(ids.len(), expected.len(), "one webhook-id per event");

    let list = wait_deliveries(&sys, &endpoint, "all delivered", |list| {
        list.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    for d in &list {
        assert!(ids.contains_key(d["id"].as_str().unwrap()), "{d}");
        let attempts = d["attempts"].as_array().unwrap();
        assert!(
            attempts.len() >= 2,
            "failed while down, then delivered: {d}"
        );
        assert_eq!(attempts[0]["status_code"], 204, "{d}");
        assert!(attempts.last().unwrap()["error"].is_string(), "{d}");
    }
    sys.finish().await;
}

#[tokio::test]
async fn a_hanging_endpoint_delays_neither_the_emails_nor_another_endpoint() {
    let sys = System::start_with(env(&[("WEBHOOK_TIMEOUT_SECONDS", "60")])).await;
    let hanging = Receiver::start(Mode::Hang).await;
    let healthy = Receiver::start(Mode::Ok).await;
    let events = ["booking.held", "booking.confirmed"];
    subscribe(&sys, &hanging, &events).await;
    subscribe(&sys, &healthy, &events).await;

    let show = sys.ga_show(100).await;
    let started = Instant::now();
    let requests = (0..30).map(|_| ga_request(&show, 1)).collect();
    let submitted = submit_all(&sys, requests, 10).await;
    let mut ids = Vec::new();
    for s in &submitted {
        assert!(s.accepted());
        ids.push(s.id.clone().unwrap());
    }
    let customer = unique_address("hang");
    let paid = sys
        .book_accepted(
            &show,
            json!({"email": customer, "name": "Ada", "quantity": 2}),
        )
        .await;
    sys.wait_for(&paid, "held", |b| b["status"] == "held").await;
    sys.confirm(&paid).await;
    wait_for_messages(&customer, 1).await;
    healthy
        .wait_until("every event", Duration::from_secs(15), |r| {
            let pairs = received_pairs(r);
            ids.iter()
                .chain([&paid])
                .all(|id| pairs.contains(&("booking.held".to_owned(), id.clone())))
                && pairs.contains(&("booking.confirmed".to_owned(), paid.clone()))
        })
        .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // The hanging endpoint holds only its own share of the slots (32 of
    // the notifier's 128).
    assert!(hanging.max_in_flight() <= 32, "{}", hanging.max_in_flight());
    assert!(hanging.max_in_flight() >= 1);
    sys.finish().await;
}

#[tokio::test]
async fn a_permanently_failing_endpoint_ends_failed_and_dead_lettered() {
    let sys = System::start_with(env(&[
        ("WEBHOOK_BACKOFF_MAX_SECONDS", "1"),
        ("WEBHOOK_RETRY_FOR_SECONDS", "3"),
    ]))
    .await;
    let receiver = Receiver::start(Mode::Fail).await;
    let endpoint = subscribe(&sys, &receiver, &["booking.held"]).await;
    let show = sys.ga_show(10).await;
    let id = book(&sys, &show, 1, false).await;

    let list = wait_deliveries(&sys, &endpoint, "failed", |list| {
        list.len() == 1 && list[0]["status"] == "failed"
    })
    .await;
    let failed = &list[0];
    assert_eq!(failed["type"], "booking.held");
    assert_eq!(failed["booking_id"], id.as_str());
    let attempts = failed["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 3, "{failed}");
    for a in attempts {
        assert_eq!(a["status_code"], 500, "{failed}");
    }
    assert!(receiver.received().iter().all(|r| r.verified));

    let vhost = sys.vhost.as_deref().unwrap();
    let dead = dead_letters(vhost, "webhooks.deliveries.dead").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let message: Value = serde_json::from_str(dead[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(message["webhook_id"], failed["id"]);
    assert_eq!(message["last_status_code"], 500);
    assert_eq!(message["payload"]["data"]["id"], id.as_str());
    // Failed for good: no more attempts.
    let count = receiver.received().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.received().len(), count);
    sys.finish().await;
}

#[tokio::test]
async fn deleting_an_endpoint_stops_its_deliveries() {
    let sys = System::start_with(env(&[("WEBHOOK_BACKOFF_MAX_SECONDS", "1")])).await;
    let doomed = Receiver::start(Mode::Fail).await;
    let kept = Receiver::start(Mode::Ok).await;
    let doomed_id = subscribe(&sys, &doomed, &["booking.held"]).await;
    subscribe(&sys, &kept, &["booking.held"]).await;
    let show = sys.ga_show(10).await;
    let before = book(&sys, &show, 1, false).await;
    doomed
        .wait_until("a failing attempt", Duration::from_secs(20), |r| {
            !r.is_empty()
        })
        .await;

    let res = sys
        .admin(Method::DELETE, &format!("/v1/webhooks/{doomed_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let listed = sys.admin(Method::GET, "/v1/webhooks").send().await.unwrap();
    let listed: Value = listed.json().await.unwrap();
    let webhooks = listed["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 1, "{listed}");
    assert!(webhooks[0].get("secret").is_none(), "{listed}");
    // Gone, with its deliveries; the one still pending was cancelled.
    let gone = sys
        .admin(Method::GET, &format!("/v1/webhooks/{doomed_id}/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(delivery_statuses(&sys, &doomed_id).await, ["cancelled"]);

    let after = book(&sys, &show, 1, false).await;
    kept.wait_until("both events", Duration::from_secs(20), |r| {
        let pairs = received_pairs(r);
        [&before, &after]
            .iter()
            .all(|id| pairs.contains(&("booking.held".to_owned(), (*id).clone())))
    })
    .await;
    let count = doomed.received().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = doomed.received();
    assert!(got.len() <= count + 1, "at most the attempt in flight");
    assert!(got.iter().all(|r| r.booking_id() == before), "{got:?}");
    assert_eq!(delivery_statuses(&sys, &doomed_id).await, ["cancelled"]);
    sys.finish().await;
}

#[tokio::test]
async fn webhook_urls_on_private_networks_and_bad_subscriptions_are_refused() {
    let app = TestApp::spawn().await;
    let create = |body: Value| app.admin(Method::POST, "/v1/webhooks").json(&body).send();
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.1.1/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://0.0.0.0/",
        "ftp://example.com/",
        "not a url",
        "",
    ] {
        let res = create(json!({"url": url, "events": ["booking.held"]}))
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{url}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{url}"
        );
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], "url", "{url}: {problem}");
    }
    for events in [
        json!([]),
        json!(["booking.held", "booking.held"]),
        json!(["booking.reminder"]),
        json!(["held"]),
    ] {
        let res = create(json!({"url": "http://93.184.216.34/hook", "events": events}))
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{events}");
    }
    let res =
        create(json!({"url": "http://93.184.216.34/hook", "events": ["booking.held"], "extra": 1}))
            .await
            .unwrap();
    assert_eq!(res.status(), 400);
    let anonymous = app
        .request(Method::POST, "/v1/webhooks")
        .json(&json!({"url": "http://93.184.216.34/hook", "events": ["booking.held"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // A public address is fine; its secret is shown once.
    let res = create(json!({"url": "http://93.184.216.34/hook", "events": ["booking.held"]}))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert!(created["secret"].as_str().unwrap().len() > "whsec_".len() + 32);
    let unknown = app
        .admin(
            Method::DELETE,
            &format!("/v1/webhooks/{}", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    app.finish().await;
}

#[tokio::test]
async fn killing_the_notifier_mid_burst_loses_no_webhook() {
    let sys = System::start_with(env(&[("WEBHOOK_TIMEOUT_SECONDS", "2")])).await;
    let receiver = Receiver::start(Mode::Ok).await;
    subscribe(&sys, &receiver, &["booking.held"]).await;
    let show = sys.ga_show(200).await;
    let requests = (0..200).map(|_| ga_request(&show, 1)).collect();
    let history = History::new();
    let submitting = history.submit_all(&sys, requests, 20);
    let kill = async {
        receiver
            .wait_until("the first events", Duration::from_secs(30), |r| {
                r.len() >= 20
            })
            .await;
        sys.kill("notifier");
    };
    let (submitted, ()) = tokio::join!(submitting, kill);
    let ids: HashSet<String> = submitted
        .iter()
        .map(|s| {
            assert!(s.accepted());
            s.id.clone().unwrap()
        })
        .collect();
    sys.restart("notifier").await;
    let received = receiver
        .wait_until("every booking's hold", Duration::from_secs(60), |r| {
            let got: HashSet<&str> = r.iter().map(Received::booking_id).collect();
            ids.iter().all(|id| got.contains(id.as_str()))
        })
        .await;
    assert!(received
        .iter()
        .all(|r| r.verified && r.event_type() == "booking.held"));
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

/// Publishes straight to `queue` (through the default exchange).
async fn publish(vhost: &str, queue: &str, payload: String) {
    let published = management_call(
        Method::POST,
        &format!("/api/exchanges/{vhost}/amq.default/publish"),
        Some(
            json!({"properties": {"delivery_mode": 2}, "routing_key": queue,
                    "payload": payload, "payload_encoding": "string"}),
        ),
    )
    .await;
    assert_eq!(published["routed"], true);
}

/// A `held` booking event as the outbox relay publishes it.
fn held_event(event_id: uuid::Uuid, booking: &str, show: &str, email: &Value) -> Value {
    json!({
        "event_id": event_id, "kind": "held", "occurred_at": chrono::Utc::now(),
        "booking": {"id": booking, "show_id": show, "show_name": "Open Air", "venue": "The Park",
                    "starts_at": "2030-06-01T19:00:00Z", "email": email, "name": "Ada",
                    "status": "held", "reason": null, "quantity": 1, "seats": [],
                    "total_cents": 2500, "hold_expires_at": null, "tickets": []}
    })
}

#[tokio::test]
async fn a_dead_lettered_webhook_event_is_replayed_to_its_endpoints() {
    let sys = System::start().await;
    let receiver = Receiver::start(Mode::Ok).await;
    let endpoint = subscribe(&sys, &receiver, &["booking.held"]).await;
    let vhost = sys.vhost.as_deref().unwrap();
    // Poison goes to webhooks.events.dead, and events keep flowing.
    publish(vhost, "webhooks.events", "not an event".to_owned()).await;
    let show = sys.ga_show(10).await;
    let id = book(&sys, &show, 1, false).await;
    receiver
        .wait_until("the hold", Duration::from_secs(20), |r| r.len() == 1)
        .await;
    let dead = dead_letters(vhost, "webhooks.events.dead").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = &dead[0]["properties"]["headers"]["x-booking-death-reason"];
    assert!(reason.as_str().unwrap().contains("unparseable"), "{reason}");

    // An event that died (say, while its cause was being fixed) is fanned
    // out when replayed; what cannot be parsed stays.
    let booking = sys.booking(&id).await;
    let event_id = uuid::Uuid::now_v7();
    let event = held_event(event_id, &id, &show, &booking["email"]);
    publish(vhost, "webhooks.events.dead", event.to_string()).await;
    let out = sys
        .worker_command(&["replay-dead-letters", "--queue", "webhooks.events.dead"])
        .await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("replayed 1") && said.contains("kept 1"),
        "{said}"
    );
    let list = wait_deliveries(&sys, &endpoint, "replayed", |list| {
        list.iter()
            .any(|d| d["event_id"] == event_id.to_string() && d["status"] == "delivered")
    })
    .await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(receiver.received().len(), 2);
    sys.finish().await;
}

/// The routing keys bound from `booking.events` to `webhooks.events`.
async fn webhook_bindings(sys: &System) -> Vec<String> {
    let vhost = sys.vhost.as_deref().unwrap();
    let bindings = management_call(
        Method::GET,
        &format!("/api/exchanges/{vhost}/booking.events/bindings/source"),
        None,
    )
    .await;
    bindings
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["destination"] == "webhooks.events")
        .map(|b| b["routing_key"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn events_reach_the_webhook_queue_only_while_an_endpoint_is_live() {
    let sys = System::start().await;
    // Without endpoints nothing is routed there: no cost per event.
    assert_eq!(webhook_bindings(&sys).await, Vec::<String>::new());
    let receiver = Receiver::start(Mode::Ok).await;
    let endpoint = subscribe(&sys, &receiver, &["booking.held"]).await;
    // Bound by the api before it answered 201, to the relay's batches (not
    // to each event: that would cost RabbitMQ a message per event).
    assert_eq!(webhook_bindings(&sys).await, vec!["events.batch"]);
    let res = sys
        .admin(Method::DELETE, &format!("/v1/webhooks/{endpoint}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // The notifier unbinds within its next check (once a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !webhook_bindings(&sys).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "still bound after the last endpoint went"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A queue bound as older versions bound it (to each event, then to
    // batches of webhook events only) loses those bindings when a process
    // declares the topology.
    let vhost = sys.vhost.as_deref().unwrap();
    for old_key in ["booking.held", "webhooks.batch"] {
        management_call(
            Method::POST,
            &format!("/api/bindings/{vhost}/e/booking.events/q/webhooks.events"),
            Some(json!({ "routing_key": old_key })),
        )
        .await;
    }
    assert_eq!(
        webhook_bindings(&sys).await,
        vec!["booking.held", "webhooks.batch"]
    );
    let conn = shared::amqp::connect(&sys.amqp_url, "upgrade test")
        .await
        .unwrap();
    let topology = shared::topology::Topology {
        shards: Options::default().shards,
        delivery_limit: 10,
        quorum_group_size: None,
    };
    topology.declare(&conn).await.unwrap();
    let _ = conn.close(200, "declared".into()).await;
    assert_eq!(webhook_bindings(&sys).await, Vec::<String>::new());
    sys.finish().await;
}

/// While booking requests wait to be decided, the fan-out lets the sale go
/// first: events trickle out at `WEBHOOK_SALE_RATE`, and once the backlog
/// is gone every one of them arrives.
#[tokio::test]
async fn webhooks_trickle_while_a_sale_backlog_waits_then_all_arrive() {
    let sys = System::start_with(env(&[
        ("WEBHOOK_SALE_BACKLOG", "3"),
        ("WEBHOOK_SALE_RATE", "1"),
    ]))
    .await;
    let receiver = Receiver::start(Mode::Ok).await;
    subscribe(&sys, &receiver, &["booking.held"]).await;
    let vhost = sys.vhost.as_deref().unwrap();
    let show = sys.ga_show(100).await;
    let id = book(&sys, &show, 1, false).await;
    receiver
        .wait_until(
            "the hold, at once without a backlog",
            Duration::from_secs(20),
            |r| r.len() == 1,
        )
        .await;

    // A sale's backlog: requests waiting to be decided.
    sys.pause("worker-0");
    for _ in 0..6 {
        book(&sys, &show, 1, false).await;
    }
    // The notifier reads the backlog twice a second.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Events go on arriving meanwhile (here straight into the queue, as
    // other shows' decisions would).
    let booking = sys.booking(&id).await;
    for _ in 0..20 {
        let event = held_event(uuid::Uuid::now_v7(), &id, &show, &booking["email"]);
        publish(vhost, "webhooks.events", event.to_string()).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let early = receiver.received().len() - 1;
    assert!(
        early <= 8,
        "1 event a second while requests wait, yet {early} of 20 arrived within 4 s"
    );

    // The backlog is gone: all 20 arrive, and the 6 holds.
    sys.resume("worker-0");
    let received = receiver
        .wait_until("every event", Duration::from_secs(30), |r| {
            r.iter()
                .map(|r| r.webhook_id.as_str())
                .collect::<HashSet<_>>()
                .len()
                >= 27
        })
        .await;
    assert!(received.iter().all(|r| r.verified));
    sys.finish().await;
}
