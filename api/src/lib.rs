//! The booking API: a thin axum service. It validates, records what it needs
//! to answer polls, hands each request to RabbitMQ with a publisher confirm
//! and only then answers `202 Accepted`.

pub mod auth;
pub mod bookings;
pub mod catalog;
pub mod dispatcher;
pub mod entity_tag;
pub mod error;
pub mod extract;
pub mod integer;
pub mod live;
pub mod openapi;
pub mod rate_limit;
pub mod recorder;
pub mod routes;
pub mod search;
pub mod show_feed;
pub mod startup;
pub mod state;
pub mod stream_limit;
pub mod validation;
