//! The decision core: given a show's state and a run of commands in the
//! order they were accepted, what happens to each booking. No database, no
//! broker, no clock, no randomness: the same state and run always give the
//! same decisions, which is what makes the rules testable on their own
//! (unit and property tests below). [`crate::load`] reads the state and
//! [`crate::persist`] writes what this decides; the schema's constraints and version checks
//! would still refuse an oversell if these rules were wrong.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use shared::domain::{SeatStatus, ShowKind, Wanted};
use shared::lifecycle::{
    transition, BookingStatus, CommandKind, EventKind, Reason, Refusal, Transition,
};
use uuid::Uuid;

use crate::payment::{Charge, Refund};
use crate::seating::{self, Place};

/// A show's counters: what is held and booked out of its capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Show {
    pub kind: ShowKind,
    pub capacity: i32,
    pub held: i32,
    pub booked: i32,
    /// Most held + confirmed tickets one customer (email) may have.
    pub max_per_customer: Option<i32>,
    /// Waitlisted bookings left once it starts expire.
    pub starts_at: DateTime<Utc>,
    /// The last waiting-list number handed out.
    pub waitlist_tail: i64,
}

impl Show {
    pub fn available(&self) -> i32 {
        self.capacity - self.held - self.booked
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub status: SeatStatus,
    /// The one live booking that holds or owns it.
    pub owner: Option<Uuid>,
    pub place: Place,
    pub price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub show_id: Uuid,
    /// Who it is for: the email, lowercased (limits count per customer).
    pub customer: String,
    pub status: BookingStatus,
    pub reason: Option<Reason>,
    /// What it asks for: a quantity (general admission), the best
    /// available (until the worker picks its seats, which it then asks for
    /// as named seats), or named seats, which it holds or owns while live.
    pub wanted: Wanted,
    /// Join the waiting list rather than be refused when sold out.
    pub waitlist: bool,
    /// Place on the show's waiting list, once it joined.
    pub waitlist_seq: Option<i64>,
    /// Its number in the show's line, given when the API recorded it.
    pub accepted_seq: Option<i64>,
    pub total_cents: Option<i64>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub payment_ref: Option<String>,
}

impl Booking {
    pub fn quantity(&self) -> i32 {
        self.wanted.quantity()
    }

    /// The seats it asked for or was given (none yet for best available).
    pub fn seats(&self) -> &[Uuid] {
        self.wanted.seats()
    }
}

/// What the core knows: one show, the seats and bookings a run touches
/// (and every free seat when it may have to pick seats), and the head of
/// the show's waiting list when tickets may return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub show_id: Uuid,
    pub show: Show,
    pub seats: HashMap<Uuid, Seat>,
    pub bookings: HashMap<Uuid, Booking>,
    /// Held + confirmed tickets of this show per customer of the run (all
    /// of their live bookings, not only the run's); kept only when the show
    /// has a limit.
    pub customer_tickets: HashMap<String, i32>,
    /// Waitlisted bookings by join order: the head of each (section, size)
    /// queue, as much as the run could reach (see [`crate::load`]).
    pub waitlist: BTreeMap<i64, Uuid>,
    /// Queues of which only the head was read, with the last place read:
    /// anyone with a later place is behind unread bookings and cannot be
    /// offered anything in this run.
    pub waitlist_read_until: HashMap<Queue, i64>,
}

/// One queue of the waiting list: bookings of one size for one section
/// (`None`: any section, or general admission).
pub type Queue = (Option<String>, i32);

/// The waiting-list queue `booking` waits in.
pub fn queue_of(booking: &Booking) -> Queue {
    (
        booking.wanted.section().map(str::to_owned),
        booking.quantity(),
    )
}

/// A command as the core sees it: a confirm carries what the payment
/// gateway said (charged before the deciding transaction), or `None` if it
/// was not charged because the booking could not be confirmed anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Request(Uuid),
    Confirm {
        booking: Uuid,
        charge: Option<Charge>,
    },
    Cancel(Uuid),
    Expire(Uuid),
}

