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
