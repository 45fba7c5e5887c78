//! Holds that are not confirmed in time go back on sale.

use serde_json::json;
use tests::mailbox::{unique_address, wait_for_messages};
use tests::{Options, System};

#[tokio::test]
async fn an_expired_hold_goes_back_on_sale_and_cannot_be_confirmed() {
    let sys = System::start_with(Options {
        hold_seconds: 2,
        ..Options::default()
    })
    .await;
    let show = sys.ga_show(2).await;
    let email = unique_address("expiry");
    let id = sys
        .book_accepted(&show, json!({"email": email, "name": "E", "quantity": 2}))
        .await;
    assert_eq!(sys.decided(&id).await["status"], "held");
    assert_eq!(sys.show(&show).await["available"], 0);

    let expired = sys
        .wait_for(&id, "expired", |b| b["status"] == "expired")
        .await;
    assert_eq!(expired["reason"], "hold_expired");
    assert_eq!(sys.show(&show).await["available"], 2);

    let res = sys
        .post(
            &format!("/v1/bookings/{id}/confirm"),
            json!({"payment_token": "tok_visa"}),
        )
        .await;
    assert_eq!(res.status(), 409);
    let mail = &wait_for_messages(&email, 1).await[0];
    assert!(mail["subject"].as_str().unwrap().contains("expired"));
    sys.finish().await;
}
