//! Bad networks between the services and their servers, through the
//! harness's fault-injecting proxy (`tests/src/proxy.rs`): PostgreSQL
//! 200 ms away, RabbitMQ connections reset every few seconds. Customers
//! keep booking, paying and cancelling; the sale goes on, slower or with a
//! few `503`s, and the whole history keeps the model's promises. Each test
//! prints what a customer met: `503`s, the longest request, and how soon
//! bookings went through again.

use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::StreamExt;
use sqlx::{Connection, PgConnection};
use tests::history::{Action, History, Op};
use tests::invariants::wait_all_decided;
use tests::load::ga_request;
use tests::proxy::{through, Proxy};
use tests::{Options, System};

const SHARDS: u16 = 8;
/// Customers booking at once, each one request after the other.
const CUSTOMERS: usize = 16;

/// Starts a system of two workers whose services reach their servers as
/// `options` says, with four shows of `capacity` on sale.
async fn sale_system(options: Options, capacity: i32) -> (System, Vec<String>) {
    let sys = System::start_with(Options {
        workers: 2,
        shards: SHARDS,
        ..options
    })
    .await;
    sys.wait_for_balance(&sys.workers(), SHARDS, Duration::from_secs(30))
        .await;
    let mut shows = Vec::new();
    for _ in 0..4 {
        shows.push(sys.ga_show(capacity).await);
    }
    (sys, shows)
}

/// Customers book until `until`, one to four tickets at a time, at the
/// shows in turn, each one request after the other. Each pays for its
/// first booking and every fifth after it (if held), and cancels every
/// other one it paid for, so payments, refunds and emails go through the
/// fault too; it pays on the side, so its requests keep coming meanwhile.
async fn sale(sys: &System, history: &History, shows: &[String], until: Instant) {
    let (to_pay, paying) = futures::channel::mpsc::unbounded();
    let customers: Vec<_> = (0..CUSTOMERS)
        .map(|c| {
            let to_pay = to_pay.clone();
            async move {
                let mut n = 0;
                while Instant::now() < until {
                    let show = &shows[(c + n) % shows.len()];
                    let booked = history
                        .submit(sys, ga_request(show, (c + n) as i32 % 4 + 1))
                        .await;
                    if booked.accepted() && n % 5 == 0 {
                        to_pay
                            .unbounded_send((booked.id.unwrap(), n % 10 == 0))
                            .unwrap();
                    }
                    n += 1;
                }
            }
        })
        .collect();
    drop(to_pay);
    let payments = paying.for_each_concurrent(CUSTOMERS, |(id, cancel)| async move {
        pay_and_maybe_cancel(sys, history, &id, cancel).await;
    });
    tokio::join!(join_all(customers), payments);
}

/// Waits for the booking's decision; if held, pays for it (and cancels it,
/// if `cancel`), trying a refused confirm or cancel again as a customer
/// would.
async fn pay_and_maybe_cancel(sys: &System, history: &History, id: &str, cancel: bool) {
    if sys.decided(id).await["status"] != "held" {
        return;
    }
    let paid = retried("confirm", || history.confirm(sys, id, "tok_visa")).await;
    // 200: already confirmed, by an earlier try answered 503 whose command
    // reached the queue all the same.
    assert!(matches!(paid, 200 | 202), "confirming {id}: {paid}");
    sys.wait_for(id, "confirmed", |b| b["status"] == "confirmed")
        .await;
    if cancel {
        let cancelled = retried("cancel", || history.cancel(sys, id)).await;
        assert!(
            matches!(cancelled, 200 | 202),
            "cancelling {id}: {cancelled}"
        );
    }
}

