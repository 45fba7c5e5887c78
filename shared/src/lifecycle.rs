//! The booking lifecycle in one place: the statuses, the reasons, the
//! commands that move a booking and the events they produce, and the one
//! function ([`transition`]) that says what a command does to a booking in
//! a given status. The API's `409`s and the worker's decisions both come
//! from it; `docs/ARCHITECTURE.md` shows [`table`] (a test keeps the two
//! equal).

use crate::names::named_enum;

named_enum! {
    /// Where a booking is in its lifecycle (docs/API.md#booking-lifecycle).
    pub enum BookingStatus {
        Queued = "queued",
        /// Sold out when decided, waiting for returned tickets in join order.
        Waitlisted = "waitlisted",
        Held = "held",
        Confirmed = "confirmed",
        Rejected = "rejected",
        Expired = "expired",
        Cancelled = "cancelled",
    }
}

impl BookingStatus {
    /// A booking in a final state never changes again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Rejected | Self::Expired | Self::Cancelled)
    }
}

named_enum! {
    /// Why a booking was rejected or ended, or why its last confirm failed.
    pub enum Reason {
        SoldOut = "sold_out",
        SeatsUnavailable = "seats_unavailable",
        PaymentDeclined = "payment_declined",
        HoldExpired = "hold_expired",
        CancelledByCustomer = "cancelled_by_customer",
        /// The customer would pass the show's `max_tickets_per_customer`.
        LimitExceeded = "limit_exceeded",
        /// The show started while the booking was still on the waiting list.
        ShowStarted = "show_started",
    }
}

named_enum! {
    /// What can be asked of a booking (the `type` of a booking command).
    pub enum CommandKind {
        /// Hold the seats or quantity of a queued booking, put it on the
        /// waiting list, or reject it.
        Request = "request",
        /// Take payment for a held booking and confirm it.
        Confirm = "confirm",
        /// End a booking that is queued, waitlisted, held or confirmed.
        Cancel = "cancel",
        /// End a hold past its expiry, or a place on the waiting list once
        /// the show starts (from the expiry sweep).
        Expire = "expire",
        /// Offer returned tickets to a waitlisted booking. Never sent on its
        /// own: the worker decides it in the run that returned the tickets.
        Offer = "offer",
    }
}

named_enum! {
    /// What happened to a booking: one event per state change, written to
    /// the outbox in the transaction that made it.
    pub enum EventKind {
        Held = "held",
        Rejected = "rejected",
        Waitlisted = "waitlisted",
        /// Returned tickets are held for a waitlisted booking.
        Offered = "offered",
        Confirmed = "confirmed",
        PaymentDeclined = "payment_declined",
        Cancelled = "cancelled",
        Expired = "expired",
        /// The show starts soon (`REMINDER_LEAD_SECONDS`); from the
        /// worker's reminder sweep rather than from a command.
        Reminder = "reminder",
    }
}

impl EventKind {
    /// Routing key on the `booking.events` topic exchange.
    pub fn routing_key(self) -> String {
        format!("booking.{}", self.as_str())
    }
}

/// What a command does to a booking in a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Decide against the show's availability: `held`, or `rejected` (or
    /// `waitlisted` if the request asked to wait).
    Decide,
    /// Hold returned tickets for a waitlisted booking, if they fit.
    Offer,
    /// Charge the payment: `confirmed`, or still `held` with
    /// `payment_declined`; `expired` if the hold ran out first.
    Charge,
    /// End the booking in `to` for `reason`, returning whatever it holds or
    /// owns to sale.
    End { to: BookingStatus, reason: Reason },
    /// The booking is already where the command leads (a repeat).
    AlreadyDone,
}

impl Transition {
    /// The statuses this transition can lead to.
    pub fn targets(self, from: BookingStatus) -> &'static [BookingStatus] {
        use BookingStatus::*;
        match self {
            Self::Decide => &[Held, Rejected, Waitlisted],
            Self::Offer => &[Held],
            Self::Charge => &[Confirmed, Held, Expired],
            Self::End { to: Expired, .. } => &[Expired],
            Self::End { .. } => &[Cancelled],
            Self::AlreadyDone => match from {
                Confirmed => &[Confirmed],
                _ => &[Cancelled],
            },
        }
    }
}

/// Why a command does not apply to a booking in its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the booking was already decided")]
    AlreadyDecided,
    #[error("only a held booking can be confirmed")]
    NotHeld,
    #[error("only a queued, waitlisted, held or confirmed booking can be cancelled")]
    NotCancellable,
    #[error("only a held or waitlisted booking can expire")]
    NotExpirable,
    #[error("only a waitlisted booking can be offered tickets")]
    NotWaitlisted,
}

