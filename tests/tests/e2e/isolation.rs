//! One client's bad input fails only that client's request: never the other
//! requests recorded in the same group commit.

use std::collections::HashSet;
use std::time::Duration;

use axum::response::IntoResponse;
use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use shared::domain::{BookingId, BookingRequest, Cents, CustomerEmail, ShowId, Wanted};
use sqlx::PgPool;
use tests::invariants::wait_all_decided;
use tests::mailbox::unique_address;
use tests::{System, TestApp};
use uuid::Uuid;

async fn count(db: &PgPool, sql: &str, show: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(show)
        .fetch_one(db)
        .await
        .unwrap()
}

/// The ids of the bookings of `show` in the database.
async fn stored(db: &PgPool, show: Uuid) -> HashSet<Uuid> {
    sqlx::query_scalar("SELECT id FROM bookings WHERE show_id = $1")
        .bind(show)
        .fetch_all(db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn valid_bookings_sent_with_nul_names_are_all_accepted_and_decided() {
    let sys = System::start().await;
    let show = sys.ga_show(200).await;
    let show_id: Uuid = show.parse().unwrap();
    // Every tenth of 200 requests has a NUL in its name; all go at once.
    let requests = (0..200).map(|i| {
        let name = if i % 10 == 0 { "Nul\0Name" } else { "Valid" };
        sys.book(
            &show,
            json!({"email": unique_address("nul"), "name": name, "quantity": 1}),
        )
    });
    let mut accepted = HashSet::new();
    let mut refused = 0;
    for (i, res) in join_all(requests).await.into_iter().enumerate() {
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        if i % 10 == 0 {
            assert_eq!(status, 422, "{body}");
            assert_eq!(body["code"], "validation_failed");
            assert_eq!(body["errors"][0]["field"], "name");
            refused += 1;
        } else {
            assert_eq!(status, 202, "a valid request paid for another's: {body}");
            accepted.insert(body["id"].as_str().unwrap().parse::<Uuid>().unwrap());
        }
    }
    assert_eq!((accepted.len(), refused), (180, 20));

    let db = sys.db().await;
    wait_all_decided(db, show_id, Duration::from_secs(60)).await;
    assert_eq!(stored(db, show_id).await, accepted, "only the valid ones");
    let audited = count(
        db,
        "SELECT count(*) FROM booking_audit WHERE show_id = $1 AND from_status IS NULL",
        show_id,
    )
    .await;
    assert_eq!(audited, 180);
    assert_eq!(
        sys.show(&show).await["held"],
        180,
        "every valid one decided"
    );
    sys.finish().await;
}

/// Fault injection in PostgreSQL itself: refuses to insert a booking by
/// name, as a constraint validation cannot see (SQLSTATE 23514), or as a
/// fault that is nobody's input (P0001).
const POISON: &str = r"
CREATE FUNCTION poison_bookings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name = 'Poison Constraint' THEN
        RAISE EXCEPTION 'poisoned booking' USING ERRCODE = 'check_violation';
    ELSIF NEW.name = 'Poison Fault' THEN
        RAISE EXCEPTION 'poisoned booking';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison_bookings BEFORE INSERT ON bookings
    FOR EACH ROW EXECUTE FUNCTION poison_bookings();
";

#[tokio::test]
async fn rows_postgresql_refuses_fail_only_their_own_requests() {
    let sys = System::start().await;
    let show = sys.ga_show(200).await;
    let show_id: Uuid = show.parse().unwrap();
    let db = sys.db().await;
    sqlx::raw_sql(POISON).execute(db).await.unwrap();

    let name = |i: usize| match i % 10 {
        0 => "Poison Constraint",
        5 => "Poison Fault",
        _ => "Valid",
    };
    let requests = (0..100).map(|i| {
        sys.request(Method::POST, &format!("/v1/shows/{show}/bookings"))
            .header("Idempotency-Key", format!("poison-{i}"))
            .json(&json!({"email": unique_address("poison"), "name": name(i), "quantity": 1}))
            .send()
    });
    let mut accepted = HashSet::new();
    for (i, res) in join_all(requests).await.into_iter().enumerate() {
        let res = res.unwrap();
        let status = res.status();
        let content_type = res.headers()["content-type"].clone();
        let body: Value = res.json().await.unwrap();
        match name(i) {
            "Valid" => {
                assert_eq!(status, 202, "a valid request paid for another's: {body}");
                accepted.insert(body["id"].as_str().unwrap().parse::<Uuid>().unwrap());
            }
            poison => {
                let (want_status, want_code) = if poison == "Poison Constraint" {
                    (422, "input_rejected")
                } else {
                    (500, "internal_error")
                };
                assert_eq!(
                    (status.as_u16(), body["code"].as_str()),
                    (want_status, Some(want_code)),
                    "{poison}: {body}"
                );
                assert_eq!(content_type, "application/problem+json");
            }
        }
    }
    assert_eq!(accepted.len(), 80);
    assert!(
        sys.api_metric("api_record_batch_splits_total").await >= Some(1.0),
        "poisoned rows shared a group commit with valid ones"
    );

    wait_all_decided(db, show_id, Duration::from_secs(60)).await;
    assert_eq!(
        stored(db, show_id).await,
        accepted,
        "no poisoned row stored"
    );
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(keys, 80, "a refused request leaves no Idempotency-Key");
    let audited = count(
        db,
        "SELECT count(*) FROM booking_audit WHERE show_id = $1 AND from_status IS NULL",
        show_id,
    )
    .await;
    assert_eq!(audited, 80);
    assert_eq!(sys.show(&show).await["held"], 80, "every valid one decided");
    sys.finish().await;
}

/// Below validation: the recorder itself, handed rows PostgreSQL cannot
/// store. On this single-threaded runtime all 50 are queued before the
/// recorder runs, so they are one batch.
#[tokio::test]
async fn a_row_postgresql_refuses_fails_alone_in_its_group_commit() {
    let app = TestApp::spawn().await;
    let show: Uuid = app.ga_show(100).await.parse().unwrap();
    let db = app.db().await;
    let recorder =
        api::recorder::Recorder::start(db.clone(), Default::default(), &Default::default());
    let bad = |i: usize| i % 10 == 3;
    let rows: Vec<_> = (0..50)
        .map(|i| BookingRequest {
            id: BookingId::random(),
            show_id: ShowId(show),
            email: CustomerEmail::parse(&unique_address("recorder")).unwrap(),
            name: if bad(i) { "Nul\0Name" } else { "Valid" }.to_owned(),
            wanted: Wanted::Quantity(1),
            waitlist: false,
            total: Some(Cents(2500)),
        })
        .collect();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id.0).collect();
    let outcomes = join_all(
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| recorder.record(row, Some((format!("recorder-{i}"), vec![1])))),
    )
    .await;

    let mut created = HashSet::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(api::recorder::Recorded::Created { .. }) if !bad(i) => {
                created.insert(ids[i]);
            }
            Err(err) if bad(i) => {
                let code = err.as_database_error().and_then(|e| e.code());
                assert_eq!(code.as_deref(), Some("22021"), "{err}");
                let answer = api::error::ApiError::from(err).into_response();
                assert_eq!(answer.status(), 422, "the client's input, not a 500");
            }
            Ok(_) => panic!("row {i} was not recorded, or a NUL row was"),
            Err(err) => panic!("valid row {i} failed with its batch: {err}"),
        }
    }
    assert_eq!(created.len(), 45);
    assert_eq!(stored(db, show).await, created);
    app.finish().await;
}