impl Command {
    pub fn booking(&self) -> Uuid {
        match self {
            Self::Request(id) | Self::Cancel(id) | Self::Expire(id) => *id,
            Self::Confirm { booking, .. } => *booking,
        }
    }

    pub fn kind(&self) -> CommandKind {
        match self {
            Self::Request(_) => CommandKind::Request,
            Self::Confirm { .. } => CommandKind::Confirm,
            Self::Cancel(_) => CommandKind::Cancel,
            Self::Expire(_) => CommandKind::Expire,
        }
    }
}

/// The time of the decision and how long a hold lasts.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub now: DateTime<Utc>,
    pub hold: chrono::Duration,
}

/// One booking's move, with what its event reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub booking: Uuid,
    pub command: CommandKind,
    pub from: BookingStatus,
    pub to: BookingStatus,
    pub reason: Option<Reason>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub event: EventKind,
    /// Issue one ticket per seat or unit.
    pub issue_tickets: bool,
}

impl Decision {
    /// Whether this move put tickets back on sale.
    pub fn returns_tickets(&self) -> bool {
        matches!(self.from, BookingStatus::Held | BookingStatus::Confirmed)
            && matches!(self.to, BookingStatus::Expired | BookingStatus::Cancelled)
    }
}

/// Why a command changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("unknown booking (withdrawn by the API)")]
    Unknown,
    #[error("booking of another show")]
    Misrouted,
    #[error("{0}")]
    Refused(Refusal),
    #[error("already done")]
    AlreadyDone,
    #[error("hold not due yet")]
    HoldNotDue,
    #[error("not charged")]
    NotCharged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Applied(Decision),
    Skipped(Skip),
}

/// What a run decided: one verdict per command, the offers the tickets it
/// returned made to waitlisted bookings, and the charges to refund.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decided {
    pub verdicts: Vec<Verdict>,
    pub offers: Vec<Decision>,
    pub refunds: Vec<Refund>,
}

impl Decided {
    /// Every move of the run: the commands' and then the offers'.
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Applied(d) => Some(d),
                Verdict::Skipped(_) => None,
            })
            .chain(&self.offers)
    }
}

/// The order to decide a run in: the commands' own order, except that the
/// requests among them take their slots in the order of the show's line
/// (`accepted_seq`). Requests recorded together are published by
/// concurrent tasks and can reach the queue a little out of line; deciding
/// them by number is what lets a booking's place in line never under-state
/// (see docs/ARCHITECTURE.md). Returns indexes into `commands`.
pub fn line_order(state: &State, commands: &[Command]) -> Vec<usize> {
    let slots: Vec<usize> = (0..commands.len())
        .filter(|&i| matches!(commands[i], Command::Request(_)))
        .collect();
    let mut requests = slots.clone();
    // Stable: unnumbered requests and redeliveries keep their order.
    requests.sort_by_key(|&i| {
        state
            .bookings
            .get(&commands[i].booking())
            .and_then(|b| b.accepted_seq)
            .unwrap_or(i64::MAX)
    });
    let mut order: Vec<usize> = (0..commands.len()).collect();
    for (slot, request) in slots.into_iter().zip(requests) {
        order[slot] = request;
    }
    order
}

/// Decides `commands` in order against `state`, updating it as it goes.
/// Tickets that return to sale are offered to the waiting list at once,
/// before the next command: nobody later in the run can take them first.
pub fn decide(state: &mut State, commands: &[Command], rules: &Rules) -> Decided {
    let mut decided = Decided::default();
    for command in commands {
        let verdict = decide_one(state, command, rules, &mut decided.refunds);
        if let Verdict::Applied(decision) = &verdict {
            if decision.returns_tickets() {
                offer(state, rules, &mut decided.offers);
            }
        }
        decided.verdicts.push(verdict);
    }
    decided
}

