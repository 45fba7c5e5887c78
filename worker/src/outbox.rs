//! The outbox relay: publishes events written by deciding transactions to
//! the `booking.events` exchange with publisher confirms, then marks them
//! published. `FOR UPDATE SKIP LOCKED` lets every worker run a relay without
//! two of them taking the same rows. A crash between the confirm and the
//! mark publishes an event twice; consumers deduplicate by event id.

use std::time::Duration;

use futures::future::join_all;
use shared::amqp::Publisher;
use shared::sweep::SweepError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BATCH: i64 = 200;
const IDLE_POLL: Duration = Duration::from_millis(50);

pub async fn run(db: PgPool, publisher: &Publisher, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        let wait = match relay_batch(&db, publisher).await {
            Ok(n) if n as i64 == BATCH => Duration::ZERO,
            Ok(_) => IDLE_POLL,
            Err(err) => {
                tracing::warn!(error = %err, "outbox relay failed, retrying");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => {}
        }
    }
}

/// Publishes up to one batch; returns how many events went out.
async fn relay_batch(db: &PgPool, publisher: &Publisher) -> Result<usize, SweepError> {
    let mut tx = db.begin().await?;
    let rows = sqlx::query!(
        "SELECT id, booking_id, kind, payload FROM outbox
         WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        BATCH
    )
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    // All publishes go out on the shared channel at once; each awaits only
    // its own confirm, so the batch costs about one round trip.
    let publishes = rows.iter().map(|row| async move {
        let payload = serde_json::to_vec(&row.payload).expect("json re-serializes");
        publisher
            .send_event(row.id, row.booking_id, &row.kind, &payload)
            .await
    });
    for result in join_all(publishes).await {
        result?;
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    sqlx::query!(
        "UPDATE outbox SET published_at = now() WHERE id = ANY($1)",
        &ids
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("worker_outbox_published_total").increment(ids.len() as u64);
    Ok(ids.len())
}
