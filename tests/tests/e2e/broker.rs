//! The broker's part: a 202 only after RabbitMQ confirmed; poison messages
//! end in the dead-letter queue.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tests::mailbox::unique_address;
use tests::system::{dead_letters, management_call};
use tests::{Options, System};

#[tokio::test]
async fn without_a_broker_bookings_get_503_with_retry_after_and_leave_nothing_behind() {
    // A port nothing listens on stands in for a broker that is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sys = System::start_with(Options {
        amqp_url: Some(format!("amqp://guest:guest@127.0.0.1:{port}/%2f")),
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(10).await;
    let started = Instant::now();
    let res = sys
        .book(
            &show,
            json!({"email": unique_address("down"), "name": "D", "quantity": 1}),
        )
        .await;
    assert_eq!(res.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503 must come quickly"
    );
    assert!(res.headers().contains_key("retry-after"));
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "temporarily_unavailable");
    assert!(
        sys.bookings_of(&show).await.is_empty(),
        "a refused booking must not remain"
    );
    assert_eq!(sys.show(&show).await["available"], 10);
    sys.finish().await;
}

#[tokio::test]
async fn an_unparseable_message_is_dead_lettered_with_its_reason_and_the_queue_keeps_flowing() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    let vhost = sys.vhost.as_deref().unwrap();
    let published = management_call(
        reqwest::Method::POST,
        &format!("/api/exchanges/{vhost}/amq.default/publish"),
        Some(
            json!({"properties": {"delivery_mode": 2}, "routing_key": "booking.requests.shard-00",
                    "payload": "this is not a command", "payload_encoding": "string"}),
        ),
    )
    .await;
    assert_eq!(published["routed"], true);

    let id = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("after"), "name": "A", "quantity": 1}),
        )
        .await;
    assert_eq!(
        sys.decided(&id).await["status"],
        "held",
        "valid messages still flow"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let got = management_call(
            reqwest::Method::POST,
            &format!("/api/queues/{vhost}/booking.requests.dead/get"),
            Some(json!({"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"})),
        )
        .await;
        if let Some(first) = got.as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead["payload"], "this is not a command");
    let headers = &dead["properties"]["headers"];
    assert!(
        headers["x-booking-death-reason"]
            .as_str()
            .unwrap()
            .starts_with("unparseable"),
        "{headers}"
    );
    assert_eq!(
        headers["x-booking-source-queue"],
        "booking.requests.shard-00"
    );
    assert!(headers["x-booking-attempts"].as_i64().unwrap() >= 1);
    sys.finish().await;
}

