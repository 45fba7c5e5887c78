//! The test harness. Every test gets a sandbox of its own: a fresh PostgreSQL
//! database and RabbitMQ vhost on the shared private servers. A [`System`]
//! adds its own `api`, `worker` and `notifier` processes (the real
//! binaries), so tests run in parallel and fault tests can kill processes
//! without disturbing each other; a [`TestApp`] serves the API in the
//! test's own process, for tests that need only the HTTP app. Emails go to
//! the shared SMTP sink; tests tell theirs apart by unique recipient
//! addresses.
//!
//! Needs `TEST_DATABASE_URL`, `TEST_AMQP_URL`, `TEST_RABBITMQ_MANAGEMENT_URL`,
//! `TEST_SMTP_URL` and `TEST_MAILDEV_URL` (the test command sets them) and
//! the binaries built (`cargo build --bins`).

pub mod app;
pub mod cluster;
pub mod history;
pub mod invariants;
pub mod load;
pub mod mailbox;
pub mod pg_cluster;
pub mod proxy;
pub mod receiver;
pub mod sale;
pub mod slow_relay;
pub mod sse;
pub mod system;

pub use app::TestApp;
pub use system::{Options, System};
pub mod servers;
