//! A real browser for the console's tests: Debian's Chromium, headless,
//! driven over WebDriver by its ChromeDriver (both from the `chromium` and
//! `chromium-driver` packages, which `.ci/run` installs).

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where Debian puts them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a test waits for.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(20);

/// A headless Chromium session; ChromeDriver stops with it.
#[derive(Debug)]
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    _driver: tokio::process::Child,
}

impl Browser {
    /// Whether Debian's Chromium and ChromeDriver are where this looks for them.
    pub fn installed() -> bool {
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
    }

    /// Starts ChromeDriver on a free port and opens a headless window of
    /// `width`×`height`. Fails the test when Chromium or ChromeDriver is not
    /// installed (`cargo xtask test` leaves such tests out, and says so).
    pub async fn start(width: u32, height: u32) -> Self {
        assert!(
            Self::installed(),
            "Chromium and ChromeDriver are not installed (apt-get install chromium chromium-driver): this test \
             needs them. `cargo xtask test` leaves out the tests that need them when they are missing, and says so"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                // No sandbox: CI runs as root, where Chromium's sandbox cannot start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", format!("--window-size={width},{height}")],
            }),
        );
        let webdriver = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let mut builder = ClientBuilder::rustls().expect("a rustls connector");
            match builder.capabilities(capabilities.clone()).connect(&webdriver).await {
                Ok(client) => break client,
                // ChromeDriver is still starting.
                Err(error) if started.elapsed() < Duration::from_secs(20) => {
                    tracing::debug!(%error, "ChromeDriver not ready yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("no WebDriver session from ChromeDriver within 20 s: {error}"),
            }
        };
        Self { client, _driver: driver }
    }

    /// Waits for the element `css` selects to be shown with `text` in its text.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> String {
        let started = Instant::now();
        loop {
            let found = match self.client.find(Locator::Css(css)).await {
                Ok(element) if element.is_displayed().await.unwrap_or(false) => element.text().await.ok(),
                _ => None,
            };
            if let Some(found) = found.as_ref().filter(|found| found.contains(text)) {
                return found.clone();
            }
            if started.elapsed() > PAGE_DEADLINE {
                let page = self.client.execute("return document.body.innerText", vec![]).await.unwrap_or_default();
                panic!(
                    "{css} did not show {text:?} within {PAGE_DEADLINE:?}; it shows {found:?}; the page shows {page}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many elements `css` selects now.
    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.map_or(0, |found| found.len())
    }

    /// Types `text` into the (cleared) field `css` selects.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.wait().at_most(PAGE_DEADLINE).for_element(Locator::Css(css)).await.expect(css);
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Chooses the option of value `value` in the `<select>` `css` selects.
    pub async fn select(&self, css: &str, value: &str) {
        let element = self.client.wait().at_most(PAGE_DEADLINE).for_element(Locator::Css(css)).await.expect(css);
        element.select_by_value(value).await.unwrap_or_else(|error| panic!("choosing {value} in {css}: {error}"));
    }

    /// Clicks what `css` selects.
    pub async fn click(&self, css: &str) {
        let element = self.client.wait().at_most(PAGE_DEADLINE).for_element(Locator::Css(css)).await.expect(css);
        element.click().await.unwrap_or_else(|error| panic!("clicking {css}: {error}"));
    }

    /// Saves a screenshot of the window as `folder/name.png`; answers its path.
    pub async fn screenshot(&self, folder: &Path, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        std::fs::create_dir_all(folder).expect("screenshot folder");
        let path = folder.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}
