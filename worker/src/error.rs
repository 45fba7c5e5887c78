//! Why deciding a run of commands failed, and whether to retry without limit.

use crate::payment::GatewayError;

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("version conflict on {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

impl DecideError {
    /// Failures of a dependency (not of this message) are retried without
    /// limit: the message is fine and must not be dead-lettered for them.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Database(err) => shared::db::is_transient(err),
            Self::Gateway(_) => true,
            Self::Conflict(_) => false,
        }
    }
}
