//! The stores: each owns a family of tables, and its typed methods are the
//! only SQL in the services that touches them. Status and reason values go
//! in as typed parameters; the rules several statements share (the seat
//! order, the predicates partial indexes are built on) are written once, in
//! the schema (`migrations/20261207000001_store_rules.sql`). A statement
//! that must read another family's table in the same round trip (a
//! booking's seats and tickets in its view, say) reads it, never writes it.
//!
//! | store | owns |
//! |---|---|
//! | [`bookings`] | `bookings`, `booking_audit`, `booking_seats`, `show_queue_tails`, `idempotency_keys` |
//! | [`shows`] | `shows` |
//! | [`seats`] | `sections`, `seats` (read through the view `seat_places`) |
//! | [`outbox`] | `outbox` |
//! | [`tickets`] | `tickets` |
//! | [`refunds`] | `refunds`, `test_gateway_refunds` |
//! | [`reminders`] | `reminders` |
//! | [`emails`] | `sent_emails` |
//! | [`operators`] | `operator_tokens` |
//! | [`webhooks`] | `webhook_endpoints`, `webhook_deliveries`, `webhook_attempts` |
//! | [`claims`] | no table: the workers' shard advisory locks and their sessions in `pg_stat_activity` |
//! | [`health`] | no table: the readiness ping |

pub mod bookings;
pub mod claims;
pub mod emails;
pub mod health;
pub mod operators;
pub mod outbox;
pub mod refunds;
pub mod reminders;
pub mod seats;
pub mod shows;
pub mod tickets;
pub mod webhooks;
