//! Shows: create (admin), list, read, and the live seat map.

use std::collections::HashSet;

use axum::extract::{Extension, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::ShowKind;
pub use shared::store::seats::SeatMapEntry;
pub use shared::store::shows::ShowView;
use shared::store::{seats, shows};
use sqlx::PgPool;
use utoipa::openapi::schema::{Array, ArrayBuilder, SchemaType, Type};
use utoipa::openapi::Ref;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Operator;
use crate::entity_tag;
use crate::error::{ApiError, FieldError, Problem};
use crate::extract::{Json, Path};
use crate::integer;
use crate::search::{self, ShowSearch};
use crate::state::AppState;
use crate::validation::{
    self, ADDRESS_CHARS, CATEGORY_CHARS, DESCRIPTION_CHARS, MAX_TAGS, NAME_CHARS, ROW_CHARS,
    SECTION_CHARS, TAG_CHARS,
};

/// Largest show we accept, so one request cannot ask for a runaway insert.
pub(crate) const MAX_CAPACITY: i32 = 200_000;
pub(crate) const MAX_SEATS_PER_ROW: i32 = 1_000;
/// Highest ticket price: ten tickets, and a sold-out show's revenue, stay
/// far inside the `i64` totals and sums are kept in.
pub(crate) const MAX_PRICE_CENTS: i64 = 1_000_000_000;

/// A new show: `capacity` and `price_cents` (general admission) or
/// `sections` (seated).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewShow {
    #[schema(schema_with = validation::text_schema::<NAME_CHARS>)]
    pub name: String,
    #[schema(schema_with = validation::text_schema::<NAME_CHARS>)]
    pub venue: String,
    /// RFC 3339 timestamp.
    pub starts_at: DateTime<Utc>,
    /// General admission: number of tickets on sale.
    #[serde(default, deserialize_with = "integer::optional")]
    #[schema(minimum = 1, maximum = 200_000)]
    pub capacity: Option<i32>,
    /// General admission: price of one ticket.
    #[serde(default, deserialize_with = "integer::optional")]
    #[schema(minimum = 0, maximum = 1_000_000_000_i64)]
    pub price_cents: Option<i64>,
    #[schema(schema_with = sections_schema)]
    pub sections: Option<Vec<NewSection>>,
    /// Most held + confirmed tickets one customer (by case-insensitive
    /// email) may have for this show; a request past it is rejected with
    /// reason `limit_exceeded`. No limit if absent.
    #[serde(default, deserialize_with = "integer::optional")]
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    pub max_tickets_per_customer: Option<i32>,
    /// What the show is; searched by `q`.
    #[schema(schema_with = validation::optional_text_schema::<DESCRIPTION_CHARS>)]
    pub description: Option<String>,
    /// Matched ignoring case by `category`.
    #[schema(schema_with = validation::optional_text_schema::<CATEGORY_CHARS>)]
    pub category: Option<String>,
    /// Matched ignoring case by `tag`; at most 20, each 1 to 50 characters,
    /// different ignoring case.
    #[schema(max_items = 20)]
    pub tags: Option<Vec<String>>,
    #[schema(schema_with = validation::optional_text_schema::<ADDRESS_CHARS>)]
    pub venue_address: Option<String>,
    /// WGS 84 degrees, with `longitude`.
    #[schema(minimum = -90, maximum = 90)]
    pub latitude: Option<f64>,
    /// WGS 84 degrees, with `latitude`.
    #[schema(minimum = -180, maximum = 180)]
    pub longitude: Option<f64>,
}

