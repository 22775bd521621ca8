//! The console in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, fantoccini), as an operator uses it. Dead letters written
//! by a real consumer-service appear; filtering by class works; a JPY
//! order opened, its currency changed to EUR and replayed ends as that
//! order's OrderConfirmed on the broker, and its entry shows replayed.
//! Each page's screenshot is saved under target/console-screenshots/.
#![allow(clippy::unwrap_used)]

use crate::console::{Console, watched};
use fantoccini::{ClientBuilder, Locator};
use kafkit_events::{CodecSettings, EventCodec};
use kafkit_messaging::{KafkaSettings, OutgoingRecord, ProducerSettings, Publisher};
use schema_registry::testing::Stack;
use shared_events::{OrderConfirmed, OrderItem, OrderPlaced};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// chromedriver on a free port and the profile of the Chromium it starts;
/// both stopped when dropped, a failed test included.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Driver {
    async fn start() -> Self {
        let port = devstack::free_port().unwrap();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed by scripts/install-browser.sh");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(format!("{url}/status"))
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(devstack::random_name("chromium"));
        Self {
            child,
            url,
            profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Chromium outlives a killed chromedriver: stop it by its profile.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .status();
        std::fs::remove_dir_all(&self.profile).ok();
    }
}

/// The page's source once it contains `text` (a click navigates on its
/// own time), or the last one seen after 20 s.
async fn page_with(browser: &fantoccini::Client, text: &str) -> String {
    let mut page = String::new();
    for _ in 0..100 {
        page = browser.source().await.unwrap();
        if page.contains(text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    page
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn order(sku: &str, currency: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: uuid::Uuid::new_v4().to_string(),
        customer_id: "browser-customer".into(),
        items: vec![OrderItem {
            sku: sku.into(),
            quantity: 2,
            unit_price_cents: 1_250,
        }],
        currency: currency.into(),
        placed_at: 1_795_000_000_000,
        note: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_fixes_and_replays_a_dead_letter_in_a_browser() {
    let stack = Stack::start().await;
    let bootstrap = stack.bootstrap().to_owned();
    let orig = devstack::random_name("orders");
    let (dlq, output, group) = (
        format!("{orig}.dlq"),
        devstack::random_name("confirmations"),
        devstack::random_name("group"),
    );
    // A real consumer-service dead-letters what it refuses.
    let service = crate::dlq::spawn_consumer(
        &bootstrap,
        &stack.registry.url,
        &orig,
        &output,
        &group,
        "FIXME:permanent",
    )
    .await;
    let codec = EventCodec::new(CodecSettings::new(stack.registry.url.clone())).unwrap();
    let publisher = Publisher::new(
        &KafkaSettings::new(&bootstrap),
        &ProducerSettings::default(),
    )
    .unwrap();
    for placed in [
        order("BOOK-1", "JPY"),
        order("BOOK-2", "JPY"),
        order("FIXME-1", "EUR"),
    ] {
        let record = OutgoingRecord {
            topic: orig.clone(),
            partition: None,
            key: Some(placed.order_id.as_bytes().to_vec()),
            payload: Some(codec.encode(&orig, &placed).await.unwrap()),
            headers: Vec::new(),
        };
        publisher.publish(&record).await.unwrap();
    }
    assert_eq!(
        devstack::read::read_topic(&bootstrap, &dlq, 3, Duration::from_secs(90))
            .await
            .len(),
        3
    );
    let console = Console::start(
        watched(&bootstrap, &dlq).await,
        &bootstrap,
        &stack.registry.url,
        None,
    )
    .await;

    let driver = Driver::start().await;
    let profile = driver.profile.clone();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let browser = ClientBuilder::native()
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    let shot = |name: &'static str| {
        let browser = browser.clone();
        async move {
            let png = browser.screenshot().await.unwrap();
            std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
        }
    };

    // The overview: the three dead letters, by class.
    let mut page = String::new();
    for _ in 0..50 {
        browser.goto(&format!("{}/", console.url)).await.unwrap();
        page = browser.source().await.unwrap();
        if page.contains("<strong>3</strong> dead letters") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        page.contains("<strong>3</strong> dead letters")
            && page.contains("unsupported-currency")
            && page.contains("injected-permanent"),
        "{page}"
    );
    shot("overview").await;

    // The list, filtered by class through its form.
    browser
        .find(Locator::LinkText(&dlq))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(Locator::Css("input[name=class]"))
        .await
        .unwrap()
        .send_keys("unsupported-currency")
        .await
        .unwrap();
    browser
        .find(Locator::Css("form[method=get] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = page_with(&browser, "2 matching").await;
    assert!(
        page.contains("2 matching") && !page.contains("injected-permanent</td>"),
        "{page}"
    );
    shot("list").await;

    // One JPY order: open it, change the currency to EUR, replay it.
    browser
        .find(Locator::Css("tbody a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page_with(&browser, "Edit and replay").await;
    let detail = browser.current_url().await.unwrap().to_string();
    shot("detail").await;
    let editor = browser
        .find(Locator::Css("textarea[name=json]"))
        .await
        .unwrap();
    let json = editor.prop("value").await.unwrap().unwrap_or_default();
    let payload: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(payload["currency"], "JPY", "{json}");
    let order_id = payload["order_id"].as_str().unwrap().to_owned();
    editor.clear().await.unwrap();
    editor
        .send_keys(&json.replace("\"JPY\"", "\"EUR\""))
        .await
        .unwrap();
    browser
        .find(Locator::Css("form[action$='/edit'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = page_with(&browser, "sent back").await;
    assert!(page.contains("1 sent back, 0 failed"), "{page}");
    shot("replayed").await;

    // The service confirms it; its entry shows replayed.
    let mut confirmed = false;
    for record in devstack::read::read_topic(&bootstrap, &output, 1, Duration::from_secs(60)).await
    {
        let event: OrderConfirmed = codec.decode(record.payload()).await.unwrap().event;
        confirmed |= event.order_id == order_id;
    }
    assert!(confirmed, "no OrderConfirmed for {order_id}");
    browser.goto(&detail).await.unwrap();
    let page = page_with(&browser, "<strong>replayed</strong>").await;
    assert!(
        page.contains("<strong>replayed</strong>") && page.contains("edited and replayed"),
        "{page}"
    );
    shot("resolved").await;

    browser.close().await.unwrap();
    service.stop().await;
}
