//! What every service of the booking system shares: the domain vocabulary,
//! the message schemas on the wire, the queue topology, configuration, and
//! the plumbing to reach PostgreSQL and RabbitMQ and to be observed.

pub mod amqp;
pub mod config;
pub mod db;
pub mod domain;
pub mod lifecycle;
pub mod messages;
pub mod names;
pub mod ops;
pub mod retry;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod topology;
pub mod webhooks;

pub use config::Config;