fn decide_one(
    state: &mut State,
    command: &Command,
    rules: &Rules,
    refunds: &mut Vec<Refund>,
) -> Verdict {
    let id = command.booking();
    // An approved charge that does not end in a confirmation is paid back,
    // unless it is the very charge that confirmed the booking already.
    let mut refund_charge = |booking: Option<&Booking>| {
        if let Command::Confirm {
            charge:
                Some(Charge::Approved {
                    reference,
                    amount_cents,
                }),
            ..
        } = command
        {
            if booking.and_then(|b| b.payment_ref.as_ref()) != Some(reference) {
                refunds.push(Refund {
                    booking: id,
                    reference: reference.clone(),
                    amount_cents: *amount_cents,
                });
            }
        }
    };
    let Some(booking) = state.bookings.get(&id) else {
        refund_charge(None);
        return Verdict::Skipped(Skip::Unknown);
    };
    if booking.show_id != state.show_id {
        refund_charge(Some(booking));
        return Verdict::Skipped(Skip::Misrouted);
    }
    let due = match booking.status {
        BookingStatus::Waitlisted => state.show.starts_at <= rules.now,
        _ => booking.hold_expires_at.is_some_and(|at| at <= rules.now),
    };
    let transition = match transition(booking.status, command.kind()) {
        Ok(t) => t,
        Err(refusal) => {
            refund_charge(Some(booking));
            return Verdict::Skipped(Skip::Refused(refusal));
        }
    };
    match (transition, command) {
        (Transition::AlreadyDone, _) => {
            refund_charge(Some(booking));
            Verdict::Skipped(Skip::AlreadyDone)
        }
        (Transition::Decide, _) => Verdict::Applied(request(state, id, rules)),
        // A confirm that arrives after the hold ran out expires it instead.
        (Transition::Charge, _) if due => {
            refund_charge(Some(booking));
            Verdict::Applied(end(
                state,
                id,
                CommandKind::Confirm,
                BookingStatus::Expired,
                Reason::HoldExpired,
                refunds,
            ))
        }
        (Transition::Charge, Command::Confirm { charge, .. }) => match charge {
            None => Verdict::Skipped(Skip::NotCharged),
            Some(Charge::Declined) => Verdict::Applied(declined(state, id)),
            Some(Charge::Approved { reference, .. }) => {
                Verdict::Applied(confirm(state, id, reference.clone()))
            }
        },
        (Transition::Charge, _) => unreachable!("only a confirm charges"),
        (Transition::Offer, _) => unreachable!("offers are not commands"),
        (Transition::End { to, .. }, _) if to == BookingStatus::Expired && !due => {
            Verdict::Skipped(Skip::HoldNotDue)
        }
        (Transition::End { to, reason }, _) => {
            Verdict::Applied(end(state, id, command.kind(), to, reason, refunds))
        }
    }
}

/// A queued request: hold its quantity or its seats (named, or the best
/// available), put it on the waiting list, or reject it. Seats and quantity
/// are all or nothing, and only what is free now counts, so a later request
/// never gets what an earlier one of the same size was refused (what
/// returns to sale within a run goes to the waiting list first). A request
/// that would take its customer past the show's limit is refused first.
fn request(state: &mut State, id: Uuid, rules: &Rules) -> Decision {
    let booking = &state.bookings[&id];
    let verdict = match &booking.wanted {
        _ if over_limit(state, booking) => Err(Reason::LimitExceeded),
        Wanted::Quantity(n) if state.show.available() >= *n => Ok(Vec::new()),
        Wanted::Quantity(_) => Err(Reason::SoldOut),
        Wanted::BestAvailable { .. } => best_available(state, booking).ok_or(Reason::SoldOut),
        Wanted::Seats(seats) => {
            let free = |seat: &Uuid| {
                state
                    .seats
                    .get(seat)
                    .is_some_and(|s| s.status == SeatStatus::Available)
            };
            if seats.iter().all(free) && state.show.available() >= booking.quantity() {
                Ok(seats.clone())
            } else {
                Err(Reason::SeatsUnavailable)
            }
        }
    };
    match verdict {
        Ok(seats) => hold(
            state,
            id,
            seats,
            rules,
            CommandKind::Request,
            EventKind::Held,
        ),
        Err(Reason::SoldOut) if booking.waitlist => join_waitlist(state, id),
        Err(reason) => apply(
            state,
            id,
            CommandKind::Request,
            BookingStatus::Rejected,
            Some(reason),
            None,
            EventKind::Rejected,
        ),
    }
}

