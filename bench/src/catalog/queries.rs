//! The searches sent during the sale: a buyer's mix of full text,
//! category and tag browsing, "near me" and date windows, drawn from the
//! catalog's own vocabulary so that they find shows.
//!
//! The API keeps each distinct answer for a second, so a search that
//! repeats one sent shortly before measures the cache, not the database.
//! Category and tag pages therefore vary their page (1 to [`PAGES`], as a
//! buyer browsing), and a draw that repeats a search of the last
//! [`REPEAT_WINDOW`] is drawn again; one still repeating after
//! [`DRAWS`] draws is marked, and left out of the database's figures.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::Url;
use serde::Serialize;

use super::seed::{first_day, CITY_KM, SPAN_DAYS};
use super::vocabulary::{self, City, CATEGORIES, TAGS};

/// Shows per page, as a storefront asks.
const LIMIT: u32 = 20;
/// Category and tag searches ask for one of the first this many pages.
const PAGES: u32 = 5;
/// Longer than the API keeps an answer (one second), with a margin for
/// the time the first answer took.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(2);
const DRAWS: usize = 16;
/// Keeps the searches' draws apart from the sale's and the catalog's.
const STREAM: u64 = 0x5EA2_C4E5;

/// What a search looks for; each is a share of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `q`: one or two words (40 %).
    Text,
    /// `category`, sometimes with `available=true` (20 %).
    Category,
    /// `tag`, sometimes two (15 %).
    Tag,
    /// `near` a city, 10–100 km (15 %).
    Near,
    /// `from` and `to`, 1 to 30 days apart (10 %).
    Window,
}

impl Kind {
    /// Its name in the report: the parameter it searches by.
    pub fn label(self) -> &'static str {
        match self {
            Self::Text => "q",
            Self::Category => "category",
            Self::Tag => "tag",
            Self::Near => "near",
            Self::Window => "from/to",
        }
    }

    fn draw(rng: &mut impl Rng) -> Self {
        match rng.random_range(0..100) {
            0..40 => Self::Text,
            40..60 => Self::Category,
            60..75 => Self::Tag,
            75..90 => Self::Near,
            _ => Self::Window,
        }
    }
}

/// By label, in the mix's order.
impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.label())
    }
}

/// One search: its kind and its URL.
#[derive(Debug, Clone)]
pub struct Query {
    pub kind: Kind,
    pub url: Url,
    /// The same URL was sent within [`REPEAT_WINDOW`]: the answer
    /// may have come from the cache.
    pub repeat: bool,
}

/// Draws the searches, one after the other, remembering the recent ones.
pub struct Mix {
    rng: StdRng,
    /// `GET /v1/shows` of the API.
    shows: Url,
    first_day: DateTime<Utc>,
    /// URL to when it was last sent.
    recent: HashMap<String, Instant>,
    drawn: usize,
}

impl Mix {
    pub fn new(seed: u64, shows: Url) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ STREAM),
            shows,
            first_day: first_day(),
            recent: HashMap::new(),
            drawn: 0,
        }
    }

    /// The next search, to be sent `now`.
    pub fn next(&mut self, now: Instant) -> Query {
        self.drawn += 1;
        if self.drawn.is_multiple_of(256) {
            self.recent.retain(|_, at| now - *at < REPEAT_WINDOW);
        }
        let kind = Kind::draw(&mut self.rng);
        let mut url = self.url(kind);
        let mut repeat = self.repeats(&url, now);
        for _ in 1..DRAWS {
            if !repeat {
                break;
            }
            url = self.url(kind);
            repeat = self.repeats(&url, now);
        }
        self.recent.insert(url.to_string(), now);
        Query { kind, url, repeat }
    }

    fn repeats(&self, url: &Url, now: Instant) -> bool {
        self.recent
            .get(url.as_str())
            .is_some_and(|at| now - *at < REPEAT_WINDOW)
    }

    /// A search of `kind`, with `limit`.
    fn url(&mut self, kind: Kind) -> Url {
        let rng = &mut self.rng;
        let mut url = self.shows.clone();
        let mut query = url.query_pairs_mut();
        let page = |rng: &mut StdRng| (LIMIT * rng.random_range(0..PAGES)).to_string();
        match kind {
            Kind::Text => {
                let mut words = vec![vocabulary::word(rng)];
                if rng.random_bool(0.5) {
                    words.push(vocabulary::word(rng));
                }
                query.append_pair("q", &words.join(" "));
            }
            Kind::Category => {
                let category = CATEGORIES.choose(rng).expect("categories");
                query.append_pair("category", &category.to_lowercase());
                if rng.random_bool(0.3) {
                    query.append_pair("available", "true");
                }
                query.append_pair("offset", &page(rng));
            }
            Kind::Tag => {
                let all_of = if rng.random_bool(0.25) { 2 } else { 1 };
                for tag in TAGS.choose_multiple(rng, all_of) {
                    query.append_pair("tag", tag);
                }
                query.append_pair("offset", &page(rng));
            }
            Kind::Near => {
                let (latitude, longitude) = City::any(rng).jittered(rng, CITY_KM);
                let radius_km = rng.random_range(10.0..=100.0);
                query.append_pair("near", &format!("{latitude:.4},{longitude:.4}"));
                query.append_pair("radius_km", &format!("{radius_km:.1}"));
            }
            Kind::Window => {
                let from = self.first_day + chrono::Duration::days(rng.random_range(0..SPAN_DAYS));
                let to = from + chrono::Duration::days(rng.random_range(1..=30));
                let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
                query.append_pair("from", &time(from));
                query.append_pair("to", &time(to));
            }
        }
        query.append_pair("limit", &LIMIT.to_string());
        drop(query);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(seed: u64) -> Mix {
        Mix::new(seed, Url::parse("http://127.0.0.1:1/v1/shows").unwrap())
    }

    #[test]
    fn the_mix_has_its_shares_and_no_repeats_at_the_default_rate() {
        let mut mix = mix(1);
        let start = Instant::now();
        let mut by_kind: HashMap<Kind, usize> = HashMap::new();
        let mut repeats = 0;
        // 50 searches a second for 200 s.
        for i in 0..10_000 {
            let query = mix.next(start + Duration::from_millis(20 * i));
            *by_kind.entry(query.kind).or_default() += 1;
            repeats += usize::from(query.repeat);
            assert!(query.url.as_str().ends_with("limit=20"), "{}", query.url);
        }
        assert_eq!(repeats, 0);
        let share = |kind| by_kind[&kind] as f64 / 10_000.0;
        for (kind, wanted) in [
            (Kind::Text, 0.40),
            (Kind::Category, 0.20),
            (Kind::Tag, 0.15),
            (Kind::Near, 0.15),
            (Kind::Window, 0.10),
        ] {
            assert!(
                (share(kind) - wanted).abs() < 0.02,
                "{kind:?}: {}",
                share(kind)
            );
        }
    }

    #[test]
    fn a_mix_that_cannot_avoid_repeats_says_so() {
        let mut mix = mix(1);
        let now = Instant::now();
        // Far more category searches at one instant than there are pages.
        let repeats = (0..5_000)
            .map(|_| mix.next(now))
            .filter(|q| q.kind == Kind::Category && q.repeat)
            .count();
        assert!(repeats > 0);
    }

    #[test]
    fn parameters_are_encoded() {
        let mut mix = mix(3);
        let window = (0..100)
            .map(|_| mix.next(Instant::now()))
            .find(|q| q.kind == Kind::Window)
            .unwrap();
        let query = window.url.query().unwrap();
        assert!(
            query.starts_with("from=") && query.contains("Z&to="),
            "{query}"
        );
    }
}
