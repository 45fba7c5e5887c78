//! Operators (docs/API.md#operators-and-roles and
//! #tickets-at-the-door): tokens with roles guard every operator route as the router
//! declares it, revocation reaches every API process, each ticket lets one
//! person in, and the audit trail names the operator who acted.

use std::time::{Duration, Instant};

use api::auth::{Access, Role};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{System, TestApp};
use uuid::Uuid;

/// Makes a token through the API as the bootstrap admin; returns its secret
/// and id.
async fn make_token(api: &tests::system::Sandbox, name: &str, role: Role) -> (String, String) {
    let res = api
        .admin(Method::POST, "/v1/operators/tokens")
        .json(&json!({"name": name, "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let created: Value = res.json().await.unwrap();
    (
        created["token"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    )
}

/// The route's path with its parameters filled in with names of nothing.
fn concrete(path: &str) -> String {
    path.replace("{id}", &Uuid::new_v4().to_string())
        .replace("{code}", "NO-SUCH-TICKET")
}

async fn call(
    api: &tests::system::Sandbox,
    method: &Method,
    path: &str,
    token: Option<&str>,
) -> StatusCode {
    let mut req = api.request(method.clone(), path);
    if *method != Method::GET && *method != Method::DELETE {
        req = req.json(&json!({}));
    }
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn every_operator_route_refuses_missing_wrong_and_too_small_tokens_and_admits_its_role() {
    let app = TestApp::spawn().await;
    let mut tokens = Vec::new();
    for role in Role::ALL {
        tokens.push((
            role,
            make_token(&app, &format!("{role:?} token"), role).await.0,
        ));
    }
    let declared = api::routes::declared();
    assert!(declared.iter().any(|d| d.access != Access::Public));
    for route in declared {
        let Some(needed) = route.access.role() else {
            continue;
        };
        let path = concrete(route.path);
        let what = format!("{} {}", route.method, route.path);
        let anonymous = call(&app, &route.method, &path, None).await;
        match route.access {
            // Anyone may: a token only names who did it.
            Access::OptionalRole(_) => assert!(
                !matches!(anonymous, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "{what} without a token: {anonymous}"
            ),
            _ => assert_eq!(anonymous, 401, "{what} without a token"),
        }
        let forged = format!("bko_{}", "A".repeat(43));
        assert_eq!(
            call(&app, &route.method, &path, Some(&forged)).await,
            401,
            "{what} with an unknown token"
        );
        for (role, token) in &tokens {
            let status = call(&app, &route.method, &path, Some(token)).await;
            if *role < needed {
                assert_eq!(status, 403, "{what} as {role:?}");
            } else {
                assert!(
                    !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                    "{what} as {role:?}: {status}"
                );
            }
        }
    }
    app.finish().await;
}

#[tokio::test]
async fn a_token_is_shown_once_listed_without_its_secret_and_stored_only_as_a_hash() {
    let app = TestApp::spawn().await;
    let (token, id) = make_token(&app, "Door 3", Role::BoxOffice).await;
    assert!(token.starts_with("bko_") && token.len() == 47, "{token}");
    let list = app.admin_json("/v1/operators/tokens").await;
    let listed = &list["tokens"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["name"], "Door 3");
    assert_eq!(listed["role"], "box_office");
    assert_eq!(listed["created_by"], "admin");
    assert!(!list.to_string().contains(&token[4..]), "{list}");
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM operator_tokens")
        .fetch_one(app.db().await)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert!(!String::from_utf8_lossy(&stored).contains(&token[4..]));
    // Invalid names and roles are 422s / 400s and make nothing.
    let res = app
        .admin(Method::POST, "/v1/operators/tokens")
        .json(&json!({"name": " ", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    // The limit counts the name as sent, whitespace around it included.
    let long = format!("\t{}", "n".repeat(100));
    let res = app
        .admin(Method::POST, "/v1/operators/tokens")
        .json(&json!({"name": long, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let res = app
        .admin(Method::POST, "/v1/operators/tokens")
        .json(&json!({"name": "x", "role": "root"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM operator_tokens")
        .fetch_one(app.db().await)
        .await
        .unwrap();
    assert_eq!(count, 1);
    app.finish().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_by_two_api_processes_within_5_seconds() {
    let sys = System::start().await;
    let other = sys.start_api().await;
    let (token, id) = make_token(&sys, "Ada", Role::Viewer).await;
    let status_at = |base: String| {
        let http = sys.http.clone();
        let token = token.clone();
        async move {
            http.get(format!("{base}/v1/bookings"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Made through the first process, it works at once on the second too.
    assert_eq!(status_at(sys.base_url.clone()).await, 200);
    assert_eq!(status_at(other.clone()).await, 200);
    let res = sys
        .admin(Method::DELETE, &format!("/v1/operators/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let revoked = Instant::now();
    assert_eq!(
        status_at(sys.base_url.clone()).await,
        401,
        "at once where revoked"
    );
    loop {
        if status_at(other.clone()).await == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "the other API still accepts a token revoked 5 s ago"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = sys.admin_json("/v1/operators/tokens").await;
    assert!(list["tokens"][0]["revoked_at"].is_string(), "{list}");
    sys.finish().await;
}

#[tokio::test]
async fn two_doors_scanning_one_ticket_at_once_let_one_person_in() {
    let sys = System::start().await;
    let (door, _) = make_token(&sys, "Door 3", Role::BoxOffice).await;
    let show = sys.ga_show(100).await;
    let booking = sys
        .book_accepted(
            &show,
            json!({"email": "ada@example.com", "name": "Ada", "quantity": 2}),
        )
        .await;
    sys.decided(&booking).await;
    let confirmed = sys.confirm(&booking).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    let code = confirmed["tickets"][0]["code"].as_str().unwrap().to_owned();
    let scan = |code: String| {
        let req = sys
            .request(Method::POST, &format!("/v1/tickets/{code}/check-in"))
            .bearer_auth(&door);
        async move {
            let res = req.send().await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let (a, b) = tokio::join!(scan(code.clone()), scan(code.clone()));
    let (ok, refused) = if a.0 == 200 { (a, b) } else { (b, a) };
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(ok.1["booking_id"], booking.as_str());
    assert_eq!(ok.1["checked_in_by"], "Door 3");
    assert_eq!(refused.0, 409, "{}", refused.1);
    assert_eq!(refused.1["code"], "already_checked_in");
    assert_eq!(refused.1["checked_in_at"], ok.1["checked_in_at"]);
    // Scanning again later: still refused, with the first time.
    let again = scan(code.clone()).await;
    assert_eq!(
        (again.0, &again.1["code"]),
        (StatusCode::CONFLICT, &json!("already_checked_in"))
    );
    let unknown = scan("NO-SUCH-TICKET".to_owned()).await;
    assert_eq!(unknown.0, 404, "{}", unknown.1);
    assert_eq!(sys.sales(&show).await["checked_in"], 1);

    // The box office cancels for the customer: the other ticket is void,
    // and the audit trail names the token.
    let res = sys
        .request(Method::POST, &format!("/v1/bookings/{booking}/cancel"))
        .bearer_auth(&door)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    sys.wait_for(&booking, "cancelled", |b| b["status"] == "cancelled")
        .await;
    let other_code = confirmed["tickets"][1]["code"].as_str().unwrap().to_owned();
    let void = scan(other_code).await;
    assert_eq!(
        (void.0, &void.1["code"]),
        (StatusCode::CONFLICT, &json!("not_valid"))
    );
    let actor: String = sqlx::query_scalar(
        "SELECT actor FROM booking_audit WHERE booking_id = $1 AND to_status = 'cancelled'",
    )
    .bind(Uuid::parse_str(&booking).unwrap())
    .fetch_one(sys.db().await)
    .await
    .unwrap();
    assert_eq!(actor, "Door 3");
    let created_by: Option<String> =
        sqlx::query_scalar("SELECT created_by FROM shows WHERE id = $1")
            .bind(Uuid::parse_str(&show).unwrap())
            .fetch_one(sys.db().await)
            .await
            .unwrap();
    assert_eq!(created_by.as_deref(), Some("admin"));
    sys.finish().await;
}

#[tokio::test]
async fn tokens_secrets_and_passwords_never_reach_the_logs() {
    let sys = System::start_with(tests::Options {
        extra_env: vec![("RUST_LOG".to_owned(), "debug".to_owned())],
        ..tests::Options::default()
    })
    .await;
    let (token, id) = make_token(&sys, "Ada", Role::Admin).await;
    let res = sys
        .request(Method::GET, "/v1/operators/tokens")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = sys
        .admin(Method::POST, "/v1/webhooks")
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["booking.held"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let secret = res.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // A refused token is not echoed either.
    let wrong = format!("bko_{}", "B".repeat(43));
    let res = sys
        .request(Method::GET, "/v1/operators/tokens")
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = sys
        .admin(Method::DELETE, &format!("/v1/operators/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let show = sys.ga_show(10).await;
    let booking = sys
        .book_accepted(
            &show,
            json!({"email": "ada@example.com", "name": "Ada", "quantity": 1}),
        )
        .await;
    sys.decided(&booking).await;
    let passwords: Vec<String> = [&sys.database_url, &sys.amqp_url]
        .iter()
        .filter_map(|url| {
            let url = reqwest::Url::parse(url).ok()?;
            let password = url.password()?;
            Some(format!("{}:{password}@", url.username()))
        })
        .collect();
    assert_eq!(passwords.len(), 2, "the test's URLs carry passwords");
    for label in ["api", "worker-0", "notifier"] {
        let log = sys.log(label);
        assert!(log.len() > 1000, "{label} logged at debug level");
        for secret in [tests::system::ADMIN_TOKEN, &token, &wrong, &secret]
            .into_iter()
            .chain(passwords.iter().map(String::as_str))
        {
            assert!(!log.contains(secret), "{label}'s log shows {secret}");
        }
    }
    sys.finish().await;
}
