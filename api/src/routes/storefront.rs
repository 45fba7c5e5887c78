//! The storefront (docs/API.md#storefront): one page for buyers, plain
//! HTML, CSS and JavaScript in `api/storefront/`, built into the binary so
//! that it ships with the API and needs no build step of its own. It calls
//! only the public API, from the same origin.
//!
//! Not an API route: it is not in `routes()` (routes/mod.rs) nor in the OpenAPI
//! document.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::entity_tag;
use crate::state::AppState;

/// Everything from this origin and nothing inline: no script or style
/// another page could inject runs, and the page is framed by nobody.
const POLICY: &str = "default-src 'self'; img-src 'self'; connect-src 'self'; \
                      base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the storefront, with its entity tag worked out once.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    tag: LazyLock<String>,
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {
        Asset {
            body: include_str!(concat!("../../storefront/", $file)),
            content_type: $content_type,
            tag: LazyLock::new(|| {
                entity_tag::of(include_str!(concat!("../../storefront/", $file)).as_bytes())
            }),
        }
    };
}

static PAGE: Asset = asset!("index.html", "text/html; charset=utf-8");
static SCRIPT: Asset = asset!("app.js", "text/javascript; charset=utf-8");
static STYLE: Asset = asset!("app.css", "text/css; charset=utf-8");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|headers: HeaderMap| serve(&PAGE, headers)))
        .route(
            "/storefront/app.js",
            get(|headers: HeaderMap| serve(&SCRIPT, headers)),
        )
        .route(
            "/storefront/app.css",
            get(|headers: HeaderMap| serve(&STYLE, headers)),
        )
}

/// The file, or `304` when the browser's copy is current: a new binary
/// with a changed file is picked up on the next load (`no-cache`), an
/// unchanged one costs no body.
async fn serve(asset: &'static Asset, headers: HeaderMap) -> Response {
    let tag: &str = &asset.tag;
    let common = [
        (header::ETAG, tag),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Booking ids are in the page's address: never send it elsewhere.
        (header::REFERRER_POLICY, "no-referrer"),
        (HeaderName::from_static("x-frame-options"), "DENY"),
    ];
    if entity_tag::unchanged(&headers, tag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, asset.content_type)],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_and_style_from_this_origin_and_nothing_inline() {
        let page = PAGE.body;
        assert!(page.contains(r#"<script src="/storefront/app.js" defer></script>"#));
        assert!(page.contains(r#"<link rel="stylesheet" href="/storefront/app.css">"#));
        assert!(page.contains(r#"<html lang="en">"#));
        for inline in ["<script>", "<style", " style="] {
            assert!(!page.contains(inline), "index.html has {inline:?}");
        }
        let handler = page.split_whitespace().find(|word| {
            word.split_once('=').is_some_and(|(name, _)| {
                name.starts_with("on") && name.chars().all(char::is_alphabetic)
            })
        });
        assert_eq!(handler, None, "an inline event handler");
        for asset in [&PAGE, &SCRIPT, &STYLE] {
            assert!(
                !asset.body.contains("http://") && !asset.body.contains("https://"),
                "the storefront loads nothing from elsewhere"
            );
        }
    }
}
