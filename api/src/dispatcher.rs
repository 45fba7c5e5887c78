//! Publishes recorded requests to their shows' shard queues, one message
//! for the requests of a shard that are waiting together (a
//! [`ShardMessage::ShardRequests`](shared::messages::ShardMessage)), not
//! one each. The requests of one group commit ([`crate::recorder`]) come
//! here together, so on an on-sale minute a message carries a dozen or
//! more, of one show or of many: RabbitMQ routes, stores, delivers and acks
//! a message for them all, and the worker decides them in one transaction.
//!
//! Each caller still waits for the confirm of the message that carries its
//! request before it answers `202`, and a failed publish fails every
//! request it carried (each caller withdraws its own booking). While a
//! shard's message is on its way, that shard's next requests gather for
//! the next one; other shards' messages go out side by side.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use shared::amqp::{PublishError, Publisher};
use shared::messages::{RequestBatch, MAX_REQUESTS_PER_MESSAGE};
use shared::service::Tasks;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// A recorded request waiting for its message.
struct Pending {
    show_id: Uuid,
    booking_id: Uuid,
    /// When its caller stops waiting.
    deadline: Instant,
    reply: oneshot::Sender<Result<(), PublishError>>,
}

#[derive(Clone)]
pub struct Dispatcher {
    queue: mpsc::Sender<Pending>,
}

impl Dispatcher {
    /// Starts the dispatching task on `tasks`. It ends once the last
    /// `Dispatcher` is dropped and what it holds is published, not at the
    /// signal: requests still being served publish their bookings.
    pub fn start(publisher: Arc<Publisher>, tasks: &Tasks) -> Self {
        let (queue, incoming) = mpsc::channel(MAX_REQUESTS_PER_MESSAGE * 16);
        tasks.spawn_until_done(run(publisher, incoming));
        Self { queue }
    }

    /// Publishes the request for `booking_id`, giving up at `deadline`:
    /// `Ok` once RabbitMQ confirmed the message that carries it.
    pub async fn publish(
        &self,
        show_id: Uuid,
        booking_id: Uuid,
        deadline: Instant,
    ) -> Result<(), PublishError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            show_id,
            booking_id,
            deadline,
            reply,
        };
        if self.queue.send(pending).await.is_err() {
            return Err(PublishError::Down);
        }
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(answer) => answer.unwrap_or(Err(PublishError::Down)),
            Err(_) => Err(PublishError::Timeout),
        }
    }
}

/// Gathers requests per shard and sends a shard's message whenever none of
/// its own is on the way. Even a request whose caller has left is sent: it
/// is recorded, and must reach its worker.
async fn run(publisher: Arc<Publisher>, mut incoming: mpsc::Receiver<Pending>) {
    let (done, mut finished) = mpsc::unbounded_channel::<u16>();
    let mut waiting: HashMap<u16, VecDeque<Pending>> = HashMap::new();
    let mut sending: HashSet<u16> = HashSet::new();
    let mut open = true;
    while open || !sending.is_empty() || !waiting.is_empty() {
        let ready: Vec<u16> = waiting
            .keys()
            .filter(|shard| !sending.contains(*shard))
            .copied()
            .collect();
        for shard in ready {
            let queue = waiting.get_mut(&shard).expect("listed");
            let take = queue.len().min(MAX_REQUESTS_PER_MESSAGE);
            let batch: Vec<Pending> = queue.drain(..take).collect();
            if queue.is_empty() {
                waiting.remove(&shard);
            }
            sending.insert(shard);
            let (publisher, done) = (publisher.clone(), done.clone());
            tokio::spawn(async move {
                send(&publisher, shard, batch).await;
                let _ = done.send(shard);
            });
        }
        tokio::select! {
            next = incoming.recv(), if open => match next {
                Some(pending) => {
                    let shard_of = |p: &Pending| publisher.shard_of(p.show_id);
                    waiting.entry(shard_of(&pending)).or_default().push_back(pending);
                    while let Ok(pending) = incoming.try_recv() {
                        waiting.entry(shard_of(&pending)).or_default().push_back(pending);
                    }
                }
                None => open = false,
            },
            Some(shard) = finished.recv() => {
                sending.remove(&shard);
            }
        }
    }
}

/// Sends one message for `batch` (all of `shard`) and answers each caller.
/// It keeps trying until the last caller's deadline; a caller with an
/// earlier one has stopped waiting by itself.
async fn send(publisher: &Publisher, shard: u16, batch: Vec<Pending>) {
    metrics::histogram!("api_requests_per_message").record(batch.len() as f64);
    let deadline = batch
        .iter()
        .map(|pending| pending.deadline)
        .max()
        .expect("a batch is never empty");
    let sent = publisher
        .send_requests_by(shard, per_show(&batch), deadline)
        .await;
    for pending in batch {
        let _ = pending.reply.send(sent.clone());
    }
}

/// The requests of `batch` grouped by show, shows and requests in the
/// order they came.
fn per_show(batch: &[Pending]) -> Vec<RequestBatch> {
    let mut shows: Vec<RequestBatch> = Vec::new();
    for pending in batch {
        match shows.iter_mut().find(|s| s.show_id == pending.show_id) {
            Some(show) => show.booking_ids.push(pending.booking_id),
            None => shows.push(RequestBatch {
                show_id: pending.show_id,
                booking_ids: vec![pending.booking_id],
            }),
        }
    }
    shows
}
