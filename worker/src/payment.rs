//! The payment step of a confirm, behind a trait so real gateways plug in.

use std::future::Future;

use uuid::Uuid;

/// What the gateway said about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    Approved { reference: String },
    Declined,
}

#[derive(Debug, thiserror::Error)]
#[error("payment gateway unavailable: {0}")]
pub struct GatewayError(pub String);

/// A payment gateway. `charge` must be idempotent per booking: a retried or
/// redelivered confirm must not charge twice (real gateways take the booking
/// id as their idempotency key).
pub trait PaymentGateway: Send + Sync + 'static {
    fn charge(
        &self,
        booking_id: Uuid,
        amount_cents: i64,
        token: &str,
    ) -> impl Future<Output = Result<Charge, GatewayError>> + Send;

    fn refund(&self, reference: &str) -> impl Future<Output = Result<(), GatewayError>> + Send;
}

/// The built-in test gateway, following card processors' well-known test
/// tokens: `tok_visa`, `tok_mastercard` and `tok_amex` succeed; anything
/// else (notably `tok_chargeDeclined`) is declined.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestGateway;

impl PaymentGateway for TestGateway {
    async fn charge(
        &self,
        booking_id: Uuid,
        _amount: i64,
        token: &str,
    ) -> Result<Charge, GatewayError> {
        Ok(match token {
            "tok_visa" | "tok_mastercard" | "tok_amex" => Charge::Approved {
                reference: format!("ch_test_{}", booking_id.simple()),
            },
            _ => Charge::Declined,
        })
    }

    async fn refund(&self, reference: &str) -> Result<(), GatewayError> {
        tracing::info!(reference, "test gateway refund");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_tokens_follow_card_processor_conventions() {
        let id = Uuid::new_v4();
        let gw = TestGateway;
        assert!(matches!(
            gw.charge(id, 100, "tok_visa").await.unwrap(),
            Charge::Approved { .. }
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
