//! A three-node RabbitMQ cluster on this host. The services are given every
//! node (`AMQP_URL` lists them) and fail over between them; losing a node
//! in the middle of a sale, even the one that leads the hot show's queue,
//! or restarting every node in turn, loses nothing and oversells nothing.
//!
//! Three nodes take a while to start and join, so one cluster and one
//! system serve the whole story, told in order.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use tests::cluster::PrivateCluster;
use tests::history::History;
use tests::load::{ga_request, steady_until, Submitted};
use tests::mailbox::{all_messages, unique_address};
use tests::{Options, System};
use uuid::Uuid;

const NODES: usize = 3;
const SHARDS: u16 = 4;
/// Requests in flight during a sale, at most.
const CROWD: usize = 16;
/// A new request every so often, for as long as the chaos lasts.
const PACE: Duration = Duration::from_millis(12);
/// Held bookings paid for during each sale (each must get one email).
const PAID: usize = 60;
/// The longest a sale may go without a decision while a node is lost or
/// frozen.
const RESUME_WITHIN: Duration = Duration::from_secs(10);
/// After a lost leader's successor is elected, the hot show takes new
/// bookings again within this.
const ACCEPTING_AGAIN_WITHIN: Duration = Duration::from_secs(2);
/// How long a node stays frozen.
const FREEZE: Duration = Duration::from_secs(20);
/// The longest any request may take (the API's `REQUEST_TIMEOUT_SECONDS`).
const REQUEST_BUDGET: Duration = Duration::from_secs(10);
/// The share of submissions a rolling restart may refuse.
const MAX_REFUSED_IN_ROLLING_RESTART: f64 = 0.01;

#[tokio::test]
async fn a_three_node_cluster_loses_a_node_mid_sale_and_loses_nothing() {
    let mut cluster = PrivateCluster::start(NODES).await;

    let sys = services_start_while_the_first_listed_node_is_down(&mut cluster).await;
    losing_the_node_that_leads_the_hot_shard_and_serves_the_api(&sys, &mut cluster).await;
    freezing_the_node_that_leads_the_hot_shard_and_serves_the_api(&sys, &mut cluster).await;
    a_rolling_restart_mid_sale_refuses_almost_no_one(&sys, &mut cluster).await;

    sys.finish().await;
}

async fn services_start_while_the_first_listed_node_is_down(
    cluster: &mut PrivateCluster,
) -> System {
    cluster.node(0).crash().await;

    // A connection that starts at the dead node goes on to a live one, and
    // the process starts there next time.
    shared::amqp::nodes::prefer(0);
    let conn = shared::amqp::connect(&cluster.amqp_url(), "cluster test")
        .await
        .expect("a live node is listed after the dead one");
    assert_ne!(shared::amqp::nodes::preferred() % NODES, 0);
    conn.close(200, "done".into()).await.unwrap();

    let sys = System::start_with(Options {
        amqp_url: Some(cluster.amqp_url()),
        workers: 2,
        shards: SHARDS,
        extra_env: vec![
            ("QUORUM_INITIAL_GROUP_SIZE".to_owned(), NODES.to_string()),
            // A booking whose publish was in doubt is republished soon.
            ("REQUEUE_AFTER_SECONDS".to_owned(), "3".to_owned()),
        ],
        ..Options::default()
    })
    .await;
    for (label, _) in sys.pids() {
        let url = sys.ops_url(&label, "/readyz");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sys
            .http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                Instant::now() < deadline,
                "{label} not ready with the first listed node down"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let show = sys.ga_show(10).await;
    let id = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("first-down"), "name": "F", "quantity": 1}),
        )
        .await;
    assert_eq!(sys.decided(&id).await["status"], "held");

    cluster.node(0).start_again().await;
    cluster.wait_healed().await;
    // Every queue is replicated to every node, as configured.
    for queue in cluster.queues().await {
        if queue["type"] == "quorum" {
            assert_eq!(
                queue["members"].as_array().map(Vec::len),
                Some(NODES),
                "{queue}"
            );
        }
    }
    sys
}

