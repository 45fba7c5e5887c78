//! End-to-end specifications, through the public HTTP API, against real
//! PostgreSQL, RabbitMQ and SMTP. One binary so it is linked once.

mod bad_input;
mod best_available;
mod booking_flow;
mod broker;
mod catalog;
mod cluster;
mod emails;
mod engine;
mod faults;
mod frozen;
mod fuzz;
mod history;
mod holds;
mod isolation;
mod limits;
mod live;
mod network_faults;
mod operators;
mod place_in_line;
mod postgres_cluster;
mod proxy;
mod rate_limits;
mod refunds;
mod reminders;
mod show_events;
mod shutdown;
mod storefront;
mod waitlist;
mod webhooks;
