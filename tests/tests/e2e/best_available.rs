//! Best available: a seated request by quantity gets seats the worker
//! picks, adjacent in one row whenever a row still has them.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};
use tests::invariants::{assert_not_oversold, wait_all_decided};
use tests::mailbox::unique_address;
use tests::System;
use uuid::Uuid;

/// A seat of the API's answers as (row, number).
fn row_and_number(seat: &Value) -> (String, i64) {
    (
        seat["row"].as_str().unwrap().to_owned(),
        seat["number"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn best_available_requests_sit_together_whenever_a_row_has_room_and_never_share_a_seat() {
    let sys = System::start().await;
    let (rows, per_row) = (6, 8);
    let show = sys.seated_show(rows, per_row).await;
    let show_id: Uuid = show.parse().unwrap();
    // Two clients' runs at once, sizes 1 to 4: 60 requests for 48 seats.
    let submit = |n: usize| {
        let body = json!({"email": unique_address("best"), "name": "B", "quantity": 1 + n % 4});
        sys.book(&show, body)
    };
    let (a, b) = tokio::join!(
        join_all((0..30).map(|n| submit(2 * n))),
        join_all((0..30).map(|n| submit(2 * n + 1)))
    );
    for res in a.into_iter().chain(b) {
        assert_eq!(res.status(), 202);
    }
    wait_all_decided(sys.db().await, show_id, Duration::from_secs(60)).await;
    assert_not_oversold(sys.db().await, show_id).await;

    // Replay the decisions in order: whenever some row still had `size`
    // adjacent free seats, the booking got adjacent seats in one row.
    let decided: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "SELECT a.booking_id, a.to_status, b.quantity FROM booking_audit a
         JOIN bookings b ON b.id = a.booking_id
         WHERE a.show_id = $1 AND a.from_status = 'queued' ORDER BY a.id",
    )
    .bind(show_id)
    .fetch_all(sys.db().await)
    .await
    .unwrap();
    let mut taken: HashSet<(String, i64)> = HashSet::new();
    let mut held = 0;
    for (id, status, size) in decided {
        let room = (0..rows).any(|r| {
            let row = ((b'A' + r as u8) as char).to_string();
            (1..=per_row as i64)
                .collect::<Vec<_>>()
                .windows(size as usize)
                .any(|w| w.iter().all(|n| !taken.contains(&(row.clone(), *n))))
        });
        let booking = sys.booking(&id.to_string()).await;
        let seats: Vec<(String, i64)> = booking["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(row_and_number)
            .collect();
        if status != "held" {
            assert!(seats.is_empty(), "{booking}");
            let free = rows * per_row as usize - taken.len();
            assert!(free < size as usize, "refused {size} with {free} free");
            continue;
        }
        held += 1;
        assert_eq!(seats.len(), size as usize, "{booking}");
        assert_eq!(booking["total_cents"], 4000 * i64::from(size));
        if room {
            let row = &seats[0].0;
            let numbers: Vec<i64> = seats.iter().map(|(_, n)| *n).collect();
            assert!(
                seats.iter().all(|(r, _)| r == row),
                "split although a row had room: {booking}"
            );
            assert!(
                numbers.windows(2).all(|w| w[1] == w[0] + 1),
                "not adjacent: {booking}"
            );
        }
        for seat in seats {
            assert!(taken.insert(seat.clone()), "seat {seat:?} given twice");
        }
    }
    assert!(held >= 15, "only {held} held");
    // The seat map agrees: every taken seat shows as held.
    let map = sys.seat_map(&show).await;
    let statuses: HashMap<(String, i64), String> = map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (row_and_number(s), s["status"].as_str().unwrap().to_owned()))
        .collect();
    for seat in &taken {
        assert_eq!(statuses[seat], "held", "{seat:?}");
    }
    sys.finish().await;
}
