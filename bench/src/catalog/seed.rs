//! The catalog seeded before the sale: `--catalog N` shows created through
//! the real `POST /v1/shows`, as an operator's imports would, so that every
//! row went through the API's validation and the same columns (the search
//! document, the positions) as any show.

use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use harness::System;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shared::store::shows;

use super::vocabulary::{self, City, CATEGORIES, TAGS};
use crate::flash_sale::progress;

/// Shows created at once: enough to keep both cores busy, few enough that
/// the API's connection pool never makes them wait.
const CONCURRENCY: usize = 32;
/// Tickets of every seeded show: they are searched, never booked.
const CAPACITY: u32 = 100;
/// The share of shows with a position (the others have none to search
/// `near` by, as an online event or a venue not yet geocoded).
const PLACED: f64 = 0.8;
/// How far from its city's centre a show may be.
pub const CITY_KM: f64 = 30.0;
/// Shows start from this long before the seeding (a catalog keeps its
/// recent past, which `available=true` leaves out) …
const PAST_DAYS: i64 = 90;
/// … to this long after that: two years in all.
pub const SPAN_DAYS: i64 = 730;
/// Keeps the catalog's draws apart from the sale's and the searches'.
const STREAM: u64 = 0xCA7A_1065;

/// What seeding gave.
pub struct Seeded {
    pub shows: usize,
    pub seconds: f64,
}

impl Seeded {
    /// Shows the API created per second.
    pub fn per_s(&self) -> f64 {
        crate::stats::per_second(self.shows, self.seconds)
    }
}

/// The first day shows may start on: midnight UTC [`PAST_DAYS`] ago, so
/// that runs on the same day seed the same catalog.
pub fn first_day() -> DateTime<Utc> {
    let today = Utc::now().date_naive().and_time(chrono::NaiveTime::MIN);
    today.and_utc() - chrono::Duration::days(PAST_DAYS)
}

/// Creates `shows` shows drawn from `seed`, [`CONCURRENCY`] at a time;
/// fails at the first one the API refuses.
pub async fn seed(sys: &System, shows: usize, seed: u64) -> anyhow::Result<Seeded> {
    let bar = progress(shows, "catalog");
    let mut rng = StdRng::seed_from_u64(seed ^ STREAM);
    let first_day = first_day();
    let started = Instant::now();
    futures::stream::iter(0..shows)
        .map(|_| {
            let body = show(&mut rng, first_day);
            let bar = bar.clone();
            async move {
                let res = sys
                    .admin(reqwest::Method::POST, "/v1/shows")
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(
                    res.status() == reqwest::StatusCode::CREATED,
                    "seeding the catalog: creating a show answered {}: {}",
                    res.status(),
                    res.text().await.unwrap_or_default()
                );
                bar.inc(1);
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await?;
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    // A catalog that has been there a while has its statistics, and has
    // been vacuumed (100,000 inserts pass autovacuum's thresholds).
    let vacuum = Instant::now();
    shows::vacuum_and_analyze(sys.db().await).await?;
    eprintln!(
        "catalog: {shows} shows seeded in {seconds:.1} s, vacuumed and analyzed in {:.1} s",
        vacuum.elapsed().as_secs_f64()
    );
    Ok(Seeded { shows, seconds })
}

/// One show's `POST /v1/shows` body.
fn show(rng: &mut impl Rng, first_day: DateTime<Utc>) -> Value {
    let day = rng.random_range(0..SPAN_DAYS);
    // Evenings, on the half hour from 18:00 to 21:30.
    let minutes = 18 * 60 + 30 * rng.random_range(0..8);
    let starts_at = first_day + chrono::Duration::days(day) + chrono::Duration::minutes(minutes);
    let name_words = rng.random_range(2..=4);
    let description_words = rng.random_range(12..=36);
    let tag_count = rng.random_range(0..=5);
    let tags: Vec<&str> = TAGS.choose_multiple(rng, tag_count).copied().collect();
    let mut body = json!({
        "name": vocabulary::title(rng, name_words),
        "venue": vocabulary::venue(rng),
        "starts_at": starts_at,
        "capacity": CAPACITY,
        "price_cents": 500 * rng.random_range(3..=30),
        "description": vocabulary::prose(rng, description_words),
        "category": CATEGORIES.choose(rng).expect("categories"),
        "tags": tags,
    });
    if rng.random_bool(PLACED) {
        let city = City::any(rng);
        let (latitude, longitude) = city.jittered(rng, CITY_KM);
        body["venue_address"] = json!(format!(
            "{} {} Street, {}",
            rng.random_range(1..300),
            vocabulary::title(rng, 1),
            city.name
        ));
        body["latitude"] = json!(latitude);
        body["longitude"] = json!(longitude);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_catalog_and_every_show_is_valid() {
        let first_day = first_day();
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..1_000)
                .map(|_| show(&mut rng, first_day))
                .collect::<Vec<_>>()
        };
        let shows = draw(1);
        assert_eq!(shows, draw(1));
        assert_ne!(shows, draw(2));
        let placed = shows.iter().filter(|s| s["latitude"].is_f64()).count();
        assert!((700..=900).contains(&placed), "{placed} of 1,000 placed");
        for s in &shows {
            let tags = s["tags"].as_array().unwrap();
            assert!(tags.len() <= 5);
            let starts_at: DateTime<Utc> = serde_json::from_value(s["starts_at"].clone()).unwrap();
            assert!(
                starts_at >= first_day && starts_at < first_day + chrono::Duration::days(SPAN_DAYS)
            );
            assert_eq!(s["capacity"], CAPACITY);
        }
    }
}
