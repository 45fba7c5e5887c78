//! A headless Chromium driven through chromedriver (Debian's `chromium` and
//! `chromium-driver`, which `scripts/test` installs): each [`Browser`] is a
//! chromedriver of its own on a free port with one browser session, gone
//! when the test is (dropped or [`Browser::close`]d).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tests::system::free_port;

/// How long anything a buyer waits for may take.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Browser {
    client: Client,
    /// chromedriver, leader of a process group that holds the browser too.
    driver: Child,
}

impl Browser {
    /// Starts chromedriver and a headless browser session in it, 1280×1000.
    pub async fn open() -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so that the browsers it starts go with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start chromedriver ({err}): the storefront's browser tests need \
                     Debian's chromium and chromium-driver (scripts/test installs them: \
                     apt-get install chromium chromium-driver)"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        while !http
            .get(format!("{url}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1280,1000"]}),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .unwrap_or_else(|err| panic!("chromedriver could not start Chromium: {err}"));
        Self { client, driver }
    }

    /// Ends the browser session, then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Opens `url` (the API's base URL and a storefront address).
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigating");
    }

    /// The element `css` selects, once there is one.
    pub async fn find(&self, css: &str) -> Element {
        self.until(
            &format!("{css} to appear"),
            &format!("!!document.querySelector({})", js(css)),
        )
        .await;
        self.client.find(Locator::Css(css)).await.expect(css)
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect(css);
    }

    /// Types `text` into the input `css` selects, replacing what was there.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.expect(css);
        input.send_keys(text).await.expect(css);
    }

    /// The text of the element `css` selects, as shown.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect(css)
    }

    /// What the JavaScript expression `expr` is on the page now.
    pub async fn eval(&self, expr: &str) -> Value {
        self.client
            .execute(&format!("return ({expr});"), Vec::new())
            .await
            .unwrap_or_else(|err| panic!("evaluating {expr}: {err}"))
    }

    /// Waits until the JavaScript expression `expr` holds on the page;
    /// fails with what the page shows otherwise.
    pub async fn until(&self, what: &str, expr: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.eval(expr).await != Value::Bool(true) {
            if Instant::now() >= deadline {
                let page = self.eval("document.querySelector('main').innerText").await;
                panic!(
                    "waited {PATIENCE:?} for {what}; the page shows:\n{}",
                    page.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The booking page's status (`data-status` of `#booking-status`), once
    /// it is one of `statuses`.
    pub async fn booking_status(&self, statuses: &[&str]) -> String {
        let wanted = serde_json::to_string(statuses).unwrap();
        self.until(
            &format!("the booking to be one of {wanted}"),
            &format!(
                "{wanted}.includes(document.querySelector('#booking-status')?.dataset.status)"
            ),
        )
        .await;
        let status = self
            .eval("document.querySelector('#booking-status').dataset.status")
            .await;
        status.as_str().unwrap().to_owned()
    }

    /// Narrows the window to a phone's 360 px and tells whether the page
    /// still fits it, without scrolling sideways.
    pub async fn fits_a_phone(&self) -> bool {
        self.client
            .set_window_size(360, 800)
            .await
            .expect("resizing");
        let width = self.eval("window.innerWidth").await;
        assert_eq!(width, 360, "the viewport of a 360 px window");
        self.eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await
            == true
    }

    /// Saves what the page shows as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = target_dir().join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser it started, even
        // when the test failed before closing the session.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `text` as a JavaScript string literal.
fn js(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// Cargo's target directory: the test runs as `target/<profile>/deps/…`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}