/// The worst node to lose: it leads the hot show's shard queue and holds
/// the API's connection, so the API must reconnect and publish to a queue
/// whose leader is being elected.
async fn losing_the_node_that_leads_the_hot_shard_and_serves_the_api(
    sys: &System,
    cluster: &mut PrivateCluster,
) {
    let sale = Sale::open(sys).await;
    let (hot, node) = sale.put_the_api_beside_the_hot_leader(cluster).await;
    let chaos = async {
        sale.wait_decided(300).await;
        println!("killing node {node}, leader of {hot} and the API's node");
        let killed = Instant::now();
        cluster.node(node).crash().await;
        let elected = cluster.wait_leader_moved(&hot, node).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        cluster.node(node).start_again().await;
        cluster.wait_healed().await;
        sale.wait_more_decided(200).await;
        (killed, elected)
    };
    let (results, (killed, elected)) = sale.run_until(chaos).await;
    let first = sale.first_hot_accept_sent_after(&results, killed);
    println!(
        "new leader {:?} after the kill; first 202 for the hot show {:?} after the kill ({:?} after the new leader)",
        elected - killed,
        first - killed,
        first.saturating_duration_since(elected)
    );
    assert!(
        first <= elected + ACCEPTING_AGAIN_WITHIN,
        "the hot show accepted again {:?} after its new leader (at most {ACCEPTING_AGAIN_WITHIN:?})",
        first - elected
    );
    sale.assert_promises_kept(&results).await;
}

/// A node that stops answering without closing anything, for 20 s: the
/// API leaves it within its budget, and everything resumes after.
async fn freezing_the_node_that_leads_the_hot_shard_and_serves_the_api(
    sys: &System,
    cluster: &mut PrivateCluster,
) {
    let sale = Sale::open(sys).await;
    let (hot, node) = sale.put_the_api_beside_the_hot_leader(cluster).await;
    let chaos = async {
        sale.wait_decided(200).await;
        println!("freezing node {node}, leader of {hot} and the API's node, for {FREEZE:?}");
        let frozen = Instant::now();
        cluster.node(node).freeze();
        tokio::time::sleep(FREEZE).await;
        cluster.node(node).thaw();
        cluster.wait_healed().await;
        sale.wait_more_decided(200).await;
        frozen
    };
    let (results, frozen) = sale.run_until(chaos).await;
    let longest = results
        .iter()
        .map(|r| r.answered - r.sent)
        .max()
        .unwrap_or_default();
    let first = sale.first_hot_accept_sent_after(&results, frozen);
    let during: Vec<_> = results
        .iter()
        .filter(|r| r.sent >= frozen && r.sent < frozen + FREEZE)
        .collect();
    let refused = during.iter().filter(|r| r.status == 503).count();
    println!(
        "longest request {longest:?}; first 202 for the hot show {:?} after the freeze; \
         {refused} of {} requests sent during the freeze refused",
        first - frozen,
        during.len()
    );
    assert!(
        longest <= REQUEST_BUDGET,
        "a request took {longest:?} while a node was frozen (budget {REQUEST_BUDGET:?})"
    );
    assert!(
        first < frozen + FREEZE,
        "the hot show accepted nothing until the frozen node came back"
    );
    sale.assert_promises_kept(&results).await;
}

async fn a_rolling_restart_mid_sale_refuses_almost_no_one(
    sys: &System,
    cluster: &mut PrivateCluster,
) {
    let sale = Sale::open(sys).await;
    let chaos = async {
        sale.wait_decided(200).await;
        for node in 0..cluster.len() {
            println!("restarting node {node}");
            cluster.node(node).stop().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            cluster.node(node).start_again().await;
            // As an operator would: the next node only once this one is
            // back in every queue.
            cluster.wait_healed().await;
        }
        sale.wait_more_decided(200).await;
    };
    let (results, ()) = sale.run_until(chaos).await;
    let refused = results.iter().filter(|r| r.status == 503).count();
    let share = refused as f64 / results.len() as f64;
    println!(
        "rolling restart: {refused} of {} submissions refused ({:.2} %)",
        results.len(),
        share * 100.0
    );
    assert!(
        share <= MAX_REFUSED_IN_ROLLING_RESTART,
        "{refused} of {} submissions refused during a rolling restart",
        results.len()
    );
    sale.assert_promises_kept(&results).await;
}

/// A flash sale: one hot show that sells out and three quieter ones, a
/// crowd of [`CROWD`] clients sending until told to stop, and customers
/// paying for [`PAID`] of the hot show's held bookings as they go.
struct Sale<'a> {
    sys: &'a System,
    db: &'a PgPool,
    hot: String,
    shows: Vec<String>,
    started: Instant,
    /// Every client operation of the sale, for the checker.
    history: History,
}