impl Refusal {
    /// The problem code clients see (a `409`).
    pub fn code(self) -> &'static str {
        match self {
            Self::AlreadyDecided => "booking_already_decided",
            Self::NotHeld => "booking_not_held",
            Self::NotCancellable => "booking_not_cancellable",
            Self::NotExpirable => "booking_not_expirable",
            Self::NotWaitlisted => "booking_not_waitlisted",
        }
    }
}

/// What `command` does to a booking that is `status`. Conditions on data
/// (is there room, is the hold due, was the payment approved) are the
/// decision core's; this says which moves exist at all.
pub fn transition(status: BookingStatus, command: CommandKind) -> Result<Transition, Refusal> {
    use BookingStatus::*;
    use CommandKind::*;
    match (command, status) {
        (Request, Queued) => Ok(Transition::Decide),
        (Request, _) => Err(Refusal::AlreadyDecided),
        (Confirm, Held) => Ok(Transition::Charge),
        (Confirm, Confirmed) => Ok(Transition::AlreadyDone),
        (Confirm, _) => Err(Refusal::NotHeld),
        (Cancel, Queued | Waitlisted | Held | Confirmed) => Ok(Transition::End {
            to: Cancelled,
            reason: Reason::CancelledByCustomer,
        }),
        (Cancel, Cancelled) => Ok(Transition::AlreadyDone),
        (Cancel, _) => Err(Refusal::NotCancellable),
        (Expire, Held) => Ok(Transition::End {
            to: Expired,
            reason: Reason::HoldExpired,
        }),
        (Expire, Waitlisted) => Ok(Transition::End {
            to: Expired,
            reason: Reason::ShowStarted,
        }),
        (Expire, _) => Err(Refusal::NotExpirable),
        (Offer, Waitlisted) => Ok(Transition::Offer),
        (Offer, _) => Err(Refusal::NotWaitlisted),
    }
}

/// The lifecycle as a Markdown table: one row per status, one column per
/// command, each cell what [`transition`] says.
pub fn table() -> String {
    let mut out = String::from("| status \\ command |");
    for command in CommandKind::ALL {
        out.push_str(&format!(" `{command}` |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(CommandKind::ALL.len()));
    for &status in BookingStatus::ALL {
        out.push_str(&format!("\n| `{status}` |"));
        for &command in CommandKind::ALL {
            let cell = match transition(status, command) {
                Ok(Transition::Decide) => {
                    "→ `held` or `rejected` (`waitlisted` if it asked to wait)".to_owned()
                }
                Ok(Transition::Offer) => "→ `held` if the returned tickets fit".to_owned(),
                Ok(Transition::Charge) => {
                    "→ `confirmed`, or stays `held` (`payment_declined`), or `expired` if the hold ran out".to_owned()
                }
                Ok(Transition::End { to, reason }) => format!("→ `{to}` (`{reason}`)"),
                Ok(Transition::AlreadyDone) => "already done".to_owned(),
                Err(refusal) => format!("refused: `{}`", refusal.code()),
            };
            out.push_str(&format!(" {cell} |"));
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_accept_no_move() {
        for &status in BookingStatus::ALL.iter().filter(|s| s.is_final()) {
            for &command in CommandKind::ALL {
                match transition(status, command) {
                    Err(_) | Ok(Transition::AlreadyDone) => {}
                    other => panic!("{status} accepts {command}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn every_move_leads_to_a_status_the_lifecycle_allows() {
        use BookingStatus::*;
        // docs/API.md#booking-lifecycle, as (from, to) pairs.
        let allowed = [
            (Queued, Held),
            (Queued, Rejected),
            (Queued, Waitlisted),
            (Queued, Cancelled),
            (Waitlisted, Held),
            (Waitlisted, Cancelled),
            (Waitlisted, Expired),
            (Held, Confirmed),
            (Held, Held),
            (Held, Expired),
            (Held, Cancelled),
            (Confirmed, Cancelled),
            (Confirmed, Confirmed),
            (Cancelled, Cancelled),
        ];
        for &from in BookingStatus::ALL {
            for &command in CommandKind::ALL {
                if let Ok(t) = transition(from, command) {
                    for &to in t.targets(from) {
                        assert!(allowed.contains(&(from, to)), "{from} -{command}-> {to}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_architecture_document_shows_the_lifecycle_as_the_code_has_it() {
        let doc = include_str!("../../docs/ARCHITECTURE.md");
        assert!(
            doc.contains(&table()),
            "docs/ARCHITECTURE.md must contain lifecycle::table() verbatim:\n{}",
            table()
        );
    }

    #[test]
    fn event_routing_keys_name_the_kind() {
        assert_eq!(
            EventKind::PaymentDeclined.routing_key(),
            "booking.payment_declined"
        );
    }
}
