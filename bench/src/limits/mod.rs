//! The `limits` scenario: what RabbitMQ and PostgreSQL can do on this very
//! machine for the work one booking needs, measured in the same invocation
//! as the flash sale, so that its figures can be read as fractions of what
//! the hardware allows rather than as absolute numbers.

pub mod broker;
pub mod database;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub rabbitmq: broker::BrokerLimit,
    pub postgres: database::DatabaseLimit,
}

pub async fn measure(
    broker: &broker::Settings,
    database: &database::Settings,
) -> anyhow::Result<Limits> {
    eprintln!(
        "limits: RabbitMQ, {} persistent messages through a quorum queue …",
        broker.messages
    );
    let rabbitmq = broker::measure(broker).await?;
    eprintln!(
        "limits: PostgreSQL, the booking transaction on {} connections for {:?}, 1 and {} bookings per commit …",
        database.clients, database.duration, database.batch
    );
    let postgres = database::measure(database).await?;
    Ok(Limits { rabbitmq, postgres })
}
