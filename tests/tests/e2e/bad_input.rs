//! Bad input gets a clear problem (RFC 9457, 4xx) and changes nothing.
//! Only the HTTP app is needed: it runs in the test's process.

use reqwest::{Method, Response};
use serde_json::{json, Value};
use tests::TestApp;

async fn problem(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().unwrap().ends_with(code));
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

#[tokio::test]
async fn bad_booking_requests_get_problem_details_and_change_nothing() {
    let sys = TestApp::spawn().await;
    let ga = sys.ga_show(10).await;
    let seated = sys.seated_show(1, 2).await;
    let other = sys.seated_show(1, 2).await;
    let foreign = sys.seat_ids(&other).await;
    let ok = |q: Value| json!({"email": "x@example.com", "name": "X", "quantity": q});

    let unknown = uuid::Uuid::new_v4();
    problem(
        sys.book(&unknown.to_string(), ok(json!(1))).await,
        404,
        "show_not_found",
    )
    .await;
    problem(
        sys.book("not-a-uuid", ok(json!(1))).await,
        400,
        "bad_parameter",
    )
    .await;

    let malformed = sys
        .request(Method::POST, &format!("/v1/shows/{ga}/bookings"))
        .header("content-type", "application/json")
        .body("{\"email\": \"x@example.com\", ")
        .send()
        .await
        .unwrap();
    problem(malformed, 400, "malformed_body").await;

    let negative = problem(sys.book(&ga, ok(json!(-2))).await, 422, "validation_failed").await;
    assert_eq!(negative["errors"][0]["field"], "quantity");
    problem(sys.book(&ga, ok(json!(0))).await, 422, "validation_failed").await;
    problem(
        sys.book(&ga, ok(json!(1000))).await,
        422,
        "validation_failed",
    )
    .await;
    problem(sys.book(&ga, ok(json!("two"))).await, 400, "malformed_body").await;

    let bad_email = sys
        .book(
            &ga,
            json!({"email": "not-an-email", "name": "X", "quantity": 1}),
        )
        .await;
    let bad_email = problem(bad_email, 422, "validation_failed").await;
    assert_eq!(bad_email["errors"][0]["field"], "email");

    let stray = sys
        .book(
            &seated,
            json!({"email": "x@example.com", "name": "X", "seat_ids": [foreign[0]]}),
        )
        .await;
    let stray = problem(stray, 422, "validation_failed").await;
    assert_eq!(stray["errors"][0]["field"], "seat_ids");
    let none = sys
        .book(
            &seated,
            json!({"email": "x@example.com", "name": "X", "seat_ids": []}),
        )
        .await;
    problem(none, 422, "validation_failed").await;
    let unknown_field = sys
        .book(
            &ga,
            json!({"email": "x@example.com", "name": "X", "quantity": 1, "vip": true}),
        )
        .await;
    problem(unknown_field, 400, "malformed_body").await;

    // Best available and the waiting list go with quantity, not seat_ids.
    for (show, body, field) in [
        (
            &seated,
            json!({"seat_ids": [foreign[0]], "waitlist": true}),
            "waitlist",
        ),
        (
            &seated,
            json!({"quantity": 2, "section": "Balcony"}),
            "section",
        ),
        (&seated, json!({"quantity": 11}), "quantity"),
        (&ga, json!({"quantity": 2, "section": "Stalls"}), "section"),
    ] {
        let mut body = body;
        body["email"] = json!("x@example.com");
        body["name"] = json!("X");
        let refused = problem(sys.book(show, body).await, 422, "validation_failed").await;
        let fields: Vec<&str> = refused["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{field} not named: {refused}");
    }

    for show in [&ga, &seated] {
        assert!(
            sys.bookings_of(show).await.is_empty(),
            "bad input created a booking"
        );
    }
    assert_eq!(sys.show(&ga).await["available"], 10);
    assert_eq!(sys.show(&seated).await["available"], 2);
    sys.finish().await;
}

