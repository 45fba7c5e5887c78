//! Connecting to RabbitMQ and publishing with publisher confirms.
//!
//! lapin's own recovery has gaps, so every service owns its reconnection:
//! connections are made here with a timeout and backoff, the topology is
//! re-declared on every new connection, and a broken publisher channel is
//! replaced on the next publish. Every URL here may list the nodes of a
//! cluster ([`nodes`]); a connection goes to the first of them that answers.

pub mod consume;
pub mod nodes;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use lapin::message::Delivery;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::CommandKind;
use crate::messages::{BookingCommand, EventKind, RequestBatch, ShardMessage};
use crate::topology::{self, Topology, DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE};
use nodes::Nodes;

/// How long a connection attempt may take before it counts as failed; the
/// API must answer 503 quickly when the broker is gone, never hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The AMQP heartbeat asked for, in seconds: a silent node is given up
/// after twice this.
pub const HEARTBEAT_SECONDS: u16 = 5;
/// How long declaring the topology on a new connection may take.
const DECLARE_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failed connection attempt, publishes fail at once for this long.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// How long a polite close may wait for the broker's answer.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("RabbitMQ is unavailable: {0}")]
    Unavailable(#[from] lapin::Error),
    #[error("RabbitMQ is down; not retrying yet")]
    Down,
    #[error("RabbitMQ did not answer in time")]
    Timeout,
    #[error("RabbitMQ refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for routing key {0:?}")]
    Unroutable(String),
}

impl PublishError {
    /// A short name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Down => "down",
            Self::Timeout => "timeout",
            Self::Nacked => "nacked",
            Self::Unroutable(_) => "unroutable",
        }
    }
}

/// Opens a connection named `name` (shown in the management UI) to one of
/// the nodes `urls` lists: the one this process prefers, else the next that
/// answers.
pub async fn connect(urls: &str, name: &str) -> lapin::Result<Connection> {
    connect_indexed(urls, name).await.map(|(_, conn)| conn)
}

/// [`connect`], also saying which node of the list it reached.
async fn connect_indexed(urls: &str, name: &str) -> lapin::Result<(usize, Connection)> {
    let nodes: Nodes = urls.parse().map_err(|err: nodes::NodesError| {
        io_error(std::io::ErrorKind::InvalidInput, err.to_string())
    })?;
    let mut failure = None;
    for (index, url) in nodes.starting_at(nodes::preferred()) {
        // Move on first: if the caller gives up during this attempt, its
        // next one starts at the next node.
        nodes::prefer(index + 1);
        match connect_node(url, name).await {
            Ok(conn) => {
                nodes::prefer(index);
                if nodes.len() > 1 {
                    tracing::info!(node = %Nodes::address(url), connection = name, "connected to RabbitMQ");
                }
                return Ok((index, conn));
            }
            Err(err) => {
                if nodes.len() > 1 {
                    tracing::warn!(node = %Nodes::address(url), error = %err, "RabbitMQ node unreachable, trying the next");
                }
                failure = Some(err);
            }
        }
    }
    Err(failure.expect("a node list is never empty"))
}

async fn connect_node(url: &str, name: &str) -> lapin::Result<Connection> {
    let mut uri =
        AMQPUri::from_str(url).map_err(|err| io_error(std::io::ErrorKind::InvalidInput, err))?;
    // A node that stops answering without closing the connection (frozen,
    // cut off) is noticed after two missed heartbeats; a URL that sets its
    // own `heartbeat` keeps it.
    uri.query.heartbeat.get_or_insert(HEARTBEAT_SECONDS);
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, props)).await {
        Ok(result) => result,
        Err(_) => Err(io_error(
            std::io::ErrorKind::TimedOut,
            "connecting to RabbitMQ timed out".to_owned(),
        )),
    }
}

fn io_error(kind: std::io::ErrorKind, message: String) -> lapin::Error {
    lapin::ErrorKind::IOError(Arc::new(std::io::Error::new(kind, message))).into()
}