impl<'a> Sale<'a> {
    async fn open(sys: &'a System) -> Self {
        let hot = sys.ga_show(1500).await;
        let mut shows = vec![hot.clone()];
        for _ in 0..3 {
            shows.push(sys.ga_show(400).await);
        }
        Self {
            sys,
            db: sys.db().await,
            hot,
            shows,
            started: Instant::now(),
            history: History::new(),
        }
    }

    /// Finds the hot show's shard queue and its leader, and restarts the
    /// API until its publishing connection is on that node (it starts at
    /// a random one). Returns the queue and the node.
    async fn put_the_api_beside_the_hot_leader(&self, cluster: &PrivateCluster) -> (String, usize) {
        let queue = self.hot_shard_queue(cluster).await;
        let leader = cluster.leader_of(&queue).await;
        for _ in 0..20 {
            let pid = self
                .sys
                .pids()
                .into_iter()
                .find(|(l, _)| l == "api")
                .unwrap()
                .1;
            let name = format!("api {pid}");
            if cluster
                .connection_node(&name, Duration::from_secs(15))
                .await
                == Some(leader)
            {
                return (queue, leader);
            }
            self.sys.terminate("api", Duration::from_secs(30)).await;
            self.sys.restart("api").await;
            self.book_accepted(&self.shows[1]).await;
        }
        panic!("the API never connected to node {leader} in 20 starts");
    }

