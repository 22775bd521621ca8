//! Outages and crashes lose nothing: a registry outage dead-letters nothing,
//! and a consumer killed without committing redoes work but skips none.
#![allow(clippy::unwrap_used)]

use crate::support::{
    Feeder, Names, Stack, create_topics, order, random_name, read_topic, service_args,
    spawn_service, start_process, start_registry,
};
use consumer_service::handler::confirmation_id;
use devstack::{TestKafka, free_port};
use kafkit_events::{CodecSettings, EventCodec};
use rdkafka::message::Message;
use shared_events::{OrderConfirmed, OrderPlaced};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test]
async fn while_the_registry_is_down_nothing_is_dead_lettered_and_all_is_processed_after() {
    let kafka = TestKafka::start();
    let bootstrap = kafka.bootstrap_servers();
    let schemas = random_name("_schemas");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let registry = start_registry(bootstrap, &schemas, addr).await;
    let url = registry.url.clone();
    let names = Names::new();
    let feeder = Feeder::new(bootstrap, &url);
    // The producer side registers its schema and keeps it cached.
    feeder
        .codec
        .schema_id::<OrderPlaced>(&names.topic)
        .await
        .unwrap();
    registry.stop().await.unwrap();

    let service = spawn_service(&names, bootstrap, &url, &[]).await;
    let mut sent = HashSet::new();
    for _ in 0..3 {
        sent.insert(feeder.send(&names.topic, &order("BOOK-1", "EUR")).await);
    }
    // Held as an outage, once the consumer has its partitions (a static
    // member's join and sync take Tansu about 6 s).
    let outage = [("kafkit_hold_reason", "outage"), ("kafkit_stage", "main")];
    let main = [("kafkit_stage", "main")];
    for _ in 0..150 {
        if service
            .metric("kafkit_partition_holds_total", &outage)
            .await
            >= 1.0
            && service.metric("kafkit_consumer_lag", &main).await == 3.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        service
            .metric("kafkit_partition_holds_total", &outage)
            .await
            >= 1.0,
        "the registry outage holds the partition"
    );
    assert_eq!(
        service.metric("kafkit_consumer_lag", &main).await,
        3.0,
        "the 3 held records are the lag"
    );
    assert!(
        read_topic(bootstrap, &names.dlq(), 0, Duration::from_millis(500))
            .await
            .is_empty(),
        "an outage is not the record's fault"
    );
    assert!(
        read_topic(bootstrap, &names.retry(1), 0, Duration::from_millis(500))
            .await
            .is_empty(),
        "and burns no attempt"
    );

    let _registry = start_registry(bootstrap, &schemas, addr).await;
    let out = read_topic(bootstrap, &names.output, 3, Duration::from_secs(60)).await;
    let codec = EventCodec::new(CodecSettings::new(url.clone())).unwrap();
    let mut answered = HashSet::new();
    for record in &out {
        answered.insert(
            codec
                .decode::<OrderConfirmed>(record.message.payload())
                .await
                .unwrap()
                .event
                .source_event_id,
        );
    }
    assert_eq!(
        answered, sent,
        "every order confirmed once the registry is back"
    );
    assert!(
        read_topic(bootstrap, &names.dlq(), 0, Duration::from_millis(500))
            .await
            .is_empty()
    );
    service.stop().await;
}

