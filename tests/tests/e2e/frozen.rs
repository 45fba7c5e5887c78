//! A server that stops answering without closing its connections: its
//! processes stopped (SIGSTOP), as when its machine hangs or its disk
//! stalls. No error says so; only time limits notice. While PostgreSQL is
//! frozen the API answers every request within its budget (a `503`, safe
//! to send again), and once it goes on (SIGCONT) the sale resumes by
//! itself with nothing accepted lost. (A frozen RabbitMQ node is in
//! `cluster.rs`, where there is another node to move to.)

use std::time::{Duration, Instant};

use tests::history::History;
use tests::load::{ga_request, steady_until};
use tests::servers::PrivatePostgres;
use tests::{Options, System};

/// How long the server stays frozen.
const FREEZE: Duration = Duration::from_secs(20);
/// The API's `REQUEST_TIMEOUT_SECONDS` in this test, and a little for the
/// answer to travel.
const REQUEST_BUDGET: Duration = Duration::from_secs(7);
const SLACK: Duration = Duration::from_millis(500);

#[tokio::test]
async fn a_frozen_database_gets_every_request_answered_in_time_and_loses_nothing() {
    let postgres = PrivatePostgres::start().await;
    let sys = System::start_with(Options {
        admin_db_url: Some(postgres.admin_url()),
        workers: 2,
        extra_env: vec![
            (
                "REQUEST_TIMEOUT_SECONDS".to_owned(),
                REQUEST_BUDGET.as_secs().to_string(),
            ),
            // A booking recorded just before its request ran out of time
            // (the client got a 503) is published by the requeue sweep.
            ("REQUEUE_AFTER_SECONDS".to_owned(), "3".to_owned()),
        ],
        ..Options::default()
    })
    .await;
    let mut shows = Vec::new();
    for _ in 0..4 {
        shows.push(sys.ga_show(400).await);
    }
    let db = sys.db().await;
    let decided = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM bookings WHERE status <> 'queued'")
            .fetch_one(db)
            .await
            .unwrap()
    };
    let request = |i: usize| ga_request(&shows[i % shows.len()], (i % 4) as i32 + 1);
    let chaos = async {
        while decided().await < 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let frozen = Instant::now();
        postgres.freeze();
        tokio::time::sleep(FREEZE).await;
        postgres.thaw();
        let thawed = Instant::now();
        let before = decided().await;
        while decided().await < before + 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (frozen, thawed)
    };
    let history = History::new();
    let (results, (frozen, thawed)) =
        steady_until(&sys, Duration::from_millis(12), 16, request, chaos).await;

    let longest = results
        .iter()
        .map(|r| r.answered - r.sent)
        .max()
        .unwrap_or_default();
    let during: Vec<_> = results
        .iter()
        .filter(|r| r.sent >= frozen && r.sent < thawed)
        .collect();
    let refused = during.iter().filter(|r| r.status == 503).count();
    let first_after = results
        .iter()
        .filter(|r| r.accepted() && r.sent >= thawed)
        .map(|r| r.answered - thawed)
        .min();
    println!(
        "longest request {longest:?}; {refused} of {} requests sent during the freeze refused; \
         first 202 {first_after:?} after the thaw",
        during.len()
    );
    for r in &results {
        assert!(
            matches!(r.status, 202 | 503),
            "only 202 or 503, got {}",
            r.status
        );
    }
    assert!(
        longest <= REQUEST_BUDGET + SLACK,
        "a request took {longest:?} while the database was frozen (budget {REQUEST_BUDGET:?})"
    );
    assert!(
        !during.is_empty() && refused > 0,
        "nothing was refused while frozen"
    );
    assert!(first_after.is_some(), "nothing accepted after the thaw");

    history.record_all(&results);
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}
