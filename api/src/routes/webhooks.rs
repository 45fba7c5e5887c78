//! Webhook endpoints (admin): register, list, delete, and see what was
//! delivered to one. The notifier does the delivering.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use shared::store::webhooks as store;
use shared::webhooks::{DeliveryStatus, WebhookEvent, SECRET_PREFIX};
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, FieldError, Problem};
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::validation;

/// Bytes of the signing key (Standard Webhooks asks for 24 to 64).
const SECRET_BYTES: usize = 32;
const MAX_URL_CHARS: usize = 2000;
/// Deliveries listed per endpoint, newest first.
const RECENT_DELIVERIES: i64 = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    #[schema(schema_with = url_schema)]
    pub url: String,
    #[schema(schema_with = events_schema)]
    pub events: Vec<String>,
}

fn events_schema() -> Array {
    ArrayBuilder::new()
        .items(WebhookEvent::schema())
        .min_items(Some(1))
        .unique_items(true)
        .description(Some("Event types to receive (at least one, each once)."))
        .build()
}

fn url_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("uri".to_owned())))
        .max_length(Some(MAX_URL_CHARS))
        .pattern(Some("^[Hh][Tt][Tt][Pp][Ss]?://"))
        .description(Some(
            "`http` or `https`; not a loopback or private address unless the \
             deployment allows it (`WEBHOOK_ALLOW_PRIVATE_NETWORKS`).",
        ))
        .build()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub created_at: DateTime<Utc>,
}

/// A new endpoint, with its signing secret: shown this once.
// No `Debug`: it holds a secret.
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_` + base64 key: verify each request's `webhook-signature` with it.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// One POST of a delivery and how the endpoint answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    pub attempt: i32,
    /// The HTTP status, if the endpoint answered at all.
    pub status_code: Option<i32>,
    /// Why it counted as failed (a non-2xx, a timeout, a refused address…).
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// One event's delivery to the endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// The `webhook-id` header of every attempt.
    pub id: Uuid,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: WebhookEvent,
    pub status: DeliveryStatus,
    pub booking_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Newest first.
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// Register an endpoint for booking events (admin). The answer carries the
/// signing secret, which is never shown again.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = NewWebhook,
    responses((status = 201, body = CreatedWebhook), (status = 422, body = Problem)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Json(req): Json<NewWebhook>,
) -> Result<(StatusCode, axum::Json<CreatedWebhook>), ApiError> {
    let mut errors = Vec::new();
    let events = events(&req.events, &mut errors);
    if let Some(invalid) = validation::text("url", &req.url, MAX_URL_CHARS) {
        errors.push(invalid);
    } else if let Err(refused) =
        shared::webhooks::check_destination(&req.url, state.allow_private_webhooks).await
    {
        errors.push(FieldError::new("url", refused.to_string()));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let id = Uuid::now_v7();
    let secret = new_secret();
    // Under the routing lock: the endpoint and the binding that routes its
    // events appear together for the notifiers' check (see ROUTING_LOCK).
    let mut tx = state.db.begin().await?;
    store::lock_routing(&mut tx).await?;
    let created_at = store::create_endpoint(&mut *tx, id, &req.url, &events, &secret).await?;
    // Events are routed to the webhook queue only while an endpoint is
    // live. Should binding fail now, the notifiers bind within a second.
    if let Err(err) = state.publisher.bind_webhook_events().await {
        tracing::warn!(error = %err, "could not route webhook events yet");
    }
    tx.commit().await?;
    tracing::info!(webhook_id = %id, url = %req.url, "webhook endpoint created");
    let webhook = Webhook {
        id,
        url: req.url,
        events,
        created_at,
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedWebhook { webhook, secret }),
    ))
}

/// The subscribed event types: known, at least one, none twice.
fn events(names: &[String], errors: &mut Vec<FieldError>) -> Vec<WebhookEvent> {
    if names.is_empty() {
        errors.push(FieldError::new("events", "must name at least one event"));
    }
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match name.parse::<WebhookEvent>() {
            Ok(event) if seen.insert(event) => events.push(event),
            Ok(_) => errors.push(FieldError::new(format!("events[{i}]"), "listed twice")),
            Err(_) => errors.push(FieldError::new(
                format!("events[{i}]"),
                format!(
                    "must be one of {}",
                    WebhookEvent::ALL
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
    events
}

/// A random signing key, in the Standard Webhooks `whsec_` form.
fn new_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// The registered endpoints (admin), without their secrets.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
) -> Result<axum::Json<WebhookList>, ApiError> {
    let webhooks = store::list_endpoints(&state.db)
        .await?
        .into_iter()
        .map(|e| Webhook {
            id: e.id,
            url: e.url,
            events: e.events,
            created_at: e.created_at,
        })
        .collect();
    Ok(axum::Json(WebhookList { webhooks }))
}

/// Delete an endpoint (admin): it gets no further deliveries; those still
/// pending are cancelled.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    responses((status = 204, description = "Deleted"),
        (status = 404, body = Problem)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let Some(cancelled) = store::delete_endpoint(&state.db, id).await? else {
        return Err(ApiError::NotFound("webhook"));
    };
    tracing::info!(webhook_id = %id, cancelled, "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint's recent deliveries (admin), newest first, each with its
/// attempts: failed ones are listed as `failed`. A deleted endpoint is
/// gone, with its deliveries (404).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    responses((status = 200, body = DeliveryList),
        (status = 404, body = Problem)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<DeliveryList>, ApiError> {
    if !store::endpoint_is_live(&state.db, id).await? {
        return Err(ApiError::NotFound("webhook"));
    }
    let rows = store::recent_deliveries(&state.db, id, RECENT_DELIVERIES).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut attempts: HashMap<Uuid, Vec<Attempt>> = HashMap::new();
    for a in store::attempts_of(&state.db, &ids).await? {
        attempts.entry(a.delivery_id).or_default().push(Attempt {
            attempt: a.attempt,
            status_code: a.status_code,
            error: a.error,
            at: a.at,
        });
    }
    let deliveries = rows
        .into_iter()
        .map(|r| Delivery {
            id: r.id,
            event_id: r.event_id,
            event_type: r.event_type,
            status: r.status,
            booking_id: r.booking_id,
            created_at: r.created_at,
            delivered_at: r.delivered_at,
            attempts: attempts.remove(&r.id).unwrap_or_default(),
        })
        .collect();
    Ok(axum::Json(DeliveryList { deliveries }))
}
