//! Message schemas on the wire. Both are JSON; unknown fields are ignored so
//! that producers can add fields before consumers know them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::lifecycle::EventKind;
use crate::lifecycle::{BookingStatus, CommandKind, Reason};

/// A command for the worker that owns the show's shard. All commands of one
/// show travel the same queue, so they are decided in the order accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BookingCommand {
    /// Hold the seats or quantity of a queued booking, or reject it.
    Request { booking_id: Uuid, show_id: Uuid },
    /// Take payment for a held booking and confirm it.
    Confirm {
        booking_id: Uuid,
        show_id: Uuid,
        payment_token: String,
    },
    /// Release a held or confirmed booking.
    Cancel {
        booking_id: Uuid,
        show_id: Uuid,
        /// The operator who cancelled for the customer (the audit trail's
        /// actor); absent when the customer did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Put a hold past its expiry back on sale (from the expiry sweeper).
    Expire { booking_id: Uuid, show_id: Uuid },
}

impl BookingCommand {
    pub fn booking_id(&self) -> Uuid {
        match self {
            Self::Request { booking_id, .. }
            | Self::Confirm { booking_id, .. }
            | Self::Cancel { booking_id, .. }
            | Self::Expire { booking_id, .. } => *booking_id,
        }
    }

    pub fn show_id(&self) -> Uuid {
        match self {
            Self::Request { show_id, .. }
            | Self::Confirm { show_id, .. }
            | Self::Cancel { show_id, .. }
            | Self::Expire { show_id, .. } => *show_id,
        }
    }

    pub fn kind(&self) -> CommandKind {
        match self {
            Self::Request { .. } => CommandKind::Request,
            Self::Confirm { .. } => CommandKind::Confirm,
            Self::Cancel { .. } => CommandKind::Cancel,
            Self::Expire { .. } => CommandKind::Expire,
        }
    }
}

/// Requests of one show, in the order they were recorded. The worker
/// decides them in line order all the same (`accepted_seq`), like single
/// requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBatch {
    pub show_id: Uuid,
    pub booking_ids: Vec<Uuid>,
}

/// Most requests one message carries: about 40 bytes each, so a message
/// stays a few kilobytes.
pub const MAX_REQUESTS_PER_MESSAGE: usize = 256;

/// A message on a shard queue: one command (tagged with its own type), or
/// the requests an API process recorded together for the shows of one
/// shard (`"type": "shard_requests"`): one message to route, store, deliver
/// and ack instead of one each, however many shows are on sale. Requests
/// of a single show (`"type": "requests"`) were sent before shard batches
/// and are still read, from queues and dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShardMessage {
    ShardRequests {
        shows: Vec<RequestBatch>,
    },
    Requests(RequestBatch),
    #[serde(untagged)]
    Command(BookingCommand),
}

impl ShardMessage {
    /// Whether the message carries requests together rather than one command.
    pub fn is_batch(&self) -> bool {
        !matches!(self, Self::Command(_))
    }

    /// The commands the message carries, in its order (none for an empty
    /// batch).
    pub fn into_commands(self) -> Vec<BookingCommand> {
        let requests = |batch: RequestBatch| {
            let show_id = batch.show_id;
            batch
                .booking_ids
                .into_iter()
                .map(move |booking_id| BookingCommand::Request {
                    booking_id,
                    show_id,
                })
        };
        match self {
            Self::Command(command) => vec![command],
            Self::Requests(batch) => requests(batch).collect(),
            Self::ShardRequests { shows } => shows.into_iter().flat_map(requests).collect(),
        }
    }
}

/// An event with a snapshot of the booking as it was when it happened, so a
/// consumer (the notifier) needs no second read to act on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingEvent {
    /// Unique per event; consumers deduplicate on it.
    pub event_id: Uuid,
    pub kind: EventKind,
    pub occurred_at: DateTime<Utc>,
    pub booking: BookingSnapshot,
}

