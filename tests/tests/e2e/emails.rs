//! Emails under a notifier crash: a crash repeats only the emails that were
//! with the SMTP server but not yet recorded, at most `EMAIL_CONCURRENCY`
//! of them, and every copy carries the `Message-ID` of its (booking, kind).
//! What a confirmation carries besides its text: the show as a calendar
//! entry.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;
use tests::mailbox::{
    addressed_to, all_messages, attachment, expected_message_id, message_id, unique_address,
    wait_for_messages,
};
use tests::slow_relay::SlowRelay;
use tests::{Options, System};

const CUSTOMERS: usize = 60;
const EMAIL_CONCURRENCY: usize = 4;

/// Waits (a minute at most) until `done` says so.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_notifier_crash_repeats_at_most_its_concurrency_in_emails_each_copy_with_the_first_ones_message_id(
) {
    // A relay that takes 100 ms to answer each message, so the notifier
    // keeps EMAIL_CONCURRENCY of them in flight.
    let relay = SlowRelay::start(Duration::from_millis(100)).await;
    let sys = System::start_with(Options {
        extra_env: vec![
            ("SMTP_URL".to_owned(), relay.url().to_owned()),
            (
                "EMAIL_CONCURRENCY".to_owned(),
                EMAIL_CONCURRENCY.to_string(),
            ),
        ],
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(CUSTOMERS as i32).await;
    let customers: Vec<(String, String)> = join_all((0..CUSTOMERS).map(|_| async {
        let email = unique_address("crash");
        let body = json!({"email": email, "name": "Crash", "quantity": 1});
        (sys.book_accepted(&show, body).await, email)
    }))
    .await;
    for (id, _) in &customers {
        assert_eq!(sys.decided(id).await["status"], "held");
    }
    join_all(customers.iter().map(|(id, _)| {
        let sys = &sys;
        async move {
            let res = sys
                .post(
                    &format!("/v1/bookings/{id}/confirm"),
                    json!({"payment_token": "tok_visa"}),
                )
                .await;
            assert_eq!(res.status(), 202, "confirming {id}");
        }
    }))
    .await;

    // While the confirmations go out, the relay stops answering: the emails
    // in flight reach the sink and wait there, unrecorded, until the kill.
    eventually("a third of the confirmations sent", || async {
        relay.taken() >= CUSTOMERS / 3
    })
    .await;
    relay.hold();
    eventually(
        "EMAIL_CONCURRENCY emails waiting for their answer",
        || async { relay.waiting() == EMAIL_CONCURRENCY },
    )
    .await;
    sys.kill("notifier");
    relay.release();
    eventually("the killed notifier's connections gone", || async {
        relay.waiting() == 0
    })
    .await;
    sys.restart("notifier").await;

    let db = sys.db().await;
    eventually("every confirmation recorded as sent", || async {
        let recorded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sent_emails WHERE kind = 'confirmation'")
                .fetch_one(db)
                .await
                .unwrap();
        recorded == CUSTOMERS as i64
    })
    .await;

    let mails = all_messages().await;
    let mut repeated = 0;
    for (id, email) in &customers {
        let copies: Vec<_> = mails.iter().filter(|m| addressed_to(m, email)).collect();
        assert!(!copies.is_empty(), "booking {id} got no confirmation");
        let expected = expected_message_id(id, "confirmation");
        for copy in &copies {
            assert_eq!(copy["subject"], "Your tickets for Open Air");
            assert_eq!(message_id(copy), Some(expected.as_str()), "{copy}");
        }
        repeated += usize::from(copies.len() > 1);
    }
    assert!(
        repeated <= EMAIL_CONCURRENCY,
        "{repeated} customers got their confirmation twice"
    );
    // The kill caught a full set of emails with the relay, and only those
    // came again: the setting is what the notifier sends at once.
    assert_eq!(repeated, EMAIL_CONCURRENCY);
    assert_eq!(relay.most_waiting(), EMAIL_CONCURRENCY);
    sys.finish().await;
}

#[tokio::test]
async fn the_confirmation_email_carries_the_show_as_a_calendar_entry() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    // `ga_show`'s start, which the entry gives in UTC as YYYYMMDDTHHMMSSZ.
    assert_eq!(sys.show(&show).await["starts_at"], "2030-06-01T19:00:00Z");
    let email = unique_address("calendar");
    let body = json!({"email": email, "name": "Cal", "quantity": 2});
    let id = sys.book_accepted(&show, body).await;
    assert_eq!(sys.decided(&id).await["status"], "held");
    let confirmed = sys.confirm(&id).await;

    let mail = &wait_for_messages(&email, 1).await[0];
    let (meta, ics) = attachment(mail, "show.ics")
        .await
        .unwrap_or_else(|| panic!("no show.ics in {mail}"));
    assert!(
        meta["contentType"]
            .as_str()
            .is_some_and(|t| t.starts_with("text/calendar")),
        "{meta}"
    );
    assert!(ics.ends_with("\r\n") && !ics.replace("\r\n", "").contains('\n'));
    let lines: Vec<&str> = ics.split("\r\n").collect();
    let unfolded = ics.replace("\r\n ", "");
    let properties: Vec<&str> = unfolded.split("\r\n").collect();
    assert!(lines.iter().all(|l| l.len() <= 75), "{ics}");
    for property in [
        "BEGIN:VCALENDAR",
        "METHOD:PUBLISH",
        &format!("UID:{id}@booking.test"),
        "DTSTART:20300601T190000Z",
        "SUMMARY:Open Air",
        "LOCATION:The Park",
    ] {
        assert!(properties.contains(&property), "{property} not in {ics}");
    }

    let text = mail["text"].as_str().unwrap();
    let tickets = confirmed["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 2);
    for ticket in tickets {
        let code = ticket["code"].as_str().unwrap();
        assert!(text.contains(code), "{code} not in {text}");
    }
    sys.finish().await;
}
