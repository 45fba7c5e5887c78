//! Entity tags (RFC 9110 §8.8.3) for answers clients poll or list, so an
//! unchanged answer costs a `304` and no body.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// A strong entity tag: the first 128 bits of the body's SHA-256, quoted.
pub fn of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether the request's `If-None-Match` names `tag`: `*`, or a list of
/// tags compared weakly (a `W/` prefix does not matter for a GET).
pub fn unchanged(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
        })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn asking(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn if_none_match_hits_the_same_tag_weak_or_strong_in_a_list_or_a_star() {
        let tag = of(b"{}");
        assert_eq!(tag.len(), 34);
        assert!(unchanged(&asking(&tag), &tag));
        assert!(unchanged(&asking(&format!("W/{tag}")), &tag));
        assert!(unchanged(&asking(&format!("\"x\", {tag}")), &tag));
        assert!(unchanged(&asking("*"), &tag));
        assert!(!unchanged(&asking(&of(b"[]")), &tag));
        assert!(!unchanged(&asking(""), &tag));
        assert!(!unchanged(&HeaderMap::new(), &tag));
    }
}
