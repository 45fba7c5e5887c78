//! The stores: each is the only place whose SQL reads or writes its tables,
//! so a table's statements, and the indexes they rely on, are read together.
//!
//! - [`operators`] → `operator_tokens`
//! - [`webhooks`] → `webhook_endpoints`, `webhook_deliveries`, `webhook_attempts`
//! - [`claims`] → the workers' shard advisory locks and their sessions in `pg_stat_activity`
//! - [`health`] → no table: the readiness ping

pub mod claims;
pub mod health;
pub mod operators;
pub mod webhooks;
