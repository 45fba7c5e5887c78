//! A private RabbitMQ cluster on this host, for the tests that lose nodes:
//! nodes of [`PrivateBroker`] sharing one Erlang cookie, joined to the
//! first, each with its management API.

use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::Value;
use uuid::Uuid;

use crate::servers::PrivateBroker;

/// How long the cluster may take to heal after a node came back.
const HEAL_TIMEOUT: Duration = Duration::from_secs(90);

pub struct PrivateCluster {
    nodes: Vec<PrivateBroker>,
    http: Client,
}

impl PrivateCluster {
    /// Starts `size` nodes at once, joins them into one cluster and waits
    /// until it is whole.
    pub async fn start(size: usize) -> Self {
        let cookie = Uuid::new_v4().simple().to_string().to_uppercase();
        let mut nodes = futures::future::join_all(
            (0..size).map(|_| PrivateBroker::start_node(Some(&cookie), true)),
        )
        .await;
        let seed = nodes[0].node().to_owned();
        for node in &mut nodes[1..] {
            node.join(&seed).await;
        }
        let cluster = Self {
            nodes,
            http: Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        cluster.wait_healed().await;
        cluster
    }

    /// Every node, comma separated, in node order: what `AMQP_URL` lists.
    pub fn amqp_url(&self) -> String {
        self.nodes
            .iter()
            .map(PrivateBroker::amqp_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&mut self, index: usize) -> &mut PrivateBroker {
        &mut self.nodes[index]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A GET on the management API of the first running node that answers.
    pub async fn management(&self, path: &str) -> Value {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let res = self
                .http
                .get(format!("{}/api{path}", node.management_url()))
                .basic_auth("guest", Some("guest"))
                .send()
                .await;
            if let Ok(res) = res {
                if res.status().is_success() {
                    if let Ok(body) = res.json().await {
                        return body;
                    }
                }
            }
        }
        panic!("no node's management API answered GET {path}");
    }

    /// The queues of the default vhost, as the management API lists them.
    pub async fn queues(&self) -> Vec<Value> {
        let queues = self.management("/queues/%2f").await;
        queues.as_array().cloned().unwrap_or_default()
    }

    /// The index of the node that leads the quorum queue `queue`.
    pub async fn leader_of(&self, queue: &str) -> usize {
        let info = self.management(&format!("/queues/%2f/{queue}")).await;
        let leader = info["leader"].as_str().unwrap_or_default();
        self.nodes
            .iter()
            .position(|n| n.node() == leader)
            .unwrap_or_else(|| panic!("{queue} has no leader among the nodes: {info}"))
    }

    /// Waits until `queue` has a leader other than node `old` (which was
    /// lost); returns when it was first seen.
    pub async fn wait_leader_moved(&self, queue: &str, old: usize) -> Instant {
        let deadline = Instant::now() + HEAL_TIMEOUT;
        loop {
            let info = self.management(&format!("/queues/%2f/{queue}")).await;
            let leader = info["leader"].as_str().unwrap_or_default();
            let moved = self
                .nodes
                .iter()
                .enumerate()
                .any(|(i, n)| i != old && n.node() == leader);
            if moved {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{queue} has no new leader within {HEAL_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index of the node that holds the client connection named `name`,
    /// once the management API lists it (`None` if it does not within
    /// `limit`: its statistics can lag behind on a busy machine).
    pub async fn connection_node(&self, name: &str, limit: Duration) -> Option<usize> {
        let deadline = Instant::now() + limit;
        loop {
            let connections = self.management("/connections").await;
            let node = connections.as_array().into_iter().flatten().find_map(|c| {
                (c["client_properties"]["connection_name"] == name)
                    .then(|| c["node"].as_str().unwrap_or_default().to_owned())
            });
            if let Some(node) = node {
                return self.nodes.iter().position(|n| n.node() == node);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the cluster healed by itself: every node runs in it, and
    /// every quorum queue has a leader and all its members online.
    pub async fn wait_healed(&self) {
        let deadline = Instant::now() + HEAL_TIMEOUT;
        loop {
            let trouble = self.trouble().await;
            let Some(trouble) = trouble else { return };
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("===== {}\n{}", n.node(), n.logs()))
                    .collect();
                panic!(
                    "the cluster did not heal within {HEAL_TIMEOUT:?}: {trouble}\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// What keeps the cluster from being whole, if anything.
    async fn trouble(&self) -> Option<String> {
        // Every node's own view: one that was cut off (or frozen) may
        // still believe it runs alone until it notices the partition.
        for node in &self.nodes {
            let view = self
                .http
                .get(format!("{}/api/nodes", node.management_url()))
                .basic_auth("guest", Some("guest"))
                .send()
                .await;
            let nodes: Value = match view {
                Ok(res) if res.status().is_success() => res.json().await.unwrap_or_default(),
                _ => return Some(format!("{} does not answer", node.node())),
            };
            let running = nodes
                .as_array()
                .map(|ns| ns.iter().filter(|n| n["running"] == true).count())
                .unwrap_or(0);
            if running != self.nodes.len() {
                return Some(format!(
                    "{} sees {running} of {} nodes running",
                    node.node(),
                    self.nodes.len()
                ));
            }
        }
        for queue in self.queues().await {
            if queue["type"] != "quorum" {
                continue;
            }
            let count = |field: &str| queue[field].as_array().map_or(0, Vec::len);
            if queue["leader"].as_str().is_none() || count("online") != count("members") {
                return Some(format!(
                    "queue {} has leader {} and members online {} of {}",
                    queue["name"],
                    queue["leader"],
                    count("online"),
                    count("members")
                ));
            }
        }
        None
    }
}
