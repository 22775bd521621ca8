//! The HTTP part: producer-service against a bare 202 and the same job by hand.

use axum::http::StatusCode;
use kafkit_events::{CodecSettings, EventCodec, EventHeaders};
use kafkit_messaging::{KafkaSettings, ProducerSettings};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use shared_events::OrderPlaced;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::args::BenchArgs;
use super::common::*;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

#[derive(Debug)]
pub(crate) struct HttpResult {
    pub(crate) kafkit: Load,
    pub(crate) baseline: Load,
    /// The fair baseline: parse the same JSON, await a raw producer's
    /// acknowledgement of pre-encoded bytes.
    pub(crate) fair: Load,
    /// Each round's producer-service / by hand: (throughput, p99).
    pub(crate) fair_ratios: Vec<(f64, f64)>,
    pub(crate) registry_requests: u64,
}

/// The strongest HTTP ingest a team would write by hand for the same job:
/// axum, the JSON body parsed, one pre-encoded `OrderPlaced` (same schema id,
/// same CloudEvents headers) sent with a raw `FutureProducer` with the
/// producer-service's settings, 202 only with the acknowledgement in hand.
/// No validation, no idempotency, no per-request encoding, no telemetry.
pub(crate) async fn fair_ingest(
    args: &BenchArgs,
    bootstrap: &str,
    registry_url: &str,
    topic: &str,
) -> anyhow::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let codec = EventCodec::new(CodecSettings::new(registry_url))?;
    let sample = order();
    let payload = Arc::new(codec.encode(topic, &sample).await?);
    let mut headers = OwnedHeaders::new();
    for (name, value) in EventHeaders::new::<OrderPlaced>("/kafkit-bench").to_pairs() {
        headers = headers.insert(Header {
            key: name,
            value: Some(&value),
        });
    }
    let settings = ProducerSettings {
        linger: Duration::from_millis(args.linger_ms),
        ..ProducerSettings::default()
    };
    let producer: FutureProducer = settings
        .client_config(&KafkaSettings::new(bootstrap))
        .create()?;
    let topic = topic.to_owned();
    let handler = move |body: axum::body::Bytes| {
        let (producer, payload, headers, topic) = (
            producer.clone(),
            Arc::clone(&payload),
            headers.clone(),
            topic.clone(),
        );
        async move {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body);
            if parsed.is_err() {
                return (StatusCode::BAD_REQUEST, "{}".to_owned());
            }
            let key = uuid::Uuid::new_v4().to_string();
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(payload.as_slice())
                .headers(headers);
            match producer.send(record, Duration::from_secs(5)).await {
                Ok(delivery) => (
                    StatusCode::ACCEPTED,
                    serde_json::json!({"order_id": key, "partition": delivery.partition, "offset": delivery.offset})
                        .to_string(),
                ),
                Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "{}".to_owned()),
            }
        }
    };
    let app = axum::Router::new().route("/v1/orders", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/orders", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, server))
}

/// `args.requests` POSTs from `args.concurrency` clients; all must answer 202.
pub(crate) async fn load(url: &str, body: &str, args: &BenchArgs) -> anyhow::Result<Load> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let per_client = args.requests / args.concurrency;
    let started = Instant::now();
    let workers = (0..args.concurrency).map(|_| {
        let (client, url, body) = (client.clone(), url.to_owned(), body.to_owned());
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == StatusCode::ACCEPTED,
                    "answered {}",
                    response.status()
                );
                response.bytes().await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        })
    });
    let mut latencies = Vec::new();
    for worker in futures::future::join_all(workers).await {
        latencies.extend(worker??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1e3
    };
    Ok(Load {
        rps: latencies.len() as f64 / elapsed,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}

pub(crate) async fn http_bench(
    args: &BenchArgs,
    bootstrap: &str,
    registry_url: &str,
) -> anyhow::Result<HttpResult> {
    use clap::Parser;
    let settings = producer_service::Settings::try_parse_from([
        "producer-service",
        "--listen",
        "127.0.0.1:0",
        "--topic",
        "bench-http",
        "--bootstrap-servers",
        bootstrap,
        "--registry-url",
        registry_url,
        "--linger-ms",
        &args.linger_ms.to_string(),
    ])?;
    let app = producer_service::service(settings).build().await?;
    let service_url = format!("http://{}/v1/orders", app.local_addr());
    let (stop_service, service_stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(app.run_until_stopped(async {
        let _ = service_stopped.await;
    }));

    let bare = axum::Router::new().route(
        "/v1/orders",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let accepted = serde_json::json!({"received": body.len()}).to_string();
            (
                StatusCode::ACCEPTED,
                [("content-type", "application/json")],
                accepted,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_url = format!("http://{}/v1/orders", listener.local_addr()?);
    let bare_server = tokio::spawn(async move { axum::serve(listener, bare).await });
    let (fair_url, fair_server) = fair_ingest(args, bootstrap, registry_url, "bench-http").await?;

    let body = serde_json::json!({
        "customer_id": "bench-customer",
        "items": [{"sku": "BOOK-42", "quantity": 2, "unit_price_cents": 1999}, {"sku": "MUG-7", "quantity": 1, "unit_price_cents": 850}],
        "currency": "EUR"
    })
    .to_string();
    // Warm-up both, including the schema registration.
    let warm = BenchArgs {
        requests: args.concurrency * 10,
        ..args.clone()
    };
    load(&service_url, &body, &warm).await?;
    load(&bare_url, &body, &warm).await?;
    load(&fair_url, &body, &warm).await?;
    let before = registry_requests(registry_url).await?;
    let (mut kafkit, mut baseline, mut fair) = (Load::default(), Load::default(), Load::default());
    let mut fair_ratios = Vec::new();
    for round in 1..=args.rounds {
        let k = load(&service_url, &body, args).await?;
        let b = load(&bare_url, &body, args).await?;
        let f = load(&fair_url, &body, args).await?;
        println!(
            "http round {round}: producer-service {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms), bare axum {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms), axum + raw producer {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms)",
            k.rps, k.p50_ms, k.p99_ms, b.rps, b.p50_ms, b.p99_ms, f.rps, f.p50_ms, f.p99_ms
        );
        fair_ratios.push((k.rps / f.rps, k.p99_ms / f.p99_ms));
        if k.rps > kafkit.rps {
            kafkit = k;
        }
        if b.rps > baseline.rps {
            baseline = b;
        }
        if f.rps > fair.rps {
            fair = f;
        }
    }
    let registry_requests = registry_requests(registry_url).await? - before;
    let _ = stop_service.send(());
    service.await??;
    bare_server.abort();
    fair_server.abort();
    Ok(HttpResult {
        kafkit,
        baseline,
        fair,
        fair_ratios,
        registry_requests,
    })
}
