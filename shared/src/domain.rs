//! The booking domain's vocabulary, shared by the API (what clients see),
//! the workers (what they decide) and the notifier (what it tells people).
//! The lifecycle itself (statuses, reasons, commands, events) lives in
//! [`crate::lifecycle`].

pub use crate::lifecycle::{BookingStatus, Reason};
use uuid::Uuid;

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

/// A booking's id: 122 random bits, the customer's capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BookingId(pub Uuid);

impl BookingId {
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

/// A show's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShowId(pub Uuid);

impl std::fmt::Display for BookingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for ShowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An amount of money in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cents(pub i64);

impl std::iter::Sum for Cents {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        Self(iter.map(|c| c.0).sum())
    }
}

impl std::ops::Mul<i32> for Cents {
    type Output = Self;
    fn mul(self, n: i32) -> Self {
        Self(self.0 * i64::from(n))
    }
}

/// A customer's email address, checked once where it enters the system
/// (trimmed; at most 254 characters; a local part of 1 to 64 and a domain
/// with a dot inside). Limits per customer compare it case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerEmail(String);

/// Why a text is not an email address we take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a valid email address")]
pub struct InvalidEmail;

impl CustomerEmail {
    pub fn parse(text: &str) -> Result<Self, InvalidEmail> {
        let email = text.trim();
        let (local, domain) = email.split_once('@').ok_or(InvalidEmail)?;
        let plausible = email.len() <= 254
            && !local.is_empty()
            && local.len() <= 64
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && email.chars().all(|c| c.is_ascii_graphic() || !c.is_ascii());
        plausible
            .then(|| Self(email.to_owned()))
            .ok_or(InvalidEmail)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a booking request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// General admission: this many tickets.
    Quantity(i32),
    /// Seated: this many seats, picked by the worker (adjacent in one row
    /// where it can), in the given section or the best one.
    BestAvailable {
        quantity: i32,
        section: Option<String>,
    },
    /// Seated: exactly these seats.
    Seats(Vec<Uuid>),
}

impl Wanted {
    /// How many tickets.
    pub fn quantity(&self) -> i32 {
        match self {
            Self::Quantity(n) | Self::BestAvailable { quantity: n, .. } => *n,
            Self::Seats(seats) => seats.len() as i32,
        }
    }

    /// The seats named, if any.
    pub fn seats(&self) -> &[Uuid] {
        match self {
            Self::Seats(seats) => seats,
            _ => &[],
        }
    }

    /// Best available: the section asked for, if any.
    pub fn section(&self) -> Option<&str> {
        match self {
            Self::BestAvailable { section, .. } => section.as_deref(),
            _ => None,
        }
    }
}

/// A booking request that passed validation against its show: what the
/// API records and the worker decides.
#[derive(Debug, Clone)]
pub struct BookingRequest {
    pub id: BookingId,
    pub show_id: ShowId,
    pub email: CustomerEmail,
    pub name: String,
    pub wanted: Wanted,
    /// Join the waiting list rather than be refused when sold out.
    pub waitlist: bool,
    /// Unknown until the worker has picked a best-available request's seats.
    pub total: Option<Cents>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_emails_pass_and_broken_ones_fail() {
        assert!(CustomerEmail::parse("ada@example.com").is_ok());
        assert!(CustomerEmail::parse("a.b+tag@sub.example.org").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
            "ada@.com",
        ] {
            assert!(
                CustomerEmail::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn an_email_is_kept_trimmed() {
        let email = CustomerEmail::parse("  ada@example.com ").unwrap();
        assert_eq!(email.as_str(), "ada@example.com");
    }
}
