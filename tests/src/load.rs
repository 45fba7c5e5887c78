//! Firing many booking requests at once, like a crowd at an on-sale minute.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::mailbox::unique_address;
use crate::System;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub show: String,
    pub body: Value,
    pub quantity: i32,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub request: Request,
    /// HTTP status, or 0 when the connection itself failed.
    pub status: u16,
    pub id: Option<String>,
    pub sent: Instant,
    pub answered: Instant,
}

impl Submitted {
    pub fn accepted(&self) -> bool {
        self.status == 202
    }
}

/// Sends every request with at most `concurrency` in flight; answers come
/// back in no particular order.
pub async fn submit_all(
    sys: &System,
    requests: Vec<Request>,
    concurrency: usize,
) -> Vec<Submitted> {
    futures::stream::iter(requests)
        .map(|request| submit(sys, request))
        .buffer_unordered(concurrency)
        .collect()
        .await
}

pub async fn submit(sys: &System, request: Request) -> Submitted {
    submit_with_key(sys, request, None).await
}

/// [`submit`] with an `Idempotency-Key`, so that sending it again is the
/// same booking.
pub async fn submit_with_key(sys: &System, request: Request, key: Option<&str>) -> Submitted {
    let sent = Instant::now();
    let path = format!("/v1/shows/{}/bookings", request.show);
    let mut post = sys.request(reqwest::Method::POST, &path);
    if let Some(key) = key {
        post = post.header("idempotency-key", key);
    }
    let response = post.json(&request.body).send().await;
    let (status, id) = match response {
        Ok(res) => {
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body["id"].as_str().map(str::to_owned))
        }
        Err(_) => (0, None),
    };
    Submitted {
        request,
        status,
        id,
        sent,
        answered: Instant::now(),
    }
}

/// A general-admission request from a new customer.
pub fn ga_request(show: &str, quantity: i32) -> Request {
    Request {
        show: show.to_owned(),
        body: json!({"email": unique_address("crowd"), "name": "Crowd", "quantity": quantity}),
        quantity,
    }
}

/// `quantity` adjacent seats starting at `start` (so neighbours collide).
pub fn seated_request(show: &str, seats: &[String], start: usize, quantity: usize) -> Request {
    Request {
        show: show.to_owned(),
        body: json!({"email": unique_address("crowd"), "name": "Crowd", "seat_ids": &seats[start..start + quantity]}),
        quantity: quantity as i32,
    }
}

/// A sale at a steady rate rather than one that ends as soon as it can: a
/// new request every `pace` (`request(i)` makes the `i`-th; at most
/// `concurrency` in flight) for as long as `until` runs. Returns every
/// answer and what `until` returned.
pub async fn steady_until<T>(
    sys: &System,
    pace: Duration,
    concurrency: usize,
    request: impl FnMut(usize) -> Request,
    until: impl Future<Output = T>,
) -> (Vec<Submitted>, T) {
    let stop = AtomicBool::new(false);
    let mut ticks = tokio::time::interval(pace);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ticks = futures::stream::unfold(ticks, |mut ticks| async move {
        ticks.tick().await;
        Some(((), ticks))
    });
    let crowd = ticks
        .take_while(|()| std::future::ready(!stop.load(Ordering::Relaxed)))
        .enumerate()
        .map(|(i, ())| i)
        .map(request)
        .map(|r| submit(sys, r))
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>();
    let until = async {
        let outcome = until.await;
        stop.store(true, Ordering::Relaxed);
        outcome
    };
    tokio::join!(crowd, until)
}