#[tokio::test]
async fn unknown_bookings_are_404_and_actions_on_them_too() {
    let sys = TestApp::spawn().await;
    let id = uuid::Uuid::new_v4();
    problem(
        sys.request(Method::GET, &format!("/v1/bookings/{id}"))
            .send()
            .await
            .unwrap(),
        404,
        "booking_not_found",
    )
    .await;
    let confirm = sys
        .post(
            &format!("/v1/bookings/{id}/confirm"),
            json!({"payment_token": "tok_visa"}),
        )
        .await;
    problem(confirm, 404, "booking_not_found").await;
    problem(
        sys.post(&format!("/v1/bookings/{id}/cancel"), json!({}))
            .await,
        404,
        "booking_not_found",
    )
    .await;
    sys.finish().await;
}

#[tokio::test]
async fn admin_endpoints_require_the_bearer_token() {
    let sys = TestApp::spawn().await;
    let body = json!({"name": "N", "venue": "V", "starts_at": "2030-01-01T20:00:00Z", "capacity": 5, "price_cents": 100});
    let anonymous = sys
        .request(Method::POST, "/v1/shows")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(anonymous, 401, "unauthorized").await;
    let wrong = sys
        .request(Method::POST, "/v1/shows")
        .bearer_auth("guess")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(wrong, 401, "unauthorized").await;
    problem(
        sys.request(Method::GET, "/v1/bookings")
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let shows: Value = sys.get_json("/v1/shows").await;
    assert!(
        shows["shows"].as_array().unwrap().is_empty(),
        "nothing was created"
    );
    sys.finish().await;
}

#[tokio::test]
async fn invalid_shows_are_refused_with_the_fields_named() {
    let sys = TestApp::spawn().await;
    let create = |body: Value| sys.admin(Method::POST, "/v1/shows").json(&body).send();
    let both = json!({"name": "N", "venue": "V", "starts_at": "2030-01-01T20:00:00Z", "capacity": 5,
                      "price_cents": 1, "sections": []});
    problem(create(both).await.unwrap(), 422, "validation_failed").await;
    let bad_time = json!({"name": "N", "venue": "V", "starts_at": "tomorrow", "capacity": 5, "price_cents": 1});
    problem(create(bad_time).await.unwrap(), 400, "malformed_body").await;
    let dup_rows = json!({"name": "N", "venue": "V", "starts_at": "2030-01-01T20:00:00Z",
        "sections": [{"name": "S", "price_cents": 1, "rows": [{"row": "A", "seats": 2}, {"row": "A", "seats": 3}]}]});
    let dup = problem(create(dup_rows).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(dup["errors"][0]["field"], "sections[0].rows[1].row");
    let zero = json!({"name": "", "venue": "V", "starts_at": "2030-01-01T20:00:00Z", "capacity": 0, "price_cents": -1});
    let zero = problem(create(zero).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(zero["errors"].as_array().unwrap().len(), 3);
    // Totals stay far inside i64: a price past 10^9 cents is refused.
    let dear = json!({"name": "N", "venue": "V", "starts_at": "2030-01-01T20:00:00Z",
        "sections": [{"name": "S", "price_cents": 1_000_000_001_i64, "rows": [{"row": "A", "seats": 2}]}]});
    let dear = problem(create(dear).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(dear["errors"][0]["field"], "sections[0].price_cents");
    let shows: Value = sys.get_json("/v1/shows").await;
    assert!(shows["shows"].as_array().unwrap().is_empty());
    // JSON Schema's integers, and so the document's, include 5.0.
    let whole = json!({"name": "N", "venue": "V", "starts_at": "2030-01-01T20:00:00Z",
        "capacity": 5.0, "price_cents": 2.5e2});
    let res = create(whole).await.unwrap();
    assert_eq!(res.status(), 201);
    let show: Value = res.json().await.unwrap();
    assert_eq!(
        (show["capacity"].as_i64(), show["price_cents"].as_i64()),
        (Some(5), Some(250))
    );
    sys.finish().await;
}

#[tokio::test]
async fn pages_out_of_bounds_are_refused_naming_the_parameter() {
    let sys = TestApp::spawn().await;
    let list = |query: &str| {
        sys.admin(Method::GET, &format!("/v1/bookings?{query}"))
            .send()
    };
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("offset=-1", "offset"),
    ] {
        let refused = problem(list(query).await.unwrap(), 422, "validation_failed").await;
        assert_eq!(refused["errors"][0]["field"], field, "{query}");
        let shows = sys
            .request(Method::GET, &format!("/v1/shows?{query}"))
            .send()
            .await
            .unwrap();
        problem(shows, 422, "validation_failed").await;
    }
    problem(
        list("offset=9223372036854775808").await.unwrap(),
        400,
        "bad_parameter",
    )
    .await;
    assert_eq!(list("limit=1000&offset=5").await.unwrap().status(), 200);
    sys.finish().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems_too() {
    let sys = TestApp::spawn().await;
    problem(
        sys.request(Method::GET, "/v1/nope").send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    problem(
        sys.request(Method::DELETE, "/v1/shows")
            .send()
            .await
            .unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
    sys.finish().await;
}

#[tokio::test]
async fn text_postgresql_cannot_store_is_refused_naming_the_field_and_changes_nothing() {
    let sys = TestApp::spawn().await;
    let ga = sys.ga_show(10).await;
    let field_refused = |field: &'static str| {
        move |body: Value| {
            assert_eq!(body["errors"][0]["field"], field, "{body}");
            assert!(body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("NUL"));
        }
    };

    let nul_name = sys
        .book(
            &ga,
            json!({"email": "x@example.com", "name": "X\0", "quantity": 1}),
        )
        .await;
    field_refused("name")(problem(nul_name, 422, "validation_failed").await);
    let nul_email = sys
        .book(
            &ga,
            json!({"email": "x\0@example.com", "name": "X", "quantity": 1}),
        )
        .await;
    field_refused("email")(problem(nul_email, 422, "validation_failed").await);

    let create = |body: Value| sys.admin(Method::POST, "/v1/shows").json(&body).send();
    let nul_show = json!({"name": "N\0", "venue": "\0V", "starts_at": "2030-01-01T20:00:00Z",
                          "capacity": 5, "price_cents": 1});
    let nul_show = problem(create(nul_show).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(nul_show["errors"][1]["field"], "venue", "{nul_show}");
    field_refused("name")(nul_show);
    let nul_section = json!({"name": "N", "venue": "V", "starts_at": "2030-01-01T20:00:00Z",
        "sections": [{"name": "Stalls\0", "price_cents": 1, "rows": [{"row": "A", "seats": 2}]}]});
    let nul_section = problem(create(nul_section).await.unwrap(), 422, "validation_failed").await;
    field_refused("sections[0].name")(nul_section);
    let nul_row = json!({"name": "N", "venue": "V", "starts_at": "2030-01-01T20:00:00Z",
        "sections": [{"name": "S", "price_cents": 1, "rows": [{"row": "A", "seats": 2}, {"row": "B\0", "seats": 2}]}]});
    let nul_row = problem(create(nul_row).await.unwrap(), 422, "validation_failed").await;
    field_refused("sections[0].rows[1].row")(nul_row);

    let search = sys
        .admin(Method::GET, "/v1/bookings")
        .query(&[("email", "x\0@example.com")])
        .send()
        .await
        .unwrap();
    field_refused("email")(problem(search, 422, "validation_failed").await);
    let confirm = sys
        .post(
            &format!("/v1/bookings/{}/confirm", uuid::Uuid::new_v4()),
            json!({"payment_token": "tok_visa\0"}),
        )
        .await;
    field_refused("payment_token")(problem(confirm, 422, "validation_failed").await);

    assert!(sys.bookings_of(&ga).await.is_empty());
    let shows: Value = sys.get_json("/v1/shows").await;
    assert_eq!(shows["shows"].as_array().unwrap().len(), 1, "{shows}");
    sys.finish().await;
}
