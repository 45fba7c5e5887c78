//! The booking domain's vocabulary, shared by the API (what clients see),
//! the workers (what they decide) and the notifier (what it tells people).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a booking is in its lifecycle (PRODUCT.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum BookingStatus {
    Queued,
    Held,
    Confirmed,
    Rejected,
    Expired,
    Cancelled,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// A booking in a final state never changes again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Rejected | Self::Expired | Self::Cancelled)
    }
}

/// Why a booking was rejected, or why its last confirm failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    SoldOut,
    SeatsUnavailable,
    PaymentDeclined,
    HoldExpired,
    CancelledByCustomer,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SoldOut => "sold_out",
            Self::SeatsUnavailable => "seats_unavailable",
            Self::PaymentDeclined => "payment_declined",
            Self::HoldExpired => "hold_expired",
            Self::CancelledByCustomer => "cancelled_by_customer",
        }
    }
}

/// General admission (a capacity) or seated (sections, rows, seats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ShowKind {
    GeneralAdmission,
    Seated,
}

/// Live status of one seat on the seat map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum SeatStatus {
    Available,
    Held,
    Booked,
}