impl BookingEvent {
    /// What the event is, without the snapshot.
    pub fn reference(&self) -> EventRef {
        EventRef {
            event_id: self.event_id,
            kind: self.kind,
            occurred_at: self.occurred_at,
            booking: BookingRef {
                id: self.booking.id,
                show_id: self.booking.show_id,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingSnapshot {
    pub id: Uuid,
    pub show_id: Uuid,
    pub show_name: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub email: String,
    pub name: String,
    pub status: BookingStatus,
    pub reason: Option<Reason>,
    pub quantity: i32,
    pub seats: Vec<SeatLabel>,
    pub total_cents: Option<i64>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub tickets: Vec<String>,
    /// What this change pays back (a cancelled paid booking, or a charge
    /// that came too late); the refund itself follows from the refunds
    /// table. Absent in events written before refunds existed.
    #[serde(default)]
    pub refund_cents: Option<i64>,
}

/// What the webhook fan-out needs of an event: which booking, and what
/// happened when. It reads the booking itself from the database, and only
/// if some endpoint wants the event, so the relay does not send the
/// snapshot twice. A whole [`BookingEvent`] reads as one too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRef {
    pub event_id: Uuid,
    pub kind: EventKind,
    pub occurred_at: DateTime<Utc>,
    pub booking: BookingRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingRef {
    pub id: Uuid,
    pub show_id: Uuid,
}

/// Reads the events in a message for the webhook fan-out: a JSON array of
/// them (one message per outbox relay batch, see
/// [`crate::topology::EVENT_BATCH_KEY`]), or a single event, as
/// `webhooks.events` held them before the relay batched them.
pub fn decode_events(data: &[u8]) -> serde_json::Result<Vec<EventRef>> {
    if data.trim_ascii_start().first() == Some(&b'[') {
        serde_json::from_slice(data)
    } else {
        serde_json::from_slice(data).map(|event| vec![event])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatLabel {
    pub section: String,
    pub row: String,
    pub number: i32,
    pub price_cents: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> BookingEvent {
        let id = Uuid::now_v7();
        BookingEvent {
            event_id: Uuid::now_v7(),
            kind,
            occurred_at: Utc::now(),
            booking: BookingSnapshot {
                id,
                show_id: id,
                show_name: "Show".into(),
                venue: "Hall".into(),
                starts_at: Utc::now(),
                email: "a@example.com".into(),
                name: "A".into(),
                status: BookingStatus::Held,
                reason: None,
                quantity: 1,
                seats: vec![],
                total_cents: Some(100),
                hold_expires_at: None,
                tickets: vec![],
                refund_cents: None,
            },
        }
    }

    #[test]
    fn a_batch_of_event_refs_and_a_whole_single_event_both_decode() {
        let events = [event(EventKind::Held), event(EventKind::Rejected)];
        let refs: Vec<EventRef> = events.iter().map(BookingEvent::reference).collect();
        let array = serde_json::to_vec(&refs).unwrap();
        assert_eq!(decode_events(&array).unwrap(), refs);
        let one = serde_json::to_vec(&events[0]).unwrap();
        assert_eq!(decode_events(&one).unwrap(), refs[..1]);
        assert_eq!(decode_events(b" []").unwrap(), vec![]);
        assert!(decode_events(b"[{\"kind\": 1}]").is_err());
        assert!(decode_events(b"not json").is_err());
    }

    #[test]
    fn a_shard_message_is_a_batch_of_requests_or_one_command() {
        let (show, a, b) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let (other, c) = (Uuid::from_u128(4), Uuid::from_u128(5));
        let request = |show_id, booking_id| BookingCommand::Request {
            booking_id,
            show_id,
        };
        let batch = ShardMessage::ShardRequests {
            shows: vec![
                RequestBatch {
                    show_id: show,
                    booking_ids: vec![a, b],
                },
                RequestBatch {
                    show_id: other,
                    booking_ids: vec![c],
                },
            ],
        };
        let json = serde_json::to_value(&batch).unwrap();
        assert_eq!(json["type"], "shard_requests");
        assert_eq!(json["shows"][1]["booking_ids"][0], c.to_string());
        let read: ShardMessage = serde_json::from_value(json).unwrap();
        assert!(read.is_batch());
        assert_eq!(
            read.into_commands(),
            [request(show, a), request(show, b), request(other, c)]
        );

        // One show's batch, as sent before shard batches.
        let json = serde_json::json!({"type": "requests", "show_id": show, "booking_ids": [a, b]});
        let read: ShardMessage = serde_json::from_value(json).unwrap();
        assert!(read.is_batch());
        assert_eq!(read.into_commands(), [request(show, a), request(show, b)]);

        let cancel = BookingCommand::Cancel {
            booking_id: a,
            show_id: show,
            by: None,
        };
        let read: ShardMessage =
            serde_json::from_slice(&serde_json::to_vec(&cancel).unwrap()).unwrap();
        assert!(!read.is_batch());
        assert_eq!(read.into_commands(), [cancel]);
        // A batch's fields under another type are neither a batch nor a command.
        let wrong = serde_json::json!({"type": "request", "show_id": show, "booking_ids": [a]});
        assert!(serde_json::from_value::<ShardMessage>(wrong).is_err());
        let wrong = serde_json::json!({"type": "confirm", "show_id": show, "booking_ids": [a]});
        assert!(serde_json::from_value::<ShardMessage>(wrong).is_err());
    }

    #[test]
    fn commands_are_tagged_json_that_round_trips() {
        let cmd = BookingCommand::Confirm {
            booking_id: Uuid::nil(),
            show_id: Uuid::nil(),
            payment_token: "tok_visa".into(),
        };
        let json = serde_json::to_value(&cmd).unwrap();
        assert_eq!(json["type"], "confirm");
        assert_eq!(json["payment_token"], "tok_visa");
        assert_eq!(serde_json::from_value::<BookingCommand>(json).unwrap(), cmd);
    }

    #[test]
    fn a_commands_json_type_is_its_kind() {
        let id = Uuid::nil();
        for command in [
            BookingCommand::Request {
                booking_id: id,
                show_id: id,
            },
            BookingCommand::Cancel {
                booking_id: id,
                show_id: id,
                by: Some("Door 3".to_owned()),
            },
            BookingCommand::Expire {
                booking_id: id,
                show_id: id,
            },
        ] {
            let json = serde_json::to_value(&command).unwrap();
            assert_eq!(json["type"], command.kind().as_str());
        }
    }
}
