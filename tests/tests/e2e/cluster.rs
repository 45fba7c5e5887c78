//! A three-node RabbitMQ cluster on this host. The services are given every
//! node (`AMQP_URL` lists them) and fail over between them; losing a node
//! in the middle of a sale, even the one that leads the hot show's queue,
//! or restarting every node in turn, loses nothing and oversells nothing.
//!
//! Three nodes take a while to start and join, so one cluster and one
//! system serve the whole story, told in order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tests::cluster::PrivateCluster;
use tests::mailbox::unique_address;
use tests::sale::Sale;
use tests::{Options, System};

const NODES: usize = 3;
const SHARDS: u16 = 4;
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
    let (hot, node) = put_the_api_beside_the_hot_leader(&sale, cluster).await;
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
    sale.assert_promises_kept(&results, RESUME_WITHIN).await;
}

/// A node that stops answering without closing anything, for 20 s: the
/// API leaves it within its budget, and everything resumes after.
async fn freezing_the_node_that_leads_the_hot_shard_and_serves_the_api(
    sys: &System,
    cluster: &mut PrivateCluster,
) {
    let sale = Sale::open(sys).await;
    let (hot, node) = put_the_api_beside_the_hot_leader(&sale, cluster).await;
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
    sale.assert_promises_kept(&results, RESUME_WITHIN).await;
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
    Sale::assert_few_refused(
        &results,
        "a rolling restart",
        MAX_REFUSED_IN_ROLLING_RESTART,
    );
    sale.assert_promises_kept(&results, RESUME_WITHIN).await;
}

/// Finds the hot show's shard queue and its leader, and restarts the
/// API until its publishing connection is on that node (it starts at
/// a random one). Returns the queue and the node.
async fn put_the_api_beside_the_hot_leader(
    sale: &Sale<'_>,
    cluster: &PrivateCluster,
) -> (String, usize) {
    let queue = hot_shard_queue(sale, cluster).await;
    let leader = cluster.leader_of(&queue).await;
    for _ in 0..20 {
        let pid = sale
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
        sale.sys.terminate("api", Duration::from_secs(30)).await;
        sale.sys.restart("api").await;
        sale.book_accepted(&sale.shows[1]).await;
    }
    panic!("the API never connected to node {leader} in 20 starts");
}

/// The shard queue of the hot show: the one whose count of published
/// messages grows by the bookings sent to the hot show alone.
async fn hot_shard_queue(sale: &Sale<'_>, cluster: &PrivateCluster) -> String {
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
        sale.book_accepted(&sale.hot).await;
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
