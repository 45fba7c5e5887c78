//! The stores: each owns a family of tables, and its typed methods are the
//! only SQL in the services that touches them.
//!
//! | store | owns |
//! |---|---|
//! | [`emails`] | `sent_emails` |

pub mod emails;
