//! Orders through the consumer: confirmed, retried, dead-lettered, held.
#![allow(clippy::unwrap_used)]

use crate::support::{Feeder, Names, Stack, order, read_topic, spawn_service, started};
use consumer_service::handler::confirmation_id;
use kafkit_events::{CodecSettings, EventCodec, EventHeaders};
use kafkit_messaging::headers as h;
use rdkafka::message::Message;
use shared_events::{OrderConfirmed, OrderPlaced};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const BRIEF: Duration = Duration::from_millis(1500);

/// The test's DLQ is still empty after a moment's wait.
async fn assert_nothing_dead_lettered(stack: &Stack, names: &Names) {
    let dead = read_topic(stack.bootstrap(), &names.dlq(), 0, BRIEF).await;
    assert!(dead.is_empty(), "{} dead letters", dead.len());
}

#[tokio::test]
async fn a_valid_order_is_confirmed_with_an_id_derived_from_its_event_id() {
    let (stack, names, service, feeder) = started(&[]).await;
    let placed = order("BOOK-1", "EUR");
    let event_id = feeder.send(&names.topic, &placed).await;

    let out = read_topic(stack.bootstrap(), &names.output, 1, WAIT).await;
    assert_eq!(out.len(), 1);
    let codec = EventCodec::new(CodecSettings::new(stack.registry.url.clone())).unwrap();
    let confirmed = codec
        .decode::<OrderConfirmed>(out[0].message.payload())
        .await
        .unwrap()
        .event;
    assert_eq!(confirmed.order_id, placed.order_id);
    assert_eq!(confirmed.total_cents, 3 * 250 + 1000);
    assert_eq!(confirmed.source_event_id, event_id);
    assert_eq!(out[0].header("ce_id"), Some(confirmation_id(&event_id)));
    assert_eq!(out[0].message.key(), Some(placed.order_id.as_bytes()));
    assert_nothing_dead_lettered(&stack, &names).await;
    service.stop().await;
}

#[tokio::test]
async fn a_transient_failure_that_recovers_after_two_attempts_ends_confirmed() {
    let (stack, names, service, feeder) = started(&["--faults", "FLAKY:transient:2"]).await;
    let placed = order("FLAKY-1", "EUR");
    feeder.send(&names.topic, &placed).await;

    let out = read_topic(stack.bootstrap(), &names.output, 1, WAIT).await;
    assert_eq!(out.len(), 1, "confirmed on the third attempt");
    let tier1 = read_topic(stack.bootstrap(), &names.retry(1), 1, WAIT).await;
    let tier2 = read_topic(stack.bootstrap(), &names.retry(2), 1, WAIT).await;
    assert_eq!((tier1.len(), tier2.len()), (1, 1));
    assert_eq!(tier1[0].header(h::ATTEMPT).as_deref(), Some("1"));
    assert_eq!(tier2[0].header(h::ATTEMPT).as_deref(), Some("2"));
    assert_eq!(
        tier2[0].header(h::ORIGINAL_TOPIC),
        Some(names.topic.clone())
    );
    assert_eq!(
        tier2[0].count(h::ATTEMPT),
        1,
        "headers are replaced, not appended"
    );
    // Nothing was handled before it was due.
    let codec = EventCodec::new(CodecSettings::new(stack.registry.url.clone())).unwrap();
    let confirmed = codec
        .decode::<OrderConfirmed>(out[0].message.payload())
        .await
        .unwrap()
        .event;
    let due: i64 = tier2[0]
        .header(h::RETRY_NOT_BEFORE)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        confirmed.confirmed_at >= due,
        "confirmed at {} before due {due}",
        confirmed.confirmed_at
    );
    assert_nothing_dead_lettered(&stack, &names).await;
    service.stop().await;
}

#[tokio::test]
async fn a_transient_failure_beyond_max_attempts_ends_in_the_dlq_with_every_header() {
    let (stack, names, service, feeder) = started(&["--faults", "DOOMED:transient:99"]).await;
    let placed = order("DOOMED-1", "EUR");
    let event_id = feeder.send(&names.topic, &placed).await;

    let dead = read_topic(stack.bootstrap(), &names.dlq(), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    let record = &dead[0];
    assert_eq!(
        record.header(h::ATTEMPT).as_deref(),
        Some("3"),
        "attempt = max"
    );
    assert_eq!(
        record.header(h::ERROR_CLASS).as_deref(),
        Some("injected-transient")
    );
    assert_eq!(record.header(h::ORIGINAL_TOPIC), Some(names.topic.clone()));
    // Every header of a dead letter once; the not-before of a retry copy and
    // the dropped-value mark of a reference copy are not on a whole one.
    for name in h::ALL
        .iter()
        .filter(|n| ![h::RETRY_NOT_BEFORE, h::VALUE_DROPPED].contains(n))
    {
        assert_eq!(record.count(name), 1, "{name} once");
    }
    assert_eq!(record.count(h::VALUE_DROPPED), 0, "the whole value travels");
    assert!(record.header(h::ERROR_MESSAGE).unwrap().contains("DOOMED"));
    assert!(record.header(h::FAILURE_FIRST).unwrap() <= record.header(h::FAILURE_LAST).unwrap());
    assert_eq!(
        record.header("ce_id"),
        Some(event_id),
        "the original headers travel along"
    );
    assert_eq!(record.message.key(), Some(placed.order_id.as_bytes()));
    let codec = EventCodec::new(CodecSettings::new(stack.registry.url.clone())).unwrap();
    assert_eq!(
        codec
            .decode::<OrderPlaced>(record.message.payload())
            .await
            .unwrap()
            .event,
        placed
    );
    assert!(
        read_topic(stack.bootstrap(), &names.output, 0, BRIEF)
            .await
            .is_empty()
    );
    service.stop().await;
}

#[tokio::test]
async fn a_permanent_failure_goes_to_the_dlq_at_once() {
    let (stack, names, service, feeder) = started(&[]).await;
    feeder.send(&names.topic, &order("BOOK-1", "JPY")).await;

    let dead = read_topic(stack.bootstrap(), &names.dlq(), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].header(h::ERROR_CLASS).as_deref(),
        Some("unsupported-currency")
    );
    assert_eq!(dead[0].header(h::ATTEMPT).as_deref(), Some("1"));
    assert!(
        read_topic(stack.bootstrap(), &names.retry(1), 0, BRIEF)
            .await
            .is_empty(),
        "no retry for a permanent failure"
    );
    service.stop().await;
}

