//! Reminder emails go out `REMINDER_LEAD_SECONDS` before a show, once.

use std::time::Duration;

use serde_json::json;
use tests::mailbox::{messages_to, unique_address, wait_for_messages};
use tests::System;

async fn book_and_confirm(sys: &System, show: &str, email: &str) -> Vec<String> {
    let id = sys
        .book_accepted(show, json!({"email": email, "name": "R", "quantity": 2}))
        .await;
    sys.decided(&id).await;
    let confirmed = sys.confirm(&id).await;
    confirmed["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_confirmed_booking_gets_one_reminder_when_its_show_is_near() {
    let sys = System::start().await;
    let starts_at = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let soon = sys
        .create_show(json!({"name": "Soon", "venue": "Hall", "starts_at": starts_at, "capacity": 10, "price_cents": 100}))
        .await;
    let soon = soon["id"].as_str().unwrap();
    let far = sys.ga_show(10).await;
    let (near_fan, far_fan) = (unique_address("near"), unique_address("far"));

    let codes = book_and_confirm(&sys, soon, &near_fan).await;
    book_and_confirm(&sys, &far, &far_fan).await;

    let mails = wait_for_messages(&near_fan, 2).await;
    let reminder = mails
        .iter()
        .find(|m| m["subject"] == "Reminder: Soon is coming up")
        .expect("a reminder");
    for code in &codes {
        assert!(reminder["text"].as_str().unwrap().contains(code.as_str()));
    }
    // Another sweep later: still one reminder, and none for the far show.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(messages_to(&near_fan).await.len(), 2);
    assert_eq!(
        messages_to(&far_fan).await.len(),
        1,
        "only the confirmation"
    );
    sys.finish().await;
}
