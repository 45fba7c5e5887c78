//! Reading what reached the SMTP sink (maildev's REST API).

use std::time::{Duration, Instant};

use serde_json::Value;

/// A recipient address no other test uses.
pub fn unique_address(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// Every email in the sink.
pub async fn all_messages() -> Vec<Value> {
    let url = format!(
        "{}/email",
        std::env::var("TEST_MAILDEV_URL").expect("TEST_MAILDEV_URL")
    );
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Whether `message` is addressed to `to`.
pub fn addressed_to(message: &Value, to: &str) -> bool {
    message["to"]
        .as_array()
        .is_some_and(|to_list| to_list.iter().any(|t| t["address"].as_str() == Some(to)))
}

/// The `Message-ID` header of `message`, angle brackets included.
pub fn message_id(message: &Value) -> Option<&str> {
    message["headers"]["message-id"].as_str()
}

/// The `Message-ID` the notifier gives the email of `kind` (`confirmation`,
/// `reminder`, …) about `booking`, with the tests' `MAIL_FROM`
/// (`tickets@booking.test`).
pub fn expected_message_id(booking: &str, kind: &str) -> String {
    format!("<{booking}.{kind}@booking.test>")
}

/// All emails addressed to `to`. maildev filters them (`?to.address=`):
/// the sink holds every test's emails, and reading them all for each call
/// grows slow as the suite goes on. The filter here again only guards
/// against a sink that ignores the query.
pub async fn messages_to(to: &str) -> Vec<Value> {
    let url = format!(
        "{}/email",
        std::env::var("TEST_MAILDEV_URL").expect("TEST_MAILDEV_URL")
    );
    let messages: Vec<Value> = reqwest::Client::new()
        .get(url)
        .query(&[("to.address", to)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    messages
        .into_iter()
        .filter(|m| addressed_to(m, to))
        .collect()
}

/// The attachment of `message` named `file_name`: what maildev says of it
/// (`contentType`, …) and its content, which it serves apart.
pub async fn attachment(message: &Value, file_name: &str) -> Option<(Value, String)> {
    let meta = message["attachments"]
        .as_array()?
        .iter()
        .find(|a| a["fileName"] == file_name)?;
    let url = format!(
        "{}/email/{}/attachment/{}",
        std::env::var("TEST_MAILDEV_URL").expect("TEST_MAILDEV_URL"),
        message["id"].as_str()?,
        meta["generatedFileName"].as_str()?
    );
    let res = reqwest::get(url).await.unwrap();
    assert!(res.status().is_success(), "{file_name}: {}", res.status());
    Some((meta.clone(), res.text().await.unwrap()))
}

/// Waits (20 s at most) until `count` emails to `to` have arrived.
pub async fn wait_for_messages(to: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = messages_to(to).await;
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} emails to {to}, got {}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
