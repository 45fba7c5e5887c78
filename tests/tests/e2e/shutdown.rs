//! SIGTERM drains: the process stops taking work, finishes what it holds
//! and exits 0 within `SHUTDOWN_GRACE_SECONDS`; what it did not finish is
//! redelivered to the others or to its successor. Every confirmed booking
//! gets exactly one email, and the whole history keeps the model's promises.

use std::collections::HashMap;
use std::future::Future;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use reqwest::Method;
use serde_json::{json, Value};
use tests::history::History;
use tests::load::Request;
use tests::mailbox::{addressed_to, all_messages, messages_to, unique_address};
use tests::servers::PrivatePostgres;
use tests::{Options, System};
use uuid::Uuid;

const GRACE: Duration = Duration::from_secs(15);
const NOTIFIER_QUEUE: &str = "notifier.emails";
const CUSTOMERS: usize = 90;
const SHARDS: u16 = 8;

fn grace_env(grace: Duration) -> (String, String) {
    (
        "SHUTDOWN_GRACE_SECONDS".to_owned(),
        grace.as_secs().to_string(),
    )
}

/// Tries `attempt` until it gives `Some`, for at most a minute: a process
/// may be restarting meanwhile.
async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn booking(sys: &System, id: &str) -> Option<Value> {
    let res = sys
        .request(Method::GET, &format!("/v1/bookings/{id}"))
        .send()
        .await
        .ok()?;
    res.status().is_success().then_some(())?;
    res.json().await.ok()
}

async fn reach(sys: &System, id: &str, status: &str) {
    eventually(&format!("booking {id} {status}"), || async {
        (booking(sys, id).await?["status"] == status).then_some(())
    })
    .await;
}

/// One customer's way from booking to confirmed tickets, retrying whatever
/// fails while a process is away, every try recorded in `history`. The
/// `Idempotency-Key` makes a retried request the same booking. Returns the
/// booking id.
async fn buy(sys: &System, history: &History, show: &str, email: &str) -> String {
    let key = Uuid::new_v4().to_string();
    let request = Request {
        show: show.to_owned(),
        body: json!({"email": email, "name": "Drain", "quantity": 1}),
        quantity: 1,
    };
    let id: String = eventually("booking accepted", || async {
        let submitted = history
            .submit_with_key(sys, request.clone(), Some(&key))
            .await;
        submitted.accepted().then_some(())?;
        submitted.id
    })
    .await;
    reach(sys, &id, "held").await;
    eventually("confirm accepted", || async {
        match history.confirm(sys, &id, "tok_visa").await {
            202 => Some(()),
            // An earlier try was taken although its answer was lost.
            409 => (booking(sys, &id).await?["status"] == "confirmed").then_some(()),
            _ => None,
        }
    })
    .await;
    reach(sys, &id, "confirmed").await;
    id
}

async fn count(sys: &System, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(sys.db().await)
        .await
        .unwrap()
}

/// Once `progress` (an SQL count) reaches `at`, SIGTERMs `target`, waits for
/// it to exit, then starts it again. Returns its exit status and how long
/// it took to exit.
async fn sigterm_at(sys: &System, target: &str, progress: &str, at: i64) -> (ExitStatus, Duration) {
    eventually(&format!("{progress} reaches {at}"), || async {
        (count(sys, progress).await >= at).then_some(())
    })
    .await;
    let signalled = Instant::now();
    let status = sys.terminate(target, GRACE * 2).await;
    let took = signalled.elapsed();
    sys.restart(target).await;
    (status, took)
}

