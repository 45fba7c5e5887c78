//! The waiting list: sold-out requests that asked to wait are offered
//! returned tickets in the order they joined, by the show's worker, in the
//! transaction that returned them.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};
use tests::invariants::{assert_not_oversold, wait_all_decided};
use tests::mailbox::{messages_to, unique_address, wait_for_messages};
use tests::{Options, System};
use uuid::Uuid;

/// What the waiting list should do, by the rules of docs/API.md#waiting-list: in
/// join order, each booking that fits what is free is offered it.
struct Line {
    waiting: Vec<(usize, i64)>,
    available: i64,
}

impl Line {
    fn release(&mut self, tickets: i64) -> Vec<usize> {
        self.available += tickets;
        let mut offered = Vec::new();
        self.waiting.retain(|&(n, size)| {
            if size <= self.available {
                self.available -= size;
                offered.push(n);
                false
            } else {
                true
            }
        });
        offered
    }
}

fn is_offer(mail: &Value) -> bool {
    mail["subject"]
        .as_str()
        .is_some_and(|s| s.starts_with("A place opened up"))
}

#[tokio::test]
async fn returned_tickets_go_to_the_waiting_list_in_join_order_with_one_offer_email_each() {
    let sys = System::start_with(Options {
        hold_seconds: 4,
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(10).await;
    // Sold out: five confirmed pairs.
    let mut sold = Vec::new();
    for _ in 0..5 {
        let body = json!({"email": unique_address("sold"), "name": "S", "quantity": 2});
        let id = sys.book_accepted(&show, body).await;
        assert_eq!(sys.decided(&id).await["status"], "held");
        sys.confirm(&id).await;
        sold.push(id);
    }

    // Fifty wait, one after another, sizes 1 to 4.
    let sizes: Vec<i64> = (0..50).map(|i| [3, 1, 2, 4, 2, 1, 3][i % 7]).collect();
    let mut waiting = Vec::new();
    for (n, &size) in sizes.iter().enumerate() {
        let email = unique_address(&format!("wait{n}"));
        let body = json!({"email": email, "name": "W", "quantity": size, "waitlist": true});
        waiting.push((sys.book_accepted(&show, body).await, email));
    }
    let mut line = Line {
        waiting: sizes.iter().copied().enumerate().collect(),
        available: 0,
    };
    let check_positions = |line: &Line| {
        let expected: Vec<(String, i64)> = line
            .waiting
            .iter()
            .enumerate()
            .map(|(place, &(n, _))| (waiting[n].0.clone(), place as i64 + 1))
            .collect();
        let sys = &sys;
        async move {
            for (id, place) in expected {
                let b = sys.booking(&id).await;
                assert_eq!(b["status"], "waitlisted", "{b}");
                assert_eq!(b["waitlist_position"], place, "{b}");
            }
        }
    };
    for (id, _) in &waiting {
        let b = sys.decided(id).await;
        assert_eq!(b["status"], "waitlisted", "{b}");
    }
    check_positions(&line).await;

    let mut offered_total = Vec::new();
    // Each step returns tickets one way: a cancel, or an offer left to
    // expire (only when it is the step's single offer, so the model needs
    // no assumption about the order of several expiries).
    let mut confirmed: Vec<(String, i64)> = sold.iter().map(|id| (id.clone(), 2)).collect();
    let mut step = 0;
    while offered_total.len() < 15 {
        step += 1;
        let (id, tickets) = confirmed.remove(0);
        let res = sys
            .post(&format!("/v1/bookings/{id}/cancel"), json!({}))
            .await;
        assert_eq!(res.status(), 202);
        let mut offers = line.release(tickets);
        let mut may_expire = step % 2 == 0;
        loop {
            for &n in &offers {
                let b = sys
                    .wait_for(&waiting[n].0, "offered", |b| b["status"] != "waitlisted")
                    .await;
                assert_eq!(b["status"], "held", "step {step}: {b}");
                assert!(b["hold_expires_at"].is_string());
            }
            assert_not_oversold(sys.db().await, show.parse().unwrap()).await;
            check_positions(&line).await;
            offered_total.extend(offers.iter().copied());
            if offers.len() == 1 && may_expire {
                may_expire = false;
                // Let this offer expire: its tickets go to the next in line.
                let n = offers[0];
                let b = sys
                    .wait_for(&waiting[n].0, "expired", |b| b["status"] == "expired")
                    .await;
                assert_eq!(b["reason"], "hold_expired");
                offers = line.release(sizes[n]);
                continue;
            }
            for &n in &offers {
                sys.confirm(&waiting[n].0).await;
                confirmed.push((waiting[n].0.clone(), sizes[n]));
            }
            break;
        }
    }

    // Exactly one offer email each, and none for those still waiting.
    for &n in &offered_total {
        let email = &waiting[n].1;
        wait_for_messages(email, 1).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (n, (_, email)) in waiting.iter().enumerate() {
        let offers = messages_to(email)
            .await
            .iter()
            .filter(|m| is_offer(m))
            .count();
        let expected = usize::from(offered_total.contains(&n));
        assert_eq!(offers, expected, "offer emails to booking {n}");
    }
    assert_not_oversold(sys.db().await, show.parse().unwrap()).await;
    sys.finish().await;
}

#[tokio::test]
async fn a_waitlisted_booking_can_be_cancelled_and_the_sales_count_the_list() {
    let sys = System::start().await;
    let show = sys.ga_show(1).await;
    let first = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("a"), "name": "A", "quantity": 1}),
        )
        .await;
    sys.decided(&first).await;
    let ids: Vec<String> = join_all((0..3).map(|_| {
        let body =
            json!({"email": unique_address("w"), "name": "W", "quantity": 1, "waitlist": true});
        sys.book_accepted(&show, body)
    }))
    .await;
    for id in &ids {
        assert_eq!(sys.decided(id).await["status"], "waitlisted");
    }
    let res = sys
        .post(&format!("/v1/bookings/{}/cancel", ids[1]), json!({}))
        .await;
    assert_eq!(res.status(), 202);
    let cancelled = sys
        .wait_for(&ids[1], "cancelled", |b| b["status"] == "cancelled")
        .await;
    assert_eq!(cancelled["waitlist_position"], Value::Null);
    let sales = sys.sales(&show).await;
    assert_eq!(sales["waitlisted"], 2, "{sales}");
    let audit: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT coalesce(from_status, ''), reason, to_status FROM booking_audit
         WHERE booking_id = $1 ORDER BY id",
    )
    .bind(ids[1].parse::<Uuid>().unwrap())
    .fetch_all(sys.db().await)
    .await
    .unwrap();
    let moves: Vec<(&str, &str)> = audit
        .iter()
        .map(|(f, _, t)| (f.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        moves,
        [
            ("", "queued"),
            ("queued", "waitlisted"),
            ("waitlisted", "cancelled")
        ]
    );
    sys.finish().await;
}

