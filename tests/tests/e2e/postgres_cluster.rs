//! PostgreSQL as a three-node Patroni cluster behind HAProxy, as
//! `scripts/run --postgres-nodes 3` runs it. The services write through the
//! proxy's write port and read the catalog from the replicas; losing the
//! primary mid-sale, or handing its role over in a planned switchover,
//! loses nothing, oversells nothing and refuses almost no one; and its
//! archive restores the database as it was at a given time.
//!
//! The cluster takes a while to start, so one cluster and one system serve
//! the whole story, told in order.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tests::load::{ga_request, submit, Submitted};
use tests::pg_cluster::PgCluster;
use tests::sale::Sale;
use tests::{Options, System};
use uuid::Uuid;

/// After a kill of the primary, the first `202` comes within this.
const FIRST_ACCEPT_AFTER_KILL_WITHIN: Duration = Duration::from_secs(5);
/// The goal once the proxy takes writes again: the first `202` within this.
const FIRST_ACCEPT_AFTER_WRITES_WITHIN: Duration = Duration::from_secs(1);
/// The share of requests sent after the kill that may be refused.
const MAX_REFUSED_AFTER_KILL: f64 = 0.005;
/// The longest a sale may go without a decision through a failover.
const RESUME_AFTER_KILL_WITHIN: Duration = Duration::from_secs(10);
/// A switchover's pause in decisions, at most.
const SWITCHOVER_PAUSE_WITHIN: Duration = Duration::from_secs(5);
/// The share of submissions a switchover may refuse.
const MAX_REFUSED_IN_SWITCHOVER: f64 = 0.01;

#[tokio::test]
async fn a_postgres_cluster_fails_over_mid_sale_and_loses_nothing() {
    let cluster = PgCluster::start().await;
    let sys = System::start_with(Options {
        admin_db_url: Some(cluster.admin_url()),
        database_read_via: Some(cluster.read_addr()),
        workers: 2,
        extra_env: vec![
            // A booking whose answer was in doubt is republished soon.
            ("REQUEUE_AFTER_SECONDS".to_owned(), "3".to_owned()),
        ],
        ..Options::default()
    })
    .await;

    the_catalog_is_read_from_replicas_and_a_new_booking_from_the_primary(&sys, &cluster).await;
    killing_the_primary_mid_sale_refuses_almost_no_late_arrival(&sys, &cluster).await;
    a_planned_switchover_mid_sale_pauses_decisions_briefly(&sys, &cluster).await;
    a_restore_to_a_noted_time_holds_exactly_the_bookings_before_it(&sys, &cluster).await;

    sys.finish().await;
}

/// Show pages come from the replicas (the API holds connections to them),
/// and a booking read right after its `202` is found: its reads go to the
/// primary, whatever the replicas' lag.
async fn the_catalog_is_read_from_replicas_and_a_new_booking_from_the_primary(
    sys: &System,
    cluster: &PgCluster,
) {
    let show = sys.ga_show(1000).await;
    let reading = AtomicBool::new(true);
    let catalog = read_catalog_while(sys, &show, &reading);
    let booking = async {
        for i in 0..200 {
            let submitted = submit(sys, ga_request(&show, 1)).await;
            assert_eq!(submitted.status, 202, "booking {i}");
            let id = submitted.id.unwrap();
            let res = sys
                .http
                .get(format!("{}/v1/bookings/{id}", sys.base_url))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "booking {id} read right after its 202");
        }
        reading.store(false, Ordering::Relaxed);
    };
    let (answers, ()) = tokio::join!(catalog, booking);
    assert!(
        answers.iter().all(|&(_, status)| status == 200),
        "catalog reads during the bookings: {answers:?}"
    );
    let on_replicas = connections_to_replicas(sys, cluster).await;
    println!(
        "{} catalog reads answered while 200 bookings were made; the API holds {on_replicas} connections to replicas",
        answers.len()
    );
    assert!(on_replicas > 0, "the API reads nothing from a replica");
}