/// `CUSTOMERS` customers book and confirm across three shows while
/// `target` gets SIGTERM once `progress` reaches a third of them; then
/// checks every promise.
async fn sigterm_mid_burst(target: &str, progress: &str) {
    let sys = System::start_with(Options {
        workers: 2,
        shards: SHARDS,
        extra_env: vec![grace_env(GRACE)],
        ..Options::default()
    })
    .await;
    sys.wait_for_balance(&sys.workers(), SHARDS, Duration::from_secs(30))
        .await;
    let mut shows = Vec::new();
    for _ in 0..3 {
        shows.push(sys.ga_show(1000).await);
    }
    let customers: Vec<(String, String)> = (0..CUSTOMERS)
        .map(|i| (shows[i % shows.len()].clone(), unique_address("drain")))
        .collect();
    let history = History::new();
    let burst = futures::stream::iter(&customers)
        .map(|(show, email)| buy(&sys, &history, show, email))
        .buffer_unordered(16)
        .collect::<Vec<String>>();
    let (confirmed, (status, took)) = tokio::join!(
        burst,
        sigterm_at(&sys, target, progress, (CUSTOMERS / 3) as i64)
    );
    assert!(status.success(), "{target} exited with {status}");
    assert!(took < GRACE, "{target} took {took:?} to drain");
    println!("{target} drained in {took:?}");

    // Every customer got exactly one booking.
    assert_eq!(confirmed.len(), CUSTOMERS);
    assert_eq!(
        count(&sys, "SELECT count(*) FROM bookings").await,
        CUSTOMERS as i64,
        "a booking too many or too few"
    );

    // Exactly one confirmation email per customer, also a while later.
    let per_customer = || async {
        let inbox = all_messages().await;
        customers
            .iter()
            .map(|(_, email)| inbox.iter().filter(|m| addressed_to(m, email)).count())
            .collect::<Vec<usize>>()
    };
    eventually("every customer emailed", || async {
        per_customer().await.iter().all(|&n| n >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = per_customer().await;
    let mut histogram: HashMap<usize, usize> = HashMap::new();
    for n in counts {
        *histogram.entry(n).or_default() += 1;
    }
    assert_eq!(
        histogram,
        HashMap::from([(1, CUSTOMERS)]),
        "customers by emails received"
    );
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

#[tokio::test]
async fn sigterm_mid_burst_api_finishes_requests_in_flight_and_exits_cleanly() {
    sigterm_mid_burst("api", "SELECT count(*) FROM bookings").await;
}

#[tokio::test]
async fn sigterm_mid_burst_worker_finishes_its_batches_and_exits_cleanly() {
    sigterm_mid_burst(
        "worker-0",
        "SELECT count(*) FROM bookings WHERE status = 'confirmed'",
    )
    .await;
}

#[tokio::test]
async fn sigterm_mid_burst_notifier_finishes_its_emails_and_exits_cleanly() {
    sigterm_mid_burst("notifier", "SELECT count(*) FROM sent_emails").await;
}

async fn amqp_channel(sys: &System) -> (Connection, Channel) {
    let conn = Connection::connect(&sys.amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    (conn, channel)
}

/// Messages waiting in `notifier.emails` (not delivered to anyone), as the
/// broker counts them now.
async fn ready_messages(channel: &Channel) -> u32 {
    let queue = channel
        .queue_declare(
            NOTIFIER_QUEUE.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    queue.message_count()
}

#[tokio::test]
async fn sigterm_during_a_database_outage_leaves_the_email_to_the_next_notifier() {
    let mut postgres = PrivatePostgres::start().await;
    let sys = System::start_with(Options {
        admin_db_url: Some(postgres.admin_url()),
        extra_env: vec![grace_env(GRACE)],
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(10).await;
    let email = unique_address("outage");

    // The confirmation waits in the queue while no notifier runs; the test
    // takes it out (unacked) until the database is down.
    assert!(sys.terminate("notifier", GRACE).await.success());
    let history = History::new();
    buy(&sys, &history, &show, &email).await;
    let (_conn, channel) = amqp_channel(&sys).await;
    let held = eventually("the confirmation is queued", || async {
        channel
            .basic_get(NOTIFIER_QUEUE.into(), BasicGetOptions::default())
            .await
            .unwrap()
    })
    .await;
    let earlier_log = sys.log("notifier").len();
    sys.restart("notifier").await;
    eventually("the notifier subscribed", || async {
        sys.log("notifier")[earlier_log..]
            .contains("consuming")
            .then_some(())
    })
    .await;

    postgres.crash().await;
    held.delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    eventually("the notifier retries the database", || async {
        sys.log("notifier")[earlier_log..]
            .contains("database step failed, retrying")
            .then_some(())
    })
    .await;

    let signalled = Instant::now();
    let status = sys.terminate("notifier", GRACE * 2).await;
    assert!(status.success(), "notifier exited with {status}");
    assert!(signalled.elapsed() < GRACE);
    eventually("the confirmation is back in the queue", || async {
        (ready_messages(&channel).await == 1).then_some(())
    })
    .await;
    assert!(messages_to(&email).await.is_empty());

    postgres.start_again().await;
    sys.restart("notifier").await;
    exactly_one_email_arrives(&email).await;
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

/// An SMTP server that accepts connections and never says a word, so a
/// send hangs; returns its URL and how many connections it took.
async fn silent_smtp_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn sigterm_with_an_email_stuck_reports_draining_then_gives_up_at_the_grace_deadline() {
    let grace = Duration::from_secs(2);
    let (silent_smtp, connections) = silent_smtp_server().await;
    let sys = System::start_with(Options {
        extra_env: vec![grace_env(grace), ("SMTP_URL".to_owned(), silent_smtp)],
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(10).await;
    let email = unique_address("stuck");
    let history = History::new();
    buy(&sys, &history, &show, &email).await;
    eventually("the notifier is sending the confirmation", || async {
        (connections.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let readyz = sys.ops_url("notifier", "/readyz");
    let res = sys.http.get(&readyz).send().await.unwrap();
    assert_eq!(res.status(), 200, "ready before the signal");

    let signalled = Instant::now();
    let draining = async {
        eventually("/readyz says draining", || async {
            let res = sys.http.get(&readyz).send().await.ok()?;
            let status = res.status();
            let body = res.text().await.ok()?;
            (status == 503 && body == "draining").then_some(())
        })
        .await
    };
    let (status, ()) = tokio::join!(sys.terminate("notifier", grace * 5), draining);
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(1), "gave up: {status}");
    assert!(took >= grace, "exited after {took:?}, before the grace");

    // The stuck message was never acked: a notifier with a working SMTP
    // server sends it.
    sys.restart_with(
        "notifier",
        &[("SMTP_URL", std::env::var("TEST_SMTP_URL").unwrap())],
    )
    .await;
    exactly_one_email_arrives(&email).await;
    history.check(&sys).await.assert_clean();
    sys.finish().await;
}

/// The email arrives, and no second one follows within two seconds.
async fn exactly_one_email_arrives(email: &str) {
    eventually("the confirmation email", || async {
        (!messages_to(email).await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(messages_to(email).await.len(), 1);
}