/// Connects and declares the topology; returns the node reached and the
/// connection. A node that takes the connection but stalls the
/// declarations (a peer of a frozen node can, until it declares that node
/// down) is given up after [`DECLARE_TIMEOUT`], and the next attempt starts
/// at the next node.
async fn connect_declared(
    url: &str,
    name: &str,
    topology: &Topology,
) -> lapin::Result<(usize, Connection)> {
    let (node, conn) = connect_indexed(url, name).await?;
    match tokio::time::timeout(DECLARE_TIMEOUT, topology.declare(&conn)).await {
        Ok(declared) => declared.map(|()| (node, conn)),
        Err(_) => {
            nodes::prefer(node + 1);
            Err(io_error(
                std::io::ErrorKind::TimedOut,
                "declaring the topology timed out".to_owned(),
            ))
        }
    }
}

/// Connects, declares the topology and returns the connection, retrying
/// with capped exponential backoff until it works or `cancel` fires.
pub async fn connect_until_ready(
    url: &str,
    name: &str,
    topology: &Topology,
    cancel: &CancellationToken,
) -> Option<Connection> {
    let attempt = || async {
        connect_declared(url, name, topology)
            .await
            .map(|(_, conn)| conn)
    };
    let retrying = attempt.retry(crate::retry::forever()).notify(
        |err, wait| tracing::warn!(error = %err, ?wait, "RabbitMQ not reachable, retrying"),
    );
    tokio::select! {
        conn = retrying => conn.ok(),
        () = cancel.cancelled() => None,
    }
}

/// Runs `session` on a fresh connection, again and again: whenever it
/// returns (the broker went away, a channel failed) the connection is closed
/// and a new one is made with backoff, until `cancel` fires.
pub async fn reconnecting<F, Fut, E>(
    url: &str,
    name: &str,
    topology: &Topology,
    cancel: &CancellationToken,
    mut session: F,
) where
    F: FnMut(Arc<Connection>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    while let Some(conn) = connect_until_ready(url, name, topology, cancel).await {
        let conn = Arc::new(conn);
        match session(conn.clone()).await {
            Ok(()) if cancel.is_cancelled() => tracing::info!("consumer stopped"),
            Ok(()) => tracing::warn!("subscription ended, reconnecting"),
            Err(err) => tracing::warn!(error = %err, "consuming failed, reconnecting"),
        }
        close_connection(&conn, "reconnecting or stopping").await;
        if cancel.is_cancelled() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Closes a connection politely if it is still open. One whose node went
/// away is only dropped: waiting for an answer that cannot come would hold
/// up the failover to another node (and shutdown).
pub async fn close_connection(conn: &Connection, reason: &str) {
    if conn.status().connected() {
        let _ = tokio::time::timeout(CLOSE_WITHIN, conn.close(200, reason.into())).await;
    }
}

/// [`close_connection`] for a channel.
pub async fn close_channel(channel: &Channel, reason: &str) {
    if channel.status().connected() {
        let _ = tokio::time::timeout(CLOSE_WITHIN, channel.close(200, reason.into())).await;
    }
}

/// A message to publish: where it goes and what it carries.
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub payload: &'a [u8],
    pub message_id: String,
    pub headers: FieldTable,
    /// Whether an unroutable message is an error (commands) or fine
    /// (events nobody subscribes to).
    pub mandatory: bool,
}

impl Outgoing<'_> {
    fn properties(&self) -> BasicProperties {
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(ShortString::from(self.message_id.as_str()))
            .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
            .with_headers(self.headers.clone())
    }
}

/// Sets a string header on a message.
pub fn header(headers: &mut FieldTable, name: &str, value: &str) {
    headers.insert(ShortString::from(name), AMQPValue::LongString(value.into()));
}

