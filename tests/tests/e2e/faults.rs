//! RabbitMQ or PostgreSQL crashes in the middle of a burst. Each test runs
//! its own private server so it can kill it without disturbing the others.
//! While the broker is down the API answers 503 once a publish has used its
//! budget; while the database is down a booking waits for it, up to the
//! request's time. A 202 comes only for what was made durable; every 202
//! still reaches a final state; the services resume by themselves; the
//! whole history keeps the model's promises.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tests::history::History;
use tests::invariants::wait_all_decided;
use tests::load::{ga_request, Submitted};
use tests::servers::{PrivateBroker, PrivatePostgres, Restartable};
use tests::{Options, System};
use uuid::Uuid;

const SHARDS: u16 = 8;
/// How long the server stays down.
const OUTAGE: Duration = Duration::from_secs(3);
/// The longest the API takes over a request (`REQUEST_TIMEOUT_SECONDS`'
/// default).
const REQUEST_TIME: Duration = Duration::from_secs(10);

/// The outage as the test saw it: the server was certainly down from
/// `down` (crash done) until `restarting` (restart begun); it was back, and
/// noticed, at `up`.
struct Outage {
    down: Instant,
    /// `down` by the wall clock, which PostgreSQL's timestamps share.
    down_at: DateTime<Utc>,
    restarting: Instant,
    up: Instant,
}

/// What the requests that arrive during the outage meet.
#[derive(Clone, Copy)]
enum Arrivals {
    /// Some are refused (`503`): the outage outlasts a publish's budget.
    Refused,
    /// They wait the outage out, each at most the request's time
    /// (`REQUEST_TIMEOUT_SECONDS`, 10 s by default), then get their answer.
    WaitedOut,
}

/// What a `202` answered while the server was down must show.
#[derive(Clone, Copy)]
enum LateAccepts {
    /// None comes later than a short grace: the broker confirmed before it
    /// died, and the answer follows the confirm at once.
    WithinGrace,
    /// The booking was committed before the database died; the answer then
    /// waited for the broker's confirm, which on a loaded machine can take
    /// seconds. Its row must exist and predate the crash.
    CommittedBeforeTheCrash,
}

async fn decided_count(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM bookings WHERE status <> 'queued'")
        .fetch_one(db)
        .await
        .unwrap()
}

/// A burst of requests over several shows; returns the shows and requests.
async fn burst_plan(sys: &System) -> (Vec<String>, Vec<tests::load::Request>) {
    let mut shows = Vec::new();
    for _ in 0..6 {
        shows.push(sys.ga_show(300).await);
    }
    let requests = (0..2400)
        .map(|i| ga_request(&shows[i % shows.len()], (i % 4) as i32 + 1))
        .collect();
    (shows, requests)
}

