//! Owns `operator_tokens`: who may operate the system, as the SHA-256 of
//! each token's secret (the secrets themselves are never stored).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

/// What an operator may do; each role may do all that the ones before it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Role {
    /// Lists and searches bookings, reads sales.
    Viewer,
    /// Also checks tickets in and cancels any booking.
    BoxOffice,
    /// Everything: shows, operator tokens, webhooks.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::BoxOffice, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::BoxOffice => "box_office",
            Role::Admin => "admin",
        }
    }
}

/// A token as admins see it: everything but its digest.
#[derive(Debug)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Whom a live token names.
#[derive(Debug)]
pub struct Holder {
    /// The actor the audit trail names for what the token does.
    pub name: String,
    pub role: Role,
}

/// A live token's digest and whom it names.
#[derive(Debug)]
pub struct LiveToken {
    pub token_hash: Vec<u8>,
    pub holder: Holder,
}

/// Stores a new token by its digest, made by the operator `created_by`.
pub async fn create(
    db: impl PgExecutor<'_>,
    name: &str,
    role: Role,
    token_hash: &[u8],
    created_by: &str,
) -> Result<Token, sqlx::Error> {
    sqlx::query_as!(
        Token,
        r#"INSERT INTO operator_tokens (id, name, role, token_hash, created_by)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, name, role AS "role: Role", created_by, created_at, revoked_at"#,
        Uuid::new_v4(),
        name,
        role as Role,
        token_hash,
        created_by
    )
    .fetch_one(db)
    .await
}

/// Every token, newest first, revoked ones included.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Token>, sqlx::Error> {
    sqlx::query_as!(
        Token,
        r#"SELECT id, name, role AS "role: Role", created_by, created_at, revoked_at
           FROM operator_tokens ORDER BY created_at DESC, id"#
    )
    .fetch_all(db)
    .await
}

/// Revokes the token `id` on behalf of `by`; a revoked token keeps its first
/// revocation. Returns whether the token exists.
pub async fn revoke(db: impl PgExecutor<'_>, id: Uuid, by: &str) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query_scalar!(
        "UPDATE operator_tokens
         SET revoked_at = coalesce(revoked_at, now()), revoked_by = coalesce(revoked_by, $2)
         WHERE id = $1 RETURNING id",
        id,
        by
    )
    .fetch_optional(db)
    .await?;
    Ok(revoked.is_some())
}

/// Whom the live token with this digest names, if one does.
pub async fn holder(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
) -> Result<Option<Holder>, sqlx::Error> {
    sqlx::query_as!(
        Holder,
        r#"SELECT name, role AS "role: Role" FROM operator_tokens
           WHERE token_hash = $1 AND revoked_at IS NULL"#,
        token_hash
    )
    .fetch_optional(db)
    .await
}

/// Every live (unrevoked) token.
pub async fn live(db: impl PgExecutor<'_>) -> Result<Vec<LiveToken>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT token_hash, name, role AS "role: Role" FROM operator_tokens
           WHERE revoked_at IS NULL"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| LiveToken {
            token_hash: r.token_hash,
            holder: Holder {
                name: r.name,
                role: r.role,
            },
        })
        .collect())
}
