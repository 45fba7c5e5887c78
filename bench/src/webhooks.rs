//! `--webhook`: one endpoint, subscribed to every booking event, receives
//! the sale's events on a local receiver that answers at once. Measured:
//! deliveries per second and the delay from the event (its `timestamp`) to
//! its arrival.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use harness::System;
use serde::Serialize;
use serde_json::{json, Value};

use crate::stats::{per_second, Latency};

#[derive(Debug, Clone, Serialize)]
pub struct WebhooksReport {
    /// Deliveries received (with duplicates).
    pub received: usize,
    /// Distinct `webhook-id`s received.
    pub distinct: usize,
    /// Events expected: one per decision of the sale.
    pub expected: usize,
    /// First to last delivery received.
    pub seconds: f64,
    pub per_s: f64,
    /// The event's `timestamp` to its arrival at the receiver.
    pub delay: Latency,
}

#[derive(Default)]
struct Received {
    /// (webhook-id, arrival, delay in seconds)
    deliveries: Vec<(String, Instant, f64)>,
    /// Distinct `webhook-id`s: retries of one event count once.
    ids: HashSet<String>,
}

/// A receiver and the endpoint that points at it.
pub struct Webhook {
    received: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Starts a receiver and subscribes it to every booking event.
    pub async fn subscribe(sys: &System) -> anyhow::Result<Self> {
        let received = Arc::new(Mutex::new(Received::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(received.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the receiver serves");
        });
        let res = sys
            .admin(reqwest::Method::POST, "/v1/webhooks")
            .json(&json!({
                "url": url,
                "events": ["booking.held", "booking.rejected", "booking.waitlisted",
                           "booking.confirmed", "booking.cancelled", "booking.expired"],
            }))
            .send()
            .await?;
        anyhow::ensure!(
            res.status() == StatusCode::CREATED,
            "creating the webhook endpoint answered {}: {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
        Ok(Self { received, server })
    }

    /// Waits (up to `timeout`) until `expected` distinct deliveries arrived.
    pub async fn finish(self, expected: usize, timeout: Duration) -> WebhooksReport {
        let deadline = Instant::now() + timeout;
        while self.distinct() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.server.abort();
        let received = std::mem::take(&mut *self.received.lock().expect("not poisoned"));
        let arrivals = received.deliveries.iter().map(|(_, at, _)| *at);
        let seconds = match (arrivals.clone().min(), arrivals.max()) {
            (Some(first), Some(last)) => (last - first).as_secs_f64(),
            _ => 0.0,
        };
        WebhooksReport {
            received: received.deliveries.len(),
            distinct: received.distinct(),
            expected,
            seconds,
            per_s: per_second(received.deliveries.len(), seconds),
            delay: Latency::of_seconds(received.deliveries.iter().map(|d| d.2).collect()),
        }
    }

    fn distinct(&self) -> usize {
        self.received.lock().expect("not poisoned").distinct()
    }
}

impl Received {
    fn distinct(&self) -> usize {
        self.ids.len()
    }
}

async fn receive(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let delay = body["timestamp"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .map_or(0.0, |at| {
            (Utc::now() - at).num_microseconds().unwrap_or(0) as f64 / 1e6
        });
    let mut received = received.lock().expect("not poisoned");
    received.ids.insert(id.clone());
    received.deliveries.push((id, Instant::now(), delay));
    StatusCode::NO_CONTENT
}
