//! The stores: each is the only place whose SQL reads or writes its tables,
//! so a table's statements, and the indexes they rely on, are read together.
//!
//! - [`operators`] → `operator_tokens`
//! - [`webhooks`] → `webhook_endpoints`, `webhook_deliveries`, `webhook_attempts`

pub mod operators;
pub mod webhooks;
