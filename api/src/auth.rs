//! Operators and their roles: who may call which route, and as whom.
//!
//! `ADMIN_TOKEN` is the bootstrap admin. Every other operator presents a
//! token made by `POST /v1/operators/tokens`: [`TOKEN_PREFIX`] and the
//! base64url of 32 random bytes. Only its SHA-256 is stored. Each API
//! process keeps the digests of the live tokens in memory and reloads them
//! every [`RELOAD_EVERY`], so a token revoked through any process is refused
//! by every process within that; a token unknown here is looked up in the
//! database once, so a token made through another process works at once.
//!
//! The secret itself is never compared, only its digest, and that against
//! every known digest in constant time (the list is short: people and door
//! scanners), so timing tells nothing about which token came close.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use shared::service::Tasks;
use shared::store::operators;
use sqlx::PgPool;

use crate::error::ApiError;

/// How every operator token begins, so a leaked one is recognised (by
/// secret scanners, in logs) for what it is.
pub const TOKEN_PREFIX: &str = "bko_";
/// How often each process reloads the live tokens: a revocation takes
/// effect everywhere within this (the contract says 5 s).
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// The audit trail's name for whoever presents `ADMIN_TOKEN`.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// Roles are stored with the tokens, so their type is the store's.
pub use shared::store::operators::Role;

/// Who made a request, as the route's guard found them.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The token's name: the actor in the audit trail.
    pub name: Arc<str>,
    pub role: Role,
}

/// A token's SHA-256.
type Digest32 = [u8; 32];

/// The tokens this process accepts.
pub struct Operators {
    bootstrap: Digest32,
    live: RwLock<Vec<(Digest32, Operator)>>,
}

impl fmt::Debug for Operators {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Digests only, but still nobody's business in a log.
        f.debug_struct("Operators").finish_non_exhaustive()
    }
}

/// A freshly made token: the secret, shown once, and what is stored.
pub struct Issued {
    pub token: String,
    pub digest: Vec<u8>,
}

impl Operators {
    pub fn new(admin_token: &str) -> Self {
        Self {
            bootstrap: digest(admin_token),
            live: RwLock::default(),
        }
    }

    /// A new secret: the prefix and 256 random bits.
    pub fn issue() -> Issued {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        let digest = digest(&token).to_vec();
        Issued { token, digest }
    }

    /// The operator a request's `Authorization: Bearer` names: `None`
    /// without the header, 401 for a malformed, unknown or revoked token.
    pub async fn identify(
        &self,
        db: &PgPool,
        headers: &HeaderMap,
    ) -> Result<Option<Operator>, ApiError> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(None);
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let presented = digest(presented);
        if constant_time_eq(&presented, &self.bootstrap) {
            return Ok(Some(Operator {
                name: BOOTSTRAP_ADMIN.into(),
                role: Role::Admin,
            }));
        }
        if let Some(known) = self.known(&presented) {
            return Ok(Some(known));
        }
        // Perhaps made through another process since the last reload.
        let found = operators::holder(db, &presented)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let operator = Operator {
            name: found.name.into(),
            role: found.role,
        };
        self.write().push((presented, operator.clone()));
        Ok(Some(operator))
    }

    /// The live operator whose digest is `presented`, looked for through
    /// every entry without stopping at a match.
    fn known(&self, presented: &Digest32) -> Option<Operator> {
        self.read().iter().fold(None, |found, (digest, operator)| {
            let hit = constant_time_eq(digest, presented);
            found.or(hit.then(|| operator.clone()))
        })
    }

    /// Replaces what this process accepts with the live tokens.
    pub async fn reload(&self, db: &PgPool) -> Result<(), sqlx::Error> {
        let live = operators::live(db)
            .await?
            .into_iter()
            .filter_map(|t| {
                let digest: Digest32 = t.token_hash.try_into().ok()?;
                let operator = Operator {
                    name: t.holder.name.into(),
                    role: t.holder.role,
                };
                Some((digest, operator))
            })
            .collect();
        *self.write() = live;
        Ok(())
    }

    /// Reloads every [`RELOAD_EVERY`], on `tasks`, until shutdown.
    pub fn spawn_reloading(self: Arc<Self>, db: PgPool, tasks: &Tasks) {
        tasks.spawn(|cancel| async move {
            loop {
                if let Err(err) = self.reload(&db).await {
                    // Revoked tokens stay accepted while this lasts: say so.
                    tracing::error!(error = %err, "cannot reload the operator tokens");
                }
                tokio::select! {
                    () = tokio::time::sleep(RELOAD_EVERY) => {}
                    () = cancel.cancelled() => return,
                }
            }
        });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(Digest32, Operator)>> {
        self.live.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<(Digest32, Operator)>> {
        self.live.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Who may call a route: the one declaration each route makes (see
/// `routes::declared`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a token, if presented, is ignored.
    Public,
    /// Anyone; a token, if presented, must be valid and have the role, and
    /// its name is the actor (a box office cancelling for a customer).
    OptionalRole(Role),
    /// Only a token with the role (or a greater one).
    Role(Role),
}

impl Access {
    /// The role a token needs here, if any is asked about.
    pub fn role(self) -> Option<Role> {
        match self {
            Access::Public => None,
            Access::OptionalRole(role) | Access::Role(role) => Some(role),
        }
    }
}

/// What [`guard`] needs of the state: the tokens, and the database to
/// look an unknown one up in.
#[derive(Clone)]
pub struct Gate {
    pub operators: Arc<Operators>,
    pub db: PgPool,
}

/// The guard in front of a route that declared a role: 401 without or
/// with an unknown token, 403 without the role; the [`Operator`] is left
/// in the request's extensions for the handler.
pub async fn guard(
    State(gate): State<Gate>,
    access: Access,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(needed) = access.role() else {
        return Ok(next.run(req).await);
    };
    match gate.operators.identify(&gate.db, req.headers()).await? {
        Some(operator) if operator.role >= needed => {
            req.extensions_mut().insert(operator);
        }
        Some(_) => return Err(ApiError::Forbidden(needed)),
        None if access == Access::OptionalRole(needed) => {}
        None => return Err(ApiError::Unauthorized),
    }
    Ok(next.run(req).await)
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares without an early exit, so timing does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_only_when_identical() {
        assert!(constant_time_eq(&digest("secret"), &digest("secret")));
        assert!(!constant_time_eq(&digest("secret"), &digest("secreT")));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn issued_tokens_carry_the_prefix_256_random_bits_and_their_digest() {
        let a = Operators::issue();
        let b = Operators::issue();
        assert!(a.token.starts_with(TOKEN_PREFIX));
        let secret = URL_SAFE_NO_PAD
            .decode(&a.token[TOKEN_PREFIX.len()..])
            .unwrap();
        assert_eq!(secret.len(), 32);
        assert_ne!(a.token, b.token);
        assert_eq!(a.digest, digest(&a.token).to_vec());
    }

    #[test]
    fn each_role_may_do_what_the_ones_below_it_may() {
        assert!(Role::Admin > Role::BoxOffice && Role::BoxOffice > Role::Viewer);
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["viewer", "box_office", "admin"]);
    }
}