impl NewShow {
    /// The document's account of the layouts [`validate`] takes: each
    /// body has exactly one of these shapes (`oneOf`).
    pub fn shapes() -> serde_json::Value {
        serde_json::json!([
            {
                "title": "General admission",
                "required": ["capacity", "price_cents"],
                "properties": {
                    "capacity": {"type": "integer"},
                    "price_cents": {"type": "integer"},
                    "sections": {"type": "null"}
                }
            },
            {
                "title": "Seated",
                "required": ["sections"],
                "properties": {
                    "sections": {"type": "array"},
                    "capacity": {"type": "null"},
                    "price_cents": {"type": "null"}
                }
            }
        ])
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSection {
    #[schema(schema_with = validation::text_schema::<SECTION_CHARS>)]
    pub name: String,
    #[serde(deserialize_with = "integer::whole")]
    #[schema(minimum = 0, maximum = 1_000_000_000_i64)]
    pub price_cents: i64,
    #[schema(schema_with = rows_schema)]
    pub rows: Vec<NewRow>,
}

/// `uniqueItems` says that identical sections (rows) are duplicates; that
/// two sharing only a name (label) are too, only the description can say.
fn sections_schema() -> Array {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(Ref::from_schema_name("NewSection"))
        .min_items(Some(1))
        .unique_items(true)
        .description(Some(format!(
            "Seated: the seat map, at most {MAX_CAPACITY} seats in all. Section names \
             (trimmed, ignoring case) must differ."
        )))
        .build()
}

fn rows_schema() -> Array {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("NewRow"))
        .min_items(Some(1))
        .unique_items(true)
        .description(Some("Row labels (trimmed) must differ."))
        .build()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRow {
    #[schema(schema_with = validation::text_schema::<ROW_CHARS>)]
    pub row: String,
    /// Seats in the row, numbered from 1.
    #[serde(deserialize_with = "integer::whole")]
    #[schema(minimum = 1, maximum = 1000)]
    pub seats: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShowList {
    pub shows: Vec<ShowView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatMap {
    pub show_id: Uuid,
    pub seats: Vec<SeatMapEntry>,
}

/// Which page of a list: query parameters of the list operations.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// At most this many results (default 100).
    #[param(minimum = 1, maximum = 1000, nullable = false)]
    pub limit: Option<i64>,
    /// Skip this many results first (default 0).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64, nullable = false)]
    pub offset: Option<i64>,
}

impl Page {
    pub(crate) const MAX_LIMIT: i64 = 1000;

    /// `(limit, offset)`, or a 422 naming the one out of bounds.
    pub fn bounds(&self) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(100);
        let offset = self.offset.unwrap_or(0);
        let mut errors = Vec::new();
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            let message = format!("must be 1 to {}", Self::MAX_LIMIT);
            errors.push(FieldError::new("limit", message));
        }
        if offset < 0 {
            errors.push(FieldError::new("offset", "must not be negative"));
        }
        if errors.is_empty() {
            Ok((limit, offset))
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

/// The validated shape of a new show.
enum Layout {
    General { capacity: i32, price_cents: i64 },
    Seated(Vec<NewSection>),
}

fn validate(show: &mut NewShow) -> Result<Layout, ApiError> {
    let mut errors = Vec::new();
    errors.extend(validation::text("name", &show.name, NAME_CHARS));
    errors.extend(validation::text("venue", &show.venue, NAME_CHARS));
    if show.max_tickets_per_customer.is_some_and(|max| max < 1) {
        errors.push(FieldError::new(
            "max_tickets_per_customer",
            "must be at least 1 when given",
        ));
    }
    validate_listing(show, &mut errors);
    let layout = match (show.capacity, show.price_cents, show.sections.take()) {
        (Some(capacity), Some(price_cents), None) => {
            if !(1..=MAX_CAPACITY).contains(&capacity) {
                errors.push(FieldError::new(
                    "capacity",
                    format!("must be 1 to {MAX_CAPACITY}"),
                ));
            }
            errors.extend(price("price_cents", price_cents));
            Some(Layout::General {
                capacity,
                price_cents,
            })
        }
        (None, None, Some(sections)) => {
            validate_sections(&sections, &mut errors);
            Some(Layout::Seated(sections))
        }
        _ => {
            errors.push(FieldError::new(
                "capacity",
                "give either capacity and price_cents (general admission) or sections (seated)",
            ));
            None
        }
    };
    match layout {
        Some(layout) if errors.is_empty() => Ok(layout),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// The catalog's fields: each optional, each bounded.
fn validate_listing(show: &NewShow, errors: &mut Vec<FieldError>) {
    let texts = [
        ("description", &show.description, DESCRIPTION_CHARS),
        ("category", &show.category, CATEGORY_CHARS),
        ("venue_address", &show.venue_address, ADDRESS_CHARS),
    ];
    for (field, value, max) in texts {
        errors.extend(
            value
                .as_deref()
                .and_then(|v| validation::text(field, v, max)),
        );
    }
    let tags = show.tags.as_deref().unwrap_or_default();
    if tags.len() > MAX_TAGS {
        errors.push(FieldError::new("tags", format!("at most {MAX_TAGS} tags")));
    }
    let mut seen = HashSet::new();
    for (i, tag) in tags.iter().enumerate() {
        if let Some(invalid) = validation::text(format!("tags[{i}]"), tag, TAG_CHARS) {
            errors.push(invalid);
        } else if !seen.insert(tag.trim().to_lowercase()) {
            errors.push(FieldError::new(format!("tags[{i}]"), "duplicate tag"));
        }
    }
    match (show.latitude, show.longitude) {
        (Some(lat), Some(lng)) => {
            if !(-90.0..=90.0).contains(&lat) {
                errors.push(FieldError::new("latitude", "must be -90 to 90"));
            }
            if !(-180.0..=180.0).contains(&lng) {
                errors.push(FieldError::new("longitude", "must be -180 to 180"));
            }
        }
        (None, None) => {}
        (lat, _) => errors.push(FieldError::new(
            if lat.is_some() {
                "longitude"
            } else {
                "latitude"
            },
            "give latitude and longitude together",
        )),
    }
}

fn price(field: impl Into<String>, cents: i64) -> Option<FieldError> {
    (!(0..=MAX_PRICE_CENTS).contains(&cents))
        .then(|| FieldError::new(field, format!("must be 0 to {MAX_PRICE_CENTS}")))
}

fn validate_sections(sections: &[NewSection], errors: &mut Vec<FieldError>) {
    if sections.is_empty() {
        errors.push(FieldError::new("sections", "must not be empty"));
    }
    let mut names = HashSet::new();
    let mut total: i64 = 0;
    for (i, section) in sections.iter().enumerate() {
        let at = |f: &str| format!("sections[{i}].{f}");
        if let Some(invalid) = validation::text(at("name"), &section.name, SECTION_CHARS) {
            errors.push(invalid);
        } else if !names.insert(section.name.trim().to_lowercase()) {
            errors.push(FieldError::new(at("name"), "duplicate section name"));
        }
        errors.extend(price(at("price_cents"), section.price_cents));
        if section.rows.is_empty() {
            errors.push(FieldError::new(at("rows"), "must not be empty"));
        }
        let mut rows = HashSet::new();
        for (j, row) in section.rows.iter().enumerate() {
            if let Some(invalid) =
                validation::text(at(&format!("rows[{j}].row")), &row.row, ROW_CHARS)
            {
                errors.push(invalid);
            } else if !rows.insert(row.row.trim()) {
                errors.push(FieldError::new(
                    at(&format!("rows[{j}].row")),
                    "duplicate row",
                ));
            }
            if !(1..=MAX_SEATS_PER_ROW).contains(&row.seats) {
                errors.push(FieldError::new(
                    at(&format!("rows[{j}].seats")),
                    format!("must be 1 to {MAX_SEATS_PER_ROW}"),
                ));
            }
            total += i64::from(row.seats.max(0));
        }
    }
    if total > i64::from(MAX_CAPACITY) {
        errors.push(FieldError::new(
            "sections",
            format!("at most {MAX_CAPACITY} seats in all"),
        ));
    }
}

/// Create a show (admin).
#[utoipa::path(post, path = "/v1/shows", tag = "shows", request_body = NewShow,
    responses((status = 201, body = ShowView), (status = 422, body = Problem)))]
pub async fn create_show(
    Extension(by): Extension<Operator>,
    State(state): State<AppState>,
    Json(mut new): Json<NewShow>,
) -> Result<(StatusCode, axum::Json<ShowView>), ApiError> {
    let layout = validate(&mut new)?;
    let id = Uuid::new_v4();
    let (kind, capacity, price_cents) = match &layout {
        Layout::General {
            capacity,
            price_cents,
        } => (ShowKind::GeneralAdmission, *capacity, Some(*price_cents)),
        Layout::Seated(sections) => {
            let seats = sections.iter().flat_map(|s| &s.rows).map(|r| r.seats).sum();
            (ShowKind::Seated, seats, None)
        }
    };
    let show = shows::NewShow {
        id,
        name: new.name.trim(),
        venue: new.venue.trim(),
        starts_at: new.starts_at,
        kind,
        capacity,
        price_cents,
        max_tickets_per_customer: new.max_tickets_per_customer,
        catalog: shows::Listing {
            description: new.description.as_deref().map(str::trim),
            category: new.category.as_deref().map(str::trim),
            tags: new
                .tags
                .iter()
                .flatten()
                .map(|t| t.trim().to_owned())
                .collect(),
            venue_address: new.venue_address.as_deref().map(str::trim),
            position: new.latitude.zip(new.longitude),
        },
        created_by: &by.name,
    };
    let mut tx = state.db.begin().await?;
    shows::create(&mut tx, &show).await?;
    if let Layout::Seated(sections) = &layout {
        for (position, section) in sections.iter().enumerate() {
            let rows: Vec<(&str, i32)> = section
                .rows
                .iter()
                .map(|r| (r.row.trim(), r.seats))
                .collect();
            seats::create_section(
                &mut tx,
                id,
                position as i32,
                section.name.trim(),
                section.price_cents,
                &rows,
            )
            .await?;
        }
    }
    tx.commit().await?;
    state.answers.forget_all();
    tracing::info!(show_id = %id, "show created");
    let show = fetch_show(&state.db, id).await?;
    Ok((StatusCode::CREATED, axum::Json(show)))
}

/// The show from `db`: the primary to read a change back, else the
/// replicas ([`AppState::reads`]).
pub(crate) async fn fetch_show(db: &PgPool, id: Uuid) -> Result<ShowView, ApiError> {
    shows::view(db, id).await?.ok_or(ApiError::NotFound("show"))
}

/// Search and list shows: soonest first; by relevance with `q`; nearest
/// first with `near` (and no `q`). Answers carry an `ETag` (a matching
/// `If-None-Match` gets `304`) and may be up to a second old.
#[utoipa::path(get, path = "/v1/shows", tag = "shows", params(ShowSearch),
    responses((status = 200, body = ShowList), (status = 304, description = "Not modified"),
        (status = 422, body = Problem)))]
pub async fn list_shows(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let search = search::parse(query.as_deref())?;
    let reads = state.reads.clone();
    let answer = state
        .answers
        .get(search.clone(), async move {
            let shows = shows::search(&reads, &search).await?;
            let body = serde_json::to_vec(&ShowList { shows }).expect("show lists serialize");
            Ok(search::Answer::new(body))
        })
        .await?;
    let cache_control = format!("public, max-age={}", search::FRESH_FOR.as_secs());
    let mut response = if entity_tag::unchanged(&headers, &answer.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let json = HeaderValue::from_static("application/json");
        ([(header::CONTENT_TYPE, json)], answer.body.clone()).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&answer.etag).expect("hex"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&cache_control).expect("ascii"),
    );
    Ok(response)
}

/// One show with its live availability.
#[utoipa::path(get, path = "/v1/shows/{id}", tag = "shows",
    responses((status = 200, body = ShowView), (status = 404, body = Problem)))]
pub async fn get_show(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<ShowView>, ApiError> {
    fetch_show(&state.reads, id).await.map(axum::Json)
}

/// The seat map of a seated show, with each seat's live status.
#[utoipa::path(get, path = "/v1/shows/{id}/seats", tag = "shows",
    responses((status = 200, body = SeatMap), (status = 404, body = Problem)))]
pub async fn seat_map(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<SeatMap>, ApiError> {
    fetch_show(&state.reads, id).await?;
    let seats = seats::map(&state.reads, id).await?;
    Ok(axum::Json(SeatMap { show_id: id, seats }))
}
