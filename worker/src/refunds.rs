//! The refund sweeper: makes the refunds deciding transactions recorded
//! ([`crate::persist`]), so a crash at any instant after a cancel was
//! accepted still ends in exactly one refund. Each pass claims due rows by
//! pushing their next attempt past the call's timeout (a lease: a sweeper
//! that dies mid-call leaves the row to the next pass, of any worker), asks
//! the gateway, and records the answer: refunded (with the booking's
//! `refunded_cents`, in one statement), or the error and a later attempt,
//! backing off exponentially. Asking twice is harmless because gateways
//! refund a charge once ([`PaymentGateway`]).

use std::time::Duration;

use futures::StreamExt;
use shared::store::refunds;
use shared::sweep::SweepError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::payment::{PaymentGateway, Refund};

const PERIOD: Duration = Duration::from_millis(500);
/// Refunds claimed per pass, and asked for at once.
const BATCH: i64 = 32;
const IN_FLIGHT: usize = 8;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(300);

pub async fn run<G: PaymentGateway>(
    db: PgPool,
    gateway: G,
    timeout: Duration,
    cancel: CancellationToken,
) {
    shared::sweep::every("refunds", PERIOD, cancel, || sweep(&db, &gateway, timeout)).await;
}

/// One pass: returns how many refunds it asked for.
pub async fn sweep<G: PaymentGateway>(
    db: &PgPool,
    gateway: &G,
    timeout: Duration,
) -> Result<usize, SweepError> {
    // The lease outlasts the call, so nobody else asks while it runs.
    let lease = timeout + Duration::from_secs(5);
    let due = refunds::lease_due(db, BATCH, lease).await?;
    let count = due.len();
    let outcomes: Vec<Result<(), sqlx::Error>> = futures::stream::iter(due)
        .map(|row| {
            let refund = Refund {
                booking: row.booking_id,
                reference: row.reference,
                amount_cents: row.amount_cents,
            };
            attempt(db, gateway, timeout, refund, row.attempts)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    outcomes.into_iter().collect::<Result<(), _>>()?;
    Ok(count)
}

async fn attempt<G: PaymentGateway>(
    db: &PgPool,
    gateway: &G,
    timeout: Duration,
    refund: Refund,
    attempts: i32,
) -> Result<(), sqlx::Error> {
    let span =
        tracing::info_span!("refund", booking_id = %refund.booking, reference = refund.reference);
    async {
        let answer = match tokio::time::timeout(timeout, gateway.refund(&refund)).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        match answer {
            Ok(()) => {
                // Once: a second pass that got the same answer changes nothing.
                refunds::mark_refunded(db, &refund.reference).await?;
                metrics::counter!("worker_refunds_total", "outcome" => "refunded").increment(1);
                tracing::info!(amount_cents = refund.amount_cents, attempts, "refunded");
            }
            Err(error) => {
                let wait = retry_delay(attempts);
                refunds::record_failure(db, &refund.reference, &error, wait).await?;
                metrics::counter!("worker_refunds_total", "outcome" => "failed").increment(1);
                tracing::warn!(%error, attempts, retry_in = ?wait, "refund failed, will retry");
            }
        }
        Ok(())
    }
    .instrument(span)
    .await
}

/// The wait after the `attempts`-th failed attempt: 1 s doubling to 5 min,
/// then every 5 min until the gateway answers.
fn retry_delay(attempts: i32) -> Duration {
    shared::retry::backoff(attempts, FIRST_RETRY, LAST_RETRY)
}