/// Tries `attempt` again while it is refused for want of a server (`503`,
/// or no answer), for 30 s at most; returns the last status.
async fn retried<F, Fut>(what: &str, mut attempt: F) -> u16
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = attempt().await;
        if !matches!(status, 0 | 503) {
            return status;
        }
        assert!(Instant::now() < deadline, "a {what} refused for 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The booking requests of a history.
fn bookings(history: &History) -> Vec<Op> {
    history
        .ops()
        .into_iter()
        .filter(|op| matches!(op.action, Action::Book(_)))
        .collect()
}

/// What the customers met: how many were accepted and refused, and how
/// long requests took. Every request was answered, `202` or `503`.
fn report(bookings: &[Op]) {
    let count = |status: u16| bookings.iter().filter(|op| op.status == status).count();
    let mut took: Vec<Duration> = bookings.iter().map(|op| op.answered - op.sent).collect();
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    println!(
        "{} booking requests: {} accepted, {} refused with 503 ({:.1} %); took {:?} median, \
         {:?} p99, {:?} longest",
        bookings.len(),
        count(202),
        count(503),
        100.0 * count(503) as f64 / bookings.len() as f64,
        at(0.5),
        at(0.99),
        took.last().unwrap(),
    );
    let others: Vec<u16> = bookings
        .iter()
        .map(|op| op.status)
        .filter(|s| !matches!(s, 202 | 503))
        .collect();
    assert!(
        others.is_empty(),
        "answers other than 202 or 503: {others:?}"
    );
    assert!(count(202) > 0, "nothing was accepted");
}

/// How long one round trip (a simple query) takes through `url`.
async fn round_trip(url: &str) -> Duration {
    let mut db = PgConnection::connect(url).await.unwrap();
    let started = Instant::now();
    sqlx::raw_sql("SELECT 1").execute(&mut db).await.unwrap();
    let took = started.elapsed();
    db.close().await.unwrap();
    took
}

/// Every PostgreSQL round trip of every service takes 200 ms more (100 ms
/// each way) for a whole sale: requests are slower, and nothing else.
#[tokio::test]
async fn a_sale_through_200ms_of_database_latency_keeps_every_promise() {
    const LATENCY: Duration = Duration::from_millis(100);
    let database = Proxy::to_server_of(&std::env::var("TEST_DATABASE_URL").unwrap());
    let (sys, shows) = sale_system(
        Options {
            database_via: Some(database.addr()),
            ..Options::default()
        },
        12,
    )
    .await;
    let through_proxy = through(&sys.database_url, Some(database.addr()));
    let before = round_trip(&through_proxy).await;
    database.set_latency(LATENCY, LATENCY);
    let slow = round_trip(&through_proxy).await;
    assert!(slow >= LATENCY * 2);
    println!("a round trip to PostgreSQL took {before:?}, now {slow:?}");

    let history = History::new();
    let started = Instant::now();
    sale(&sys, &history, &shows, started + Duration::from_secs(20)).await;
    let sold = Instant::now();
    let bookings = bookings(&history);
    report(&bookings);
    assert!(
        bookings.iter().all(|op| op.status == 202),
        "latency alone refuses no one"
    );
    let db = sys.db().await;
    for show in &shows {
        wait_all_decided(db, show.parse().unwrap(), Duration::from_secs(60)).await;
    }
    println!(
        "every request decided {:?} after the last answer",
        sold.elapsed()
    );

    // One booking on its own, still through the latency, then with the
    // latency lifted: it goes through at once.
    let alone = history.submit(&sys, ga_request(&shows[0], 1)).await;
    database.set_latency(Duration::ZERO, Duration::ZERO);
    let after = history.submit(&sys, ga_request(&shows[0], 1)).await;
    assert!(alone.accepted() && after.accepted());
    println!(
        "a booking on its own took {:?} through the latency, {:?} with it lifted",
        alone.answered - alone.sent,
        after.answered - after.sent
    );
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

/// The answer to a booking's commit is lost on its way back (the
/// connection reset after PostgreSQL committed): the API writes the
/// booking again, finds that its first try recorded it, and answers `202`
/// for that one booking: numbered once in its show's line, decided once.
#[tokio::test]
async fn a_booking_whose_commit_answer_is_lost_is_accepted_once() {
    let database = Proxy::to_server_of(&std::env::var("TEST_DATABASE_URL").unwrap());
    let sys = System::start_with(Options {
        database_via: Some(database.addr()),
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(10).await;
    let history = History::new();
    assert!(history.submit(&sys, ga_request(&show, 1)).await.accepted());

    // Answers take 2 s to come back; once the second booking is in the
    // database (the test reads it directly), its answer is cut off.
    let db = sys.db().await;
    database.set_latency(Duration::ZERO, Duration::from_secs(2));
    let cut = async {
        let show: uuid::Uuid = show.parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings WHERE show_id = $1")
                .bind(show)
                .fetch_one(db)
                .await
                .unwrap();
            if count == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "the booking was never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let at = chrono::Utc::now();
        database.set_latency(Duration::ZERO, Duration::ZERO);
        (at, database.reset())
    };
    let (booked, (cut_at, reset)) = tokio::join!(history.submit(&sys, ga_request(&show, 1)), cut);
    assert!(reset > 0, "no connection to reset");
    assert_eq!(booked.status, 202, "the booking whose answer was lost");
    let id: uuid::Uuid = booked.id.as_deref().unwrap().parse().unwrap();

    let (created_at, recorded): (chrono::DateTime<chrono::Utc>, i64) = sqlx::query_as(
        "SELECT b.created_at, (SELECT count(*) FROM booking_audit a
                               WHERE a.booking_id = b.id AND a.from_status IS NULL)
         FROM bookings b WHERE b.id = $1",
    )
    .bind(id)
    .fetch_one(db)
    .await
    .unwrap();
    assert!(
        created_at < cut_at,
        "the first try committed before the cut ({created_at} ≥ {cut_at})"
    );
    assert_eq!(recorded, 1, "recorded once");
    let tail: i64 = sqlx::query_scalar("SELECT tail FROM show_queue_tails WHERE show_id = $1")
        .bind(show.parse::<uuid::Uuid>().unwrap())
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(tail, 2, "two bookings, numbered once each");
    assert_eq!(sys.decided(&id.to_string()).await["status"], "held");
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

/// Every connection of every service to RabbitMQ is reset every three
/// seconds during a sale (the services reconnect each time): a booking
/// whose publish was cut off is published again on the new connection, so
/// at most 1 % are refused, bookings go through again within 2 s of each
/// reset, and every `202` ends decided.
#[tokio::test]
async fn a_sale_whose_broker_connections_are_reset_every_few_seconds_keeps_every_promise() {
    const EVERY: Duration = Duration::from_secs(3);
    const ACCEPTING_AGAIN_WITHIN: Duration = Duration::from_secs(2);
    let broker = Proxy::to_server_of(&std::env::var("TEST_AMQP_URL").unwrap());
    let (sys, shows) = sale_system(
        Options {
            broker_via: Some(broker.addr()),
            ..Options::default()
        },
        150,
    )
    .await;

    let history = History::new();
    let started = Instant::now();
    let until = started + Duration::from_secs(20);
    let resets = async {
        let mut resets = Vec::new();
        tokio::time::sleep(EVERY).await;
        while Instant::now() + EVERY < until {
            let cut = broker.reset();
            resets.push((Instant::now(), cut));
            tokio::time::sleep(EVERY).await;
        }
        resets
    };
    let ((), resets) = tokio::join!(sale(&sys, &history, &shows, until), resets);
    let bookings = bookings(&history);
    report(&bookings);
    assert!(
        resets.iter().all(|&(_, cut)| cut > 0),
        "every reset cut connections: {resets:?}"
    );

    // After each reset: how long until a booking sent after it was
    // accepted, and the 503s answered before the next one (how many, and
    // how long after the reset the last came).
    let mut resumed = Vec::new();
    let mut refused = Vec::new();
    for (i, &(at, _)) in resets.iter().enumerate() {
        let next = resets.get(i + 1).map_or(until, |&(next, _)| next);
        let accepted = bookings
            .iter()
            .filter(|op| op.status == 202 && op.sent >= at)
            .map(|op| op.answered - at)
            .min()
            .expect("a booking accepted after every reset");
        resumed.push(accepted);
        let after: Vec<Duration> = bookings
            .iter()
            .filter(|op| op.status == 503 && op.answered >= at && op.answered < next)
            .map(|op| op.answered - at)
            .collect();
        refused.push((after.len(), after.into_iter().max().unwrap_or_default()));
    }
    println!(
        "{} resets of {:?} connections; bookings accepted again {:?} after each; \
         503s (and the last one's delay) after each: {refused:?}",
        resets.len(),
        resets.iter().map(|&(_, cut)| cut).collect::<Vec<_>>(),
        resumed,
    );
    // A publish cut off by a reset is tried again on a new connection
    // within its budget, so hardly anyone is refused.
    let refused_total = bookings.iter().filter(|op| op.status == 503).count();
    assert!(
        refused_total * 100 <= bookings.len(),
        "{refused_total} of {} bookings refused (more than 1 %)",
        bookings.len()
    );
    assert!(
        resumed.iter().all(|&after| after <= ACCEPTING_AGAIN_WITHIN),
        "bookings accepted again only {resumed:?} after the resets"
    );
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}