/// Every accepted request of a flash sale asks to wait, while cancels and
/// expiries return tickets: nothing is oversold, nobody is passed over by a
/// later booking of the same or a larger size, and every request ends
/// final or waiting.
#[tokio::test]
async fn a_flash_sale_where_everyone_waits_never_oversells_or_passes_anyone_over() {
    let sys = System::start_with(Options {
        hold_seconds: 2,
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(20).await;
    let show_id: Uuid = show.parse().unwrap();
    let submit = |n: usize| {
        let body = json!({
            "email": unique_address("flash"), "name": "F",
            "quantity": 1 + (n * 7 % 4), "waitlist": true
        });
        sys.book_accepted(&show, body)
    };
    // Three waves; between them, cancel some of what is held.
    let mut all = Vec::new();
    for wave in 0..3 {
        let ids = join_all((0..40).map(|n| submit(wave * 40 + n))).await;
        for id in &ids {
            sys.decided(id).await;
        }
        let held: Vec<&String> = {
            let mut held = Vec::new();
            for id in &ids {
                if sys.booking(id).await["status"] == "held" {
                    held.push(id);
                }
            }
            held
        };
        for id in held.iter().step_by(3) {
            let res = sys
                .post(&format!("/v1/bookings/{id}/cancel"), json!({}))
                .await;
            assert!(res.status() == 202 || res.status() == 409);
        }
        all.extend(ids);
    }
    // Confirm whatever is held until nothing is: the list then stops moving.
    wait_all_decided(sys.db().await, show_id, Duration::from_secs(60)).await;
    for _ in 0..20 {
        let mut held = Vec::new();
        for id in &all {
            if sys.booking(id).await["status"] == "held" {
                held.push(id.clone());
            }
        }
        if held.is_empty() {
            break;
        }
        for id in &held {
            let res = sys
                .post(
                    &format!("/v1/bookings/{id}/confirm"),
                    json!({"payment_token": "tok_visa"}),
                )
                .await;
            assert!(res.status().is_success() || res.status() == 409);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_not_oversold(sys.db().await, show_id).await;
    for id in &all {
        let status = sys.booking(id).await["status"].as_str().unwrap().to_owned();
        assert!(
            [
                "confirmed",
                "expired",
                "cancelled",
                "rejected",
                "waitlisted"
            ]
            .contains(&status.as_str()),
            "{id} ended {status}"
        );
    }
    assert_no_one_passed_over(&sys, show_id).await;
    sys.finish().await;
}

/// From the audit trail: whenever a booking got tickets (a request held at
/// once, or an offer), no booking that joined the waiting list before it
/// with the same or a smaller size was still waiting.
async fn assert_no_one_passed_over(sys: &System, show: Uuid) {
    let rows: Vec<(i64, Uuid, String, String, i32)> = sqlx::query_as(
        "SELECT a.id, a.booking_id, coalesce(a.from_status, ''), a.to_status, b.quantity
         FROM booking_audit a JOIN bookings b ON b.id = a.booking_id
         WHERE a.show_id = $1 ORDER BY a.id",
    )
    .bind(show)
    .fetch_all(sys.db().await)
    .await
    .unwrap();
    // Bookings waiting right now, with their size and when they joined.
    let mut waiting: HashMap<Uuid, (i64, i32)> = HashMap::new();
    let mut served = 0;
    for (at, booking, from, to, size) in rows {
        match (from.as_str(), to.as_str()) {
            ("queued", "waitlisted") => {
                waiting.insert(booking, (at, size));
            }
            ("waitlisted", _) => {
                let (joined, _) = waiting.remove(&booking).expect("was waiting");
                if to == "held" {
                    served += 1;
                    for (other, &(earlier, other_size)) in &waiting {
                        assert!(
                            !(earlier < joined && other_size <= size),
                            "{booking} (size {size}) was offered tickets while {other} \
                             (size {other_size}) had waited longer"
                        );
                    }
                }
            }
            ("queued", "held") => {
                for (other, &(_, other_size)) in &waiting {
                    assert!(
                        other_size > size,
                        "{booking} (size {size}) was held while {other} (size {other_size}) waited"
                    );
                }
            }
            _ => {}
        }
    }
    assert!(
        served > 0,
        "no offer was ever made: the test proves nothing"
    );
}

#[tokio::test]
async fn places_still_waiting_when_the_show_starts_end_expired_with_an_email() {
    let sys = System::start().await;
    let starts_at = chrono::Utc::now() + chrono::Duration::seconds(4);
    let show = sys
        .create_show(json!({
            "name": "Last Minute", "venue": "The Park", "starts_at": starts_at,
            "capacity": 1, "price_cents": 2500
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("in"), "name": "I", "quantity": 1}),
        )
        .await;
    assert_eq!(sys.decided(&first).await["status"], "held");
    let email = unique_address("late");
    let waiting = sys
        .book_accepted(
            &show,
            json!({"email": email, "name": "L", "quantity": 1, "waitlist": true}),
        )
        .await;
    assert_eq!(sys.decided(&waiting).await["waitlist_position"], 1);
    let ended = sys
        .wait_for(&waiting, "expired", |b| b["status"] == "expired")
        .await;
    assert_eq!(ended["reason"], "show_started");
    let mail = &wait_for_messages(&email, 1).await[0];
    assert!(
        mail["text"]
            .as_str()
            .unwrap()
            .contains("The show has started"),
        "{mail}"
    );
    sys.finish().await;
}

/// A seated best-available request can wait too: when seats come back the
/// worker picks them for the offer, adjacent in one row, and the seat map
/// shows them held for it.
#[tokio::test]
async fn a_seated_offer_holds_adjacent_seats_and_the_seat_map_shows_them_held() {
    let sys = System::start().await;
    let show = sys.seated_show(1, 4).await;
    let all = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("all"), "name": "A", "quantity": 4}),
        )
        .await;
    assert_eq!(sys.decided(&all).await["status"], "held");
    let waiting = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("wait"), "name": "W", "quantity": 2,
                   "section": "Stalls", "waitlist": true}),
        )
        .await;
    let waitlisted = sys.decided(&waiting).await;
    assert_eq!(waitlisted["status"], "waitlisted", "{waitlisted}");
    assert_eq!(waitlisted["waitlist_position"], 1);
    assert_eq!(waitlisted["seats"], json!([]));

    let res = sys
        .post(&format!("/v1/bookings/{all}/cancel"), json!({}))
        .await;
    assert_eq!(res.status(), 202);
    let offered = sys
        .wait_for(&waiting, "offered", |b| b["status"] == "held")
        .await;
    let seats: Vec<i64> = offered["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["number"].as_i64().unwrap())
        .collect();
    assert_eq!(seats, [1, 2], "the first two adjacent seats: {offered}");
    assert_eq!(offered["total_cents"], 8000);
    assert!(offered["hold_expires_at"].is_string());
    let map = sys.seat_map(&show).await;
    let statuses: Vec<&str> = map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["held", "held", "available", "available"]);
    sys.finish().await;
}
