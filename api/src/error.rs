//! One error type for every handler and its one mapping to an RFC 9457
//! problem (`application/problem+json`). Bad input is always a 4xx.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use shared::amqp::PublishError;

use shared::store::operators::Role;

/// When a client past its stream limit may try again (`Retry-After`).
const STREAM_RETRY_AFTER: u64 = 5;

/// The media type of every error answer.
pub const PROBLEM: &str = "application/problem+json";

/// A field that failed validation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON for this endpoint: {0}")]
    MalformedBody(String),
    #[error("invalid path or query parameter: {0}")]
    BadParameter(String),
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("a valid operator token is required: Authorization: Bearer <token>")]
    Unauthorized,
    #[error("this needs an operator token with the role {}", .0.as_str())]
    Forbidden(Role),
    #[error("this ticket was already checked in, at {0}")]
    AlreadyCheckedIn(DateTime<Utc>),
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// Past the client address's limit on booking submissions; nothing was
    /// read or recorded.
    #[error("too many booking requests from this address: nothing was recorded; try again in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The client address already holds its most open event streams.
    #[error("this address already has {0} event streams open, the most it may; close one first")]
    TooManyStreams(usize),
    /// The process holds its most open event streams (it would otherwise
    /// run out of file descriptors).
    #[error("too many event streams are open on this server; try again shortly")]
    StreamsFull,
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("the booking queue is unavailable, try again shortly")]
    QueueUnavailable(#[from] PublishError),
    #[error("the database is unavailable, try again shortly")]
    DatabaseUnavailable(#[source] Arc<sqlx::Error>),
    #[error("the request took too long, try again shortly")]
    TimedOut,
    /// PostgreSQL refused this request's data (a data exception or a
    /// constraint, SQLSTATE class 22 or 23) that validation let through.
    #[error("the request's data was refused; nothing was recorded")]
    InputRejected(#[source] Arc<sqlx::Error>),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::MalformedBody(_) => (
                StatusCode::BAD_REQUEST,
                "malformed_body",
                "Malformed request body",
            ),
            Self::BadParameter(_) => (
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                "Invalid parameter",
            ),
            Self::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            Self::NotFound("show") => (StatusCode::NOT_FOUND, "show_not_found", "Show not found"),
            Self::NotFound("booking") => (
                StatusCode::NOT_FOUND,
                "booking_not_found",
                "Booking not found",
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::AlreadyCheckedIn(_) => (
                StatusCode::CONFLICT,
                "already_checked_in",
                "Already checked in",
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code, "Conflict"),
            Self::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency-Key reused",
            ),
            Self::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            ),
            Self::TooManyStreams(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                "Too many event streams",
            ),
            Self::StreamsFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                "streams_unavailable",
                "No event stream available",
            ),
            Self::InputRejected(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "input_rejected",
                "Input rejected",
            ),
            Self::QueueUnavailable(_) | Self::DatabaseUnavailable(_) | Self::TimedOut => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "Temporarily unavailable",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error",
            ),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Arc::new(err).into()
    }
}

/// An outage is a 503; data PostgreSQL refuses is the client's input, a
/// 422; anything else is ours, a 500. (`Arc`: the group commit can hand one
/// error to several requests.)
impl From<Arc<sqlx::Error>> for ApiError {
    fn from(err: Arc<sqlx::Error>) -> Self {
        if shared::db::is_transient(&err) {
            Self::DatabaseUnavailable(err)
        } else if refuses_data(&err) {
            Self::InputRejected(err)
        } else {
            Self::Internal(anyhow::anyhow!("database: {err}"))
        }
    }
}

/// SQLSTATE class 22 (data exception, e.g. 22021 for a NUL in text) or 23
/// (integrity constraint violation).
fn refuses_data(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    db.code()
        .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::MalformedBody(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadParameter(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadParameter(rejection.body_text())
    }
}

/// RFC 9457 problem details, with a stable `code` clients can switch on.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem kind: `/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// `already_checked_in`: when the ticket was first checked in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_in_at: Option<DateTime<Utc>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        match &self {
            Self::Internal(err) => tracing::error!(error = ?err, "request failed"),
            Self::QueueUnavailable(err) => tracing::warn!(error = %err, "answering 503"),
            Self::DatabaseUnavailable(err) => tracing::warn!(error = %err, "answering 503"),
            Self::TimedOut => tracing::warn!("request timed out, answering 503"),
            Self::InputRejected(err) => tracing::warn!(error = %err, "database refused the input"),
            _ => {}
        }
        metrics::counter!("api_errors_total", "code" => code).increment(1);
        let detail = match &self {
            Self::MalformedBody(d) | Self::BadParameter(d) => d.clone(),
            other => other.to_string(),
        };
        let checked_in_at = match &self {
            Self::AlreadyCheckedIn(at) => Some(*at),
            _ => None,
        };
        let rate_limited = match &self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            // A stream closes whenever its client wants; no time is known.
            Self::TooManyStreams(_) => Some(STREAM_RETRY_AFTER),
            _ => None,
        };
        let errors = match self {
            Self::Validation(errors) => errors,
            _ => Vec::new(),
        };
        let body = Problem {
            kind: format!("/problems/{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
            errors,
            checked_in_at,
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if let Some(seconds) = rate_limited {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