/// How long one publish may keep trying (other channels, other nodes)
/// before it fails: the API's share of a request's time budget.
pub const PUBLISH_BUDGET: Duration = Duration::from_secs(5);
/// How long one attempt waits for its confirm. A node that stops answering
/// without closing its connections (frozen, or cut off) is left after this,
/// and the message tried on the next node.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before the first retry; it doubles up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE: Duration = Duration::from_millis(25);
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(400);

/// What a failed attempt says about where it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suspect {
    /// Only the channel: RabbitMQ 3.10 keeps each quorum queue's leader per
    /// channel, and a channel opened while a leader was being elected can
    /// nack every message to that queue long after the new leader is up.
    /// A fresh channel on the same connection finds the new leader.
    Channel,
    /// The node: its connection failed, or it did not answer in time.
    Node,
}

/// The connection a [`Publisher`] publishes on, with the node of `AMQP_URL`
/// it went to and its current confirm-mode channel.
struct Session {
    /// Tells this session from earlier ones (channel ids repeat across
    /// connections).
    serial: u64,
    conn: Connection,
    node: usize,
    channel: Option<Channel>,
}

/// A channel to publish on, and the session it belongs to.
struct Lease {
    channel: Channel,
    serial: u64,
}

/// A shared publisher. Concurrent publishes are pipelined on one
/// confirm-mode channel (each awaits only its own confirm). A publish that
/// is refused or unconfirmed is tried again, within [`PUBLISH_BUDGET`], on
/// a fresh channel (after a nack) or on the next node (after a broken
/// connection or a confirm that did not come): a message may then reach
/// its queue twice, which every consumer tolerates (they deduplicate).
pub struct Publisher {
    url: String,
    name: String,
    topology: Topology,
    session: Mutex<Option<Session>>,
    /// Sessions opened so far.
    opened: std::sync::atomic::AtomicU64,
    /// When the last connection attempt failed.
    failed_at: std::sync::Mutex<Option<Instant>>,
}

impl Publisher {
    pub fn new(url: &str, name: &str, topology: Topology) -> Self {
        Self {
            url: url.to_owned(),
            name: name.to_owned(),
            topology,
            session: Mutex::new(None),
            opened: std::sync::atomic::AtomicU64::new(0),
            failed_at: std::sync::Mutex::new(None),
        }
    }

    /// Makes sure a channel is open (used by readiness checks and at start).
    pub async fn ensure_connected(&self) -> Result<(), PublishError> {
        self.channel_within(CONNECT_TIMEOUT).await.map(drop)
    }

    async fn channel_within(&self, limit: Duration) -> Result<Lease, PublishError> {
        tokio::time::timeout(limit, self.channel())
            .await
            .map_err(|_| PublishError::Timeout)?
    }

    async fn channel(&self) -> Result<Lease, PublishError> {
        let mut guard = self.session.lock().await;
        if let Some(session) = guard.as_mut() {
            if session.conn.status().connected() {
                let channel = match &session.channel {
                    Some(channel) if channel.status().connected() => Ok(channel.clone()),
                    _ => confirm_channel(&session.conn).await,
                };
                match channel {
                    Ok(channel) => {
                        session.channel = Some(channel.clone());
                        return Ok(session.lease(channel));
                    }
                    // A connection that cannot open a channel is no better
                    // than a broken one.
                    Err(err) => {
                        Self::leave(guard.take().expect("checked above"), "no channel");
                        return Err(err.into());
                    }
                }
            }
            Self::leave(guard.take().expect("checked above"), "broken");
        }
        // While the broker is down, answer at once instead of every caller
        // queueing behind a fresh connection attempt.
        let recently_failed = self
            .failed_at
            .lock()
            .expect("not poisoned")
            .is_some_and(|at| at.elapsed() < RECONNECT_PAUSE);
        if recently_failed {
            return Err(PublishError::Down);
        }
        match self.open().await {
            Ok(session) => {
                let channel = session.channel.clone().expect("opened with a channel");
                Ok(guard.insert(session).lease(channel))
            }
            Err(err) => {
                *self.failed_at.lock().expect("not poisoned") = Some(Instant::now());
                Err(err.into())
            }
        }
    }

