//! The consume engine under load and faults: records of a partition are
//! pipelined (many await the broker at once), nothing is lost when the
//! broker goes away mid-burst, `key` ordering keeps per-key order while keys
//! overtake each other, a panicking handler costs one record, and a member
//! that loses partitions to a newcomer stops producing for them.
#![allow(clippy::unwrap_used)]

use crate::support::{
    Confirmation, Feeder, Names, ProxiedStack, Sent, Stack, committed_offsets, confirmations,
    order, read_topic, spawn_service, started,
};
use consumer_service::handler::confirmation_id;
use kafkit_messaging::headers as h;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// `count` valid orders spread over partitions 0, 1 and 2.
fn spread(count: usize, sku: &str) -> Vec<(i32, shared_events::OrderPlaced)> {
    (0..count)
        .map(|i| (i32::try_from(i % 3).unwrap(), order(sku, "EUR")))
        .collect()
}

/// Waits until the service's main consumer has handled `count` records.
async fn handled(service: &crate::support::TestService, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    let labels = [("kafkit_stage", "main"), ("kafkit_outcome", "handled")];
    loop {
        let done = service
            .metric("messaging_process_duration_seconds_count", &labels)
            .await;
        if done >= count as f64 {
            return;
        }
        if Instant::now() >= deadline {
            // What the member did meanwhile, for a failure on a loaded machine.
            let consumed = service
                .metric("messaging_client_consumed_messages_total", &[])
                .await;
            let outcomes = service
                .metric("messaging_process_duration_seconds_count", &[])
                .await;
            panic!(
                "only {done} of {count} handled in {within:?} ({consumed} records consumed, {outcomes} settled with any outcome)"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every sent order confirmed, duplicates only with the same event id.
fn assert_each_confirmed_once_or_identically(sent: &[Sent], out: &[Confirmation]) {
    let mut ids: HashMap<&str, HashSet<&str>> = HashMap::new();
    for c in out {
        ids.entry(&c.source_event_id)
            .or_default()
            .insert(&c.event_id);
    }
    let expected: HashSet<&str> = sent.iter().map(|s| s.event_id.as_str()).collect();
    let confirmed: HashSet<&str> = ids.keys().copied().collect();
    assert_eq!(
        confirmed, expected,
        "every order confirmed, none missing, none extra"
    );
    for (source, found) in &ids {
        assert_eq!(
            found,
            &HashSet::from([confirmation_id(source).as_str()]),
            "a duplicate carries the same event id"
        );
    }
}

/// What the partitions of `sent` end at: one past their last offset.
fn ends(sent: &[Sent]) -> Vec<i64> {
    (0..3)
        .map(|p| {
            sent.iter()
                .filter(|s| s.partition == p)
                .map(|s| s.offset + 1)
                .max()
                .unwrap_or(-1)
        })
        .collect()
}

#[tokio::test]
async fn records_of_a_partition_await_their_acknowledgements_together_not_one_by_one() {
    // Every broker answer 20 ms late. Settling one record at a time, each
    // partition's 100 records would need 100 acknowledgements one after
    // another: at least 2 s. Only a pipeline can be faster.
    let delay = Duration::from_millis(20);
    let stack = ProxiedStack::start(delay).await;
    let names = Names::new();
    let service = spawn_service(&names, stack.bootstrap(), &stack.registry.url, &[]).await;
    let feeder = Feeder::new(stack.bootstrap(), &stack.registry.url);
    // Warm up: group joined, output schema registered.
    feeder.send_all(&names.topic, spread(3, "BOOK-1")).await;
    handled(&service, 3, WAIT).await;

    let sent = feeder.send_all(&names.topic, spread(300, "BOOK-1")).await;
    let started = Instant::now();
    handled(&service, 303, WAIT).await;
    let took = started.elapsed();
    let serial_minimum = delay * 100;
    eprintln!(
        "300 orders on 3 partitions settled {took:?} after they were produced; one at a time would take at least {serial_minimum:?}"
    );
    assert!(
        took < serial_minimum,
        "settled in {took:?}: no faster than one acknowledgement at a time per partition"
    );
    let out = read_topic(stack.bootstrap(), &names.output, 303, WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    let all: Vec<Sent> = sent.clone();
    let confirmed: HashSet<&str> = out.iter().map(|c| c.source_event_id.as_str()).collect();
    assert!(all.iter().all(|s| confirmed.contains(s.event_id.as_str())));
    service.stop().await;
}

#[tokio::test]
async fn a_broker_cut_off_mid_burst_loses_nothing_and_the_offsets_end_committed() {
    let mut stack = ProxiedStack::start(Duration::ZERO).await;
    let names = Names::new();
    // Each order takes 5 ms to handle, so the burst is still going when the
    // broker goes away; sends fail after 2 s, so the lanes rewind and redo.
    let service = spawn_service(
        &names,
        stack.bootstrap(),
        &stack.registry.url,
        &[
            "--faults",
            "SLOWISH:slow:5",
            "-X",
            "delivery.timeout.ms=2000",
        ],
    )
    .await;
    let feeder = Feeder::new(stack.bootstrap(), &stack.registry.url);
    let sent = feeder
        .send_all(&names.topic, spread(600, "SLOWISH-1"))
        .await;
    handled(&service, 50, WAIT).await;
    stack.proxy.cut().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stack.proxy.restore().await.unwrap();
    handled(&service, 600, WAIT).await;
    let outages = service
        .metric(
            "kafkit_partition_holds_total",
            &[("kafkit_hold_reason", "outage")],
        )
        .await;
    assert!(
        outages >= 1.0,
        "sends failed during the cut and were done again"
    );
    service.stop().await;

    let out = read_topic(stack.bootstrap(), &names.output, 600, WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    eprintln!("{} confirmations for {} orders", out.len(), sent.len());
    assert_each_confirmed_once_or_identically(&sent, &out);
    assert!(
        read_topic(
            stack.bootstrap(),
            &names.dlq(),
            0,
            Duration::from_millis(500)
        )
        .await
        .is_empty(),
        "an outage is not the records' fault"
    );
    assert_eq!(
        committed_offsets(stack.bootstrap(), &names.group, &names.topic, 3).await,
        ends(&sent),
        "the whole topic is committed once everything settled"
    );
}

#[tokio::test]
async fn key_ordering_keeps_each_keys_order_while_other_keys_overtake() {
    let (stack, names, service, feeder) =
        started(&["--ordering", "key", "--faults", "SLOW:slow:300"]).await;
    // One partition, two keys, interleaved: a slow key and a fast one.
    let keyed = |key: &str, sku: &str| {
        let mut placed = order(sku, "EUR");
        placed.order_id = key.to_owned();
        (0, placed)
    };
    let (slow, fast) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(keyed(&slow, "SLOW-1"));
        orders.push(keyed(&fast, "BOOK-1"));
    }
    let sent = feeder.send_all(&names.topic, orders).await;
    let out = read_topic(stack.bootstrap(), &names.output, 6, WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    assert_each_confirmed_once_or_identically(&sent, &out);
    let confirmed_at = |sent: &Sent| {
        out.iter()
            .find(|c| c.source_event_id == sent.event_id)
            .map(|c| c.confirmed_at)
            .unwrap()
    };
    let times = |key: &str| -> Vec<i64> {
        sent.iter()
            .filter(|s| s.order.order_id == key)
            .map(confirmed_at)
            .collect()
    };
    let (slow_times, fast_times) = (times(&slow), times(&fast));
    assert!(
        slow_times.is_sorted(),
        "the slow key in input order: {slow_times:?}"
    );
    assert!(
        fast_times.is_sorted(),
        "the fast key in input order: {fast_times:?}"
    );
    assert!(
        fast_times.iter().max() < slow_times.iter().min(),
        "the fast key overtook the slow one (fast {fast_times:?}, slow {slow_times:?})"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_handler_that_panics_dead_letters_that_record_and_every_other_is_confirmed() {
    let (stack, names, service, feeder) = started(&["--faults", "BOOM:panic"]).await;
    let orders: Vec<_> = (0..10)
        .map(|i| (0, order(if i == 4 { "BOOM-1" } else { "BOOK-1" }, "EUR")))
        .collect();
    let sent = feeder.send_all(&names.topic, orders).await;
    let dead = read_topic(stack.bootstrap(), &names.dlq(), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].header(h::ERROR_CLASS).as_deref(),
        Some("handler-panic")
    );
    assert!(
        dead[0]
            .header(h::ERROR_MESSAGE)
            .unwrap()
            .contains("injected panic for sku prefix BOOM"),
        "{:?}",
        dead[0].header(h::ERROR_MESSAGE)
    );
    let boom = sent
        .iter()
        .find(|s| s.order.items[0].sku == "BOOM-1")
        .unwrap();
    assert_eq!(
        dead[0].header(h::ORIGINAL_OFFSET),
        Some(boom.offset.to_string())
    );
    let out = read_topic(stack.bootstrap(), &names.output, 9, WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    let healthy: Vec<Sent> = sent
        .iter()
        .filter(|s| s.offset != boom.offset)
        .cloned()
        .collect();
    assert_each_confirmed_once_or_identically(&healthy, &out);
    service.stop().await;
    let offsets: Vec<i64> = sent.iter().map(|s| s.offset).collect();
    assert_eq!(
        committed_offsets(stack.bootstrap(), &names.group, &names.topic, 1).await,
        vec![offsets.iter().max().unwrap() + 1],
        "nothing skipped, nothing stuck (offsets {offsets:?})"
    );
}

#[tokio::test]
async fn a_member_that_loses_partitions_to_a_newcomer_stops_producing_for_them() {
    let stack = Stack::start().await;
    let names = Names::new();
    // Each order takes 5 ms (5 s a partition), so the first member is still
    // mid-burst when the second has joined, even on a loaded machine.
    let with_source =
        |source: &'static str| vec!["--faults", "BUSY:slow:5", "--event-source", source];
    let first = spawn_service(
        &names,
        stack.bootstrap(),
        &stack.registry.url,
        &with_source("/first"),
    )
    .await;
    let feeder = Feeder::new(stack.bootstrap(), &stack.registry.url);
    let sent = feeder.send_all(&names.topic, spread(3000, "BUSY-1")).await;
    // A deadline for progress, not a speed: a loaded machine's broker can
    // take a while to hand the first member its partitions.
    handled(&first, 100, WAIT * 2).await;
    let second = spawn_service(
        &names,
        stack.bootstrap(),
        &stack.registry.url,
        &with_source("/second"),
    )
    .await;
    let out = read_topic(stack.bootstrap(), &names.output, sent.len(), WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    first.stop().await;
    second.stop().await;
    assert_each_confirmed_once_or_identically(&sent, &out);

    // Per input partition: which member confirmed which offsets.
    let at: HashMap<&str, (i32, i64)> = sent
        .iter()
        .map(|s| (s.event_id.as_str(), (s.partition, s.offset)))
        .collect();
    let mut moved = 0;
    for partition in 0..3 {
        let offsets = |source: &str| -> Vec<i64> {
            out.iter()
                .filter(|c| c.source == source)
                .filter_map(|c| at.get(c.source_event_id.as_str()))
                .filter(|(p, _)| *p == partition)
                .map(|(_, o)| *o)
                .collect()
        };
        let (by_first, by_second) = (offsets("/first"), offsets("/second"));
        eprintln!(
            "partition {partition}: first confirmed {}, second {}",
            by_first.len(),
            by_second.len()
        );
        if let (Some(last_first), Some(first_second)) =
            (by_first.iter().max(), by_second.iter().min())
        {
            moved += 1;
            assert!(
                last_first < first_second,
                "partition {partition}: the first member confirmed offset {last_first} after the second started at {first_second}"
            );
        }
    }
    assert!(
        moved > 0,
        "the newcomer took over at least one partition mid-burst"
    );
}
