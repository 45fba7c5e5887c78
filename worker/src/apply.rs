//! Applies a run of one show's commands, or the runs of several shows
//! together, to the database: charges confirms (outside any transaction: a
//! gateway call must not hold row locks), then in one transaction loads
//! ([`crate::load`]), decides ([`crate::decide`]) and persists
//! ([`crate::persist`]) each run. The refunds a run decides are rows of
//! that transaction; [`crate::refunds`] makes them.

use shared::lifecycle::{transition, CommandKind, EventKind, Transition};
use shared::messages::BookingCommand;
use shared::store::bookings::deciding as bookings;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::decide::{self, Command, Decided, Decision, Rules, Skip, Verdict};
use crate::error::DecideError;
use crate::load::Loaded;
use crate::payment::{Charge, PaymentGateway};
use crate::persist::{self, Actors};

/// What a command did, for the consumer's metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The booking moved; this is the event it produced.
    Applied(EventKind),
    /// Nothing to do: a redelivery, or a command that no longer applies.
    Skipped(Skip),
}

pub struct Applier<G> {
    db: PgPool,
    gateway: G,
    hold: chrono::Duration,
    /// This worker's name in the audit trail.
    actor: String,
}

impl<G: PaymentGateway> Applier<G> {
    pub fn new(db: PgPool, gateway: G, hold: std::time::Duration, actor: String) -> Self {
        let hold = chrono::Duration::from_std(hold).expect("hold duration fits");
        Self {
            db,
            gateway,
            hold,
            actor,
        }
    }

    /// Decides `commands` (all for `show_id`, in the order accepted) in one
    /// transaction. Safe to call again with the same commands: a redelivery
    /// finds its bookings moved on and is skipped.
    pub async fn apply(
        &self,
        show_id: Uuid,
        commands: &[BookingCommand],
    ) -> Result<Vec<Outcome>, DecideError> {
        let mut outcomes = self.apply_runs(&[(show_id, commands)]).await?;
        Ok(outcomes.pop().expect("one run, one result"))
    }

    /// Decides several shows' runs, each in its order, in one transaction:
    /// one commit for them all. With many shows on sale a shard's batch
    /// holds many short runs, and a commit for each would make the
    /// database's commit rate the limit. All or nothing, and as safe to
    /// repeat as [`Self::apply`].
    pub async fn apply_runs(
        &self,
        runs: &[(Uuid, &[BookingCommand])],
    ) -> Result<Vec<Vec<Outcome>>, DecideError> {
        let mut prepared = Vec::with_capacity(runs.len());
        for (_, commands) in runs {
            let mut run = Vec::with_capacity(commands.len());
            for command in *commands {
                run.push(self.prepare(command).await?);
            }
            prepared.push(run);
        }
        let rules = Rules {
            now: chrono::Utc::now(),
            hold: self.hold,
        };
        let actors = Actors {
            worker: &self.actor,
            cancelled_by: runs
                .iter()
                .flat_map(|(_, commands)| commands.iter())
                .filter_map(|command| match command {
                    BookingCommand::Cancel {
                        booking_id,
                        by: Some(by),
                        ..
                    } => Some((*booking_id, by.as_str())),
                    _ => None,
                })
                .collect(),
        };
        let runs: Vec<(Uuid, &[Command])> = runs
            .iter()
            .zip(&prepared)
            .map(|((show_id, _), run)| (*show_id, run.as_slice()))
            .collect();
        let mut tx = self.db.begin().await?;
        let decided = decide_runs(&mut tx, &runs, &rules, &actors).await?;
        tx.commit().await?;
        Ok(decided
            .into_iter()
            .map(|decided| {
                decided
                    .verdicts
                    .into_iter()
                    .map(|verdict| match verdict {
                        Verdict::Applied(d) => Outcome::Applied(d.event),
                        Verdict::Skipped(why) => Outcome::Skipped(why),
                    })
                    .collect()
            })
            .collect())
    }

