//! The booking engine under contention: a hot show goes on sale with a pool
//! of workers, and a worker dies mid-burst. Checked in the database itself,
//! and the burst with a worker's death by the history checker.

use std::time::Duration;

use tests::history::History;
use tests::invariants::{
    assert_decided_once, assert_not_oversold, decisions_by_worker, wait_all_decided,
    wait_outbox_drained,
};
use tests::load::{ga_request, seated_request, submit_all, Submitted};
use tests::mailbox::wait_for_messages;
use tests::{Options, System};
use uuid::Uuid;

const SHARDS: u16 = 16;

async fn pool_of_two() -> System {
    let sys = System::start_with(Options {
        workers: 2,
        shards: SHARDS,
        ..Options::default()
    })
    .await;
    sys.wait_for_balance(&sys.workers(), SHARDS, Duration::from_secs(20))
        .await;
    sys
}

fn show_id(show: &str) -> Uuid {
    show.parse().unwrap()
}

#[tokio::test]
async fn concurrent_requests_never_oversell() {
    let sys = pool_of_two().await;
    let ga = sys.ga_show(500).await;
    let seated = sys.seated_show(10, 20).await;
    let seats = sys.seat_ids(&seated).await;
    let mut requests = Vec::new();
    for i in 0..1500 {
        requests.push(ga_request(&ga, (i * 7 % 4) + 1));
        let quantity = (i % 4) as usize + 1;
        requests.push(seated_request(
            &seated,
            &seats,
            (i as usize * 37) % (seats.len() - quantity),
            quantity,
        ));
    }
    let results = submit_all(&sys, requests, 200).await;
    assert!(
        results.iter().all(Submitted::accepted),
        "every request is accepted while all is up"
    );

    let db = sys.db().await;
    for show in [&ga, &seated] {
        wait_all_decided(db, show_id(show), Duration::from_secs(120)).await;
        assert_not_oversold(db, show_id(show)).await;
        assert_decided_once(db, show_id(show)).await;
    }
    let (decided, live): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status IN ('held', 'rejected')), count(*) FILTER (WHERE status = 'held')
         FROM bookings",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(decided, 3000, "every request has a final state");
    assert!(live > 0);
    assert_eq!(
        sys.show(&ga).await["available"],
        0,
        "the hot show sells out completely"
    );
    println!("decisions by worker: {:?}", decisions_by_worker(db).await);
    sys.finish().await;
}

#[tokio::test]
async fn requests_for_one_show_are_decided_in_order() {
    let sys = pool_of_two().await;
    let show = sys.ga_show(400).await;
    // 40 clients, each sending its next request as soon as the last was
    // accepted: the API accepts faster than one show's shard decides, so a
    // backlog builds, and the show sells out half-way.
    let clients = (0..40).map(|c| {
        let sys = &sys;
        let show = show.clone();
        async move {
            let mut mine = Vec::new();
            for i in 0..40 {
                mine.push(tests::load::submit(sys, ga_request(&show, (c + i) % 4 + 1)).await);
            }
            mine
        }
    });
    let results: Vec<Submitted> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(results.iter().all(Submitted::accepted));

    let db = sys.db().await;
    wait_all_decided(db, show_id(&show), Duration::from_secs(60)).await;
    let statuses: std::collections::HashMap<String, String> =
        sqlx::query_as::<_, (Uuid, String)>("SELECT id, status FROM bookings")
            .fetch_all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, status)| (id.to_string(), status))
            .collect();
    let status = |s: &Submitted| statuses[s.id.as_ref().unwrap()].as_str();
    let mut inversions = 0;
    let mut refusals = 0;
    for quantity in 1..=4 {
        let same: Vec<&Submitted> = results
            .iter()
            .filter(|s| s.request.quantity == quantity)
            .collect();
        // A refused request A, accepted before B was even sent: B must be refused too.
        let first_refusal = same
            .iter()
            .filter(|s| status(s) == "rejected")
            .map(|s| s.answered)
            .min();
        if let Some(refused_at) = first_refusal {
            refusals += 1;
            inversions += same
                .iter()
                .filter(|b| b.sent > refused_at && status(b) == "held")
                .count();
        }
    }
    assert!(
        refusals > 0,
        "the show must sell out for this test to mean anything"
    );
    assert_eq!(
        inversions, 0,
        "a later request got seats an earlier one of the same size was refused"
    );
    assert_not_oversold(db, show_id(&show)).await;
    sys.finish().await;
}