#[tokio::test]
async fn a_consumer_killed_without_committing_and_restarted_loses_nothing() {
    let stack = Stack::start().await;
    let names = Names::new();
    // Every third order fails once, so work is in flight on the retry tier too.
    // A short session so the killed member is noticed quickly by the group.
    // The same static member id across the restart, as a deployment gives.
    let instance = random_name("member");
    let extra = [
        "--faults",
        "FLAKY:transient:1",
        "--group-instance-id",
        instance.as_str(),
        "-X",
        "heartbeat.interval.ms=1000",
    ];
    let args = service_args(&names, stack.bootstrap(), &stack.registry.url, &extra);
    let start = || start_process(&args);
    create_topics(stack.bootstrap(), names.all()).await;
    let mut first = start();
    let feeder = Feeder::new(stack.bootstrap(), &stack.registry.url);
    let mut valid = HashSet::new();
    let mut invalid = HashSet::new();
    for i in 0..40 {
        let (sku, currency) = match i % 5 {
            0 => ("BOOK-1", "JPY"),
            1 | 3 => ("FLAKY-1", "EUR"),
            _ => ("BOOK-1", "EUR"),
        };
        let placed = order(sku, currency);
        let id = feeder.send(&names.topic, &placed).await;
        if currency == "EUR" {
            valid.insert(id);
        } else {
            invalid.insert(placed.order_id);
        }
    }
    // Kill it as soon as it has confirmed something: no graceful shutdown,
    // no final commit (auto-commit runs every 5 s), retries still pending.
    let before_kill = read_topic(stack.bootstrap(), &names.output, 1, Duration::from_secs(30))
        .await
        .len();
    first.kill().unwrap();
    first.wait().unwrap();

    let mut second = start();
    let codec = EventCodec::new(CodecSettings::new(stack.registry.url.clone())).unwrap();
    let sources = |records: Vec<crate::support::Read>| {
        let codec = &codec;
        async move {
            let mut found = Vec::new();
            for record in records {
                let confirmed = codec
                    .decode::<OrderConfirmed>(record.message.payload())
                    .await
                    .unwrap()
                    .event;
                found.push((confirmed.source_event_id, record.header("ce_id").unwrap()));
            }
            found
        }
    };
    for _ in 0..12 {
        let seen: HashSet<String> = sources(
            read_topic(
                stack.bootstrap(),
                &names.output,
                valid.len(),
                Duration::from_secs(5),
            )
            .await,
        )
        .await
        .into_iter()
        .map(|(source, _)| source)
        .collect();
        if seen.is_superset(&valid) {
            break;
        }
    }
    // Give a late duplicate the chance to show up, then read everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = sources(
        read_topic(
            stack.bootstrap(),
            &names.output,
            usize::MAX,
            Duration::from_secs(3),
        )
        .await,
    )
    .await;
    let dead = read_topic(
        stack.bootstrap(),
        &names.dlq(),
        invalid.len(),
        Duration::from_secs(30),
    )
    .await;
    second.kill().unwrap();
    second.wait().unwrap();

    let mut ids_by_source: HashMap<String, HashSet<String>> = HashMap::new();
    for (source, id) in &out {
        ids_by_source
            .entry(source.clone())
            .or_default()
            .insert(id.clone());
    }
    let confirmed: HashSet<String> = ids_by_source.keys().cloned().collect();
    assert_eq!(
        confirmed, valid,
        "every valid order confirmed, none missing"
    );
    for (source, ids) in &ids_by_source {
        assert_eq!(
            ids,
            &HashSet::from([confirmation_id(source)]),
            "duplicates carry the same event id"
        );
    }
    let mut dead_orders = HashSet::new();
    for record in &dead {
        dead_orders.insert(
            codec
                .decode::<OrderPlaced>(record.message.payload())
                .await
                .unwrap()
                .event
                .order_id,
        );
    }
    assert_eq!(
        dead_orders, invalid,
        "every invalid order dead-lettered, none missing"
    );
    eprintln!(
        "{before_kill} confirmed before the kill; in the end {} confirmations for {} orders, {} dead letters for {}",
        out.len(),
        valid.len(),
        dead.len(),
        invalid.len()
    );
}

#[tokio::test]
async fn a_consumer_killed_three_times_in_a_row_gets_every_partition_back() {
    let stack = Stack::start().await;
    let names = Names::new();
    let instance = random_name("member");
    let args = service_args(
        &names,
        stack.bootstrap(),
        &stack.registry.url,
        &["--group-instance-id", instance.as_str()],
    );
    let start = || start_process(&args);
    create_topics(stack.bootstrap(), names.all()).await;
    let feeder = Feeder::new(stack.bootstrap(), &stack.registry.url);
    let mut sent = HashSet::new();
    let mut service = start();
    for round in 1..=3 {
        for _ in 0..30 {
            sent.insert(feeder.send(&names.topic, &order("BOOK-1", "EUR")).await);
        }
        // The consumer restarted with the same member id confirms at least
        // one order of this round: it got its partitions back.
        let wanted = (round - 1) * 30 + 1;
        let seen = read_topic(
            stack.bootstrap(),
            &names.output,
            wanted,
            Duration::from_secs(60),
        )
        .await
        .len();
        assert!(
            seen >= wanted,
            "round {round}: {seen} confirmed, the restarted member got no partition"
        );
        service.kill().unwrap();
        service.wait().unwrap();
        service = start();
    }
    let codec = EventCodec::new(CodecSettings::new(stack.registry.url.clone())).unwrap();
    let mut confirmed = HashMap::<String, HashSet<String>>::new();
    for _ in 0..12 {
        let out = read_topic(
            stack.bootstrap(),
            &names.output,
            sent.len(),
            Duration::from_secs(5),
        )
        .await;
        confirmed.clear();
        for record in &out {
            let source = codec
                .decode::<OrderConfirmed>(record.message.payload())
                .await
                .unwrap()
                .event
                .source_event_id;
            confirmed
                .entry(source)
                .or_default()
                .insert(record.header("ce_id").unwrap());
        }
        if confirmed.len() >= sent.len() {
            break;
        }
    }
    service.kill().unwrap();
    service.wait().unwrap();
    let keys: HashSet<String> = confirmed.keys().cloned().collect();
    assert_eq!(
        keys, sent,
        "every order confirmed after three kills, none missing"
    );
    for (source, ids) in &confirmed {
        assert_eq!(ids, &HashSet::from([confirmation_id(source)]));
    }
}