    /// See [`bookings::mark_dead_lettered`].
    pub async fn mark_dead_lettered(&self, booking_id: Uuid) -> Result<(), sqlx::Error> {
        bookings::mark_dead_lettered(&self.db, booking_id).await
    }

    /// The core's view of a command; a confirm of a booking that can be
    /// confirmed is charged here (idempotently per booking, so a retry after
    /// a conflict or a crash charges once).
    async fn prepare(&self, command: &BookingCommand) -> Result<Command, DecideError> {
        Ok(match command {
            BookingCommand::Request { booking_id, .. } => Command::Request(*booking_id),
            BookingCommand::Cancel { booking_id, .. } => Command::Cancel(*booking_id),
            BookingCommand::Expire { booking_id, .. } => Command::Expire(*booking_id),
            BookingCommand::Confirm {
                booking_id,
                payment_token,
                ..
            } => Command::Confirm {
                booking: *booking_id,
                charge: self.charge(*booking_id, payment_token).await?,
            },
        })
    }

    async fn charge(&self, booking_id: Uuid, token: &str) -> Result<Option<Charge>, DecideError> {
        let Some(booking) = bookings::to_charge(&self.db, booking_id).await? else {
            return Ok(None);
        };
        let chargeable = transition(booking.status, CommandKind::Confirm) == Ok(Transition::Charge)
            && booking.due != Some(true);
        if !chargeable {
            return Ok(None);
        }
        let charge = self
            .gateway
            .charge(booking_id, booking.total_cents.unwrap_or(0), token)
            .await?;
        Ok(Some(charge))
    }
}

/// Loads the state of `show_id` and of the bookings `commands` name,
/// decides the run and persists the decisions, all in `conn`'s
/// transaction. The caller commits (or rolls back on an error).
pub async fn apply_run(
    conn: &mut PgConnection,
    show_id: Uuid,
    commands: &[Command],
    rules: &Rules,
    actors: &Actors<'_>,
) -> Result<Decided, DecideError> {
    let mut decided = decide_runs(conn, &[(show_id, commands)], rules, actors).await?;
    Ok(decided.pop().expect("one run, one result"))
}

/// [`apply_run`] for several shows' runs in one transaction, each in its
/// order: one statement for each of the reads and writes that every run
/// makes alike, however many shows (see [`Loaded::read_runs`] and
/// [`persist::Writes`]).
async fn decide_runs(
    conn: &mut PgConnection,
    runs: &[(Uuid, &[Command])],
    rules: &Rules,
    actors: &Actors<'_>,
) -> Result<Vec<Decided>, DecideError> {
    let loaded = Loaded::read_runs(conn, runs).await?;
    let mut done = Vec::with_capacity(runs.len());
    for ((_, commands), loaded) in runs.iter().zip(loaded) {
        let mut state = loaded.state.clone();
        let order = decide::line_order(&state, commands);
        let in_line: Vec<Command> = order.iter().map(|&i| commands[i].clone()).collect();
        let decided = decide::decide(&mut state, &in_line, rules);
        done.push((loaded, state, order, decided));
    }
    let mut writes = persist::Writes::default();
    for (loaded, state, _, decided) in &done {
        let decisions: Vec<&Decision> = decided.decisions().collect();
        if !decisions.is_empty() {
            persist::persist(
                conn,
                &mut writes,
                loaded,
                state,
                &decisions,
                &decided.refunds,
                actors,
            )
            .await?;
        }
        // Even a skipped command can leave a charge to pay back.
        persist::persist_refunds(conn, &decided.refunds).await?;
    }
    writes.flush(conn).await?;
    Ok(done
        .into_iter()
        .map(|(_, _, order, mut decided)| {
            // Written in the order decided; answered in the order given.
            let mut verdicts: Vec<Option<Verdict>> = (0..order.len()).map(|_| None).collect();
            for (&i, verdict) in order.iter().zip(decided.verdicts.drain(..)) {
                verdicts[i] = Some(verdict);
            }
            decided.verdicts = verdicts.into_iter().flatten().collect();
            decided
        })
        .collect())
}
