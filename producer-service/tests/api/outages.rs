//! When the broker or the registry cannot take an event, the caller gets a
//! 503 with Retry-After, in bounded time, and nothing is claimed accepted.
#![allow(clippy::unwrap_used)]

use crate::support::{random_name, spawn_app, start_registry, valid_order};
use devstack::{
    Broker, BrokerOptions, BrokerProxy, Storage, free_port, free_port_outside_ephemeral_range,
};
use schema_registry::RunningRegistry;
use std::time::{Duration, Instant};

/// A broker (memory storage) that advertises a proxy in front of it, so
/// clients reach it through the proxy after the bootstrap; the registry on
/// the broker itself. The broker's directory is removed when dropped.
struct BehindProxy {
    broker: Option<Broker>,
    proxy: BrokerProxy,
    registry: RunningRegistry,
    dir: std::path::PathBuf,
}

impl BehindProxy {
    /// Every broker answer `delay` late.
    async fn start(delay: Duration) -> Self {
        let dir = std::env::temp_dir().join(random_name("kafkit-broker"));
        // The proxy may stop and start on this port: keep it out of the ephemeral range.
        let proxy_port = free_port_outside_ephemeral_range().unwrap();
        let options = BrokerOptions {
            port: free_port().unwrap(),
            storage: Storage::Memory,
            dir: dir.clone(),
            detach: false,
            advertised_port: Some(proxy_port),
        };
        let broker = Broker::start(options.clone()).unwrap_or_else(|e| panic!("{e}"));
        let proxy = BrokerProxy::with_response_delay(proxy_port, options.port, delay)
            .await
            .unwrap();
        let registry = start_registry(&format!("127.0.0.1:{}", options.port)).await;
        Self {
            broker: Some(broker),
            proxy,
            registry,
            dir,
        }
    }

