//! The booking domain's vocabulary, shared by the API (what clients see),
//! the workers (what they decide) and the notifier (what it tells people).
//! The lifecycle itself (statuses, reasons, commands, events) lives in
//! [`crate::lifecycle`].

pub use crate::lifecycle::{BookingStatus, Reason};
use crate::names::named_enum;

named_enum! {
    /// General admission (a capacity) or seated (sections, rows, seats).
    pub enum ShowKind {
        GeneralAdmission = "general_admission",
        Seated = "seated",
    }
}

named_enum! {
    /// Live status of one seat on the seat map.
    pub enum SeatStatus {
        Available = "available",
        Held = "held",
        Booked = "booked",
    }
}

/// Most tickets one booking may take: keeps a single client from draining a
/// hot show and bounds the work of one decision (and the waiting list's
/// queues by size).
pub const MAX_TICKETS_PER_BOOKING: i32 = 10;
