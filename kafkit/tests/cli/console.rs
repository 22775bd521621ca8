//! `kafkit console` against a real broker and registry: dead letters written
//! to a DLQ topic appear on the overview by class, the list filters and
//! pages, a dead letter's page shows its payload decoded through the
//! registry with every header, hostile keys are escaped, and a token keeps
//! out whoever lacks it.
#![allow(clippy::unwrap_used)]

use kafkit::console::{self, index::Index};
use kafkit_events::{CodecSettings, EventCodec};
use kafkit_messaging::{KafkaSettings, OutgoingRecord, ProducerSettings, Publisher};
use schema_registry::testing::Stack;
use shared_events::{OrderItem, OrderPlaced};
use std::sync::Arc;
use std::time::Duration;

fn order(currency: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: uuid::Uuid::new_v4().to_string(),
        customer_id: "console-customer".into(),
        items: vec![OrderItem {
            sku: "BOOK-1".into(),
            quantity: 1,
            unit_price_cents: 1_550,
        }],
        currency: currency.into(),
        placed_at: 1_795_000_000_000,
        note: None,
    }
}

/// A kafkit dead letter of `class`, from `from` partition `partition`.
fn dead_letter(
    from: &str,
    dlq: &str,
    key: &str,
    payload: Vec<u8>,
    class: &str,
    partition: i32,
) -> OutgoingRecord {
    let headers = [
        ("kafkit.original.topic", from.to_owned()),
        ("kafkit.original.partition", partition.to_string()),
        ("kafkit.original.offset", "40".to_owned()),
        ("kafkit.attempt", "1".to_owned()),
        ("kafkit.error.class", class.to_owned()),
        ("kafkit.error.message", format!("{class} for {key}")),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        ),
    ];
    OutgoingRecord {
        topic: dlq.to_owned(),
        partition: Some(0),
        key: Some(key.as_bytes().to_vec()),
        payload: Some(payload),
        headers: headers
            .into_iter()
            .map(|(n, v)| (n.to_owned().into(), v.into_bytes()))
            .collect(),
    }
}

/// `a=1&b=x%20y`, as a browser posts a form.
fn urlencoded(form: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    form.iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) struct Console {
    pub(crate) url: String,
    client: reqwest::Client,
}

/// An index of `dlq` fed by the console's readers, as `kafkit console` runs them.
pub(crate) async fn watched(bootstrap: &str, dlq: &str) -> Index {
    let kafka = KafkaSettings::new(bootstrap);
    kafkit::dlq::resolved::ensure(&kafka, dlq).await.unwrap();
    let index = Index::new(&[dlq.to_owned()]);
    tokio::spawn(console::index::read_into(
        index.clone(),
        kafka.clone(),
        dlq.to_owned(),
    ));
    tokio::spawn(console::index::read_resolutions_into(
        index.clone(),
        kafka,
        dlq.to_owned(),
    ));
    index
}