/// What must hold after the outage, whatever failed.
async fn assert_promises_kept(
    sys: &System,
    history: &History,
    shows: &[String],
    results: &[Submitted],
    outage: &Outage,
    late: LateAccepts,
    arrivals: Arrivals,
) {
    let grace = Duration::from_millis(300);
    let mut answered_while_down = Vec::new();
    for r in results {
        assert!(
            matches!(r.status, 202 | 503),
            "only 202 or 503, got {} ",
            r.status
        );
        if r.status == 202 && r.answered > outage.down + grace && r.answered < outage.restarting {
            assert!(
                matches!(late, LateAccepts::CommittedBeforeTheCrash),
                "a 202 answered while the server was down: sent {:?} before the crash, answered {:?} after",
                outage.down.saturating_duration_since(r.sent),
                r.answered.saturating_duration_since(outage.down)
            );
            answered_while_down.push(r.id.as_ref().unwrap().parse::<Uuid>().unwrap());
        }
    }
    if !answered_while_down.is_empty() {
        let written_before: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bookings WHERE id = ANY($1) AND created_at < $2",
        )
        .bind(&answered_while_down)
        .bind(outage.down_at)
        .fetch_one(sys.db().await)
        .await
        .unwrap();
        assert_eq!(
            written_before as usize,
            answered_while_down.len(),
            "a 202 answered while the database was down for a booking not committed before"
        );
    }
    let refused = results.iter().filter(|r| r.status == 503).count();
    match arrivals {
        Arrivals::Refused => assert!(
            refused > 0,
            "requests during the outage must have been refused"
        ),
        Arrivals::WaitedOut => {
            let longest = results.iter().map(|r| r.answered - r.sent).max();
            let during: Vec<_> = results
                .iter()
                .filter(|r| r.sent < outage.restarting && r.answered > outage.down)
                .collect();
            println!(
                "{} requests in flight while the database was down: {} accepted once it was back; \
                 longest request {longest:?}",
                during.len(),
                during.iter().filter(|r| r.accepted()).count()
            );
            assert!(
                longest <= Some(REQUEST_TIME + Duration::from_secs(1)),
                "a request took {longest:?} (its time is {REQUEST_TIME:?})"
            );
        }
    }

    println!(
        "accepted {}, refused with 503 {refused}, accepted while down {}, outage {:?}",
        results.iter().filter(|r| r.accepted()).count(),
        answered_while_down.len(),
        outage.up - outage.down
    );

    // The services came back by themselves: a new booking goes through.
    let show = &shows[0];
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let after = history.submit(sys, ga_request(show, 1)).await;
        if after.accepted() {
            break after.id.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the API did not recover: {}",
            after.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(sys.decided(&id).await["status"], "queued");

    // Requests whose commit was in doubt are decided too, and the whole
    // history keeps the model's promises (every 202 final among them).
    let db = sys.db().await;
    for show in shows {
        wait_all_decided(db, show.parse().unwrap(), Duration::from_secs(60)).await;
    }
    history.check(sys).await.assert_clean();
}

/// Starts a system of two workers with `options`, crashes `server` once
/// 300 requests are decided, restarts it after [`OUTAGE`], and checks every
/// promise.
async fn outage_mid_burst(
    server: &mut impl Restartable,
    options: Options,
    late: LateAccepts,
    arrivals: Arrivals,
) {
    let sys = System::start_with(Options {
        workers: 2,
        shards: SHARDS,
        // A booking whose commit was in doubt when the database went away
        // (committed, but the API saw an error and answered 503) is published
        // by the requeue sweep; make that quick.
        extra_env: vec![("REQUEUE_AFTER_SECONDS".to_owned(), "3".to_owned())],
        ..options
    })
    .await;
    sys.wait_for_balance(&sys.workers(), SHARDS, Duration::from_secs(30))
        .await;
    let (shows, requests) = burst_plan(&sys).await;
    let db = sys.db().await;
    let history = History::new();
    let burst = history.submit_all(&sys, requests, 32);
    let chaos = async {
        while decided_count(db).await < 300 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.crash().await;
        let (down, down_at) = (Instant::now(), Utc::now());
        tokio::time::sleep(OUTAGE).await;
        let restarting = Instant::now();
        server.start_again().await;
        Outage {
            down,
            down_at,
            restarting,
            up: Instant::now(),
        }
    };
    let (results, outage) = tokio::join!(burst, chaos);
    assert_promises_kept(&sys, &history, &shows, &results, &outage, late, arrivals).await;
    sys.finish().await;
}

#[tokio::test]
async fn broker_restart_mid_burst() {
    let mut broker = PrivateBroker::start().await;
    let amqp_url = Some(broker.amqp_url());
    outage_mid_burst(
        &mut broker,
        Options {
            amqp_url,
            ..Options::default()
        },
        LateAccepts::WithinGrace,
        Arrivals::Refused,
    )
    .await;
}

#[tokio::test]
async fn database_restart_mid_burst() {
    let mut postgres = PrivatePostgres::start().await;
    let admin_db_url = Some(postgres.admin_url());
    outage_mid_burst(
        &mut postgres,
        Options {
            admin_db_url,
            ..Options::default()
        },
        LateAccepts::CommittedBeforeTheCrash,
        Arrivals::WaitedOut,
    )
    .await;
}
