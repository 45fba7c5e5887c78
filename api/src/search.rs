//! `GET /v1/shows`: the catalog's query parameters, validated into a
//! [`Search`], and the short-lived cache of answers.
//!
//! Browsing is read-heavy and bursty: when a hot show goes on sale, every
//! buyer's storefront asks for the same few lists at once. Each distinct
//! search is answered from the database at most once per [`FRESH_FOR`] per
//! process; the rest share that answer (concurrent misses wait for one
//! load). A change to a show (its availability above all) is therefore
//! seen within [`FRESH_FOR`] by every process; a show created through this
//! process empties its cache at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use moka::future::Cache;
use shared::store::shows::{Near, Search};
use utoipa::IntoParams;

use crate::entity_tag;
use crate::error::{ApiError, FieldError};
use crate::routes::shows::Page;
use crate::validation::{CATEGORY_CHARS, MAX_TAGS, TAG_CHARS};

/// How long an answer is served from the cache; also the `max-age`
/// clients and proxies may keep it.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// Bytes of answers kept at most per process.
const CACHE_BYTES: u64 = 64 << 20;
pub const MAX_QUERY_CHARS: usize = 200;
/// Half the Earth's circumference: every place is within it.
pub const MAX_RADIUS_KM: f64 = 20_016.0;
pub const DEFAULT_RADIUS_KM: f64 = 50.0;

/// The parameters of a search, for the OpenAPI document; [`parse`] reads
/// them (by hand, because `tag` repeats and each error names its
/// parameter).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; never constructed
pub struct ShowSearch {
    /// Full-text search over name, venue, description, category and tags
    /// (English stemming; `"quoted phrases"`, `or`, `-word`). Sorts by
    /// relevance, a name match first.
    #[param(min_length = 1, max_length = 200, nullable = false)]
    q: Option<String>,
    /// Only this category (ignoring case).
    #[param(min_length = 1, max_length = 50, nullable = false)]
    category: Option<String>,
    /// Only shows with this tag (ignoring case); repeat for "all of".
    #[param(max_items = 20, nullable = false)]
    tag: Option<Vec<String>>,
    /// Only shows starting at or after this time (RFC 3339).
    #[param(nullable = false)]
    from: Option<DateTime<Utc>>,
    /// Only shows starting before this time (RFC 3339).
    #[param(nullable = false)]
    to: Option<DateTime<Utc>>,
    /// `LAT,LNG` (WGS 84 degrees): only shows within `radius_km` of it,
    /// each with `distance_km`; without `q`, nearest first.
    #[param(example = "52.52,13.405", nullable = false)]
    near: Option<String>,
    /// With `near`: how far, in km (default 50).
    #[param(exclusive_minimum = 0, maximum = 20016, nullable = false)]
    radius_km: Option<f64>,
    /// `true`: only shows with tickets on sale now.
    #[param(nullable = false)]
    available: Option<bool>,
    #[param(minimum = 1, maximum = 1000, nullable = false)]
    limit: Option<i64>,
    #[param(minimum = 0, nullable = false)]
    offset: Option<i64>,
}

/// The search a query string asks for, or a `422` naming every parameter
/// that is wrong. Unknown parameters are ignored, as elsewhere.
pub fn parse(query: Option<&str>) -> Result<Search, ApiError> {
    let mut raw = Raw::default();
    let mut errors = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match &*key {
            "tag" => {
                raw.tags.push(value.into_owned());
                continue;
            }
            "q" => &mut raw.q,
            "category" => &mut raw.category,
            "from" => &mut raw.from,
            "to" => &mut raw.to,
            "near" => &mut raw.near,
            "radius_km" => &mut raw.radius_km,
            "available" => &mut raw.available,
            "limit" => &mut raw.limit,
            "offset" => &mut raw.offset,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            errors.push(FieldError::new(&*key, "give it at most once"));
        }
    }
    let search = raw.validate(&mut errors);
    if errors.is_empty() {
        Ok(search)
    } else {
        errors.dedup_by(|a, b| a.field == b.field);
        Err(ApiError::Validation(errors))
    }
}

