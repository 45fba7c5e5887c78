//! Owns `bookings` with their audit trail (`booking_audit`), their seats
//! (`booking_seats`), their line (`show_queue_tails`) and their
//! idempotency keys (`idempotency_keys`).
//!
//! The API records and withdraws requests ([`record`]), everyone reads a
//! booking as its customer sees it ([`view`]), the worker loads and
//! persists what it decides ([`deciding`]) and sweeps ([`sweeps`]), and
//! operators search ([`admin`]).

pub mod admin;
pub mod deciding;
mod lines;
pub mod record;
pub mod sweeps;
pub mod view;

pub use lines::Lines;
pub use view::{BookedSeat, BookingView, Ticket};

use crate::names::named_enum;

/// The audit trail's actor for what the API itself wrote.
const ACTOR_API: &str = "api";

named_enum! {
    /// Where the audit trail leads outside the lifecycle's statuses.
    pub enum Trail {
        /// The request's publish failed: its booking was taken back.
        Withdrawn = "withdrawn",
    }
}