    async fn open(&self) -> lapin::Result<Session> {
        let (node, conn) = connect_declared(&self.url, &self.name, &self.topology).await?;
        let channel = confirm_channel(&conn).await?;
        Ok(Session {
            serial: self
                .opened
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            conn,
            node,
            channel: Some(channel),
        })
    }

    /// Stops using `failed` (if it is still the current channel) and, if
    /// the node is suspect, its connection, and starts the next connection
    /// at the next node. Nothing here waits for the broker: an old channel
    /// is closed in the background once confirms still on their way had
    /// time to arrive, a suspect connection at once.
    async fn discard(&self, failed: &Lease, suspect: Suspect) {
        let mut guard = self.session.lock().await;
        let Some(session) = guard.as_mut() else {
            return;
        };
        let current = session.serial == failed.serial
            && session.channel.as_ref().map(Channel::id) == Some(failed.channel.id());
        if !current {
            return;
        }
        match suspect {
            Suspect::Channel => {
                let channel = session.channel.take().expect("checked above");
                tokio::spawn(async move {
                    tokio::time::sleep(ATTEMPT_TIMEOUT).await;
                    close_channel(&channel, "publish refused").await;
                });
            }
            Suspect::Node => Self::leave(guard.take().expect("checked above"), "publish failed"),
        }
    }

    /// Gives up `session`'s connection without waiting for the broker, and
    /// starts the next one at the next node.
    fn leave(session: Session, reason: &'static str) {
        nodes::prefer(session.node + 1);
        let conn = session.conn;
        tokio::spawn(async move { close_connection(&conn, reason).await });
    }

    /// Routes webhook events to their queue (a new endpoint must get the
    /// events that follow its creation; see
    /// [`crate::topology::bind_webhook_events`]).
    pub async fn bind_webhook_events(&self) -> Result<(), PublishError> {
        let lease = self.channel_within(CONNECT_TIMEOUT).await?;
        crate::topology::bind_webhook_events(&lease.channel, true)
            .await
            .map_err(Into::into)
    }

    /// Publishes one persistent message and waits for the broker to confirm
    /// it, trying again elsewhere within [`PUBLISH_BUDGET`]. `Ok` means
    /// RabbitMQ has taken responsibility for the message.
    pub async fn publish(&self, msg: Outgoing<'_>) -> Result<(), PublishError> {
        self.publish_by(msg, Instant::now() + PUBLISH_BUDGET).await
    }

