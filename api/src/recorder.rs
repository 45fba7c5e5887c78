//! Group commit for new bookings. Requests arriving together are written
//! in one multi-row statement and one commit (idempotency keys, bookings,
//! requested seats, first audit rows), instead of a statement and a commit
//! each: on an on-sale minute that is most of the API's database cost.
//! Every caller still waits for its own row to be committed before it
//! publishes and answers, and a row PostgreSQL refuses fails only its own
//! request (see [`isolate`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::domain::BookingRequest;
use shared::service::Tasks;
use shared::store::bookings::{record, view, BookingView, Lines};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Rows written together at most.
const MAX_BATCH: usize = 256;
/// Batches being written at once (each on its own connection).
const WRITERS: usize = 4;

/// A booking to record as `queued`, with its idempotency key and request
/// hash if the client sent a key.
pub struct NewBooking {
    pub request: BookingRequest,
    pub key: Option<(String, Vec<u8>)>,
}

/// How recording went for one booking.
#[derive(Clone)]
pub enum Recorded {
    /// Written; the booking was created at this time and stands at this
    /// place in its show's line.
    Created {
        at: DateTime<Utc>,
        position: Option<i64>,
    },
    /// Its idempotency key was taken already: nothing written.
    KeyTaken,
}

/// A booking's own outcome: recorded, or the error that kept it out.
pub type Outcome = Result<Recorded, Arc<sqlx::Error>>;
type Reply = oneshot::Sender<Outcome>;

#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
}

impl Recorder {
    /// Starts the batching task on `tasks`. It ends once the last
    /// `Recorder` is dropped and what it holds is written, not at the
    /// signal: requests still being served record their bookings.
    pub fn start(db: PgPool, lines: Arc<Lines>, tasks: &Tasks) -> Self {
        let (queue, incoming) = mpsc::channel(MAX_BATCH * WRITERS * 4);
        tasks.spawn_until_done(run(db, lines, incoming));
        Self { queue }
    }

    /// Records one booking. An error is this booking's own (the rest of its
    /// batch is written without it) unless it is an outage, which all share.
    pub async fn record(&self, request: BookingRequest, key: Option<(String, Vec<u8>)>) -> Outcome {
        let (reply, answer) = oneshot::channel();
        if self
            .queue
            .send((NewBooking { request, key }, reply))
            .await
            .is_err()
        {
            return Err(Arc::new(sqlx::Error::PoolClosed));
        }
        answer
            .await
            .unwrap_or(Err(Arc::new(sqlx::Error::PoolClosed)))
    }
}

type Pending = (NewBooking, Reply);

/// Forms batches from what is waiting whenever a writer is free, taking
/// rows in arrival order but none of a show that a batch in flight is
/// writing. Each batch bumps its shows' line tails (see [`insert`]), and
/// that row lock would make a second batch of the same show wait for the
/// first one's commit anyway; held back here instead, its rows join one
/// bigger batch that starts the moment the show is free. Other shows'
/// batches still commit side by side.
async fn run(db: PgPool, lines: Arc<Lines>, mut incoming: mpsc::Receiver<Pending>) {
    let (done, mut finished) = mpsc::unbounded_channel::<Vec<Uuid>>();
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    let mut busy: HashSet<Uuid> = HashSet::new();
    let mut writing = 0;
    let mut open = true;
    while open || writing > 0 || !waiting.is_empty() {
        while writing < WRITERS {
            let batch = take_batch(&mut waiting, &busy);
            if batch.is_empty() {
                break;
            }
            let shows: Vec<Uuid> = batch.iter().map(|(row, _)| row.request.show_id.0).collect();
            busy.extend(&shows);
            writing += 1;
            let (db, lines, done) = (db.clone(), lines.clone(), done.clone());
            tokio::spawn(async move {
                write(&db, &lines, batch).await;
                let _ = done.send(shows);
            });
        }
        tokio::select! {
            next = incoming.recv(), if open => match next {
                Some(item) => {
                    waiting.push_back(item);
                    while let Ok(item) = incoming.try_recv() {
                        waiting.push_back(item);
                    }
                }
                None => open = false,
            },
            Some(shows) = finished.recv() => {
                writing -= 1;
                for show in shows {
                    busy.remove(&show);
                }
            }
        }
    }
}

