//! The booking worker: decides booking commands per show, relays the outbox,
//! expires holds, makes refunds, queues reminders and recovers requests an
//! API crash left unpublished. A library (so the benchmark runs the real statements) with
//! a thin `main`.

pub mod apply;
pub mod backlog;
pub mod claims;
pub mod combiner;
pub mod consumer;
pub mod decide;
pub mod error;
pub mod expiry;
pub mod load;
pub mod outbox;
pub mod payment;
pub mod persist;
pub mod refunds;
pub mod reminders;
pub mod replay;
pub mod requeue;
pub mod seating;
