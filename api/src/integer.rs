//! Integers in request bodies as JSON Schema counts them. The document's
//! `type: integer` includes `5.0` and `1e2` (a number with no fraction);
//! serde's integers do not. Integer fields of request bodies read through
//! here (`#[serde(deserialize_with = ...)]`) so the API takes what its
//! document promises.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// An integer field.
pub fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    Whole::deserialize(deserializer).map(|Whole(n)| n)
}

/// An optional integer field (with `#[serde(default)]`: absent or null is
/// `None`).
pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    Option::<Whole<T>>::deserialize(deserializer).map(|n| n.map(|Whole(n)| n))
}

struct Whole<T>(T);

impl<'de, T: TryFrom<i64>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WholeVisitor(PhantomData))
    }
}

struct WholeVisitor<T>(PhantomData<T>);

impl<T: TryFrom<i64>> WholeVisitor<T> {
    fn fit<E: de::Error>(self, n: i64) -> Result<Whole<T>, E> {
        T::try_from(n)
            .map(Whole)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
    }
}

impl<T: TryFrom<i64>> Visitor<'_> for WholeVisitor<T> {
    type Value = Whole<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an integer within {}", std::any::type_name::<T>())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        self.fit(n)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        let n =
            i64::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))?;
        self.fit(n)
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        // -2^63 and 2^63 are exact as f64; every whole f64 in between fits.
        const BOUND: f64 = 9_223_372_036_854_775_808.0;
        if n.fract() == 0.0 && (-BOUND..BOUND).contains(&n) {
            self.fit(n as i64)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(n), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        #[serde(deserialize_with = "super::whole")]
        n: i32,
        #[serde(default, deserialize_with = "super::optional")]
        m: Option<i64>,
    }

    fn parse(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numbers_without_a_fraction_are_integers() {
        for json in [r#"{"n": 5}"#, r#"{"n": 5.0}"#, r#"{"n": 0.5e1, "m": null}"#] {
            assert_eq!(parse(json).unwrap(), Body { n: 5, m: None }, "{json}");
        }
        let m = parse(r#"{"n": -2147483648, "m": 9223372036854775807}"#).unwrap();
        assert_eq!(
            m,
            Body {
                n: i32::MIN,
                m: Some(i64::MAX)
            }
        );
        assert_eq!(parse(r#"{"n": 1, "m": -1e3}"#).unwrap().m, Some(-1000));
    }

    #[test]
    fn fractions_strings_and_numbers_out_of_range_are_refused() {
        for json in [
            r#"{"n": 5.5}"#,
            r#"{"n": "5"}"#,
            r#"{"n": 2147483648}"#,
            r#"{"n": 2147483648.0}"#,
            r#"{"n": 1, "m": 9223372036854775808}"#,
            r#"{"n": 1, "m": 9.3e18}"#,
            r#"{"n": 1, "m": 1e400}"#,
            r#"{"n": null}"#,
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
    }
}