/// Up to [`MAX_BATCH`] waiting rows, oldest first, of shows not `busy`.
/// Called on every arrival: while all waiting rows belong to busy shows (a
/// one-show sale between two commits) it only looks, moving nothing.
fn take_batch(waiting: &mut VecDeque<Pending>, busy: &HashSet<Uuid>) -> Vec<Pending> {
    if waiting
        .iter()
        .all(|(row, _)| busy.contains(&row.request.show_id.0))
    {
        return Vec::new();
    }
    let mut batch = Vec::new();
    let mut kept = VecDeque::with_capacity(waiting.len());
    while let Some(item) = waiting.pop_front() {
        if batch.len() < MAX_BATCH && !busy.contains(&item.0.request.show_id.0) {
            batch.push(item);
        } else {
            kept.push_back(item);
        }
    }
    *waiting = kept;
    batch
}

/// Writes a batch and answers each row. Rows that an outage failed (a
/// failover breaks connections and refuses new ones until the proxy finds
/// the new primary) are written again, after pauses from 25 ms doubling to
/// 400 ms (with jitter), for as long as their callers wait: a caller's own time limit
/// ends its wait with a `503`, and its row is then left out of the next
/// try. A row that failed may have committed all the same (the commit was
/// sent, the answer lost): each later try first looks its id up, and a row
/// found is answered as recorded, never written twice.
async fn write(db: &PgPool, lines: &Lines, batch: Vec<(NewBooking, Reply)>) {
    metrics::histogram!("api_record_batch_size").record(batch.len() as f64);
    let mut batch = batch;
    let mut pauses = shared::retry::delays_up_to(FIRST_PAUSE, LONGEST_PAUSE);
    let mut again = false;
    loop {
        let (rows, replies): (Vec<NewBooking>, Vec<Reply>) = batch.into_iter().unzip();
        let mut outcomes = Vec::with_capacity(rows.len());
        isolate(db, lines, &rows, again, &mut outcomes).await;
        batch = Vec::new();
        for ((row, reply), outcome) in rows.into_iter().zip(replies).zip(outcomes) {
            match outcome {
                Err(err) if in_doubt(&err, again) && !reply.is_closed() => batch.push((row, reply)),
                outcome => {
                    let _ = reply.send(outcome);
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let pause = pauses.next().unwrap_or(LONGEST_PAUSE);
        metrics::counter!("api_record_retries_total").increment(1);
        tracing::debug!(
            rows = batch.len(),
            ?pause,
            "recording again after an outage"
        );
        tokio::time::sleep(pause).await;
        again = true;
    }
}

/// The first pause before a batch is written again after an outage.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
/// The longest pause between tries.
const LONGEST_PAUSE: Duration = Duration::from_millis(400);

/// Whether a row's failure leaves it worth another try: an outage, or (on a
/// later try) its id taken by an earlier try that committed while this one
/// looked for it.
fn in_doubt(err: &sqlx::Error, again: bool) -> bool {
    shared::db::is_transient(err) || (again && record::is_recorded_already(err))
}

/// Writes `rows`, appending one outcome per row in order. The statement is
/// all or nothing, so one row that PostgreSQL refuses would fail everyone
/// written with it: after such a failure each half is written again on its
/// own, down to the row that fails alone (k bad rows in n cost about
/// 2·k·log2(n) more statements). An outage is not the rows' fault, and
/// splitting would only hammer a database that is away: every row gets it.
/// `again`: an earlier try may have recorded some of them (see [`write`]).
async fn isolate(
    db: &PgPool,
    lines: &Lines,
    rows: &[NewBooking],
    again: bool,
    outcomes: &mut Vec<Outcome>,
) {
    let err = match insert(db, lines, rows, again).await {
        Ok(created) => {
            outcomes.extend(rows.iter().map(|row| {
                Ok(created
                    .get(&row.request.id.0)
                    .map_or(Recorded::KeyTaken, |created| created.clone()))
            }));
            return;
        }
        Err(err) => err,
    };
    if rows.len() == 1 || in_doubt(&err, again) {
        let err = Arc::new(err);
        outcomes.extend(rows.iter().map(|_| Err(err.clone())));
        return;
    }
    metrics::counter!("api_record_batch_splits_total").increment(1);
    tracing::debug!(rows = rows.len(), error = %err, "a batch failed; writing its halves apart");
    let (left, right) = rows.split_at(rows.len() / 2);
    Box::pin(isolate(db, lines, left, again, outcomes)).await;
    Box::pin(isolate(db, lines, right, again, outcomes)).await;
}

/// Records `rows` in one statement (see [`record::record`]); then, once
/// committed, reads where each stands in its show's line. `again`: those
/// an earlier try recorded are looked up, not written.
async fn insert(
    db: &PgPool,
    lines: &Lines,
    rows: &[NewBooking],
    again: bool,
) -> Result<HashMap<Uuid, Recorded>, sqlx::Error> {
    let mut created = if again {
        let ids: Vec<Uuid> = rows.iter().map(|row| row.request.id.0).collect();
        record::recorded(db, &ids).await?
    } else {
        HashMap::new()
    };
    let new: Vec<record::NewRow> = rows
        .iter()
        .filter(|row| !created.contains_key(&row.request.id.0))
        .map(|NewBooking { request: r, key }| record::NewRow {
            id: r.id.0,
            show_id: r.show_id.0,
            email: r.email.as_str(),
            name: &r.name,
            quantity: r.wanted.quantity(),
            total_cents: r.total.map(|c| c.0),
            seat_ids: r.wanted.seats(),
            section: r.wanted.section(),
            waitlist: r.waitlist,
            key: key.as_ref().map(|(k, h)| (k.as_str(), h.as_slice())),
        })
        .collect();
    if !new.is_empty() {
        created.extend(record::record(db, &new).await?);
    }
    // Read after the commit: the statement's own snapshot may miss a
    // batch that took numbers before it (and committed while it waited for
    // the tail), and would under-state.
    let mut shows: Vec<Uuid> = created.values().map(|c| c.show_id).collect();
    shows.sort_unstable();
    shows.dedup();
    let heads = match view::line_heads(db, lines, &shows).await {
        Ok(heads) => heads,
        Err(err) => {
            // Committed already: the answer goes without a place rather
            // than failing a recorded booking.
            tracing::warn!(error = %err, "could not read the lines' heads");
            HashMap::new()
        }
    };
    Ok(created
        .into_iter()
        .map(|(id, c)| {
            let position = c
                .accepted_seq
                .zip(heads.get(&c.show_id))
                .map(|(seq, head)| BookingView::place(seq, *head));
            let at = c.created_at;
            (id, Recorded::Created { at, position })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use shared::domain::{BookingId, Cents, CustomerEmail, ShowId, Wanted};

    use super::*;

    fn pending(show_id: Uuid) -> Pending {
        let request = BookingRequest {
            id: BookingId::random(),
            show_id: ShowId(show_id),
            email: CustomerEmail::parse("fan@example.com").unwrap(),
            name: "Fan".to_owned(),
            wanted: Wanted::Quantity(1),
            waitlist: false,
            total: Some(Cents(100)),
        };
        (NewBooking { request, key: None }, oneshot::channel().0)
    }

    fn ids<'a>(rows: impl IntoIterator<Item = &'a Pending>) -> Vec<BookingId> {
        rows.into_iter().map(|(row, _)| row.request.id).collect()
    }

    #[test]
    fn rows_of_busy_shows_wait_in_their_order_and_the_others_go_oldest_first() {
        let (busy_show, free_show) = (Uuid::new_v4(), Uuid::new_v4());
        let mut waiting: VecDeque<Pending> = [busy_show, free_show, busy_show, free_show]
            .into_iter()
            .map(pending)
            .collect();
        let before = ids(&waiting);
        let busy = HashSet::from([busy_show]);

        let batch = take_batch(&mut waiting, &busy);

        assert_eq!(ids(&batch), [before[1], before[3]]);
        assert_eq!(ids(&waiting), [before[0], before[2]]);
        assert!(take_batch(&mut waiting, &busy).is_empty());
        assert_eq!(ids(&waiting), [before[0], before[2]]);
    }

    #[test]
    fn a_batch_takes_at_most_max_batch_rows() {
        let show = Uuid::new_v4();
        let mut waiting: VecDeque<Pending> = (0..MAX_BATCH + 3).map(|_| pending(show)).collect();
        let first = waiting[0].0.request.id;

        let batch = take_batch(&mut waiting, &HashSet::new());

        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(batch[0].0.request.id, first);
        assert_eq!(waiting.len(), 3);
    }
}