/// Reads a show's page and the show list, one after the other, while
/// `reading`; returns when each answer came and its status.
async fn read_catalog_while(sys: &System, show: &str, reading: &AtomicBool) -> Vec<(Instant, u16)> {
    let mut answers = Vec::new();
    while reading.load(Ordering::Relaxed) {
        for path in [format!("/v1/shows/{show}"), "/v1/shows".to_owned()] {
            let res = sys
                .http
                .get(format!("{}{path}", sys.base_url))
                .send()
                .await
                .unwrap();
            answers.push((Instant::now(), res.status().as_u16()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answers
}

/// The services' connections to this sandbox's database on nodes in
/// recovery: only the API's pool for reads that may lag goes there.
async fn connections_to_replicas(sys: &System, cluster: &PgCluster) -> i64 {
    let mut total = 0;
    for port in cluster.node_ports() {
        let Ok(mut conn) = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("booking")
            .password("booking")
            .database("postgres")
            .connect()
            .await
        else {
            continue;
        };
        let (replica, count): (bool, i64) = sqlx::query_as(
            "SELECT pg_is_in_recovery(), count(*) FROM pg_stat_activity WHERE datname = $1",
        )
        .bind(&sys.name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if replica {
            total += count;
        }
        conn.close().await.unwrap();
    }
    total
}

async fn killing_the_primary_mid_sale_refuses_almost_no_late_arrival(
    sys: &System,
    cluster: &PgCluster,
) {
    let sale = Sale::open(sys).await;
    let old = cluster.leader().await;
    let chaos = async {
        sale.wait_decided(300).await;
        println!("killing {}'s postmaster", old.name);
        let killed = Instant::now();
        cluster.kill_postmaster(&old.name);
        let writes = cluster.wait_writes_again().await;
        let new = cluster.leader().await;
        // The old primary comes back as a replica of the new one by itself.
        let rejoined = cluster
            .wait_for("the old primary back as a replica", |members| {
                members
                    .iter()
                    .find(|m| m.name == old.name && m.is_replica() && m.timeline > old.timeline)
                    .cloned()
            })
            .await;
        sale.wait_more_decided(300).await;
        (killed, writes, new, rejoined)
    };
    let reading = AtomicBool::new(true);
    let sale_then_stop = async {
        let outcome = sale.run_until(chaos).await;
        reading.store(false, Ordering::Relaxed);
        outcome
    };
    let ((results, (killed, writes, new, rejoined)), catalog) =
        tokio::join!(sale_then_stop, read_catalog_while(sys, &sale.hot, &reading));
    let in_failover: Vec<u16> = catalog
        .iter()
        .filter(|(at, _)| *at >= killed && *at <= writes)
        .map(|&(_, status)| status)
        .collect();
    println!(
        "catalog reads from the replicas while the proxy had no primary: {} of {} answered 200; \
         after: {} of {}",
        in_failover.iter().filter(|&&s| s == 200).count(),
        in_failover.len(),
        catalog
            .iter()
            .filter(|(at, s)| *at > writes && *s == 200)
            .count(),
        catalog.iter().filter(|(at, _)| *at > writes).count()
    );
    let first = sale.first_hot_accept_sent_after(&results, killed);
    let late: Vec<&Submitted> = results.iter().filter(|r| r.sent >= killed).collect();
    let refused = late.iter().filter(|r| r.status == 503).count();
    let share = refused as f64 / late.len() as f64;
    println!(
        "{} leads now; writes through the proxy again {:?} after the kill; first 202 {:?} after \
         the kill ({:?} after writes came back); {refused} of {} requests sent after the kill \
         refused ({:.2} %); {} rejoined as {}",
        new.name,
        writes - killed,
        first - killed,
        first.saturating_duration_since(writes),
        late.len(),
        share * 100.0,
        rejoined.name,
        rejoined.role
    );
    let served = in_failover.iter().filter(|&&s| s == 200).count();
    assert!(
        !in_failover.is_empty() && served as f64 >= 0.95 * in_failover.len() as f64,
        "the replicas served {served} of {} catalog reads while there was no primary",
        in_failover.len()
    );
    assert_ne!(new.name, old.name);
    assert!(
        first - killed <= FIRST_ACCEPT_AFTER_KILL_WITHIN,
        "the first 202 came {:?} after the kill",
        first - killed
    );
    assert!(
        first.saturating_duration_since(writes) <= FIRST_ACCEPT_AFTER_WRITES_WITHIN,
        "the first 202 came {:?} after the proxy took writes again",
        first.saturating_duration_since(writes)
    );
    assert!(
        share <= MAX_REFUSED_AFTER_KILL,
        "{refused} of {} requests sent after the kill refused",
        late.len()
    );
    sale.assert_promises_kept(&results, RESUME_AFTER_KILL_WITHIN)
        .await;
}

async fn a_planned_switchover_mid_sale_pauses_decisions_briefly(sys: &System, cluster: &PgCluster) {
    let sale = Sale::open(sys).await;
    let chaos = async {
        sale.wait_decided(300).await;
        let old = cluster.leader().await;
        let asked = Instant::now();
        let new = cluster.switchover().await;
        cluster
            .wait_for("the switchover's new leader", |members| {
                members
                    .iter()
                    .find(|m| m.name == new && m.role == "leader" && m.state == "running")
                    .cloned()
            })
            .await;
        let writes = cluster.wait_writes_again().await;
        cluster
            .wait_for("the old leader back as a replica", |members| {
                members
                    .iter()
                    .find(|m| m.name == old.name && m.is_replica())
                    .cloned()
            })
            .await;
        println!(
            "switched over from {} to {new}; writes through the proxy {:?} after asking",
            old.name,
            writes - asked
        );
        sale.wait_more_decided(300).await;
    };
    let (results, ()) = sale.run_until(chaos).await;
    Sale::assert_few_refused(&results, "a switchover", MAX_REFUSED_IN_SWITCHOVER);
    sale.assert_promises_kept(&results, SWITCHOVER_PAUSE_WITHIN)
        .await;
}

/// The restore drill: book, note the time, book more, restore the archive
/// to the noted time into a fresh server (`scripts/backup restore`): the
/// bookings committed before the time are there, and only they.
async fn a_restore_to_a_noted_time_holds_exactly_the_bookings_before_it(
    sys: &System,
    cluster: &PgCluster,
) {
    const EACH: usize = 25;
    let backed_up = Instant::now();
    cluster.backup(&["--type", "full"]).await;
    println!("a full backup took {:?}", backed_up.elapsed());
    // The earliest point a backup restores to is a second after it ended.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let show = sys.ga_show(100).await;
    let book = || async {
        let mut ids = HashSet::new();
        for _ in 0..EACH {
            let submitted = submit(sys, ga_request(&show, 1)).await;
            assert_eq!(submitted.status, 202);
            ids.insert(submitted.id.unwrap().parse::<Uuid>().unwrap());
        }
        ids
    };
    let before = book().await;
    let noted: String = sqlx::query_scalar(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
    .fetch_one(sys.db().await)
    .await
    .unwrap();
    let after = book().await;

    let dir = cluster.dir().join("restore");
    let restoring = Instant::now();
    let port = cluster.spare_port().to_string();
    let url = cluster
        .backup(&[
            "restore",
            "--to",
            &noted,
            "--port",
            &port,
            "--dir",
            dir.to_str().unwrap(),
        ])
        .await;
    println!("restored to {noted} in {:?}", restoring.elapsed());
    let mut restored = reqwest::Url::parse(url.trim()).expect("restore prints the URL");
    restored.set_path(&sys.name);
    let mut conn = sqlx::PgConnection::connect(restored.as_str())
        .await
        .unwrap();
    let found: HashSet<Uuid> = sqlx::query_scalar("SELECT id FROM bookings WHERE show_id = $1")
        .bind(show.parse::<Uuid>().unwrap())
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect();
    conn.close().await.unwrap();
    cluster
        .backup(&["restore-stop", "--dir", dir.to_str().unwrap()])
        .await;
    assert_eq!(
        found.len(),
        EACH,
        "{} of the {EACH} bookings before the time restored, {} of the {EACH} after it",
        found.intersection(&before).count(),
        found.intersection(&after).count()
    );
    assert_eq!(found, before, "exactly the bookings before the time");
}
