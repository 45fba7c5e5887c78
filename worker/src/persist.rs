//! Writes what runs decided, inside the caller's transaction: the
//! difference between the rows [`Loaded`] read and the state after each
//! run, under each row's `version` (seats, show counters, bookings), then
//! the audit rows, the tickets, one outbox event per decision and the
//! refunds to make. What every run writes alike goes in one statement for
//! all the transaction's runs ([`Writes`]). Fewer rows updated than
//! written means someone changed a row since it was read: a
//! [`DecideError::Conflict`] that rolls the whole transaction back for a
//! retry.

use std::collections::HashMap;

use chrono::Utc;
use rand::Rng;
use shared::domain::{BookingStatus, Wanted};
use shared::lifecycle::CommandKind;
use shared::messages::{BookingEvent, BookingSnapshot};
use shared::store::bookings::deciding::{self as bookings, AuditEntry, Outcome};
use shared::store::{refunds, seats, shows, tickets};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::decide::{Decision, State};
use crate::error::DecideError;
use crate::load::Loaded;
use crate::outbox;
use crate::payment::Refund;

/// Who expired a hold, for the audit trail (otherwise the worker's name).
const EXPIRY_ACTOR: &str = "expiry-sweeper";

/// Whom the audit trail names for a run's decisions.
#[derive(Debug, Default)]
pub struct Actors<'a> {
    /// This worker: the actor of what nobody else asked for.
    pub worker: &'a str,
    /// Cancels an operator asked for on a customer's behalf, by booking.
    pub cancelled_by: HashMap<Uuid, &'a str>,
}

impl<'a> Actors<'a> {
    pub fn worker(worker: &'a str) -> Self {
        Self {
            worker,
            cancelled_by: HashMap::new(),
        }
    }

    fn of(&self, decision: &Decision) -> &'a str {
        match (decision.to, decision.command) {
            (BookingStatus::Expired, _) => EXPIRY_ACTOR,
            (_, CommandKind::Cancel) => self
                .cancelled_by
                .get(&decision.booking)
                .copied()
                .unwrap_or(self.worker),
            _ => self.worker,
        }
    }
}

/// The writes of a transaction's runs that go in one statement each,
/// whatever the number of shows: the show counters and the bookings (under
/// their versions), the audit rows and the outbox events. Gathered by
/// [`persist`] for each run, written by [`Writes::flush`].
#[derive(Default)]
pub struct Writes<'a> {
    counters: Vec<shows::CountersChange>,
    outcomes: Vec<Outcome<'a>>,
    audit: Vec<AuditEntry<'a>>,
    events: Vec<BookingEvent>,
}

impl Writes<'_> {
    /// Writes everything gathered; a version that moved since it was read
    /// is a [`DecideError::Conflict`], and the caller rolls back.
    pub async fn flush(self, conn: &mut PgConnection) -> Result<(), DecideError> {
        if !shows::persist_counters(conn, &self.counters).await? {
            return Err(DecideError::Conflict("show"));
        }
        if !bookings::persist(conn, &self.outcomes).await? {
            return Err(DecideError::Conflict("booking"));
        }
        bookings::audit(conn, &self.audit).await?;
        outbox::insert_events(conn, &self.events).await?;
        Ok(())
    }
}

/// Writes the difference between what `loaded` read and `after` that is
/// particular to the run (seats, tickets), and adds the rest (counters,
/// bookings, audit rows, events) to `writes`.
pub async fn persist<'a>(
    conn: &mut PgConnection,
    writes: &mut Writes<'a>,
    loaded: &'a Loaded,
    after: &'a State,
    decisions: &[&Decision],
    refunds: &[Refund],
    actors: &Actors<'a>,
) -> Result<(), DecideError> {
    persist_seats(conn, loaded, after).await?;
    persist_show(writes, loaded, after);
    persist_bookings(writes, loaded, after, decisions);
    persist_picked_seats(conn, loaded, after).await?;
    writes.audit.extend(decisions.iter().map(|d| AuditEntry {
        booking_id: d.booking,
        show_id: after.show_id,
        from: d.from,
        to: d.to,
        reason: d.reason,
        actor: actors.of(d),
    }));
    let mut tickets = issue_tickets(conn, after, decisions).await?;
    writes
        .events
        .extend(decisions.iter().enumerate().map(|(i, d)| {
            // What ending this booking pays back, if anything.
            let refund = refunds
                .iter()
                .filter(|r| d.returns_tickets() && r.booking == d.booking)
                .map(|r| r.amount_cents)
                .sum::<i64>();
            let tickets = tickets.remove(&i).unwrap_or_default();
            event(
                loaded,
                after,
                d,
                tickets,
                Some(refund).filter(|&cents| cents > 0),
            )
        }));
    Ok(())
}

async fn persist_seats(
    conn: &mut PgConnection,
    loaded: &Loaded,
    after: &State,
) -> Result<(), DecideError> {
    let changes: Vec<seats::SeatChange> = after
        .seats
        .iter()
        .filter(|(id, seat)| loaded.state.seats.get(id) != Some(seat))
        .map(|(id, seat)| seats::SeatChange {
            id: *id,
            version: loaded.seats[id].version,
            status: seat.status,
            owner: seat.owner,
        })
        .collect();
    if !seats::persist(conn, &changes).await? {
        return Err(DecideError::Conflict("seat"));
    }
    Ok(())
}