    fn bootstrap(&self) -> String {
        self.broker
            .as_ref()
            .map(|b| b.bootstrap_servers().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for BehindProxy {
    fn drop(&mut self) {
        drop(self.broker.take());
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// The broker goes away behind a proxy and comes back with its state, as a
/// Kafka broker does after a restart. (Restarting Tansu itself loses the
/// idempotent producer's state, which real Kafka keeps; see docs/tansu.md.)
///
/// An order in flight when the brokers go is answered 503 `outcome-unknown`
/// (it may still be stored); once the service knows no broker answers, an
/// order is answered 503 `unavailable` at once and nothing is sent. Retries
/// with the same Idempotency-Key get the real answers; no order is stored
/// twice or without a 202 for it.
#[tokio::test]
async fn an_unreachable_broker_gives_503_without_waiting_out_the_timeout_and_retries_are_safe() {
    let mut stack = BehindProxy::start(Duration::ZERO).await;
    let (bootstrap, registry) = (stack.bootstrap(), &stack.registry);
    let produce_timeout = Duration::from_secs(8);
    let app = spawn_app(&bootstrap, &registry.url, &["--produce-timeout-ms", "8000"]).await;
    let mut accepted = Vec::new();
    let warm_up = app.post_order(&valid_order()).await;
    assert_eq!(warm_up.status, 202, "warm-up with the broker up");
    accepted.push(warm_up.body["order_id"].as_str().unwrap().to_owned());

    stack.proxy.cut().await;
    let started = Instant::now();
    let in_flight = app.post_order_with_key(&valid_order(), "in-flight").await;
    let waited = started.elapsed();
    let problem = in_flight.assert_problem(503);
    assert!(in_flight.header("retry-after").is_some(), "{in_flight:?}");
    eprintln!(
        "first 503 after {waited:?} ({}), produce timeout {produce_timeout:?}",
        problem["type"]
    );
    // Not the delivery timeout: the lost brokers are noticed. (How fast is
    // printed above, not asserted: a loaded machine is slow.)
    assert!(waited < produce_timeout, "answered after {waited:?}");

    // Once no broker is known to answer, nothing is even handed over.
    for _ in 0..100 {
        if app.get("/readyz").await.status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let readiness = app.get("/readyz").await;
    let problem = readiness.assert_problem(503);
    assert_eq!(problem["type"], "urn:kafkit:problem:not-ready");
    assert!(problem["detail"].as_str().unwrap().starts_with("kafka: "));
    assert!(readiness.header("retry-after").is_some());
    let started = Instant::now();
    let refused = app.post_order_with_key(&valid_order(), "refused").await;
    let waited = started.elapsed();
    let problem = refused.assert_problem(503);
    assert_eq!(
        problem["type"], "urn:kafkit:problem:unavailable",
        "{problem}"
    );
    eprintln!("503 unavailable after {waited:?} while the brokers are known down");
    assert!(waited < produce_timeout, "answered after {waited:?}");
    let unkeyed = app.post_order(&valid_order()).await;
    assert_eq!(
        unkeyed.assert_problem(503)["type"],
        "urn:kafkit:problem:unavailable"
    );

    stack.proxy.restore().await.unwrap();
    let mut recovered = None;
    for _ in 0..40 {
        let reply = app.post_order(&valid_order()).await;
        if reply.status == 202 {
            recovered = Some(reply);
            break;
        }
        assert_eq!(
            reply.status, 503,
            "only 503 while the broker comes back: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let recovered = recovered.expect("the service accepts orders again once the broker is back");
    accepted.push(recovered.body["order_id"].as_str().unwrap().to_owned());
    // The same keys again: the real answers, never a second event.
    for key in ["in-flight", "refused"] {
        let again = app.post_order_with_key(&valid_order(), key).await;
        assert_eq!(again.status, 202, "{key}: {again:?}");
        let repeat = app.post_order_with_key(&valid_order(), key).await;
        assert_eq!(repeat.body["order_id"], again.body["order_id"], "{key}");
        accepted.push(again.body["order_id"].as_str().unwrap().to_owned());
    }
    let mut stored = app.keys_on_topic().await;
    stored.sort();
    accepted.sort();
    assert_eq!(
        stored, accepted,
        "each accepted order once; nothing answered 503 unavailable is stored"
    );
}

#[tokio::test]
async fn an_unreachable_registry_gives_503_and_produces_nothing() {
    let kafka = devstack::TestKafka::start();
    // Nothing listens on this port.
    let registry_url = format!("http://127.0.0.1:{}", free_port().unwrap());
    let app = spawn_app(kafka.bootstrap_servers(), &registry_url, &[]).await;
    let reply = app.post_order(&valid_order()).await;
    let problem = reply.assert_problem(503);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("schema registry"),
        "{problem}"
    );
    assert!(reply.header("retry-after").is_some());
    assert_eq!(app.get("/readyz").await.status, 503);
    assert_eq!(app.records_on_topic().await, 0);
}

/// A caller that hangs up while its order is being published does not
/// cancel the publish: the order is stored once, and the same request again
/// (same Idempotency-Key) gets that order's 202, marked as a replay.
#[tokio::test]
async fn a_caller_that_hangs_up_mid_publish_cancels_nothing_and_its_retry_gets_the_answer() {
    use tokio::io::AsyncWriteExt;
    // Every broker answer 0.8 s late: a publish takes at least that long
    // (and a probe, connection set-up included, well under its 2 s).
    let stack = BehindProxy::start(Duration::from_millis(800)).await;
    let app = spawn_app(&stack.bootstrap(), &stack.registry.url, &[]).await;
    // Ready once a probe got through (the first may not: connection set-up
    // through the slow proxy on a loaded machine can take its whole 2 s).
    let mut ready = app.get("/readyz").await.status;
    for _ in 0..100 {
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        ready = app.get("/readyz").await.status;
    }
    assert_eq!(ready, 200, "a slow broker is not a lost one");
    let body = valid_order().to_string();
    let address = app.url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nIdempotency-Key: hung-up\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(socket);

    // The same request again, from a caller that waits for its answer.
    let again = app.post_order_with_key(&valid_order(), "hung-up").await;
    assert_eq!(again.status, 202, "{again:?}");
    assert_eq!(
        again.header("idempotent-replayed"),
        Some("true"),
        "{again:?}"
    );
    // Read through the slow proxy: its first answer comes late.
    let stored = app.read_keys(1, Duration::from_secs(30)).await;
    assert_eq!(
        stored,
        vec![again.body["order_id"].as_str().unwrap().to_owned()],
        "one event, the first request's"
    );
}