#[tokio::test]
async fn two_workers_share_the_work_of_many_shows() {
    let sys = pool_of_two().await;
    let mut requests = Vec::new();
    let mut shows = Vec::new();
    for _ in 0..120 {
        let show = sys.ga_show(100).await;
        requests.extend((0..5).map(|_| ga_request(&show, 1)));
        shows.push(show);
    }
    let total = requests.len() as i64;
    submit_all(&sys, requests, 100).await;
    let db = sys.db().await;
    for show in &shows {
        wait_all_decided(db, show_id(show), Duration::from_secs(60)).await;
    }
    let shares = decisions_by_worker(db).await;
    println!("decisions by worker: {shares:?}");
    assert_eq!(
        shares.len(),
        2,
        "both workers decided something: {shares:?}"
    );
    for (worker, decided) in &shares {
        assert!(
            *decided * 3 >= total,
            "{worker} did only {decided} of {total}"
        );
    }
    sys.finish().await;
}

#[tokio::test]
async fn killing_a_worker_mid_burst_loses_nothing() {
    let sys = pool_of_two().await;
    let ga = sys.ga_show(800).await;
    let seated = sys.seated_show(10, 20).await;
    let seats = sys.seat_ids(&seated).await;
    let mut shows = vec![ga.clone(), seated.clone()];
    for _ in 0..20 {
        shows.push(sys.ga_show(40).await);
    }
    let mut requests = Vec::new();
    for i in 0..3000usize {
        requests.push(match i % 3 {
            0 => ga_request(&ga, (i % 4) as i32 + 1),
            1 => seated_request(&seated, &seats, (i * 13) % 196, i % 4 + 1),
            _ => ga_request(&shows[2 + i % 20], (i % 3) as i32 + 1),
        });
    }

    let victim = "worker-0";
    let survivor = "worker-1";
    let history = History::new();
    let burst = history.submit_all(&sys, requests, 100);
    let kill = async {
        // Let the burst get going, then pull the plug without warning.
        let db = sys.db().await;
        loop {
            let decided: i64 =
                sqlx::query_scalar("SELECT count(*) FROM bookings WHERE status <> 'queued'")
                    .fetch_one(db)
                    .await
                    .unwrap();
            if decided >= 300 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sys.kill(victim);
        sys.wait_for_balance(&[survivor.to_owned()], SHARDS, Duration::from_secs(30))
            .await
    };
    let (results, failover) = tokio::join!(burst, kill);
    println!("failover: the survivor owned every shard {failover:?} after the kill");
    assert!(
        results.iter().all(Submitted::accepted),
        "the API kept accepting"
    );

    let db = sys.db().await;
    for show in &shows {
        wait_all_decided(db, show_id(show), Duration::from_secs(120)).await;
    }
    wait_outbox_drained(db, Duration::from_secs(30)).await;
    println!("decisions by worker: {:?}", decisions_by_worker(db).await);

    // The pipeline to the notifier still works, and sends each email once.
    let held: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, email FROM bookings WHERE status = 'held' ORDER BY created_at LIMIT 5",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for (id, email) in &held {
        let id = id.to_string();
        assert_eq!(history.confirm(&sys, &id, "tok_visa").await, 202);
        sys.wait_for(&id, "confirmed", |b| b["status"] == "confirmed")
            .await;
        assert_eq!(wait_for_messages(email, 1).await.len(), 1);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (_, email) in &held {
        assert_eq!(
            tests::mailbox::messages_to(email).await.len(),
            1,
            "no duplicate email"
        );
    }
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}