/// The parameters as given.
#[derive(Default)]
struct Raw {
    q: Option<String>,
    category: Option<String>,
    tags: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    near: Option<String>,
    radius_km: Option<String>,
    available: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

impl Raw {
    fn validate(self, errors: &mut Vec<FieldError>) -> Search {
        let mut check = |field: &str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.push(FieldError::new(field, message));
            }
        };
        let text = self.q.map(|q| q.trim().to_owned());
        check(
            "q",
            text.as_deref()
                .map_or(Ok(()), |q| words(q, MAX_QUERY_CHARS)),
        );
        let category = self.category.map(|c| c.trim().to_lowercase());
        check(
            "category",
            category
                .as_deref()
                .map_or(Ok(()), |c| words(c, CATEGORY_CHARS)),
        );
        let mut tags: Vec<String> = self.tags.iter().map(|t| t.trim().to_lowercase()).collect();
        tags.sort();
        tags.dedup();
        check("tag", tag_list(&tags));
        let from = self
            .from
            .as_deref()
            .map(|t| time(t).map_err(|e| ("from", e)));
        let to = self.to.as_deref().map(|t| time(t).map_err(|e| ("to", e)));
        let (from, to) = (settle(from, &mut check), settle(to, &mut check));
        if let (Some(from), Some(to)) = (from, to) {
            check(
                "to",
                (from < to).then_some(()).ok_or("must be after from".into()),
            );
        }
        let near = self
            .near
            .as_deref()
            .map(|n| point(n).map_err(|e| ("near", e)));
        let near = settle(near, &mut check);
        let radius = self
            .radius_km
            .as_deref()
            .map(|r| radius(r).map_err(|e| ("radius_km", e)));
        let radius_km = settle(radius, &mut check);
        if radius_km.is_some() && self.near.is_none() {
            check("radius_km", Err("needs near".into()));
        }
        let available = self.available.as_deref().map(|a| match a {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(("available", "must be true or false".to_owned())),
        });
        let available = settle(available, &mut check).unwrap_or(false);
        let page = |field: &'static str, value: Option<String>| {
            value.map(|v| {
                v.parse::<i64>()
                    .map_err(|_| (field, "must be a whole number".into()))
            })
        };
        let limit = settle(page("limit", self.limit), &mut check);
        let offset = settle(page("offset", self.offset), &mut check);
        let (limit, offset) = match (Page { limit, offset }).bounds() {
            Ok(bounds) => bounds,
            Err(ApiError::Validation(invalid)) => {
                errors.extend(invalid);
                (0, 0)
            }
            Err(_) => unreachable!("bounds only fails validation"),
        };
        Search {
            text,
            category,
            tags,
            from,
            to,
            near: near.map(|(latitude, longitude)| Near {
                latitude,
                longitude,
                radius_km: radius_km.unwrap_or(DEFAULT_RADIUS_KM),
            }),
            available,
            limit,
            offset,
        }
    }
}

/// The value of a parsed parameter, its error recorded.
fn settle<T>(
    parsed: Option<Result<T, (&'static str, String)>>,
    check: &mut impl FnMut(&str, Result<(), String>),
) -> Option<T> {
    match parsed? {
        Ok(value) => Some(value),
        Err((field, message)) => {
            check(field, Err(message));
            None
        }
    }
}

fn words(text: &str, max: usize) -> Result<(), String> {
    let chars = text.chars().count();
    if chars == 0 || chars > max || text.chars().any(char::is_control) {
        return Err(format!(
            "must be 1 to {max} characters, without control characters"
        ));
    }
    Ok(())
}

fn tag_list(tags: &[String]) -> Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!("at most {MAX_TAGS} tags"));
    }
    tags.iter().try_for_each(|t| words(t, TAG_CHARS))
}

fn time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "must be an RFC 3339 time, e.g. 2027-05-01T20:00:00Z".into())
}

fn point(text: &str) -> Result<(f64, f64), String> {
    let invalid = || "must be LAT,LNG in degrees, e.g. 52.52,13.405".to_owned();
    let (lat, lng) = text.split_once(',').ok_or_else(invalid)?;
    let lat: f64 = lat.trim().parse().map_err(|_| invalid())?;
    let lng: f64 = lng.trim().parse().map_err(|_| invalid())?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
        return Err("latitude must be -90 to 90 and longitude -180 to 180".into());
    }
    Ok((lat, lng))
}

fn radius(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(km) if km > 0.0 && km <= MAX_RADIUS_KM => Ok(km),
        _ => Err(format!(
            "must be a number of km above 0 and at most {MAX_RADIUS_KM}"
        )),
    }
}

/// An answer as sent: the JSON body and its entity tag.
pub struct Answer {
    pub body: Bytes,
    pub etag: String,
}

impl Answer {
    pub fn new(body: Vec<u8>) -> Self {
        Self {
            etag: entity_tag::of(&body),
            body: body.into(),
        }
    }
}

/// Answers by search, each for at most [`FRESH_FOR`].
#[derive(Clone)]
pub struct Answers(Cache<Search, Arc<Answer>>);

