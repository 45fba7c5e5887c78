//! The RabbitMQ nodes `AMQP_URL` lists, and which of them a process tries
//! first.
//!
//! A process starts at a random node, so that many processes spread over a
//! cluster, and then stays on the node that last let it in. A node that
//! refuses or times out moves the start on to the next one *before* the
//! next is tried: a caller that gives up half-way (the API's publish has a
//! deadline of its own) still starts elsewhere next time, so a node that
//! hangs instead of refusing cannot hold a process for good.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use lapin::uri::AMQPUri;

/// What is wrong with an `AMQP_URL`. It never quotes the URL, which holds a
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodesError {
    #[error("no AMQP URL given")]
    Empty,
    #[error(
        "node {position} of the list is not an AMQP URL (amqp://user:password@host:port/vhost)"
    )]
    NotAnAmqpUrl { position: usize },
}

/// The nodes of one RabbitMQ cluster: one AMQP URL, or several separated by
/// commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes(Vec<String>);

impl FromStr for Nodes {
    type Err = NodesError;

    fn from_str(list: &str) -> Result<Self, NodesError> {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(NodesError::Empty);
        }
        for (i, url) in urls.iter().enumerate() {
            AMQPUri::from_str(url).map_err(|_| NodesError::NotAnAmqpUrl { position: i + 1 })?;
        }
        Ok(Self(urls))
    }
}

impl Nodes {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The nodes' URLs, in the order listed.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Every node once, beginning with node `first` (modulo the count) and
    /// wrapping around, with its index.
    pub fn starting_at(&self, first: usize) -> impl Iterator<Item = (usize, &str)> {
        let n = self.0.len();
        (0..n).map(move |k| {
            let i = (first + k) % n;
            (i, self.0[i].as_str())
        })
    }

    /// `host:port` of a node, for logs (no credentials).
    pub fn address(url: &str) -> String {
        AMQPUri::from_str(url)
            .map(|uri| format!("{}:{}", uri.authority.host, uri.authority.port))
            .unwrap_or_else(|_| "(not an AMQP URL)".to_owned())
    }
}

/// The node this process tries first, as an index into its list (taken
/// modulo the list's length, so every list of the process can use it).
pub fn preferred() -> usize {
    cursor().load(Ordering::Relaxed)
}

/// Start at node `index` from now on.
pub fn prefer(index: usize) {
    cursor().store(index, Ordering::Relaxed);
}

fn cursor() -> &'static AtomicUsize {
    static CURSOR: OnceLock<AtomicUsize> = OnceLock::new();
    // Random rather than by pid: in containers every process is pid 1.
    CURSOR.get_or_init(|| AtomicUsize::new(uuid::Uuid::new_v4().as_u128() as usize % 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "amqp://guest:secret@10.0.0.1:5672/%2f";
    const B: &str = "amqp://guest:secret@10.0.0.2:5673/%2f";
    const C: &str = "amqps://guest:secret@rabbit-3.internal/booking";

    #[test]
    fn one_url_is_a_cluster_of_one() {
        let nodes: Nodes = A.parse().unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes.starting_at(7).collect::<Vec<_>>(), vec![(0, A)]);
    }

    #[test]
    fn a_list_is_tried_in_order_from_any_node_and_wraps_around() {
        let nodes: Nodes = format!(" {A}, {B} ,{C},").parse().unwrap();
        assert_eq!(nodes.len(), 3);
        let order: Vec<usize> = nodes.starting_at(4).map(|(i, _)| i).collect();
        assert_eq!(order, vec![1, 2, 0]);
        assert_eq!(nodes.starting_at(2).next(), Some((2, C)));
    }

    #[test]
    fn a_bad_entry_is_named_by_position_without_quoting_the_password() {
        let err = format!("{A},http://guest:secret@10.0.0.9/")
            .parse::<Nodes>()
            .unwrap_err();
        assert_eq!(err, NodesError::NotAnAmqpUrl { position: 2 });
        assert!(!err.to_string().contains("secret"));
        assert_eq!(" , ".parse::<Nodes>().unwrap_err(), NodesError::Empty);
    }

    #[test]
    fn addresses_for_logs_carry_no_credentials() {
        assert_eq!(Nodes::address(A), "10.0.0.1:5672");
        assert_eq!(Nodes::address(C), "rabbit-3.internal:5671");
    }
}