fn persist_show(writes: &mut Writes<'_>, loaded: &Loaded, after: &State) {
    if after.show == loaded.state.show {
        return;
    }
    writes.counters.push(shows::CountersChange {
        id: after.show_id,
        version: loaded.show.version,
        held: after.show.held - loaded.state.show.held,
        booked: after.show.booked - loaded.state.show.booked,
        waitlist_tail: after.show.waitlist_tail,
    });
}

/// Each changed booking once, in its final state for the run.
fn persist_bookings<'a>(
    writes: &mut Writes<'a>,
    loaded: &Loaded,
    after: &'a State,
    decisions: &[&Decision],
) {
    let mut ids: Vec<Uuid> = decisions.iter().map(|d| d.booking).collect();
    ids.sort_unstable();
    ids.dedup();
    writes.outcomes.extend(ids.iter().map(|id| {
        let b = &after.bookings[id];
        Outcome {
            id: *id,
            version: loaded.bookings[id].version,
            status: b.status,
            reason: b.reason,
            hold_expires_at: b.hold_expires_at,
            payment_ref: b.payment_ref.as_deref(),
            total_cents: b.total_cents,
            waitlist_seq: b.waitlist_seq,
        }
    }));
}

/// The seats the worker picked for best-available bookings become
/// theirs, as named seats are from the start.
async fn persist_picked_seats(
    conn: &mut PgConnection,
    loaded: &Loaded,
    after: &State,
) -> Result<(), sqlx::Error> {
    let (bookings, seats): (Vec<Uuid>, Vec<Uuid>) = after
        .bookings
        .iter()
        .filter(|(id, _)| {
            matches!(
                loaded.state.bookings[*id].wanted,
                Wanted::BestAvailable { .. }
            )
        })
        .flat_map(|(id, b)| b.seats().iter().map(move |seat| (*id, *seat)))
        .unzip();
    bookings::add_seats(conn, after.show_id, &bookings, &seats).await
}

/// One ticket per seat (in seat order) or per unit, for each confirm;
/// returns the codes by decision index.
async fn issue_tickets(
    conn: &mut PgConnection,
    after: &State,
    decisions: &[&Decision],
) -> Result<HashMap<usize, Vec<String>>, sqlx::Error> {
    let mut codes_of = HashMap::new();
    let (mut bookings, mut codes, mut seats) = (Vec::new(), Vec::new(), Vec::new());
    for (i, d) in decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.issue_tickets)
    {
        let booking = &after.bookings[&d.booking];
        let mine: Vec<String> = (0..booking.quantity()).map(|_| ticket_code()).collect();
        for (n, code) in mine.iter().enumerate() {
            bookings.push(d.booking);
            codes.push(code.clone());
            seats.push(booking.seats().get(n).copied());
        }
        codes_of.insert(i, mine);
    }
    tickets::issue(conn, after.show_id, &codes, &bookings, &seats).await?;
    Ok(codes_of)
}

/// The event of one decision, with the booking as it was right then.
fn event(
    loaded: &Loaded,
    after: &State,
    d: &Decision,
    tickets: Vec<String>,
    refund_cents: Option<i64>,
) -> BookingEvent {
    let row = &loaded.bookings[&d.booking];
    let booking = &after.bookings[&d.booking];
    BookingEvent {
        event_id: Uuid::now_v7(),
        kind: d.event,
        occurred_at: Utc::now(),
        booking: BookingSnapshot {
            id: d.booking,
            show_id: after.show_id,
            show_name: loaded.show.name.clone(),
            venue: loaded.show.venue.clone(),
            starts_at: loaded.show.starts_at,
            email: row.email.clone(),
            name: row.name.clone(),
            status: d.to,
            reason: d.reason,
            quantity: booking.quantity(),
            seats: booking
                .seats()
                .iter()
                .map(|s| loaded.seats[s].label.clone())
                .collect(),
            total_cents: booking.total_cents,
            hold_expires_at: d.hold_expires_at,
            tickets,
            refund_cents,
        },
    }
}

/// The refunds a run decided, in its transaction: from here the refund
/// sweeper ([`crate::refunds`]) sees them through.
pub async fn persist_refunds(conn: &mut PgConnection, owed: &[Refund]) -> Result<(), sqlx::Error> {
    let owed: Vec<refunds::Owed> = owed
        .iter()
        .map(|r| refunds::Owed {
            reference: &r.reference,
            booking_id: r.booking,
            amount_cents: r.amount_cents,
        })
        .collect();
    refunds::record(conn, &owed).await
}

/// Ticket codes: short enough to read out, random enough not to guess.
fn ticket_code() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let code: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("TKT-{}-{}-{}", &code[..4], &code[4..8], &code[8..])
}

#[cfg(test)]
mod tests {
    use super::ticket_code;

    #[test]
    fn ticket_codes_are_readable_and_distinct() {
        let a = ticket_code();
        assert_eq!(a.len(), "TKT-XXXX-XXXX-XXXX".len());
        assert!(a.starts_with("TKT-"));
        assert!(!a.contains('0') && !a.contains('O') && !a.contains('1') && !a.contains('I'));
        assert_ne!(a, ticket_code());
    }
}
