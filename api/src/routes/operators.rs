//! Operator tokens (admin): make one for a person or a door scanner, list
//! them, revoke one. See [`crate::auth`] for how they are checked.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::store::operators::{self, Token};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Operator, Operators, Role};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::validation;

/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Who or what uses it ("Door 3", "Ada at the box office"): the actor
    /// the audit trail names.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// The operator who made it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Set once revoked: the token is refused from then on.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<Token> for TokenView {
    fn from(t: Token) -> Self {
        Self {
            id: t.id,
            name: t.name,
            role: t.role,
            created_by: t.created_by,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A new token with its secret: shown this once, stored only as a hash.
// No `Debug`: it holds a secret.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: TokenView,
    /// `bko_` + 43 characters: send it as `Authorization: Bearer <token>`.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// Make an operator token (admin). The answer carries the secret, which is
/// never shown again.
#[utoipa::path(post, path = "/v1/operators/tokens", tag = "operators", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 422, body = Problem)))]
pub async fn create_token(
    Extension(by): Extension<Operator>,
    State(state): State<AppState>,
    Json(new): Json<NewToken>,
) -> Result<(StatusCode, axum::Json<CreatedToken>), ApiError> {
    // The limit counts the name as sent, as the document says; it is
    // stored without the whitespace around it.
    if let Some(invalid) = validation::text("name", &new.name, MAX_NAME_CHARS) {
        return Err(ApiError::Validation(vec![invalid]));
    }
    let name = new.name.trim();
    let issued = Operators::issue();
    let view: TokenView = operators::create(&state.db, name, new.role, &issued.digest, &by.name)
        .await?
        .into();
    tracing::info!(token_id = %view.id, role = new.role.as_str(), by = &*by.name, "operator token made");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken {
            view,
            token: issued.token,
        }),
    ))
}

/// The operator tokens (admin), newest first, revoked ones included; never
/// their secrets.
#[utoipa::path(get, path = "/v1/operators/tokens", tag = "operators",
    responses((status = 200, body = TokenList)))]
pub async fn list_tokens(State(state): State<AppState>) -> Result<axum::Json<TokenList>, ApiError> {
    let tokens = operators::list(&state.db)
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(axum::Json(TokenList { tokens }))
}

/// Revoke a token (admin): every API process refuses it within 5 seconds
/// (this one at once). Revoking a revoked token changes nothing.
#[utoipa::path(delete, path = "/v1/operators/tokens/{id}", tag = "operators",
    responses((status = 204, description = "Revoked"), (status = 404, body = Problem)))]
pub async fn revoke_token(
    Extension(by): Extension<Operator>,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if !operators::revoke(&state.db, id, &by.name).await? {
        return Err(ApiError::NotFound("operator token"));
    }
    state.operators.reload(&state.db).await?;
    tracing::info!(token_id = %id, by = &*by.name, "operator token revoked");
    Ok(StatusCode::NO_CONTENT)
}
