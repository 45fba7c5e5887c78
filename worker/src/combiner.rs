//! Group commit for a worker's shards. Each owned shard has its own task
//! (its own queue, order and hand-over), and with many shows on sale each
//! task's batches are small: a few requests, decided as fast as they come.
//! A transaction for each would make commits and per-statement overhead
//! the cost of a booking. So the shard tasks hand their runs here, and
//! whatever the shards have ready while one transaction runs is decided
//! together in the next: one transaction for all of them.
//!
//! Only the first try goes through here. If it fails, every shard decides
//! its own runs again itself, with retries and dead-lettering, so that one
//! shard's poison request or conflict never holds up another shard.

use std::sync::Arc;

use shared::messages::BookingCommand;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use uuid::Uuid;

use crate::apply::{Applier, Outcome};
use crate::payment::PaymentGateway;

/// Most commands decided in one transaction: a message can carry a few
/// hundred requests, and a transaction of tens of thousands would hold the
/// shows' decisions (and their answers) back for seconds.
pub const MAX_COMMANDS: usize = 1000;

/// One shard's runs (each one show's commands, in order) and where to
/// answer: each run's outcomes, or `None` to decide them itself.
struct Submission {
    runs: Vec<(Uuid, Vec<BookingCommand>)>,
    reply: oneshot::Sender<Option<Vec<Vec<Outcome>>>>,
}

#[derive(Clone)]
pub struct Combiner {
    submissions: mpsc::Sender<Submission>,
}

impl Combiner {
    /// Starts the deciding task; it ends when the last `Combiner` is
    /// dropped. One transaction at a time: with several, each took a
    /// share of what was ready, and smaller transactions cost more per
    /// booking than they saved in waiting (measured with 1,000 shows on
    /// sale: 2,400 against 3,600 decided/s with four).
    pub fn start<G: PaymentGateway>(applier: Arc<Applier<G>>) -> Self {
        let (submissions, incoming) = mpsc::channel(64);
        tokio::spawn(run(applier, incoming));
        Self { submissions }
    }

    /// Decides `runs` (shows of one shard) together with what other shards
    /// have ready, in one transaction tried once. `None` if that failed,
    /// or if there was nothing to decide them with but a single run: the
    /// caller then decides them on its own.
    pub async fn decide(
        &self,
        runs: Vec<(Uuid, Vec<BookingCommand>)>,
    ) -> Option<Vec<Vec<Outcome>>> {
        let (reply, answer) = oneshot::channel();
        self.submissions
            .send(Submission { runs, reply })
            .await
            .ok()?;
        answer.await.ok().flatten()
    }
}

/// Takes what is ready, decides it together, answers; again.
async fn run<G: PaymentGateway>(
    applier: Arc<Applier<G>>,
    mut incoming: mpsc::Receiver<Submission>,
) {
    while let Some(first) = incoming.recv().await {
        let mut commands = commands(&first);
        let mut together = vec![first];
        while commands < MAX_COMMANDS {
            let Ok(next) = incoming.try_recv() else {
                break;
            };
            commands += self::commands(&next);
            together.push(next);
        }
        let runs: Vec<(Uuid, &[BookingCommand])> = together
            .iter()
            .flat_map(|s| s.runs.iter().map(|(show, run)| (*show, run.as_slice())))
            .collect();
        if runs.len() < 2 {
            // A single show's run gets the caller's retries straight away.
            for submission in together {
                let _ = submission.reply.send(None);
            }
            continue;
        }
        let span = tracing::info_span!(
            "decide",
            shards = together.len(),
            shows = runs.len(),
            commands,
        );
        metrics::histogram!("worker_commands_per_transaction").record(commands as f64);
        match applier.apply_runs(&runs).instrument(span).await {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for submission in together {
                    let own = outcomes.by_ref().take(submission.runs.len()).collect();
                    let _ = submission.reply.send(Some(own));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "deciding the shards' shows together failed; each shard decides its own");
                for submission in together {
                    let _ = submission.reply.send(None);
                }
            }
        }
    }
}

fn commands(submission: &Submission) -> usize {
    submission.runs.iter().map(|(_, run)| run.len()).sum()
}