#[tokio::test]
async fn garbage_bytes_go_to_the_dlq_byte_for_byte_and_the_consumer_keeps_going() {
    // One partition, so the good order is read after the garbage.
    let (stack, names, service, feeder) = started(&["--partitions", "1"]).await;
    let garbage = b"{\"order_id\": \"not avro\"}".to_vec();
    let headers = EventHeaders::new::<OrderPlaced>("/test");
    feeder
        .send_raw(&names.topic, b"key-garbage", &garbage, &headers)
        .await;
    let truncated = [0u8, 0, 0];
    feeder
        .send_raw(&names.topic, b"key-short", &truncated, &headers)
        .await;
    feeder.send(&names.topic, &order("BOOK-1", "EUR")).await;

    let dead = read_topic(stack.bootstrap(), &names.dlq(), 2, WAIT).await;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].message.payload(), Some(&garbage[..]));
    assert_eq!(dead[0].message.key(), Some(&b"key-garbage"[..]));
    assert_eq!(
        dead[0].header(h::ERROR_CLASS).as_deref(),
        Some("bad-magic-byte")
    );
    assert_eq!(dead[1].message.payload(), Some(&truncated[..]));
    assert_eq!(
        dead[1].header(h::ERROR_CLASS).as_deref(),
        Some("truncated-header")
    );
    assert_eq!(
        read_topic(stack.bootstrap(), &names.output, 1, WAIT)
            .await
            .len(),
        1
    );
    service.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let (stack, names, service, feeder) = started(&[]).await;
    feeder.send(&names.topic, &order("BOOK-1", "JPY")).await;
    read_topic(stack.bootstrap(), &names.dlq(), 1, WAIT).await;
    let client = reqwest::Client::new();
    // The same operations JSON as every kafkit service, with this one's checks.
    for (path, expected) in [
        ("healthz", serde_json::json!({"status": "alive"})),
        (
            "readyz",
            serde_json::json!({"status": "ready", "checks": {
                "kafka": "ok", "schema_registry": "ok", "destinations": "ok"
            }}),
        ),
    ] {
        let answer = client
            .get(format!("{}/{path}", service.ops_url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        assert_eq!(
            answer.headers()["content-type"],
            "application/json",
            "{path}"
        );
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body, expected, "{path}");
    }
    let metrics = client
        .get(format!("{}/metrics", service.ops_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    use kafkit_telemetry::metrics::sum;
    assert_eq!(
        sum(
            &metrics,
            "kafkit_dead_letters_total",
            &[
                ("error_type", "unsupported-currency"),
                ("kafkit_stage", "main")
            ]
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sum(
            &metrics,
            "messaging_client_consumed_messages_total",
            &[("kafkit_stage", "main"), ("messaging_system", "kafka")]
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sum(
            &metrics,
            "messaging_process_duration_seconds_count",
            &[("kafkit_outcome", "dead-lettered")]
        ),
        1.0,
        "{metrics}"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_held_partition_does_not_block_the_others_and_keeps_its_own_order() {
    let stack = Stack::start().await;
    let names = Names::new();
    let extra = ["--partitions", "2", "--faults", "HOLD:outage:3"];
    let service = spawn_service(&names, stack.bootstrap(), &stack.registry.url, &extra).await;
    let feeder = Feeder::new(stack.bootstrap(), &stack.registry.url);
    // Partition 0: an order whose "dependency" is down for 3 passes, then two more.
    let held = order("HOLD-1", "EUR");
    let (next, last) = (order("BOOK-1", "EUR"), order("BOOK-2", "EUR"));
    for placed in [&held, &next, &last] {
        feeder.send_to(&names.topic, 0, placed).await;
    }
    // Partition 1: one order, sent after all of them.
    let other = order("BOOK-3", "EUR");
    feeder.send_to(&names.topic, 1, &other).await;

    let out = read_topic(stack.bootstrap(), &names.output, 4, WAIT).await;
    assert_eq!(out.len(), 4);
    let codec = EventCodec::new(CodecSettings::new(stack.registry.url.clone())).unwrap();
    let mut confirmed_at = std::collections::HashMap::new();
    for record in &out {
        let confirmed = codec
            .decode::<OrderConfirmed>(record.message.payload())
            .await
            .unwrap()
            .event;
        confirmed_at.insert(confirmed.order_id, confirmed.confirmed_at);
    }
    let at = |o: &OrderPlaced| confirmed_at[&o.order_id];
    assert!(
        at(&other) < at(&held),
        "partition 1 went on while partition 0 was held"
    );
    assert!(
        at(&held) <= at(&next) && at(&next) <= at(&last),
        "partition 0 kept its order"
    );
    // An outage is not dead-lettered.
    assert_nothing_dead_lettered(&stack, &names).await;
    service.stop().await;
}