/// Whether holding `booking` would take its customer past the show's limit.
fn over_limit(state: &State, booking: &Booking) -> bool {
    let owned = state
        .customer_tickets
        .get(&booking.customer)
        .copied()
        .unwrap_or(0);
    state
        .show
        .max_per_customer
        .is_some_and(|max| owned + booking.quantity() > max)
}

/// The seats a best-available booking would get now, if enough are free.
fn best_available(state: &State, booking: &Booking) -> Option<Vec<Uuid>> {
    if state.show.available() < booking.quantity() {
        return None;
    }
    let free: Vec<(Uuid, &Place)> = state
        .seats
        .iter()
        .filter(|(_, seat)| seat.status == SeatStatus::Available)
        .map(|(id, seat)| (*id, &seat.place))
        .collect();
    seating::pick(&free, booking.quantity() as usize, booking.wanted.section())
}

/// Holds `seats` (none for general admission) and the quantity for `id`.
/// Seats picked for a best-available booking become the seats it asks
/// for, priced as they are.
fn hold(
    state: &mut State,
    id: Uuid,
    seats: Vec<Uuid>,
    rules: &Rules,
    command: CommandKind,
    event: EventKind,
) -> Decision {
    let mut total = 0;
    for seat_id in &seats {
        let seat = state.seats.get_mut(seat_id).expect("checked free");
        seat.status = SeatStatus::Held;
        seat.owner = Some(id);
        total += seat.price_cents;
    }
    let booking = state.bookings.get_mut(&id).expect("known booking");
    if matches!(booking.wanted, Wanted::BestAvailable { .. }) {
        booking.wanted = Wanted::Seats(seats);
        booking.total_cents = Some(total);
    }
    let (quantity, customer) = (booking.quantity(), booking.customer.clone());
    state.show.held += quantity;
    *state.customer_tickets.entry(customer).or_default() += quantity;
    let expires = rules.now + rules.hold;
    apply(
        state,
        id,
        command,
        BookingStatus::Held,
        None,
        Some(expires),
        event,
    )
}

/// Sold out, and the request asked to wait: the next place in line.
fn join_waitlist(state: &mut State, id: Uuid) -> Decision {
    state.show.waitlist_tail += 1;
    let seq = state.show.waitlist_tail;
    state.waitlist.insert(seq, id);
    state
        .bookings
        .get_mut(&id)
        .expect("known booking")
        .waitlist_seq = Some(seq);
    apply(
        state,
        id,
        CommandKind::Request,
        BookingStatus::Waitlisted,
        None,
        None,
        EventKind::Waitlisted,
    )
}

/// Offers what is free to the waiting list in join order: each booking
/// that fits now is held. One that does not fit (too large, or its section
/// is full) keeps its place while later, smaller ones are served, so a
/// booking is never passed over by a later one of the same or larger size.
/// A customer whom the offer would take past the show's limit is passed
/// over and keeps waiting.
fn offer(state: &mut State, rules: &Rules, offers: &mut Vec<Decision>) {
    let waiting: Vec<(i64, Uuid)> = state.waitlist.iter().map(|(s, id)| (*s, *id)).collect();
    for (seq, id) in waiting {
        if state.show.available() == 0 {
            break;
        }
        let booking = &state.bookings[&id];
        debug_assert_eq!(
            transition(booking.status, CommandKind::Offer),
            Ok(Transition::Offer)
        );
        let unread_ahead = state
            .waitlist_read_until
            .get(&queue_of(booking))
            .is_some_and(|&last| seq > last);
        if unread_ahead || booking.quantity() > state.show.available() || over_limit(state, booking)
        {
            continue;
        }
        // Only requests by quantity wait: named seats are refused instead.
        let seats = match &booking.wanted {
            Wanted::BestAvailable { .. } => match best_available(state, booking) {
                Some(seats) => seats,
                None => continue,
            },
            Wanted::Quantity(_) | Wanted::Seats(_) => Vec::new(),
        };
        state.waitlist.remove(&seq);
        offers.push(hold(
            state,
            id,
            seats,
            rules,
            CommandKind::Offer,
            EventKind::Offered,
        ));
    }
}

