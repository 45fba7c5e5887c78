//! The payment steps, behind a trait so real gateways plug in: the charge of
//! a confirm, and the refunds the worker's refund sweeper drives.

use std::future::Future;

use shared::config::TestGatewaySettings;
use sqlx::PgPool;
use uuid::Uuid;

/// What the gateway said about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    Approved {
        reference: String,
        amount_cents: i64,
    },
    Declined,
}

/// A charge to pay back in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub booking: Uuid,
    /// The charge's reference: what the gateway refunds, and the refund's
    /// idempotency key.
    pub reference: String,
    pub amount_cents: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("payment gateway unavailable: {0}")]
pub struct GatewayError(pub String);

/// A payment gateway. Both calls must be idempotent: a retried or
/// redelivered confirm must not charge twice (real gateways take the booking
/// id as the charge's idempotency key), and asking again for a refund that
/// was made changes nothing (the charge reference as the refund's key), so
/// a crash between the gateway's answer and our record of it is harmless.
pub trait PaymentGateway: Clone + Send + Sync + 'static {
    fn charge(
        &self,
        booking_id: Uuid,
        amount_cents: i64,
        token: &str,
    ) -> impl Future<Output = Result<Charge, GatewayError>> + Send;

    fn refund(&self, refund: &Refund) -> impl Future<Output = Result<(), GatewayError>> + Send;
}

/// The built-in test gateway, following card processors' well-known test
/// tokens: `tok_visa`, `tok_mastercard` and `tok_amex` succeed; anything
/// else (notably `tok_chargeDeclined`) is declined. Refunds go to its
/// ledger table, `test_gateway_refunds`, once per charge however often they
/// are asked for, so tests can count them; [`TestGatewaySettings`] plays an
/// outage or a slow gateway.
#[derive(Debug, Clone)]
pub struct TestGateway {
    ledger: PgPool,
    settings: TestGatewaySettings,
}

impl TestGateway {
    pub fn new(ledger: PgPool, settings: TestGatewaySettings) -> Self {
        Self { ledger, settings }
    }
}

impl PaymentGateway for TestGateway {
    async fn charge(
        &self,
        booking_id: Uuid,
        amount_cents: i64,
        token: &str,
    ) -> Result<Charge, GatewayError> {
        Ok(match token {
            "tok_visa" | "tok_mastercard" | "tok_amex" => Charge::Approved {
                reference: format!("ch_test_{}", booking_id.simple()),
                amount_cents,
            },
            _ => Charge::Declined,
        })
    }

    async fn refund(&self, refund: &Refund) -> Result<(), GatewayError> {
        if self.settings.refunds_down {
            return Err(GatewayError("test gateway: refunds are down".into()));
        }
        shared::store::refunds::test_gateway_refund(
            &self.ledger,
            &refund.reference,
            refund.amount_cents,
        )
        .await
        .map_err(|e| GatewayError(format!("test gateway ledger: {e}")))?;
        // Slow after the fact, like a gateway whose answer is lost: a crash
        // now leaves a refund made but not yet recorded on our side.
        tokio::time::sleep(self.settings.refund_delay).await;
        tracing::info!(reference = refund.reference, "test gateway refund");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_tokens_follow_card_processor_conventions() {
        // Charges never touch the ledger.
        let ledger = PgPool::connect_lazy("postgres://unused").unwrap();
        let gw = TestGateway::new(ledger, TestGatewaySettings::default());
        let id = Uuid::new_v4();
        assert!(matches!(
            gw.charge(id, 100, "tok_visa").await.unwrap(),
            Charge::Approved {
                amount_cents: 100,
                ..
            }
        ));
        assert_eq!(
            gw.charge(id, 100, "tok_chargeDeclined").await.unwrap(),
            Charge::Declined
        );
        // Idempotent per booking: the same reference every time.
        assert_eq!(
            gw.charge(id, 100, "tok_visa").await.unwrap(),
            gw.charge(id, 100, "tok_visa").await.unwrap()
        );
    }
}
