//! The words, categories, tags and cities the catalog is made of, and that
//! its searches draw from, so that a search finds what the seeding wrote.
//!
//! The word list is large enough that one word is in roughly one show in
//! ten (a name of 2–4 words, a venue, 12–36 words of description), as a
//! common word is in a real catalog; no word is an English stop word,
//! which full-text search would drop (a query of only those matches
//! nothing, a path too cheap to measure).

use rand::seq::IndexedRandom;
use rand::Rng;

#[rustfmt::skip]
pub const WORDS: &[&str] = &[
    "acoustic", "amber", "anthem", "arcade", "aurora", "autumn", "avenue", "ballad", "ballet",
    "banquet", "baroque", "bay", "beacon", "blossom", "blue", "boulevard", "brass", "breeze",
    "bridge", "bright", "broadway", "cabaret", "canyon", "caravan", "carnival", "castle",
    "cathedral", "celebration", "chamber", "chorus", "cinema", "circus", "citadel", "city",
    "classic", "cloud", "coast", "comet", "concerto", "coral", "cosmic", "cotton", "crimson",
    "crystal", "dance", "dawn", "desert", "diamond", "disco", "dream", "drum", "dusk", "echo",
    "eclipse", "electric", "ember", "emerald", "encore", "ensemble", "evening", "fable",
    "falcon", "fantasy", "feather", "fiesta", "fire", "flame", "folk", "forest", "fountain",
    "fox", "frontier", "funk", "galaxy", "gala", "garden", "giant", "glacier", "gold",
    "gospel", "grand", "groove", "guitar", "harbor", "harmony", "harvest", "heart", "heritage",
    "highland", "horizon", "hymn", "island", "ivory", "jade", "jubilee", "jungle", "kaleidoscope",
    "kingdom", "lagoon", "lantern", "legend", "lighthouse", "lily", "lion", "lullaby", "lunar",
    "lyric", "machine", "magic", "mambo", "marble", "marathon", "masquerade", "meadow",
    "melody", "meridian", "midnight", "mirage", "mirror", "monsoon", "moon", "mosaic",
    "mountain", "nebula", "neon", "nightingale", "noir", "nocturne", "north", "oasis", "ocean",
    "odyssey", "opal", "opera", "orbit", "orchard", "orchestra", "paradise", "parade",
    "pavilion", "pearl", "phoenix", "piano", "picnic", "pilgrim", "pioneer", "planet",
    "prairie", "prelude", "prism", "pulse", "quartet", "quest", "radiant", "rain", "raven",
    "rebel", "requiem", "reverie", "rhapsody", "rhythm", "ribbon", "river", "riviera",
    "rocket", "rodeo", "romance", "rose", "ruby", "saga", "sapphire", "savanna", "scarlet",
    "serenade", "session", "shadow", "shimmer", "silk", "silver", "skyline", "sonata", "soul",
    "spark", "spectrum", "spirit", "spring", "starlight", "storm", "story", "summer", "sunrise",
    "sunset", "swing", "symphony", "tango", "tempest", "temple", "thunder", "tide", "timber",
    "topaz", "tower", "trail", "tribute", "trio", "tropic", "twilight", "valley", "velvet",
    "voyage", "waltz", "wanderer", "wave", "whisper", "wild", "willow", "winter", "wonder",
    "zenith", "zephyr",
];

/// Shown as given; searched ignoring case.
#[rustfmt::skip]
pub const CATEGORIES: &[&str] = &[
    "Music", "Theatre", "Comedy", "Dance", "Opera", "Classical", "Jazz", "Family", "Sports",
    "Film", "Festival", "Talks",
];

#[rustfmt::skip]
pub const TAGS: &[&str] = &[
    "outdoor", "indoor", "all-ages", "18+", "seated", "standing", "accessible", "parking",
    "late-night", "matinee", "premiere", "vip", "unplugged", "electronic", "rock", "pop",
    "hip-hop", "indie", "metal", "punk", "blues", "reggae", "latin", "world", "choir", "solo",
    "band", "dj", "improv", "stand-up", "musical", "drama", "contemporary", "circus", "magic",
    "puppetry", "kids", "students", "seniors", "charity", "season-pass", "live-stream",
    "english", "german", "french", "spanish", "food", "drinks", "dress-code", "sing-along",
];

const VENUE_KINDS: &[&str] = &[
    "Hall", "Arena", "Club", "Theatre", "Stage", "Room", "Garden", "Pavilion", "Lounge", "Dome",
];

/// Where the catalog's shows are, around real cities.
pub struct City {
    pub name: &'static str,
    pub latitude: f64,
    pub longitude: f64,
}