/// An approved payment: the hold becomes a sale.
fn confirm(state: &mut State, id: Uuid, reference: String) -> Decision {
    let quantity = state.bookings[&id].quantity();
    set_owned_seats(state, id, SeatStatus::Booked);
    state.show.held -= quantity;
    state.show.booked += quantity;
    state.bookings.get_mut(&id).expect("known").payment_ref = Some(reference);
    let mut decision = apply(
        state,
        id,
        CommandKind::Confirm,
        BookingStatus::Confirmed,
        None,
        None,
        EventKind::Confirmed,
    );
    decision.issue_tickets = true;
    decision
}

/// A declined payment keeps the hold (until it expires), with the reason.
fn declined(state: &mut State, id: Uuid) -> Decision {
    let expires = state.bookings[&id].hold_expires_at;
    apply(
        state,
        id,
        CommandKind::Confirm,
        BookingStatus::Held,
        Some(Reason::PaymentDeclined),
        expires,
        EventKind::PaymentDeclined,
    )
}

/// Ends a booking and returns what it held or owned to sale; a paid
/// booking's charge is refunded.
fn end(
    state: &mut State,
    id: Uuid,
    command: CommandKind,
    to: BookingStatus,
    reason: Reason,
    refunds: &mut Vec<Refund>,
) -> Decision {
    let booking = &state.bookings[&id];
    let (from, quantity) = (booking.status, booking.quantity());
    match from {
        BookingStatus::Held => state.show.held -= quantity,
        BookingStatus::Confirmed => {
            state.show.booked -= quantity;
            refunds.extend(booking.payment_ref.as_ref().map(|reference| Refund {
                booking: id,
                reference: reference.clone(),
                amount_cents: booking.total_cents.unwrap_or(0),
            }));
        }
        _ => {}
    }
    if matches!(from, BookingStatus::Held | BookingStatus::Confirmed) {
        if let Some(owned) = state.customer_tickets.get_mut(&booking.customer) {
            *owned -= quantity;
        }
    }
    if let Some(seq) = booking.waitlist_seq {
        state.waitlist.remove(&seq);
    }
    set_owned_seats(state, id, SeatStatus::Available);
    let event = match to {
        BookingStatus::Expired => EventKind::Expired,
        _ => EventKind::Cancelled,
    };
    apply(state, id, command, to, Some(reason), None, event)
}

/// Moves the seats this booking holds or owns (not merely asked for).
fn set_owned_seats(state: &mut State, id: Uuid, status: SeatStatus) {
    let owner = (status != SeatStatus::Available).then_some(id);
    for seat_id in state.bookings[&id].seats() {
        if let Some(seat) = state.seats.get_mut(seat_id) {
            if seat.owner == Some(id) {
                seat.status = status;
                seat.owner = owner;
            }
        }
    }
}

fn apply(
    state: &mut State,
    id: Uuid,
    command: CommandKind,
    to: BookingStatus,
    reason: Option<Reason>,
    hold_expires_at: Option<DateTime<Utc>>,
    event: EventKind,
) -> Decision {
    let booking = state.bookings.get_mut(&id).expect("known booking");
    let from = booking.status;
    booking.status = to;
    booking.reason = reason;
    booking.hold_expires_at = hold_expires_at;
    Decision {
        booking: id,
        command,
        from,
        to,
        reason,
        hold_expires_at,
        event,
        issue_tickets: false,
    }
}

#[cfg(test)]
mod tests;
