//! Signed webhooks (docs/API.md#webhooks): booking events fanned out to one
//! delivery row per subscribed endpoint ([`fanout`]), POSTed and retried by
//! the delivery sweeper ([`delivery`]), signed per Standard Webhooks
//! ([`signing`]); while a sale's requests wait, the fan-out slows down
//! ([`pace`]).

pub mod delivery;
pub mod fanout;
pub mod pace;
pub mod signing;
