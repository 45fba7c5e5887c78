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

/// The `Message-ID` of a message (without its angle brackets), if it has one.
pub fn message_id(message: &Value) -> Option<String> {
    message["messageId"]
        .as_str()
        .or_else(|| message["headers"]["message-id"].as_str())
        .map(|id| id.trim_matches(['<', '>']).to_owned())
}

/// All emails addressed to `to`.
pub async fn messages_to(to: &str) -> Vec<Value> {
    all_messages()
        .await
        .into_iter()
        .filter(|m| addressed_to(m, to))
        .collect()
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
