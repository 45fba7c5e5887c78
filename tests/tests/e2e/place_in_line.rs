//! Place in line (docs/API.md#place-in-line): a queued booking tells its customer how
//! many of the show's undecided requests are up to and including theirs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::history::{Action, History, Op};
use tests::load::Request;
use tests::System;

/// Books one ticket and expects a 202, recorded in `history`; returns the
/// answer.
async fn submit(sys: &System, history: &History, show: &str, n: usize) -> Value {
    let request = Request {
        show: show.to_owned(),
        body: json!({"email": format!("line-{n}@example.com"), "name": "Ada", "quantity": 1}),
        quantity: 1,
    };
    let sent = Instant::now();
    let res = sys.book(show, request.body.clone()).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let booking: Value = res.json().await.unwrap();
    history.record(Op {
        action: Action::Book(request),
        sent,
        answered: Instant::now(),
        status: 202,
        booking: booking["id"].as_str().and_then(|id| id.parse().ok()),
    });
    booking
}

#[tokio::test(flavor = "multi_thread")]
async fn positions_count_up_in_acceptance_order_and_only_fall_once_workers_run() {
    let sys = System::start().await;
    // Fewer tickets than requests: some are held, the rest rejected; either
    // way every request leaves the line.
    let show = sys.ga_show(30).await;
    let other = sys.ga_show(30).await;
    sys.pause("worker-0");

    let history = History::new();
    let mut ids = Vec::new();
    for n in 0..50 {
        let booking = submit(&sys, &history, &show, n).await;
        assert_eq!(booking["position"], n as i64 + 1, "the 202 of request {n}");
        ids.push(booking["id"].as_str().unwrap().to_owned());
    }
    // Each show has a line of its own.
    for n in 0..3 {
        let booking = submit(&sys, &history, &other, n).await;
        assert_eq!(booking["position"], n as i64 + 1);
    }
    // While the workers are paused the places are exact.
    for (n, id) in ids.iter().enumerate() {
        let booking = sys.booking(id).await;
        assert_eq!(booking["status"], "queued");
        assert_eq!(booking["position"], n as i64 + 1, "poll of request {n}");
    }

    sys.resume("worker-0");
    let mut last: HashMap<String, i64> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| (id.clone(), n as i64 + 1))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !last.is_empty() {
        assert!(Instant::now() < deadline, "still queued: {last:?}");
        for id in last.keys().cloned().collect::<Vec<_>>() {
            let booking = sys.booking(&id).await;
            if booking["status"] == "queued" {
                let position = booking["position"]
                    .as_i64()
                    .expect("a queued booking has a place");
                assert!(position >= 1);
                assert!(
                    position <= last[&id],
                    "{id} went from {} to {position}",
                    last[&id]
                );
                last.insert(id, position);
            } else {
                assert!(
                    booking["position"].is_null(),
                    "a decided booking has no place"
                );
                last.remove(&id);
            }
        }
    }
    // The first 30 in line got the tickets: the history checker's order
    // rule, among the others.
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}