    /// [`Self::publish`], giving up at `deadline` if that comes before the
    /// end of the budget (a request with little time left).
    pub async fn publish_by(
        &self,
        msg: Outgoing<'_>,
        deadline: Instant,
    ) -> Result<(), PublishError> {
        let deadline = deadline.min(Instant::now() + PUBLISH_BUDGET);
        let mut pause = RETRY_PAUSE;
        let mut attempt = 1;
        loop {
            let err = match self.publish_once(&msg, deadline, attempt).await {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            let retryable = !matches!(err, PublishError::Unroutable(_));
            if !retryable || Instant::now() + pause >= deadline {
                return Err(err);
            }
            metrics::counter!("amqp_publish_retries_total", "error" => err.label()).increment(1);
            tracing::debug!(error = %err, attempt, "publish failed, trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
            attempt += 1;
        }
    }

    /// One attempt: a channel (connecting if need be) by `deadline`, then
    /// up to [`ATTEMPT_TIMEOUT`] for the confirm. After a first refusal on
    /// a fresh channel the node itself is suspect.
    async fn publish_once(
        &self,
        msg: &Outgoing<'_>,
        deadline: Instant,
        attempt: u32,
    ) -> Result<(), PublishError> {
        let left = || deadline.saturating_duration_since(Instant::now());
        let lease = self.channel_within(left()).await?;
        let outcome = tokio::time::timeout(left().min(ATTEMPT_TIMEOUT), async {
            let options = BasicPublishOptions {
                mandatory: msg.mandatory,
                ..Default::default()
            };
            let confirm = lease
                .channel
                .basic_publish(
                    msg.exchange.into(),
                    msg.routing_key.into(),
                    options,
                    msg.payload,
                    msg.properties(),
                )
                .await?;
            confirm.await
        })
        .await;
        let (err, suspect) = match outcome {
            Ok(Ok(Confirmation::Ack(None))) => return Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => {
                return Err(PublishError::Unroutable(msg.routing_key.to_owned()))
            }
            Ok(Ok(Confirmation::Nack(_) | Confirmation::NotRequested)) => {
                let suspect = if attempt == 1 {
                    Suspect::Channel
                } else {
                    Suspect::Node
                };
                (PublishError::Nacked, suspect)
            }
            Ok(Err(err)) => (err.into(), Suspect::Node),
            Err(_) => (PublishError::Timeout, Suspect::Node),
        };
        self.discard(&lease, suspect).await;
        Err(err)
    }
}

impl Session {
    fn lease(&self, channel: Channel) -> Lease {
        Lease {
            channel,
            serial: self.serial,
        }
    }
}

/// A new channel on `conn` in confirm mode.
async fn confirm_channel(conn: &Connection) -> lapin::Result<Channel> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

impl Publisher {
    /// Sends a command to the shard queue of its show, confirmed by the
    /// broker.
    pub async fn send_command(&self, command: &BookingCommand) -> Result<(), PublishError> {
        self.send_command_by(command, Instant::now() + PUBLISH_BUDGET)
            .await
    }

    /// [`Self::send_command`], giving up at `deadline` at the latest.
    pub async fn send_command_by(
        &self,
        command: &BookingCommand,
        deadline: Instant,
    ) -> Result<(), PublishError> {
        let payload = serde_json::to_vec(command).expect("commands always serialize");
        let mut headers = FieldTable::default();
        header(
            &mut headers,
            "x-booking-id",
            &command.booking_id().to_string(),
        );
        header(&mut headers, "x-command", command.kind().as_str());
        let shard = self.shard_of(command.show_id());
        self.send_to_shard(shard, &payload, headers, deadline).await
    }

    /// The shard that carries `show_id`'s commands.
    pub fn shard_of(&self, show_id: uuid::Uuid) -> u16 {
        self.topology.shard_of(show_id)
    }

    /// Sends requests recorded together for shows of `shard` as one message
    /// (see [`ShardMessage::ShardRequests`]), giving up at `deadline` at the
    /// latest. Its `x-requests` header says how many requests it carries,
    /// for an operator reading the queue in the management UI.
    pub async fn send_requests_by(
        &self,
        shard: u16,
        shows: Vec<RequestBatch>,
        deadline: Instant,
    ) -> Result<(), PublishError> {
        debug_assert!(shows.iter().all(|s| self.shard_of(s.show_id) == shard));
        let requests: usize = shows.iter().map(|s| s.booking_ids.len()).sum();
        let payload = serde_json::to_vec(&ShardMessage::ShardRequests { shows })
            .expect("batches always serialize");
        let mut headers = FieldTable::default();
        header(&mut headers, "x-command", CommandKind::Request.as_str());
        headers.insert(
            topology::HEADER_REQUESTS.into(),
            AMQPValue::LongInt(i32::try_from(requests).unwrap_or(i32::MAX)),
        );
        self.send_to_shard(shard, &payload, headers, deadline).await
    }

    /// Publishes to a shard queue, through the default exchange (which
    /// routes by queue name): `mandatory`, so a queue that is not there is
    /// an error rather than a message dropped.
    async fn send_to_shard(
        &self,
        shard: u16,
        payload: &[u8],
        headers: FieldTable,
        deadline: Instant,
    ) -> Result<(), PublishError> {
        let msg = Outgoing {
            exchange: "",
            routing_key: &Topology::shard_queue(shard),
            payload,
            message_id: uuid::Uuid::now_v7().to_string(),
            headers,
            mandatory: true,
        };
        self.publish_by(msg, deadline).await
    }
}

impl Publisher {
    /// Publishes a booking event to `booking.events` under `booking.<kind>`.
    /// Unroutable is fine: an event nobody subscribes to is simply dropped.
    pub async fn send_event(
        &self,
        event_id: uuid::Uuid,
        booking_id: uuid::Uuid,
        kind: EventKind,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        let mut headers = FieldTable::default();
        header(&mut headers, "x-booking-id", &booking_id.to_string());
        self.publish(Outgoing {
            exchange: EVENTS_EXCHANGE,
            routing_key: &kind.routing_key(),
            payload,
            message_id: event_id.to_string(),
            headers,
            mandatory: false,
        })
        .await
    }

    /// Publishes a JSON array of booking events for the live hubs and the
    /// webhook fan-out (see [`topology::EVENT_BATCH_KEY`]). Unroutable is
    /// fine: with no api running and no endpoint live nothing is bound.
    pub async fn send_event_batch(&self, payload: &[u8]) -> Result<(), PublishError> {
        self.publish(Outgoing {
            exchange: EVENTS_EXCHANGE,
            routing_key: topology::EVENT_BATCH_KEY,
            payload,
            message_id: uuid::Uuid::now_v7().to_string(),
            headers: FieldTable::default(),
            mandatory: false,
        })
        .await
    }
}

impl Publisher {
    /// Moves a consumed message to `dead_queue` (through the dead-letter
    /// exchange) with why it died and how often it was tried, in headers an
    /// operator sees in the management UI; or, given a `part`, only that
    /// part of it (one request of a batch). The caller acks the original
    /// only after this returned `Ok`.
    pub async fn dead_letter(
        &self,
        delivery: &Delivery,
        part: Option<&Part>,
        source_queue: &str,
        dead_queue: &str,
        reason: &str,
        attempts: u32,
    ) -> Result<(), PublishError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        header(&mut headers, topology::HEADER_DEATH_REASON, reason);
        header(&mut headers, topology::HEADER_SOURCE_QUEUE, source_queue);
        headers.insert(
            topology::HEADER_ATTEMPTS.into(),
            AMQPValue::LongInt(i32::try_from(attempts).unwrap_or(i32::MAX)),
        );
        let (payload, message_id) = match part {
            None => (delivery.data.as_slice(), message_id(delivery)),
            Some(part) => {
                headers.insert(topology::HEADER_REQUESTS.into(), AMQPValue::LongInt(1));
                header(&mut headers, "x-booking-id", &part.booking_id.to_string());
                let id = format!("{}/{}", message_id(delivery), part.booking_id);
                (part.payload.as_slice(), id)
            }
        };
        self.publish(Outgoing {
            exchange: DEAD_LETTER_EXCHANGE,
            routing_key: dead_queue,
            payload,
            message_id,
            headers,
            mandatory: true,
        })
        .await
    }
}

/// One booking's share of a consumed message, dead-lettered on its own:
/// the others it came with are decided.
pub struct Part {
    pub booking_id: uuid::Uuid,
    /// The message that would have carried it alone.
    pub payload: Vec<u8>,
}

/// The message's id, kept when a message is moved so it can be traced.
pub fn message_id(delivery: &Delivery) -> String {
    delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Deliveries of this message before this one, as counted by the quorum
/// queue (`x-delivery-count`).
pub fn previous_deliveries(delivery: &Delivery) -> u32 {
    let headers = delivery.properties.headers().as_ref();
    match headers.and_then(|h| h.inner().get("x-delivery-count")) {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortInt(n)) => u32::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}