impl Default for Answers {
    fn default() -> Self {
        Self(
            Cache::builder()
                .time_to_live(FRESH_FOR)
                .weigher(|_, answer: &Arc<Answer>| {
                    u32::try_from(answer.body.len()).unwrap_or(u32::MAX)
                })
                .max_capacity(CACHE_BYTES)
                .build(),
        )
    }
}

impl Answers {
    /// The answer to `search`: cached, or loaded once however many ask.
    /// A failed load fails every request that waited for it, each mapped
    /// as any database error is (an outage is a `503`).
    pub async fn get<F>(&self, search: Search, load: F) -> Result<Arc<Answer>, ApiError>
    where
        F: std::future::Future<Output = Result<Answer, sqlx::Error>>,
    {
        self.0
            .try_get_with(search, async { load.await.map(Arc::new) })
            .await
            .map_err(ApiError::from)
    }

    /// A show was created here: no list may miss it.
    pub fn forget_all(&self) {
        self.0.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(query: &str) -> Vec<String> {
        match parse(Some(query)) {
            Err(ApiError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("{query}: expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn no_parameters_list_everything_a_page_at_a_time() {
        let search = parse(None).unwrap();
        assert_eq!(
            search,
            Search {
                limit: 100,
                ..Search::default()
            }
        );
    }

    #[test]
    fn every_parameter_is_read_and_tags_repeat() {
        let search = parse(Some(
            "q=rock%20night&category=Music&tag=Live&tag=jazz&tag=live&from=2027-01-01T00:00:00Z\
             &to=2027-02-01T00:00:00%2B01:00&near=52.52,13.405&radius_km=10&available=true\
             &limit=5&offset=10&unknown=1",
        ))
        .unwrap();
        assert_eq!(search.text.as_deref(), Some("rock night"));
        assert_eq!(search.category.as_deref(), Some("music"));
        assert_eq!(search.tags, ["jazz", "live"]);
        assert_eq!(search.to.unwrap().to_rfc3339(), "2027-01-31T23:00:00+00:00");
        assert_eq!(
            search.near,
            Some(Near {
                latitude: 52.52,
                longitude: 13.405,
                radius_km: 10.0
            })
        );
        assert!(search.available);
        assert_eq!((search.limit, search.offset), (5, 10));
    }

    #[test]
    fn near_without_a_radius_means_fifty_km() {
        let search = parse(Some("near=-33.86,151.2")).unwrap();
        assert_eq!(search.near.unwrap().radius_km, DEFAULT_RADIUS_KM);
    }

    #[test]
    fn each_malformed_parameter_is_named() {
        assert_eq!(invalid("q=%20%20"), ["q"]);
        assert_eq!(invalid(&format!("q={}", "a".repeat(201))), ["q"]);
        assert_eq!(invalid("category="), ["category"]);
        assert_eq!(invalid("tag="), ["tag"]);
        assert_eq!(invalid("from=yesterday"), ["from"]);
        assert_eq!(invalid("to=2027-01-01"), ["to"]);
        assert_eq!(
            invalid("from=2027-02-01T00:00:00Z&to=2027-01-01T00:00:00Z"),
            ["to"]
        );
        assert_eq!(invalid("near=52.5"), ["near"]);
        assert_eq!(invalid("near=91,0"), ["near"]);
        assert_eq!(invalid("near=NaN,0"), ["near"]);
        assert_eq!(invalid("near=0,0&radius_km=0"), ["radius_km"]);
        assert_eq!(invalid("near=0,0&radius_km=inf"), ["radius_km"]);
        assert_eq!(invalid("radius_km=5"), ["radius_km"]);
        assert_eq!(invalid("available=yes"), ["available"]);
        assert_eq!(invalid("limit=0"), ["limit"]);
        assert_eq!(invalid("limit=ten"), ["limit"]);
        assert_eq!(invalid("offset=-1"), ["offset"]);
        assert_eq!(invalid("q=a&q=b"), ["q"]);
        let many: String = (0..21).map(|i| format!("tag=t{i}&")).collect();
        assert_eq!(invalid(&many), ["tag"]);
        assert_eq!(
            invalid("from=x&available=2&limit=-3"),
            ["from", "available", "limit"]
        );
    }

    #[test]
    fn the_same_body_has_the_same_tag_and_another_body_another() {
        assert_eq!(
            Answer::new(b"[1]".to_vec()).etag,
            Answer::new(b"[1]".to_vec()).etag
        );
        assert_ne!(
            Answer::new(b"[1]".to_vec()).etag,
            Answer::new(b"[2]".to_vec()).etag
        );
    }
}
