//! When the broker or the registry cannot take an event, the caller gets a
//! 503 with Retry-After, in bounded time, and nothing is claimed accepted.
#![allow(clippy::unwrap_used)]

mod support;

use devstack::{
    Broker, BrokerOptions, BrokerProxy, Storage, free_port, free_port_outside_ephemeral_range,
};
use std::time::{Duration, Instant};
use support::{random_name, spawn_app, start_registry, valid_order};

/// The broker goes away behind a proxy and comes back with its state, as a
/// Kafka broker does after a restart. (Restarting Tansu itself loses the
/// idempotent producer's state, which real Kafka keeps; see the README.)
#[tokio::test]
async fn an_unreachable_broker_gives_503_within_the_timeout_and_a_returning_one_gives_202() {
    let dir = std::env::temp_dir().join(random_name("kafkit-broker"));
    // The proxy stops and starts on this port: keep it out of the ephemeral range.
    let proxy_port = free_port_outside_ephemeral_range().unwrap();
    let options = BrokerOptions {
        port: free_port().unwrap(),
        storage: Storage::Memory,
        dir: dir.clone(),
        detach: false,
        advertised_port: Some(proxy_port),
    };
    let broker = Broker::start(options.clone()).unwrap_or_else(|e| panic!("{e}"));
    let mut proxy = BrokerProxy::start(proxy_port, options.port).await.unwrap();
    let bootstrap = broker.bootstrap_servers().to_owned();
    let registry = start_registry(&format!("127.0.0.1:{}", options.port)).await;
    let app = spawn_app(&bootstrap, &registry.url, &["--produce-timeout-ms", "2000"]).await;
    assert_eq!(
        app.post_order(&valid_order()).await.status,
        202,
        "warm-up with the broker up"
    );

    proxy.cut().await;
    let started = Instant::now();
    let reply = app.post_order(&valid_order()).await;
    let waited = started.elapsed();
    reply.assert_problem(503);
    assert!(reply.header("retry-after").is_some(), "{reply:?}");
    // Not a hang: librdkafka fails the record after the 2 s delivery timeout.
    // The bound is loose on purpose (a loaded 2-core machine is slow); this
    // checks that an answer comes, not how fast.
    eprintln!("503 after {waited:?} with a 2 s produce timeout");
    assert!(
        waited < Duration::from_secs(30),
        "answered after {waited:?}"
    );
    assert_eq!(app.get("/readyz").await.status, 503);

    proxy.restore().await.unwrap();
    let mut accepted = None;
    for _ in 0..40 {
        let reply = app.post_order(&valid_order()).await;
        if reply.status == 202 {
            accepted = Some(reply);
            break;
        }
        assert_eq!(
            reply.status, 503,
            "only 503 while the broker comes back: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        accepted.is_some(),
        "the service accepts orders again once the broker is back"
    );
    assert_eq!(
        app.records_on_topic().await,
        2,
        "the warm-up order and the one after recovery, nothing from the outage"
    );
    drop(broker);
    std::fs::remove_dir_all(dir).ok();
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