    /// The shard queue of the hot show: the one whose count of published
    /// messages grows by the bookings sent to the hot show alone.
    async fn hot_shard_queue(&self, cluster: &PrivateCluster) -> String {
        const PROBES: u64 = 10;
        let published = || async {
            cluster
                .queues()
                .await
                .into_iter()
                .filter_map(|q| {
                    let name = q["name"].as_str()?;
                    name.starts_with("booking.requests.shard-").then(|| {
                        let count = q["message_stats"]["publish"].as_u64().unwrap_or(0);
                        (name.to_owned(), count)
                    })
                })
                .collect::<HashMap<String, u64>>()
        };
        let before = published().await;
        for _ in 0..PROBES {
            self.book_accepted(&self.hot).await;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let grown = published()
                .await
                .into_iter()
                .find(|(name, count)| *count >= before.get(name).copied().unwrap_or(0) + PROBES);
            if let Some((name, _)) = grown {
                return name;
            }
            assert!(
                Instant::now() < deadline,
                "no queue statistics from the management API"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// When the API answered the first `202` for the hot show to a request
    /// sent after `since`.
    fn first_hot_accept_sent_after(&self, results: &[Submitted], since: Instant) -> Instant {
        results
            .iter()
            .filter(|r| r.accepted() && r.request.show == self.hot && r.sent >= since)
            .map(|r| r.answered)
            .min()
            .expect("the hot show accepted nothing after the fault")
    }

    /// One ticket of `show`, booked as part of the sale's history.
    async fn book_accepted(&self, show: &str) {
        let submitted = self.history.submit(self.sys, ga_request(show, 1)).await;
        assert!(submitted.accepted(), "a booking got {}", submitted.status);
    }

    fn show_ids(&self) -> Vec<Uuid> {
        self.shows.iter().map(|s| s.parse().unwrap()).collect()
    }

    async fn decided_now(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM bookings WHERE show_id = ANY($1) AND status <> 'queued'",
        )
        .bind(self.show_ids())
        .fetch_one(self.db)
        .await
        .unwrap()
    }

    async fn wait_decided(&self, count: i64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.decided_now().await < count {
            assert!(
                Instant::now() < deadline,
                "fewer than {count} decisions after two minutes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Some more of the sale, on the healed cluster.
    async fn wait_more_decided(&self, more: i64) {
        self.wait_decided(self.decided_now().await + more).await;
    }

    /// Sends requests (four in five to the hot show) and pays for held
    /// bookings until `chaos` is over; returns every answer and what
    /// `chaos` returned.
    async fn run_until<T>(&self, chaos: impl Future<Output = T>) -> (Vec<Submitted>, T) {
        let stop = AtomicBool::new(false);
        let chaos = async {
            let outcome = chaos.await;
            stop.store(true, Ordering::Relaxed);
            outcome
        };
        let request = |i: usize| {
            let show = if i % 5 == 4 {
                &self.shows[1 + i / 5 % 3]
            } else {
                &self.hot
            };
            ga_request(show, (i % 4) as i32 + 1)
        };
        let sale = steady_until(self.sys, PACE, CROWD, request, chaos);
        let ((results, outcome), ()) = tokio::join!(sale, self.pay_while(&stop));
        self.history.record_all(&results);
        (results, outcome)
    }

    /// Pays for up to [`PAID`] held bookings of the hot show, retrying a
    /// `503` as a client would, until `stop` (and at least once).
    async fn pay_while(&self, stop: &AtomicBool) {
        let mut paid = HashSet::new();
        loop {
            let held: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM bookings WHERE show_id = $1 AND status = 'held' LIMIT 100",
            )
            .bind(self.hot.parse::<Uuid>().unwrap())
            .fetch_all(self.db)
            .await
            .unwrap();
            for id in held {
                if paid.len() == PAID {
                    return;
                }
                if paid.insert(id) {
                    self.pay(id).await;
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn pay(&self, id: Uuid) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self
                .history
                .confirm(self.sys, &id.to_string(), "tok_visa")
                .await;
            match status {
                202 => return,
                503 => assert!(
                    Instant::now() < deadline,
                    "paying for {id} got 503 for a minute"
                ),
                other => panic!("paying for held booking {id} got {other}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn assert_promises_kept(&self, results: &[Submitted]) {
        for r in results {
            assert!(
                matches!(r.status, 202 | 503),
                "only 202 or 503, got {} for {:?}",
                r.status,
                r.request.body
            );
        }
        let accepted: Vec<Uuid> = results
            .iter()
            .filter(|r| r.accepted())
            .map(|r| r.id.as_ref().unwrap().parse().unwrap())
            .collect();
        let refused = results.len() - accepted.len();

        // The model's verdict on the whole history: no oversell, every 202
        // final and decided once, per-show order, refunds, tickets, emails.
        self.history.check(self.sys).await.assert_clean();
        let sold_out: i32 =
            sqlx::query_scalar("SELECT capacity - held - booked FROM shows WHERE id = $1")
                .bind(self.hot.parse::<Uuid>().unwrap())
                .fetch_one(self.db)
                .await
                .unwrap();

        let gap = self.longest_pause_in_decisions().await;
        println!(
            "accepted {}, refused with 503 {refused}, hot show left with {sold_out} tickets, \
             longest pause in decisions {gap:?}, sale {:?}",
            accepted.len(),
            self.started.elapsed()
        );
        assert!(
            gap <= RESUME_WITHIN,
            "decisions paused for {gap:?} (more than {RESUME_WITHIN:?})"
        );

        self.assert_exactly_their_emails().await;
    }

    /// The longest time between two decisions of this sale, as the audit
    /// trail dates them.
    async fn longest_pause_in_decisions(&self) -> Duration {
        let times: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM at)::float8 FROM booking_audit
             WHERE show_id = ANY($1) AND from_status = 'queued' ORDER BY at",
        )
        .bind(self.show_ids())
        .fetch_all(self.db)
        .await
        .unwrap();
        let longest = times
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .fold(0.0, f64::max);
        Duration::from_secs_f64(longest)
    }

    /// Every confirmed booking got exactly one email, its confirmation;
    /// every other customer of the sale none.
    async fn assert_exactly_their_emails(&self) {
        let customers: Vec<(String, String)> =
            sqlx::query_as("SELECT email, status FROM bookings WHERE show_id = ANY($1)")
                .bind(self.show_ids())
                .fetch_all(self.db)
                .await
                .unwrap();
        let confirmed = customers.iter().filter(|(_, s)| s == "confirmed").count();
        assert!(confirmed > 0, "no booking was paid for during the sale");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = subjects_by_recipient().await;
            let arrived = customers
                .iter()
                .filter(|(email, s)| s == "confirmed" && received.contains_key(email))
                .count();
            if arrived == confirmed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{arrived} of {confirmed} confirmation emails arrived"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // A duplicate would come soon after the first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let received = subjects_by_recipient().await;
        for (email, status) in &customers {
            let subjects = received.get(email).cloned().unwrap_or_default();
            let expected = usize::from(status == "confirmed");
            assert_eq!(
                subjects.len(),
                expected,
                "{email} ({status}) got {subjects:?}"
            );
        }
    }
}

/// The subjects of every email in the sink, by recipient address.
async fn subjects_by_recipient() -> HashMap<String, Vec<String>> {
    let mut received: HashMap<String, Vec<String>> = HashMap::new();
    for message in all_messages().await {
        let subject = message["subject"].as_str().unwrap_or_default();
        for to in message["to"].as_array().into_iter().flatten() {
            if let Some(address) = to["address"].as_str() {
                received
                    .entry(address.to_owned())
                    .or_default()
                    .push(subject.to_owned());
            }
        }
    }
    received
}
