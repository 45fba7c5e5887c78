//! The storefront (docs/API.md#storefront), as a buyer uses it: a real
//! browser on the page the api serves at `/`, against a whole system.
//! Each test leaves a screenshot of where it ended in
//! `target/screenshots/<test name>.png`.

mod browser;

use std::time::Duration;

use browser::Browser;
use reqwest::Method;
use serde_json::json;
use tests::mailbox::unique_address;
use tests::{System, TestApp};

/// Fills in and sends the booking form of the show page the browser is on.
async fn book(browser: &Browser, name: &str, quantity: Option<u32>) {
    browser.fill("#name", name).await;
    browser.fill("#email", &unique_address("storefront")).await;
    if let Some(quantity) = quantity {
        browser.fill("#quantity", &quantity.to_string()).await;
    }
    browser.click("#book").await;
}

/// The booking id in the address of the booking page the browser is on.
async fn booking_id(browser: &Browser) -> String {
    browser
        .until(
            "the booking page",
            "location.hash.startsWith('#/bookings/')",
        )
        .await;
    let hash = browser.eval("location.hash").await;
    hash.as_str()
        .unwrap()
        .trim_start_matches("#/bookings/")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_finds_a_show_by_a_word_of_its_description_books_two_tickets_pays_and_sees_their_qr_codes(
) {
    let sys = System::start().await;
    let show = sys
        .create_show(json!({
            "name": "Night Garden", "venue": "Botanic Hall", "starts_at": "2030-07-01T20:00:00Z",
            "capacity": 50, "price_cents": 3000,
            "description": "An evening walk among bioluminescent plants, with live music."
        }))
        .await;
    sys.ga_show(50).await;
    let browser = Browser::open().await;

    browser.goto(&format!("{}/", sys.base_url)).await;
    browser.fill("#q", "bioluminescent").await;
    browser.click("#search button[type=submit]").await;
    browser
        .until(
            "the search's one result",
            "document.querySelector('#results-status').textContent === '1 show'",
        )
        .await;
    assert_eq!(
        browser.text("#results [data-testid=show] h2").await,
        "Night Garden"
    );
    browser.click("#results [data-testid=show] a").await;

    assert_eq!(browser.text("#show-name").await, "Night Garden");
    assert!(browser
        .text("#description")
        .await
        .contains("bioluminescent"));
    assert_eq!(browser.text("#availability").await, "50 tickets left");
    book(&browser, "Ada Lovelace", Some(2)).await;
    let id = booking_id(&browser).await;
    assert_eq!(browser.booking_status(&["held", "rejected"]).await, "held");
    assert_eq!(browser.text("#total").await, "60.00");
    let left = browser
        .eval("Number(document.querySelector('#hold-countdown').dataset.seconds)")
        .await;
    assert!(
        (240..=300).contains(&left.as_u64().unwrap()),
        "{left} s to pay, of 300"
    );

    browser.click("#card-visa").await;
    browser.click("#pay").await;
    assert_eq!(browser.booking_status(&["confirmed"]).await, "confirmed");
    browser
        .until(
            "two QR codes, loaded",
            "[...document.querySelectorAll('#tickets [data-testid=ticket] img.qr')]
                 .filter((img) => img.complete && img.naturalWidth > 0).length === 2",
        )
        .await;
    let shown = browser
        .eval("[...document.querySelectorAll('#tickets [data-testid=ticket]')].map((t) => t.dataset.code).sort()")
        .await;
    let booking = sys.booking(&id).await;
    assert_eq!(booking["show_id"], show["id"]);
    let mut codes: Vec<&str> = booking["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap())
        .collect();
    codes.sort_unstable();
    assert_eq!(shown, json!(codes));
    // The images are the API's: only this booking's valid tickets have one.
    let qr = |booking: &str, code: &str| {
        sys.request(
            Method::GET,
            &format!("/v1/bookings/{booking}/tickets/{code}/qr"),
        )
        .send()
    };
    let image = qr(&id, codes[0]).await.unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/svg+xml");
    for (booking, code, problem) in [
        (id.as_str(), "TKT-NOPE-NOPE-NOPE", "not_found"),
        (
            "5f0c7a1e-0000-4000-8000-000000000000",
            codes[0],
            "booking_not_found",
        ),
    ] {
        let res = qr(booking, code).await.unwrap();
        assert_eq!(res.status(), 404);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["code"], problem);
    }
    browser
        .screenshot("a_buyer_finds_a_show_by_a_word_of_its_description_books_two_tickets_pays_and_sees_their_qr_codes")
        .await;
    assert!(
        browser.fits_a_phone().await,
        "the tickets fit a phone's width"
    );
    browser
        .screenshot("a_buyer_finds_a_show_by_a_word_of_its_description_books_two_tickets_pays_and_sees_their_qr_codes-phone")
        .await;
    browser.close().await;
    sys.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_buyers_racing_for_a_seat_one_sees_it_taken_and_its_request_rejected() {
    let sys = System::start().await;
    let show = sys.seated_show(1, 6).await;
    let seats = sys.seat_ids(&show).await;
    let (a, b) = tokio::join!(Browser::open(), Browser::open());
    for browser in [&a, &b] {
        browser
            .goto(&format!("{}/#/shows/{show}", sys.base_url))
            .await;
        browser.find("#seat-map button.seat").await;
    }
    let seat = |n: usize| format!("button.seat[data-seat-id='{}']", seats[n]);
    a.click(&seat(0)).await;
    a.click(&seat(1)).await;
    b.click(&seat(1)).await;
    b.click(&seat(2)).await;
    assert_eq!(a.text("#selection").await, "Selected: A1, A2 · total 80.00");
    assert_eq!(
        b.find(&seat(1))
            .await
            .attr("aria-pressed")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );

    // Both requests wait in line, then are decided in the order they came.
    sys.pause("worker-0");
    book(&a, "Ada", None).await;
    book(&b, "Grace", None).await;
    let (id_a, id_b) = (booking_id(&a).await, booking_id(&b).await);
    sys.resume("worker-0");
    let decided = ["held", "rejected"];
    let (status_a, status_b) = (
        a.booking_status(&decided).await,
        b.booking_status(&decided).await,
    );
    let mut statuses = [status_a.as_str(), status_b.as_str()];
    statuses.sort_unstable();
    assert_eq!(statuses, ["held", "rejected"], "{id_a} {id_b}");
    let (winner, loser) = if status_a == "held" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(
        loser
            .eval("document.querySelector('#reason').dataset.reason")
            .await,
        "seats_unavailable"
    );
    assert_eq!(
        loser.text("#reason").await,
        "Someone else got one or more of those seats first."
    );

    // Back at the map the loser finds the seat taken, and sees it booked as
    // soon as the winner pays, without reloading.
    loser.click("#back-to-show").await;
    let contested = seat(1);
    loser
        .until(
            "the contested seat, held",
            &format!("document.querySelector(\"{contested}\")?.dataset.status === 'held'"),
        )
        .await;
    assert!(!loser.find(&contested).await.is_enabled().await.unwrap());
    winner.click("#pay").await;
    assert_eq!(winner.booking_status(&["confirmed"]).await, "confirmed");
    loser
        .until(
            "the contested seat, booked",
            &format!("document.querySelector(\"{contested}\").dataset.status === 'booked'"),
        )
        .await;
    loser
        .screenshot("two_buyers_racing_for_a_seat_one_sees_it_taken_and_its_request_rejected")
        .await;
    assert!(
        loser.fits_a_phone().await,
        "the seat map fits a phone's width"
    );
    loser
        .screenshot("two_buyers_racing_for_a_seat_one_sees_it_taken_and_its_request_rejected-phone")
        .await;
    tokio::join!(a.close(), b.close());
    sys.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_workers_paused_the_place_in_line_shows_and_counts_down_when_they_resume() {
    let sys = System::start().await;
    let show = sys.ga_show(20).await;
    sys.pause("worker-0");
    for n in 0..3 {
        sys.book_accepted(
            &show,
            json!({"email": unique_address(&format!("ahead-{n}")), "name": "Ahead", "quantity": 1}),
        )
        .await;
    }
    let browser = Browser::open().await;
    browser
        .goto(&format!("{}/#/shows/{show}", sys.base_url))
        .await;
    book(&browser, "Ada", Some(1)).await;
    booking_id(&browser).await;
    browser
        .until(
            "a place in line",
            "!!document.querySelector('#position')?.dataset.position",
        )
        .await;
    assert_eq!(browser.text("#position").await, "You are number 4 in line.");
    browser
        .screenshot("with_the_workers_paused_the_place_in_line_shows_and_counts_down_when_they_resume-in-line")
        .await;

    sys.resume("worker-0");
    let mut places = Vec::new();
    while browser
        .eval("document.querySelector('#booking-status').dataset.status")
        .await
        == "queued"
    {
        if let Some(place) = browser
            .eval("document.querySelector('#position').dataset.position")
            .await
            .as_str()
        {
            places.push(place.parse::<u32>().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        places.windows(2).all(|w| w[1] <= w[0]),
        "the place went up: {places:?}"
    );
    assert_eq!(browser.booking_status(&["held"]).await, "held");
    assert_eq!(
        browser
            .eval("document.querySelector('#position').hidden")
            .await,
        true
    );
    browser.find("#pay-form").await;
    browser
        .screenshot(
            "with_the_workers_paused_the_place_in_line_shows_and_counts_down_when_they_resume",
        )
        .await;
    browser.close().await;
    sys.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_card_shows_the_reason_and_keeps_the_hold() {
    let sys = System::start().await;
    let show = sys.ga_show(10).await;
    let browser = Browser::open().await;
    browser
        .goto(&format!("{}/#/shows/{show}", sys.base_url))
        .await;
    book(&browser, "Ada", Some(1)).await;
    let id = booking_id(&browser).await;
    assert_eq!(browser.booking_status(&["held"]).await, "held");

    browser.click("#card-declined").await;
    browser.click("#pay").await;
    assert_eq!(
        browser.text("#payment-error").await,
        "Your card was declined. Your tickets are still held: try again, or with another card."
    );
    assert_eq!(browser.booking_status(&["held"]).await, "held");
    let booking = sys.booking(&id).await;
    assert_eq!(
        (booking["status"].as_str(), booking["reason"].as_str()),
        (Some("held"), Some("payment_declined"))
    );
    // The hold's clock keeps running, and the form is there to pay again.
    let seconds = || async {
        browser
            .eval("Number(document.querySelector('#hold-countdown').dataset.seconds)")
            .await
            .as_u64()
            .unwrap()
    };
    let before = seconds().await;
    assert!(before > 0);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(seconds().await < before);
    assert!(browser.find("#pay").await.is_enabled().await.unwrap());
    browser
        .screenshot("a_declined_card_shows_the_reason_and_keeps_the_hold")
        .await;

    browser.click("#card-visa").await;
    browser.click("#pay").await;
    assert_eq!(browser.booking_status(&["confirmed"]).await, "confirmed");
    browser.close().await;
    sys.finish().await;
}

#[tokio::test]
async fn the_page_and_its_files_come_with_their_types_a_strict_policy_and_an_etag() {
    let app = TestApp::spawn().await;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/storefront/app.js", "text/javascript; charset=utf-8"),
        ("/storefront/app.css", "text/css; charset=utf-8"),
    ] {
        let res = app.request(Method::GET, path).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let headers = res.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.starts_with("default-src 'self';"),
            "{path}: {policy}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let again = app
            .request(Method::GET, path)
            .header("if-none-match", headers["etag"].clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    app.finish().await;
}
