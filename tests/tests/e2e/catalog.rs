//! The catalog (PRODUCT.md §5b "Catalog"): shows carry a description, a
//! category, tags, an address and a position; `GET /v1/shows` searches and
//! filters them, with an `ETag` and answers at most a second old.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tests::system::Sandbox;
use tests::{System, TestApp};

/// A show with catalog fields, starting at `starts_at`; returns its id.
async fn listed(sys: &Sandbox, name: &str, starts_at: &str, extra: Value) -> String {
    let mut body = json!({
        "name": name, "venue": "Hall", "starts_at": starts_at,
        "capacity": 10, "price_cents": 1000
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    sys.create_show(body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `GET /v1/shows?query`: the ids in order.
async fn ids(sys: &Sandbox, query: &str) -> Vec<String> {
    found(sys, query)
        .await
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// What the first show on sale has available, as a search lists it.
async fn listed_available(sys: &Sandbox) -> Value {
    found(sys, "available=true").await[0]["available"].clone()
}

async fn found(sys: &Sandbox, query: &str) -> Vec<Value> {
    let list = sys.get_json(&format!("/v1/shows?{query}")).await;
    list["shows"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_show_keeps_what_the_catalog_says_of_it() {
    let sys = TestApp::spawn().await;
    let created = sys
        .create_show(json!({
            "name": "Quartet", "venue": "Hall", "starts_at": "2030-01-01T20:00:00Z",
            "capacity": 10, "price_cents": 1000,
            "description": "  Four strings.  ", "category": "Classical",
            "tags": ["Chamber", "strings"], "venue_address": "1 Main St",
            "latitude": 52.5, "longitude": 13.4
        }))
        .await;
    let id = created["id"].as_str().unwrap();
    let show = sys.show(id).await;
    assert_eq!(show, created);
    assert_eq!(show["description"], "Four strings.");
    assert_eq!(show["category"], "Classical");
    assert_eq!(show["tags"], json!(["Chamber", "strings"]));
    assert_eq!(show["venue_address"], "1 Main St");
    assert_eq!(
        (show["latitude"].as_f64(), show["longitude"].as_f64()),
        (Some(52.5), Some(13.4))
    );
    assert!(
        show.get("distance_km").is_none(),
        "only a search near somewhere has a distance"
    );
    let plain = sys.ga_show(5).await;
    let plain = sys.show(&plain).await;
    assert_eq!(plain["tags"], json!([]));
    assert_eq!(plain["description"], Value::Null);
    sys.finish().await;
}

#[tokio::test]
async fn bad_catalog_fields_are_422_naming_each_and_create_nothing() {
    let sys = TestApp::spawn().await;
    let base = json!({"name": "X", "venue": "Y", "starts_at": "2030-01-01T20:00:00Z",
                      "capacity": 10, "price_cents": 1000});
    for (extra, field) in [
        (json!({"description": "d".repeat(5001)}), "description"),
        (json!({"category": " "}), "category"),
        (json!({"category": "c".repeat(51)}), "category"),
        (
            json!({"tags": (0..21).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "tags",
        ),
        (json!({"tags": ["Jazz", "jazz"]}), "tags[1]"),
        (json!({"tags": [""]}), "tags[0]"),
        (json!({"venue_address": "a".repeat(501)}), "venue_address"),
        (json!({"latitude": 91, "longitude": 0}), "latitude"),
        (json!({"latitude": 0, "longitude": -181}), "longitude"),
        (json!({"latitude": 10}), "longitude"),
        (json!({"longitude": 10}), "latitude"),
    ] {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let res = sys
            .admin(Method::POST, "/v1/shows")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{extra}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{extra}: {problem}");
    }
    assert!(found(&sys, "").await.is_empty());
    sys.finish().await;
}

#[tokio::test]
async fn a_search_finds_stemmed_words_and_ranks_the_name_above_the_listing_above_the_description() {
    let sys = TestApp::spawn().await;
    // The description match starts sooner, so only relevance puts the
    // name match first.
    let in_description = listed(
        &sys,
        "Evening Session",
        "2030-01-01T20:00:00Z",
        json!({"description": "A night of runners, running and jazz."}),
    )
    .await;
    let in_name = listed(&sys, "Run The Jewels", "2030-06-01T20:00:00Z", json!({})).await;
    let in_tags = listed(
        &sys,
        "Club Night",
        "2030-03-01T20:00:00Z",
        json!({"tags": ["Techno"], "category": "Electronic"}),
    )
    .await;
    let _unrelated = listed(&sys, "Hamlet", "2030-02-01T20:00:00Z", json!({})).await;

    assert_eq!(
        ids(&sys, "q=runs").await,
        [in_name.clone(), in_description.clone()]
    );
    let jazz_category = listed(
        &sys,
        "Brunch",
        "2030-04-01T20:00:00Z",
        json!({"category": "Jazz"}),
    )
    .await;
    let jazz_name = listed(&sys, "Late Jazz", "2030-07-01T20:00:00Z", json!({})).await;
    assert_eq!(
        ids(&sys, "q=jazz").await,
        [
            jazz_name.as_str(),
            jazz_category.as_str(),
            in_description.as_str()
        ],
        "the name first, then venue, category and tags, then the description; not by date"
    );
    let mut paged = Vec::new();
    for offset in 0..4 {
        paged.extend(ids(&sys, &format!("q=jazz&limit=1&offset={offset}")).await);
    }
    assert_eq!(
        paged,
        [
            jazz_name.as_str(),
            jazz_category.as_str(),
            in_description.as_str()
        ],
        "pages of one follow the tiers"
    );
    assert_eq!(ids(&sys, "q=techno").await, [in_tags.as_str()]);
    assert_eq!(ids(&sys, "q=electronic%20night").await, [in_tags]);
    assert_eq!(
        ids(&sys, "q=%22runners%20running%22").await,
        [in_description]
    );
    assert!(ids(&sys, "q=opera").await.is_empty());
    assert!(
        ids(&sys, "q=the").await.is_empty(),
        "stop words alone match nothing"
    );
    sys.finish().await;
}

#[tokio::test]
async fn each_filter_narrows_the_list_and_without_filters_the_soonest_come_first() {
    let sys = TestApp::spawn().await;
    let past = listed(&sys, "Yesterday", "2020-01-01T20:00:00Z", json!({})).await;
    let jan = listed(
        &sys,
        "January",
        "2030-01-01T20:00:00Z",
        json!({"category": "Jazz", "tags": ["Live", "Outdoor"]}),
    )
    .await;
    let feb = listed(
        &sys,
        "February",
        "2030-02-01T20:00:00Z",
        json!({"category": "jazz", "tags": ["live"]}),
    )
    .await;
    let mar = listed(
        &sys,
        "March",
        "2030-03-01T20:00:00Z",
        json!({"category": "Rock"}),
    )
    .await;

    assert_eq!(
        ids(&sys, "").await,
        [past.as_str(), jan.as_str(), feb.as_str(), mar.as_str()]
    );
    assert_eq!(
        ids(&sys, "category=JAZZ").await,
        [jan.as_str(), feb.as_str()]
    );
    assert_eq!(ids(&sys, "tag=LIVE").await, [jan.as_str(), feb.as_str()]);
    assert_eq!(ids(&sys, "tag=live&tag=outdoor").await, [jan.as_str()]);
    assert_eq!(
        ids(&sys, "from=2030-02-01T20:00:00Z&to=2030-03-01T20:00:00Z").await,
        [feb.as_str()],
        "from is inclusive, to exclusive"
    );
    assert_eq!(
        ids(&sys, "available=true").await,
        [jan.as_str(), feb.as_str(), mar.as_str()],
        "the past is not on sale"
    );
    assert_eq!(ids(&sys, "available=false").await.len(), 4);
    assert_eq!(
        ids(&sys, "category=jazz&from=2030-01-15T00:00:00Z").await,
        [feb.as_str()]
    );
    assert_eq!(
        ids(&sys, "limit=2&offset=1").await,
        [jan.as_str(), feb.as_str()]
    );
    assert_eq!(ids(&sys, "limit=2&offset=3").await, [mar.as_str()]);
    sys.finish().await;
}

#[tokio::test]
async fn near_lists_the_shows_within_the_radius_nearest_first_with_their_distance() {
    let sys = TestApp::spawn().await;
    let at = |lat: f64, lng: f64| json!({"latitude": lat, "longitude": lng});
    let potsdam = listed(
        &sys,
        "Potsdam",
        "2030-01-01T20:00:00Z",
        at(52.3906, 13.0645),
    )
    .await;
    let berlin = listed(&sys, "Berlin", "2030-02-01T20:00:00Z", at(52.52, 13.405)).await;
    let paris = listed(&sys, "Paris", "2030-03-01T20:00:00Z", at(48.8566, 2.3522)).await;
    let _nowhere = listed(&sys, "Online", "2030-01-01T20:00:00Z", json!({})).await;

    let near = found(&sys, "near=52.52,13.405").await;
    let names: Vec<&str> = near.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["Berlin", "Potsdam"],
        "within the default 50 km, nearest first"
    );
    assert!(near[0]["distance_km"].as_f64().unwrap() < 0.001);
    let to_potsdam = near[1]["distance_km"].as_f64().unwrap();
    assert!(
        (26.0..28.0).contains(&to_potsdam),
        "Berlin to Potsdam: {to_potsdam} km"
    );

    assert_eq!(
        ids(&sys, "near=52.52,13.405&radius_km=20").await,
        [berlin.as_str()]
    );
    let far = found(&sys, "near=52.52,13.405&radius_km=1000").await;
    assert_eq!(far.len(), 3);
    let to_paris = far[2]["distance_km"].as_f64().unwrap();
    assert!(
        (870.0..885.0).contains(&to_paris),
        "Berlin to Paris: {to_paris} km"
    );
    assert_eq!(far[2]["id"], paris.as_str());
    assert_eq!(
        ids(&sys, "near=52.52,13.405&radius_km=1000&q=potsdam").await,
        [potsdam.as_str()],
        "with q, near still filters"
    );
    sys.finish().await;
}

#[tokio::test]
async fn near_pages_nearest_first_with_ties_by_time_across_the_antimeridian_and_the_pole() {
    let sys = TestApp::spawn().await;
    let at = |lat: f64, lng: f64| json!({"latitude": lat, "longitude": lng});
    // Five shows at one venue (one position), and two a little away.
    let mut venue = Vec::new();
    for month in [5, 1, 4, 2, 3] {
        let starts_at = format!("2030-0{month}-01T20:00:00Z");
        venue.push((
            month,
            listed(&sys, "Venue", &starts_at, at(48.2, 16.37)).await,
        ));
    }
    venue.sort();
    let near_by = listed(&sys, "Near", "2030-01-01T20:00:00Z", at(48.21, 16.37)).await;
    let farther = listed(&sys, "Farther", "2030-01-01T20:00:00Z", at(48.3, 16.37)).await;
    let mut expected: Vec<String> = venue.into_iter().map(|(_, id)| id).collect();
    expected.extend([near_by, farther]);

    let query = "near=48.2,16.37&radius_km=30";
    assert_eq!(ids(&sys, query).await, expected, "ties soonest first");
    let mut paged = Vec::new();
    for offset in (0..8).step_by(2) {
        paged.extend(ids(&sys, &format!("{query}&limit=2&offset={offset}")).await);
    }
    assert_eq!(paged, expected, "pages of two, cut inside the tie");

    // Ten kilometres apart, on either side of the antimeridian; and on
    // either side of the North Pole.
    let east = listed(&sys, "East", "2030-01-01T20:00:00Z", at(-17.0, 179.95)).await;
    let west = listed(&sys, "West", "2030-01-01T20:00:00Z", at(-17.0, -179.95)).await;
    assert_eq!(
        ids(&sys, "near=-17,179.99&radius_km=20").await,
        [east.as_str(), west.as_str()]
    );
    assert_eq!(
        ids(&sys, "near=-17,-179.99&radius_km=20").await,
        [west.as_str(), east.as_str()]
    );
    let greenwich = listed(&sys, "Pole A", "2030-01-01T20:00:00Z", at(89.95, 0.0)).await;
    let dateline = listed(&sys, "Pole B", "2030-02-01T20:00:00Z", at(89.95, 180.0)).await;
    let polar = found(&sys, "near=89.95,1&radius_km=20").await;
    let polar_ids: Vec<&str> = polar.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(polar_ids, [greenwich.as_str(), dateline.as_str()]);
    let across = polar[1]["distance_km"].as_f64().unwrap();
    assert!((11.0..11.3).contains(&across), "over the pole: {across} km");
    sys.finish().await;
}

#[tokio::test]
async fn a_malformed_search_parameter_is_422_naming_it() {
    let sys = TestApp::spawn().await;
    for (query, field) in [
        ("q=", "q"),
        ("category=", "category"),
        ("tag=", "tag"),
        ("from=tomorrow", "from"),
        ("to=2030-01-01", "to"),
        ("from=2030-02-01T00:00:00Z&to=2030-01-01T00:00:00Z", "to"),
        ("near=north", "near"),
        ("near=52.5,200", "near"),
        ("radius_km=5", "radius_km"),
        ("near=1,1&radius_km=-5", "radius_km"),
        ("available=maybe", "available"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("offset=-1", "offset"),
        ("q=a&q=b", "q"),
    ] {
        let res = sys
            .request(Method::GET, &format!("/v1/shows?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{query}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    sys.finish().await;
}

#[tokio::test]
async fn a_list_carries_an_etag_and_a_short_cache_lifetime_and_an_unchanged_one_is_304() {
    let sys = TestApp::spawn().await;
    sys.ga_show(10).await;
    let res = sys.request(Method::GET, "/v1/shows").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "public, max-age=1");
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["shows"].as_array().unwrap().len(), 1);

    let again = sys
        .request(Method::GET, "/v1/shows")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());

    // A show created through this process is listed at once.
    sys.ga_show(10).await;
    let changed = sys
        .request(Method::GET, "/v1/shows")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], etag.as_str());
    sys.finish().await;
}

#[tokio::test]
async fn a_change_in_availability_reaches_a_repeated_search_within_a_second() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    assert_eq!(listed_available(&sys).await, 10);
    let id = sys
        .book_accepted(
            &show,
            json!({"email": "c@example.com", "name": "C", "quantity": 3}),
        )
        .await;
    sys.wait_for(&id, "held", |b| b["status"] == "held").await;
    let decided = Instant::now();
    loop {
        if listed_available(&sys).await == 7 {
            break;
        }
        assert!(
            decided.elapsed() < Duration::from_millis(1500),
            "the cached search still lists the old availability after {:?}",
            decided.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sys.finish().await;
}
