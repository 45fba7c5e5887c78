//! The per-client rate limit on booking submissions (docs/API.md#limits).
//! Clients are told apart by their source address: each binds
//! one of its own in 127.0.0.0/8, which Linux routes to the loopback the
//! api listens on.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use tests::{Options, System};
use uuid::Uuid;

/// A system whose api limits each client to `burst` submissions at once
/// and `per_second` after that, believing `X-Forwarded-For` from `trusted`.
async fn limited_system(per_second: u32, burst: u32, trusted: &str) -> System {
    System::start_with(Options {
        extra_env: vec![
            ("RATE_LIMIT_PER_SECOND".into(), per_second.to_string()),
            ("RATE_LIMIT_BURST".into(), burst.to_string()),
            ("TRUSTED_PROXIES".into(), trusted.into()),
        ],
        ..Options::default()
    })
    .await
}

/// An HTTP client whose connections come from `source`.
fn client_from(source: &str) -> Client {
    Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// What `count` booking submissions sent at once got: the 202s and the
/// 429s (anything else fails the test), and how long sending them took.
struct Burst {
    accepted: Vec<Response>,
    limited: Vec<Response>,
    took: Duration,
}

impl Burst {
    /// Asserts that the accepted requests are the burst plus at most what
    /// the bucket refilled while they were sent, and the rest were refused.
    fn assert_held_to(&self, per_second: u32, burst: u32) {
        let refilled = (self.took.as_secs_f64() * f64::from(per_second)).ceil() as usize;
        let accepted = self.accepted.len();
        assert!(
            accepted >= burst as usize
                && accepted <= burst as usize + refilled
                && !self.limited.is_empty(),
            "{accepted} accepted, {} refused in {:?}",
            self.limited.len(),
            self.took
        );
    }
}

/// Sends `count` submissions to `show` at once from `http`, each with the
/// `X-Forwarded-For` that `forwarded` gives for its index, if any.
async fn submit(
    sys: &System,
    http: &Client,
    show: &str,
    count: usize,
    forwarded: impl Fn(usize) -> Option<String>,
) -> Burst {
    let started = Instant::now();
    let sends = (0..count).map(|i| {
        let mut request = http
            .post(format!("{}/v1/shows/{show}/bookings", sys.base_url))
            .json(&json!({"email": format!("fan-{}@example.com", Uuid::new_v4().simple()), "name": "Fan", "quantity": 1}));
        if let Some(hops) = forwarded(i) {
            request = request.header("x-forwarded-for", hops);
        }
        request.send()
    });
    let responses = join_all(sends).await;
    let took = started.elapsed();
    let (mut accepted, mut limited) = (Vec::new(), Vec::new());
    for response in responses {
        let response = response.unwrap();
        match response.status() {
            StatusCode::ACCEPTED => accepted.push(response),
            StatusCode::TOO_MANY_REQUESTS => limited.push(response),
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    Burst {
        accepted,
        limited,
        took,
    }
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", response.headers()))
        .to_str()
        .unwrap()
}

async fn bookings_recorded(sys: &System, show: &str) -> usize {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings WHERE show_id = $1")
        .bind(show.parse::<Uuid>().unwrap())
        .fetch_one(sys.db().await)
        .await
        .unwrap();
    count as usize
}

#[tokio::test]
async fn a_client_past_its_limit_gets_429s_and_records_nothing_while_another_client_is_served() {
    let sys = limited_system(1, 3, "").await;
    let show = sys.ga_show(100).await;
    let (flooder, neighbour) = (client_from("127.0.0.2"), client_from("127.0.0.3"));

    let (flood, calm) = futures::join!(
        submit(&sys, &flooder, &show, 10, |_| None),
        submit(&sys, &neighbour, &show, 3, |_| None),
    );

    flood.assert_held_to(1, 3);
    assert_eq!(calm.accepted.len(), 3, "the other client was limited too");
    for accepted in &flood.accepted {
        assert_eq!(
            header(accepted, "ratelimit-policy"),
            r#""bookings";q=3;w=3"#
        );
        assert!(header(accepted, "ratelimit").starts_with(r#""bookings";r="#));
    }
    for refused in flood.limited {
        // One more request is allowed a second after the burst.
        assert_eq!(header(&refused, "retry-after"), "1");
        assert_eq!(
            header(&refused, "ratelimit-policy"),
            r#""bookings";q=3;w=3"#
        );
        assert_eq!(header(&refused, "ratelimit"), r#""bookings";r=0;t=1"#);
        assert_eq!(header(&refused, "content-type"), "application/problem+json");
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["code"], "rate_limited", "{problem}");
        assert_eq!(problem["type"], "/problems/rate_limited", "{problem}");
        assert_eq!(problem["status"], 429, "{problem}");
    }
    assert_eq!(
        bookings_recorded(&sys, &show).await,
        flood.accepted.len() + calm.accepted.len(),
        "a refused request left a booking behind"
    );
    sys.finish().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_limited_on_its_own() {
    let sys = limited_system(1, 2, "127.0.0.4, 10.0.0.0/8").await;
    let show = sys.ga_show(100).await;
    let proxy = client_from("127.0.0.4");

    // One client through two proxies (10.1.2.3, then 127.0.0.4), writing
    // whatever it likes left of its own address: keyed on 198.51.100.7.
    let first = submit(&sys, &proxy, &show, 6, |i| {
        Some(match i % 2 {
            0 => "198.51.100.7".to_owned(),
            _ => format!("203.0.113.{i}, 198.51.100.7, 10.1.2.3"),
        })
    })
    .await;
    first.assert_held_to(1, 2);

    // Another client through the same proxy, right after: its own bucket.
    let second = submit(&sys, &proxy, &show, 2, |_| Some("192.0.2.55".to_owned())).await;
    assert_eq!(second.accepted.len(), 2, "limited with the first client");
    sys.finish().await;
}

#[tokio::test]
async fn an_untrusted_peer_cannot_escape_its_limit_by_forging_x_forwarded_for() {
    let sys = limited_system(1, 2, "127.0.0.4").await;
    let show = sys.ga_show(100).await;
    let forger = client_from("127.0.0.5");

    let forged = submit(&sys, &forger, &show, 6, |i| Some(format!("192.0.2.{i}"))).await;
    forged.assert_held_to(1, 2);
    sys.finish().await;
}