const fn city(name: &'static str, latitude: f64, longitude: f64) -> City {
    City {
        name,
        latitude,
        longitude,
    }
}

pub const CITIES: &[City] = &[
    city("Berlin", 52.520, 13.405),
    city("Hamburg", 53.551, 9.993),
    city("Munich", 48.137, 11.575),
    city("Cologne", 50.938, 6.960),
    city("Frankfurt", 50.110, 8.682),
    city("Vienna", 48.208, 16.373),
    city("Zurich", 47.377, 8.541),
    city("Paris", 48.857, 2.352),
    city("Lyon", 45.764, 4.836),
    city("London", 51.507, -0.128),
    city("Manchester", 53.481, -2.243),
    city("Dublin", 53.350, -6.260),
    city("Amsterdam", 52.368, 4.904),
    city("Brussels", 50.850, 4.352),
    city("Copenhagen", 55.676, 12.568),
    city("Stockholm", 59.329, 18.069),
    city("Oslo", 59.914, 10.752),
    city("Helsinki", 60.170, 24.938),
    city("Warsaw", 52.230, 21.012),
    city("Prague", 50.076, 14.438),
    city("Budapest", 47.498, 19.040),
    city("Madrid", 40.417, -3.704),
    city("Barcelona", 41.385, 2.173),
    city("Lisbon", 38.722, -9.139),
    city("Rome", 41.903, 12.496),
    city("Milan", 45.464, 9.190),
    city("New York", 40.713, -74.006),
    city("Chicago", 41.878, -87.630),
    city("Los Angeles", 34.052, -118.244),
    city("Toronto", 43.653, -79.383),
];

/// Kilometres per degree of latitude (and of longitude at the equator).
const KM_PER_DEGREE: f64 = 111.195;

impl City {
    pub fn any(rng: &mut impl Rng) -> &'static Self {
        CITIES.choose(rng).expect("cities")
    }

    /// A point at most `km` from the city, uniform over that disc (a
    /// flat-Earth step: within a few metres at these distances).
    pub fn jittered(&self, rng: &mut impl Rng, km: f64) -> (f64, f64) {
        let distance = km * rng.random::<f64>().sqrt();
        let bearing = rng.random_range(0.0..std::f64::consts::TAU);
        let latitude = self.latitude + distance * bearing.cos() / KM_PER_DEGREE;
        let longitude = self.longitude
            + distance * bearing.sin() / (KM_PER_DEGREE * self.latitude.to_radians().cos());
        (latitude, longitude)
    }
}

pub fn word(rng: &mut impl Rng) -> &'static str {
    WORDS.choose(rng).expect("words")
}

/// `n` words, each capitalised: a show's name, a venue's.
pub fn title(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| capitalised(word(rng)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn venue(rng: &mut impl Rng) -> String {
    let kind = VENUE_KINDS.choose(rng).expect("venue kinds");
    format!("The {} {kind}", capitalised(word(rng)))
}

/// Sentences of 6–12 words each, `words` words in all (roughly).
pub fn prose(rng: &mut impl Rng, words: usize) -> String {
    let mut sentences = Vec::new();
    let mut left = words;
    while left > 0 {
        let n = rng.random_range(6..=12).min(left);
        left -= n;
        let sentence: Vec<&str> = (0..n).map(|_| word(rng)).collect();
        sentences.push(format!("{}.", capitalised(&sentence.join(" "))));
    }
    sentences.join(" ")
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_lists_have_no_duplicates() {
        let distinct = |list: &[&str]| list.iter().collect::<HashSet<_>>().len() == list.len();
        assert!(distinct(WORDS) && distinct(CATEGORIES) && distinct(TAGS));
        assert_eq!((CATEGORIES.len(), TAGS.len(), CITIES.len()), (12, 50, 30));
    }

    #[test]
    fn a_jittered_point_stays_within_the_distance() {
        let mut rng = StdRng::seed_from_u64(7);
        for city in CITIES {
            for _ in 0..100 {
                let (lat, lng) = city.jittered(&mut rng, 30.0);
                let dy = (lat - city.latitude) * KM_PER_DEGREE;
                let dx = (lng - city.longitude) * KM_PER_DEGREE * city.latitude.to_radians().cos();
                assert!(dx.hypot(dy) <= 30.0 + 1e-6, "{} {lat},{lng}", city.name);
            }
        }
    }

    #[test]
    fn prose_has_about_the_words_asked_for() {
        let mut rng = StdRng::seed_from_u64(7);
        let text = prose(&mut rng, 20);
        assert_eq!(text.split_whitespace().count(), 20);
        assert!(text.ends_with('.') && text.starts_with(char::is_uppercase));
    }
}