#[tokio::test]
async fn poison_message_is_dead_lettered() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    let vhost = sys.vhost.as_deref().unwrap();
    let db = sys.db().await;
    refuse_poison(db).await;

    let poison = sys
        .book_accepted(
            &show,
            json!({"email": unique_address("poison"), "name": "P", "quantity": 1}),
        )
        .await;
    let mut behind = Vec::new();
    for _ in 0..3 {
        behind.push(
            sys.book_accepted(
                &show,
                json!({"email": unique_address("fine"), "name": "F", "quantity": 1}),
            )
            .await,
        );
    }
    for id in &behind {
        assert_eq!(
            sys.decided(id).await["status"],
            "held",
            "messages behind the poison flow"
        );
    }

    let dead = first_dead_letter(vhost).await;
    let headers = &dead["properties"]["headers"];
    let reason = headers["x-booking-death-reason"].as_str().unwrap();
    assert!(reason.contains("poisoned booking"), "{reason}");
    assert!(
        headers["x-booking-attempts"].as_i64().unwrap() >= 5,
        "bounded attempts were made: {headers}"
    );
    let payload: Value = serde_json::from_str(dead["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["booking_id"], poison.as_str());
    assert_eq!(
        sys.booking(&poison).await["status"],
        "queued",
        "it waits for the operator"
    );

    // The operator fixes the cause and replays the dead letters.
    cure_poison(db).await;
    let out = sys.worker_command(&["replay-dead-letters"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 1 message"));
    assert_eq!(sys.decided(&poison).await["status"], "held");

    // Replaying again (the same message once more) changes nothing.
    let again = management_call(
        reqwest::Method::POST,
        &format!("/api/exchanges/{vhost}/amq.default/publish"),
        Some(
            json!({"properties": {"delivery_mode": 2}, "routing_key": sys.shard_queue_of(&show),
                    "payload": dead["payload"], "payload_encoding": "string"}),
        ),
    )
    .await;
    assert_eq!(again["routed"], true);
    let out = sys.worker_command(&["replay-dead-letters"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 0 message"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let decisions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM booking_audit WHERE booking_id = $1::uuid AND from_status = 'queued'",
    )
    .bind(&poison)
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(decisions, 1, "decided exactly once");
    assert_eq!(sys.show(&show).await["held"], 4);
    assert!(dead_letters(vhost, "booking.requests.dead")
        .await
        .is_empty());
    sys.finish().await;
}

#[tokio::test]
async fn a_poison_request_in_a_batch_is_dead_lettered_alone_and_the_rest_of_its_message_decided() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    let vhost = sys.vhost.as_deref().unwrap();
    let db = sys.db().await;
    refuse_poison(db).await;
    // Recorded with no worker running, their own messages taken off the
    // queue, then sent again as one message: a batch with the poison in
    // the middle, as the API sends requests recorded together.
    for worker in sys.workers() {
        sys.kill(&worker);
    }
    let mut ids = Vec::new();
    for who in ["fine", "poison", "fine"] {
        let body = json!({"email": unique_address(who), "name": "B", "quantity": 1});
        ids.push(sys.book_accepted(&show, body).await);
    }
    let queues = management_call(reqwest::Method::GET, &format!("/api/queues/{vhost}"), None).await;
    for queue in queues.as_array().unwrap() {
        let name = queue["name"].as_str().unwrap();
        if name.starts_with("booking.requests.shard-") {
            let path = format!("/api/queues/{vhost}/{name}/contents");
            management_call(reqwest::Method::DELETE, &path, None).await;
        }
    }
    let batch = json!({"type": "shard_requests", "shows": [{"show_id": show, "booking_ids": ids}]});
    let published = management_call(
        reqwest::Method::POST,
        &format!("/api/exchanges/{vhost}/amq.default/publish"),
        Some(
            json!({"properties": {"delivery_mode": 2, "headers": {"x-requests": 3}},
                    "routing_key": sys.shard_queue_of(&show),
                    "payload": batch.to_string(), "payload_encoding": "string"}),
        ),
    )
    .await;
    assert_eq!(published["routed"], true);
    sys.start_worker();

    let (fine, poison) = ([&ids[0], &ids[2]], &ids[1]);
    for id in fine {
        assert_eq!(
            sys.decided(id).await["status"],
            "held",
            "the rest of the message is decided"
        );
    }
    let dead = first_dead_letter(vhost).await;
    let payload: Value = serde_json::from_str(dead["payload"].as_str().unwrap()).unwrap();
    assert_eq!(
        payload,
        json!({"type": "request", "booking_id": poison, "show_id": show}),
        "the dead letter is the poison request alone"
    );
    let headers = &dead["properties"]["headers"];
    assert_eq!(headers["x-requests"], 1);
    assert_eq!(headers["x-booking-id"], poison.as_str());
    assert!(headers["x-booking-death-reason"]
        .as_str()
        .unwrap()
        .contains("poisoned booking"));
    assert_eq!(sys.booking(poison).await["status"], "queued");
    assert_eq!(dead_letters(vhost, "booking.requests.dead").await.len(), 1);

    cure_poison(db).await;
    let out = sys.worker_command(&["replay-dead-letters"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 1 message"));
    assert_eq!(sys.decided(poison).await["status"], "held");
    assert_eq!(sys.show(&show).await["held"], 3);
    sys.finish().await;
}

#[tokio::test]
async fn requests_recorded_together_travel_in_fewer_messages_than_bookings() {
    let sys = System::start().await;
    let show = sys.ga_show(100).await;
    let bookings = 60;
    let ids = book_at_once(&sys, &show, bookings).await;
    for id in &ids {
        assert_eq!(sys.decided(id).await["status"], "held");
    }
    let messages = sys
        .api_metric("api_requests_per_message_count")
        .await
        .unwrap();
    let carried = sys
        .api_metric("api_requests_per_message_sum")
        .await
        .unwrap();
    assert_eq!(carried, f64::from(bookings), "every request was sent once");
    assert!(
        messages < f64::from(bookings),
        "{bookings} concurrent requests went out in {messages} messages"
    );
    sys.finish().await;
}

#[tokio::test]
async fn requests_for_many_shows_travel_together_per_shard_and_keep_each_shows_order() {
    let sys = System::start().await;
    let mut shows = Vec::new();
    for _ in 0..16 {
        shows.push(sys.ga_show(3).await);
    }
    // With no worker running, the messages wait in the shard queues to be
    // read. Four requests for each show at once, for three tickets each.
    for worker in sys.workers() {
        sys.kill(&worker);
    }
    let per_show = 4;
    let ids: Vec<Vec<String>> =
        futures::future::join_all(shows.iter().map(|show| book_at_once(&sys, show, per_show)))
            .await;

    // Read as a consumer (a single-active-consumer queue allows no
    // basic.get), and left unacked: closing puts them back.
    let conn = lapin::Connection::connect(&sys.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut shows_per_message = Vec::new();
    let mut carried = 0;
    let queues: BTreeSet<String> = shows.iter().map(|show| sys.shard_queue_of(show)).collect();
    for queue in &queues {
        let waiting = shared::topology::waiting(&channel, queue).await.unwrap();
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "peek".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
        for _ in 0..waiting {
            let delivery = consumer.next().await.unwrap().unwrap();
            let body: Value = serde_json::from_slice(&delivery.data).unwrap();
            assert_eq!(body["type"], "shard_requests");
            for batch in body["shows"].as_array().unwrap() {
                let show = batch["show_id"].as_str().unwrap();
                assert_eq!(
                    &sys.shard_queue_of(show),
                    queue,
                    "a show travels on its own shard"
                );
                carried += batch["booking_ids"].as_array().unwrap().len();
            }
            shows_per_message.push(body["shows"].as_array().unwrap().len());
        }
    }
    conn.close(200, "peeked".into()).await.unwrap();
    assert_eq!(
        carried,
        shows.len() * per_show as usize,
        "every request was sent once"
    );
    assert!(
        shows_per_message.iter().any(|&n| n > 1),
        "a message carries several shows: {shows_per_message:?}"
    );

    // The first three of each show's line are held, the fourth rejected.
    let worker = sys.start_worker();
    let db = sys.db().await;
    for (show, ids) in shows.iter().zip(&ids) {
        for id in ids {
            sys.decided(id).await;
        }
        let by_line = |status: &'static str| {
            sqlx::query_scalar::<_, String>(
                "SELECT id::text FROM bookings
                 WHERE show_id = $1::uuid AND ($2 = '' OR status = $2) ORDER BY accepted_seq LIMIT 3",
            )
            .bind(show)
            .bind(status)
            .fetch_all(db)
        };
        assert_eq!(
            by_line("held").await.unwrap(),
            by_line("").await.unwrap(),
            "each show is decided in its line's order"
        );
    }
    // The shards' runs were decided together: fewer transactions than shows.
    let transactions = sys
        .worker_metric(&worker, "worker_commands_per_transaction_count")
        .await
        .unwrap_or(0.0);
    assert!(
        (1.0..shows.len() as f64).contains(&transactions),
        "{} shows decided in {transactions} shared transactions",
        shows.len()
    );
    sys.finish().await;
}

#[tokio::test]
async fn the_requests_waiting_in_a_shard_show_on_its_workers_gauge() {
    let sys = System::start().await;
    let show = sys.ga_show(100).await;
    let db = sys.db().await;
    // Decisions take 8 s each, so that the gauge (read every 5 s) sees the
    // line while the first decision holds it.
    sqlx::raw_sql(
        r#"CREATE FUNCTION slow_decisions() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF EXISTS (SELECT 1 FROM decided WHERE from_status = 'queued') THEN
               PERFORM pg_sleep(8);
             END IF;
             RETURN NULL;
           END $$;
           CREATE TRIGGER slow_decisions AFTER INSERT ON booking_audit
             REFERENCING NEW TABLE AS decided
             FOR EACH STATEMENT EXECUTE FUNCTION slow_decisions();"#,
    )
    .execute(db)
    .await
    .unwrap();
    let waiting = 30;
    let ids = book_at_once(&sys, &show, waiting).await;
    let gauge = || async {
        let mut sum = 0.0;
        for worker in sys.workers() {
            sum += sys
                .worker_metric(&worker, "worker_requests_waiting")
                .await
                .unwrap_or(0.0);
        }
        sum
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while gauge().await != f64::from(waiting) {
        assert!(
            Instant::now() < deadline,
            "the gauge never showed the {waiting} waiting"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    sqlx::raw_sql("DROP TRIGGER slow_decisions ON booking_audit")
        .execute(db)
        .await
        .unwrap();
    for id in &ids {
        assert_eq!(sys.decided(id).await["status"], "held");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while gauge().await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the gauge still counts decided requests"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sys.finish().await;
}

/// `n` bookings of one ticket each, sent all at once; their ids.
async fn book_at_once(sys: &System, show: &str, n: u32) -> Vec<String> {
    futures::future::join_all((0..n).map(|_| {
        let body = json!({"email": unique_address("crowd"), "name": "C", "quantity": 1});
        sys.book_accepted(show, body)
    }))
    .await
}

/// A handler that always fails for some bookings: the database refuses to
/// record the decision of any whose email starts `poison-` (think of a
/// bug, or bad data, met in production).
async fn refuse_poison(db: &sqlx::PgPool) {
    sqlx::raw_sql(
        r#"CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.from_status = 'queued'
                AND EXISTS (SELECT 1 FROM bookings WHERE id = NEW.booking_id AND email LIKE 'poison-%') THEN
               RAISE EXCEPTION 'poisoned booking %', NEW.booking_id;
             END IF;
             RETURN NEW;
           END $$;
           CREATE TRIGGER refuse_poison BEFORE INSERT ON booking_audit
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();"#,
    )
    .execute(db)
    .await
    .unwrap();
}

/// The operator's fix for [`refuse_poison`].
async fn cure_poison(db: &sqlx::PgPool) {
    sqlx::raw_sql("DROP TRIGGER refuse_poison ON booking_audit")
        .execute(db)
        .await
        .unwrap();
}

/// The first message of `booking.requests.dead`, waited for up to 30 s.
async fn first_dead_letter(vhost: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(dead) = dead_letters(vhost, "booking.requests.dead").await.pop() {
            return dead;
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