impl Console {
    pub(crate) async fn start(
        index: Index,
        bootstrap: &str,
        registry: &str,
        token: Option<&str>,
    ) -> Self {
        let codec = Arc::new(EventCodec::new(CodecSettings::new(registry)).unwrap());
        let publisher =
            Publisher::new(&KafkaSettings::new(bootstrap), &ProducerSettings::default()).unwrap();
        let parts = console::Parts {
            index,
            codec,
            registry: kafkit::schemas::Registry::at(registry),
            subjects: kafkit_events::SubjectStrategy::TopicName,
            publisher,
            trace_url: Some("http://jaeger.example/trace/{trace_id}".into()),
        };
        let router = console::router(parts, token.map(|t| t.parse().unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let answer = self
            .client
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(urlencoded(form))
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }

    /// The overview once it says `text`, waiting for the readers.
    async fn overview_showing(&self, text: &str) -> String {
        let mut overview = String::new();
        for _ in 0..100 {
            overview = self.get("/").await.1;
            if overview.contains(text) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(overview.contains(text), "{text} in {overview}");
        overview
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let answer = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_grouped_filtered_paged_shown_decoded_and_dealt_with_once() {
    let stack = Stack::start().await;
    let orig = devstack::random_name("orders");
    let dlq = format!("{orig}.dlq");
    for topic in [orig.clone(), dlq.clone()] {
        let servers = stack.bootstrap().to_owned();
        tokio::task::spawn_blocking(move || devstack::ensure_topic(&servers, &topic, 1).unwrap())
            .await
            .unwrap();
    }
    let codec = EventCodec::new(CodecSettings::new(stack.registry.url.clone())).unwrap();
    let publisher = Publisher::new(
        &KafkaSettings::new(stack.bootstrap()),
        &ProducerSettings::default(),
    )
    .unwrap();
    // 2 refused for their currency (one with a key that is HTML), 1 that
    // failed every attempt, 1 undecodable, then 120 more to page through.
    let jpy = order("JPY");
    let mut records = vec![
        dead_letter(
            &orig,
            &dlq,
            &jpy.order_id,
            codec.encode(&orig, &jpy).await.unwrap(),
            "unsupported-currency",
            1,
        ),
        dead_letter(
            &orig,
            &dlq,
            "<script>alert(1)</script>",
            codec.encode(&orig, &order("JPY")).await.unwrap(),
            "unsupported-currency",
            2,
        ),
        dead_letter(
            &orig,
            &dlq,
            "k-transient",
            codec.encode(&orig, &order("EUR")).await.unwrap(),
            "injected-transient",
            0,
        ),
        dead_letter(
            &orig,
            &dlq,
            "k-garbage",
            b"not avro at all".to_vec(),
            "bad-magic-byte",
            0,
        ),
    ];
    for i in 0..120 {
        records.push(dead_letter(
            &orig,
            &dlq,
            &format!("bulk-{i}"),
            codec.encode(&orig, &order("EUR")).await.unwrap(),
            "bulk",
            0,
        ));
    }
    for record in &records {
        publisher.publish(record).await.unwrap();
    }

    let index = watched(stack.bootstrap(), &dlq).await;
    let console = Console::start(index, stack.bootstrap(), &stack.registry.url, None).await;

    // The overview: every dead letter counted, by class.
    let mut overview = String::new();
    for _ in 0..100 {
        overview = console.get("/").await.1;
        if overview.contains("<strong>124</strong> dead letters") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        overview.contains("<strong>124</strong> dead letters"),
        "{overview}"
    );
    assert!(overview.contains(&dlq), "{overview}");
    for (class, count) in [
        ("bulk", 120),
        ("unsupported-currency", 2),
        ("injected-transient", 1),
        ("bad-magic-byte", 1),
    ] {
        let row = format!(">{class}</a></td><td class=\"num\">{count}</td>");
        assert!(overview.contains(&row), "{row} in {overview}");
    }

    // Filters: by class, by key, by origin partition.
    let (status, page) = console
        .get(&format!("/dlq/{dlq}?class=unsupported-currency"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("2 matching, page 1 of 1"), "{page}");
    assert!(!page.contains("k-transient"), "{page}");
    // The HTML key is shown as text, never as markup.
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>alert"),
        "{page}"
    );
    let (_, page) = console.get(&format!("/dlq/{dlq}?key=k-transient")).await;
    assert!(
        page.contains("1 matching") && page.contains("injected-transient"),
        "{page}"
    );
    // A browser sends every field of the form, the empty ones too.
    let (status, page) = console
        .get(&format!(
            "/dlq/{dlq}?status=&class=&key=k-transient&partition=&after_ms=&before_ms="
        ))
        .await;
    assert!(status == 200 && page.contains("1 matching"), "{page}");
    let (_, page) = console.get(&format!("/dlq/{dlq}?partition=2")).await;
    assert!(
        page.contains("1 matching") && page.contains("unsupported-currency"),
        "{page}"
    );

    // Paging, newest first: 124 in pages of 50.
    let (_, first) = console.get(&format!("/dlq/{dlq}")).await;
    assert!(first.contains("124 matching, page 1 of 3"), "{first}");
    assert!(
        first.contains("bulk-119") && !first.contains("bulk-69"),
        "newest first: {first}"
    );
    assert!(first.contains("rel=\"next\""), "{first}");
    let (_, last) = console.get(&format!("/dlq/{dlq}?page=2")).await;
    assert!(
        last.contains("page 3 of 3") && last.contains("k-garbage") && last.contains(&jpy.order_id),
        "{last}"
    );
    assert_eq!(last.matches("<tr><td>").count(), 24, "{last}");

    // A dead letter in full: payload decoded, headers, a link to its trace.
    let (status, detail) = console.get(&format!("/dlq/{dlq}/0/0")).await;
    assert_eq!(status, 200, "{detail}");
    assert!(
        detail.contains("currency") && detail.contains("JPY"),
        "{detail}"
    );
    assert!(
        detail.contains(&jpy.order_id) && detail.contains("kafkit.error.class"),
        "{detail}"
    );
    assert!(
        detail.contains("href=\"http://jaeger.example/trace/4bf92f3577b34da6a3ce929d0e0e4736\""),
        "{detail}"
    );
    let (_, garbage) = console.get(&format!("/dlq/{dlq}/0/3")).await;
    assert!(
        garbage.contains("undecodable") && garbage.contains("bad-magic-byte"),
        "{garbage}"
    );
    assert_eq!(console.get(&format!("/dlq/{dlq}/0/999")).await.0, 404);
    assert_eq!(console.get("/dlq/not-watched.dlq").await.0, 404);

    // With a token, nothing is shown without it.
    let guarded = Console::start(
        Index::new(&[]),
        stack.bootstrap(),
        &stack.registry.url,
        Some("s3cret"),
    )
    .await;
    assert_eq!(guarded.get("/").await.0, 401);
    assert_eq!(guarded.get("/?token=nope").await.0, 401);
    assert_eq!(guarded.get("/?token=s3cret").await.0, 200);

    // Discard one, with a reason: kept in <dlq>.resolved.
    let (status, page) = console
        .post(
            &format!("/dlq/{dlq}/0/2/resolve"),
            &[("status", "discarded"), ("reason", "a test order")],
        )
        .await;
    assert_eq!(status, 200, "redirected to its page: {page}");
    assert!(
        page.contains("discarded") && page.contains("a test order"),
        "{page}"
    );
    let (_, page) = console.get(&format!("/dlq/{dlq}?status=discarded")).await;
    assert!(
        page.contains("1 matching") && page.contains("k-transient"),
        "{page}"
    );

    // Replay the two refused for their currency: preview, then send.
    let (_, preview) = console
        .get(&format!("/dlq/{dlq}/replay?class=unsupported-currency"))
        .await;
    assert!(
        preview.contains("2 open dead letters would be sent back"),
        "{preview}"
    );
    assert!(preview.contains(&orig), "{preview}");
    let (_, done) = console
        .post(
            &format!("/dlq/{dlq}/replay"),
            &[("class", "unsupported-currency")],
        )
        .await;
    assert!(done.contains("2 sent back, 0 failed"), "{done}");
    let back =
        devstack::read::read_topic(stack.bootstrap(), &orig, 2, Duration::from_secs(20)).await;
    assert_eq!(back.len(), 2, "byte for byte on the topic they came from");
    assert!(back.iter().all(|r| {
        r.header("kafkit.replay.from")
            .is_some_and(|f| f.starts_with(&dlq))
            && r.header("kafkit.error.class").is_none()
    }));
    let mut keys: Vec<String> = back
        .iter()
        .map(|r| String::from_utf8_lossy(r.key().unwrap()).into_owned())
        .collect();
    keys.sort();
    let mut sent = vec![jpy.order_id.clone(), "<script>alert(1)</script>".to_owned()];
    sent.sort();
    assert_eq!(keys, sent);
    // Once: the same replay again sends nothing.
    let (_, again) = console
        .post(
            &format!("/dlq/{dlq}/replay"),
            &[("class", "unsupported-currency")],
        )
        .await;
    assert!(again.contains("0 sent back, 0 failed"), "{again}");
    console
        .overview_showing("<strong class=\"open\">121</strong> open")
        .await;

    // Every console and `kafkit dlq inspect` see the same state.
    let fresh = Console::start(
        watched(stack.bootstrap(), &dlq).await,
        stack.bootstrap(),
        &stack.registry.url,
        None,
    )
    .await;
    fresh
        .overview_showing("<strong class=\"open\">121</strong> open")
        .await;
    let inspect = std::process::Command::new(env!("CARGO_BIN_EXE_kafkit"))
        .args([
            "dlq",
            "inspect",
            &dlq,
            "--status",
            "resolved",
            "--output",
            "json",
            "--bootstrap-servers",
            stack.bootstrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert!(
        inspect.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.last().unwrap()["total"], 3, "{text}");
    let statuses: Vec<&str> = lines[..3]
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "replayed").count(),
        2,
        "{text}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "discarded").count(),
        1,
        "{text}"
    );

    // A dead letter that arrives now is pushed to the open list pages.
    let mut events = console
        .client
        .get(format!("{}/dlq/{dlq}/events", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let late = dead_letter(&orig, &dlq, "k-live", b"late".to_vec(), "late-class", 0);
    publisher.publish(&late).await.unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("k-live") && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(1), events.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(
        seen.contains("event: dead-letter")
            && seen.contains("k-live")
            && seen.contains("late-class"),
        "{seen}"
    );
    assert_eq!(console.get("/dlq/not-watched.dlq/events").await.0, 404);

    // Edit and replay: a JPY order, corrected to EUR, re-encoded against the
    // latest schema of the topic it came from, ends confirmed by the service.
    let output = devstack::random_name("confirmations");
    let group = devstack::random_name("group");
    let service = crate::dlq::spawn_consumer(
        stack.bootstrap(),
        &stack.registry.url,
        &orig,
        &output,
        &group,
        "NONE-:permanent",
    )
    .await;
    let refused = order("JPY");
    let letter = dead_letter(
        &orig,
        &dlq,
        &refused.order_id,
        codec.encode(&orig, &refused).await.unwrap(),
        "unsupported-currency",
        0,
    );
    publisher.publish(&letter).await.unwrap();
    let at = format!("/dlq/{dlq}?key={}", refused.order_id);
    let mut listed = String::new();
    for _ in 0..100 {
        listed = console.get(&at).await.1;
        if listed.contains("1 matching") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let link = listed
        .split(&format!("href=\"/dlq/{dlq}/0/"))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no link to the new dead letter: {listed}"))
        .to_owned();
    let page = format!("/dlq/{dlq}/0/{link}");
    let (_, detail) = console.get(&page).await;
    assert!(
        detail.contains("Edit and replay") && detail.contains("textarea"),
        "{detail}"
    );
    let mut corrected = serde_json::to_value(&refused).unwrap();
    corrected["items"][0]["quantity"] = serde_json::json!("two");
    let (status, answer) = console
        .post(&format!("{page}/edit"), &[("json", &corrected.to_string())])
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer.contains("<code>items[0].quantity</code>: must be a whole number"),
        "{answer}"
    );
    corrected["items"][0]["quantity"] = serde_json::json!(1);
    corrected["currency"] = serde_json::json!("EUR");
    let (status, answer) = console
        .post(&format!("{page}/edit"), &[("json", &corrected.to_string())])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("1 sent back, 0 failed"), "{answer}");
    let confirmations =
        devstack::read::read_topic(stack.bootstrap(), &output, 1, Duration::from_secs(60)).await;
    let mut confirmed = Vec::new();
    for record in &confirmations {
        let event = codec
            .decode::<shared_events::OrderConfirmed>(record.payload())
            .await
            .unwrap()
            .event;
        confirmed.push(event.order_id);
    }
    assert!(confirmed.contains(&refused.order_id), "{confirmed:?}");
    let resent =
        devstack::read::read_topic(stack.bootstrap(), &orig, 3, Duration::from_secs(20)).await;
    let edited: Vec<_> = resent
        .iter()
        .filter(|r| r.header("kafkit.replay.edited").as_deref() == Some("true"))
        .collect();
    assert_eq!(
        edited.len(),
        1,
        "one edited copy, nothing sent for the refused edit"
    );
    assert!(console.get(&page).await.1.contains("edited and replayed"));
    service.stop().await;
}
