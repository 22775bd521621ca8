//! payments-service against a real broker (Tansu), the real schema registry
//! over HTTP and a payment gateway the test runs: settled payments come out,
//! gateway outages and timeouts pass through the retry tier, a declined
//! payment is dead-lettered with the gateway's reason, and one account's
//! payments reach the gateway in the order they were requested.
#![allow(clippy::unwrap_used)]

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use devstack::TestKafka;
use devstack::read::read_topic;
use kafkit_events::{CodecSettings, EventCodec, EventHeaders};
use kafkit_messaging::headers::{ERROR_CLASS, ERROR_MESSAGE};
use kafkit_messaging::{KafkaSettings, OutgoingRecord, ProducerSettings, Publisher};
use payments_service::events::{PaymentRequested, PaymentSettled};
use rdkafka::message::Message;
use schema_registry::RunningRegistry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test gateway was asked, in order: (account, amount, idempotency key).
type Calls = Arc<Mutex<Vec<(String, i64, String)>>>;

/// A payment gateway: declines amounts over 1 000 000; for account `flaky`
/// answers 503 to the first call of each key, for account `slow` takes 3 s
/// over the first call of each key; otherwise charges once per key.
async fn charge(
    State(calls): State<Calls>,
    headers: HeaderMap,
    Json(charge): Json<serde_json::Value>,
) -> Response {
    let key = headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let account = charge["account_id"].as_str().unwrap_or_default().to_owned();
    let amount = charge["amount_cents"].as_i64().unwrap_or_default();
    let earlier = {
        let mut calls = calls.lock().unwrap();
        let earlier = calls.iter().filter(|(_, _, k)| *k == key).count();
        calls.push((account.clone(), amount, key.clone()));
        earlier
    };
    if amount > 1_000_000 {
        return (StatusCode::PAYMENT_REQUIRED, "insufficient funds").into_response();
    }
    if account == "flaky" && earlier == 0 {
        return (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
    }
    if account == "slow" && earlier == 0 {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Json(serde_json::json!({"reference": format!("ch-{key}")})).into_response()
}

async fn start_gateway(calls: Calls) -> String {
    let app = axum::Router::new()
        .route("/charges", axum::routing::post(charge))
        .with_state(calls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn payment(account: &str, amount_cents: i64) -> PaymentRequested {
    PaymentRequested {
        payment_id: uuid::Uuid::new_v4().to_string(),
        account_id: account.into(),
        amount_cents,
        currency: "EUR".into(),
        requested_at: 1_700_000_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_settle_retry_through_the_tiers_and_dead_letter_when_declined() {
    let kafka = TestKafka::start();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let registry = RunningRegistry::in_memory().await.unwrap();
    let calls: Calls = Arc::default();
    let gateway = start_gateway(Arc::clone(&calls)).await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (topic, settled_topic) = (format!("payments-{id}"), format!("settled-{id}"));

    let settings = payments_service::Settings::parse_from([
        "payments-service",
        "--listen",
        "127.0.0.1:0",
        "--topic",
        &topic,
        "--settled-topic",
        &settled_topic,
        "--gateway-url",
        &gateway,
        "--gateway-timeout-ms",
        "500",
        "--group",
        &format!("payments-{id}"),
        "--bootstrap-servers",
        &bootstrap,
        "--registry-url",
        &registry.url,
        "--retry-delays-ms",
        "500,500",
        "--max-attempts",
        "3",
        "--static-membership",
        "false",
        "--ordering",
        "key",
    ]);
    let service = payments_service::service(settings)
        .unwrap()
        .build()
        .await
        .unwrap();
    let ops = format!("http://{}", service.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(service.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // Requests, as another service would publish them: keyed by account.
    let codec = EventCodec::new(CodecSettings::new(&registry.url)).unwrap();
    let publisher = Publisher::new(
        &KafkaSettings::new(&bootstrap),
        &ProducerSettings::default(),
    )
    .unwrap();
    let in_order = [
        payment("acct-1", 100),
        payment("acct-1", 200),
        payment("acct-1", 300),
    ];
    let (flaky, slow, declined) = (
        payment("flaky", 400),
        payment("slow", 500),
        payment("acct-2", 5_000_000),
    );
    let mut request_ids = HashMap::new();
    for p in in_order.iter().chain([&flaky, &slow, &declined]) {
        let headers = EventHeaders::new::<PaymentRequested>("/test");
        let payload = codec.encode(&topic, p).await.unwrap();
        let record = OutgoingRecord::event(&topic, p.account_id.as_bytes(), payload, &headers);
        publisher.publish(&record).await.unwrap();
        request_ids.insert(p.payment_id.clone(), headers.id);
    }

    // Five settled, each answering its request, with the gateway's reference.
    let settled = read_topic(&bootstrap, &settled_topic, 5, Duration::from_secs(60)).await;
    assert_eq!(settled.len(), 5, "settled payments");
    let mut settled_ids = Vec::new();
    for record in &settled {
        let event = codec
            .decode::<PaymentSettled>(record.message.payload())
            .await
            .unwrap()
            .event;
        let request_id = &request_ids[&event.payment_id];
        assert_eq!(&event.source_event_id, request_id);
        assert_eq!(event.gateway_reference, format!("ch-{request_id}"));
        assert_eq!(record.message.key(), Some(event.account_id.as_bytes()));
        assert_eq!(
            record.header("ce_type").as_deref(),
            Some("io.kafkit.examples.payments.PaymentSettled")
        );
        settled_ids.push(event.payment_id);
    }
    settled_ids.sort();
    let mut expected: Vec<String> = in_order
        .iter()
        .chain([&flaky, &slow])
        .map(|p| p.payment_id.clone())
        .collect();
    expected.sort();
    assert_eq!(settled_ids, expected);

    // The declined one is in the dead-letter topic with the gateway's reason.
    let dead = read_topic(
        &bootstrap,
        &format!("{topic}.dlq"),
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(dead.len(), 1, "dead letters");
    assert_eq!(
        dead[0].header(ERROR_CLASS).as_deref(),
        Some("payment-declined")
    );
    let reason = dead[0].header(ERROR_MESSAGE).unwrap();
    assert!(
        reason.contains("402") && reason.contains("insufficient funds"),
        "{reason}"
    );

    // The outage and the timeout went through the first retry tier and were
    // charged with the same idempotency key both times.
    let retried = read_topic(
        &bootstrap,
        &format!("{topic}.retry.1"),
        2,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(retried.len(), 2, "records in the first retry tier");
    let calls = calls.lock().unwrap().clone();
    for (p, class) in [(&flaky, "gateway-unavailable"), (&slow, "gateway-timeout")] {
        let key = &request_ids[&p.payment_id];
        let tries = calls.iter().filter(|(_, _, k)| k == key).count();
        assert_eq!(tries, 2, "{} calls for {}", tries, p.account_id);
        assert!(
            retried
                .iter()
                .any(|r| r.header(ERROR_CLASS).as_deref() == Some(class)),
            "{class} in the retry tier"
        );
    }
    // One account's payments reached the gateway in the order requested.
    let account_1: Vec<i64> = calls
        .iter()
        .filter(|(account, _, _)| account == "acct-1")
        .map(|(_, amount, _)| *amount)
        .collect();
    assert_eq!(account_1, vec![100, 200, 300]);
    // The declined payment was asked once: a refusal is not retried.
    let declined_key = &request_ids[&declined.payment_id];
    assert_eq!(
        calls.iter().filter(|(_, _, k)| k == declined_key).count(),
        1
    );

    let ready = reqwest::get(format!("{ops}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
