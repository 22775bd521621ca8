//! Records as an attacker, a misconfigured producer or another team's
//! service writes them: forged routing headers, a retry due in ten hours,
//! no CloudEvents headers, a corrupt body, a dead letter too large for the
//! broker. None holds its partition, none is skipped, none panics.
#![allow(clippy::unwrap_used)]

use crate::support::{
    Feeder, Names, Stack, confirmations, create_topics, order, read_topic, spawn_service, started,
};
use consumer_service::handler::confirmation_id;
use kafkit_messaging::headers as h;
use rdkafka::message::Message;
use std::time::{Duration, SystemTime};

const WAIT: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap())
        .unwrap()
}

#[tokio::test]
async fn routing_headers_on_a_first_delivery_are_ignored() {
    let (stack, names, service, feeder) = started(&["--faults", "FLAKY:transient:1"]).await;
    let forged = || {
        vec![
            (h::ORIGINAL_TOPIC, b"nope".to_vec()),
            (h::ORIGINAL_OFFSET, b"999".to_vec()),
            (h::ATTEMPT, b"4294967295".to_vec()),
        ]
    };
    // Refused by the rules (JPY): with the old trust it went to "nope.dlq",
    // which does not exist, and held the partition for good.
    let (_, refused_at) = feeder
        .send_with_headers(&names.topic, 0, &order("BOOK-1", "JPY"), forged())
        .await;
    // Fails once: with the old trust, attempt 4294967295 + 1 overflowed.
    let (flaky_id, _) = feeder
        .send_with_headers(&names.topic, 0, &order("FLAKY-1", "EUR"), forged())
        .await;
    let mut valid = vec![flaky_id];
    for _ in 0..5 {
        valid.push(
            feeder
                .send_with_headers(&names.topic, 0, &order("BOOK-1", "EUR"), vec![])
                .await
                .0,
        );
    }

    let dead = read_topic(stack.bootstrap(), &names.dlq(), 1, WAIT).await;
    assert_eq!(dead.len(), 1, "only the refused order is dead");
    assert_eq!(dead[0].header(h::ORIGINAL_TOPIC), Some(names.topic.clone()));
    assert_eq!(
        dead[0].header(h::ORIGINAL_OFFSET),
        Some(refused_at.to_string())
    );
    assert_eq!(dead[0].header(h::ATTEMPT).as_deref(), Some("1"));
    assert_eq!(dead[0].count(h::ATTEMPT), 1, "the forged one is not kept");
    let tier1 = read_topic(stack.bootstrap(), &names.retry(1), 1, WAIT).await;
    assert_eq!(tier1.len(), 1);
    assert_eq!(
        tier1[0].header(h::ATTEMPT).as_deref(),
        Some("1"),
        "a first failure, whatever the header said"
    );
    let out = read_topic(stack.bootstrap(), &names.output, valid.len(), WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    let mut confirmed: Vec<String> = out.into_iter().map(|c| c.source_event_id).collect();
    confirmed.sort();
    valid.sort();
    assert_eq!(confirmed, valid, "the valid orders behind it are confirmed");
    service.stop().await;
}

#[tokio::test]
async fn a_retry_due_in_ten_hours_waits_no_longer_than_the_longest_tier() {
    // Tiers of 1 s.
    let (stack, names, service, feeder) = started(&[]).await;
    let ten_hours = now_ms() + 10 * 3600 * 1000;
    let (event_id, _) = feeder
        .send_with_headers(
            &names.retry(1),
            0,
            &order("BOOK-1", "EUR"),
            vec![
                (h::ORIGINAL_TOPIC, names.topic.clone().into_bytes()),
                (h::ORIGINAL_PARTITION, b"0".to_vec()),
                (h::ORIGINAL_OFFSET, b"0".to_vec()),
                (h::ATTEMPT, b"1".to_vec()),
                (h::RETRY_NOT_BEFORE, ten_hours.to_string().into_bytes()),
            ],
        )
        .await;
    let out = read_topic(stack.bootstrap(), &names.output, 1, WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    assert_eq!(
        out.len(),
        1,
        "handled within the longest tier, not in ten hours"
    );
    assert_eq!(out[0].source_event_id, event_id);
    service.stop().await;
}

#[tokio::test]
async fn a_record_without_cloudevents_headers_is_confirmed_with_an_id_from_where_it_was_written() {
    let (stack, names, service, feeder) = started(&["--faults", "FLAKY:transient:1"]).await;
    let mut expected = Vec::new();
    // A plain one, and one that fails once: its retry must answer with the
    // same id, derived from where it was first written, not from the tier.
    for sku in ["BOOK-1", "FLAKY-1"] {
        let placed = order(sku, "EUR");
        let payload = feeder.codec.encode(&names.topic, &placed).await.unwrap();
        let offset = feeder
            .send_exactly(
                &names.topic,
                0,
                placed.order_id.as_bytes(),
                Some(payload),
                vec![],
            )
            .await;
        let derived = kafkit_messaging::routing::derived_event_id(&names.topic, 0, offset);
        expected.push((placed.order_id, derived));
    }
    let out = read_topic(stack.bootstrap(), &names.output, 2, WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    assert!(
        read_topic(
            stack.bootstrap(),
            &names.dlq(),
            0,
            Duration::from_millis(1500)
        )
        .await
        .is_empty(),
        "not dead-lettered for want of a ce_id"
    );
    for (order_id, derived) in expected {
        let found = out.iter().find(|c| c.order_id == order_id).unwrap();
        assert_eq!(found.source_event_id, derived);
        assert_eq!(found.event_id, confirmation_id(&derived));
    }
    service.stop().await;
}

#[tokio::test]
async fn a_cut_or_padded_body_is_dead_lettered_byte_for_byte_as_malformed() {
    let (stack, names, service, feeder) = started(&[]).await;
    let placed = order("BOOK-1", "EUR");
    let good = feeder.codec.encode(&names.topic, &placed).await.unwrap();
    let cut = good[..good.len() - 1].to_vec();
    let padded = [good.as_slice(), &[0, 0, 0]].concat();
    for body in [&cut, &padded] {
        feeder
            .send_exactly(&names.topic, 0, b"hostile", Some(body.clone()), vec![])
            .await;
    }
    let (valid, _) = feeder
        .send_with_headers(&names.topic, 0, &order("BOOK-1", "EUR"), vec![])
        .await;
    let dead = read_topic(stack.bootstrap(), &names.dlq(), 2, WAIT).await;
    assert_eq!(dead.len(), 2);
    for (letter, body) in dead.iter().zip([&cut, &padded]) {
        assert_eq!(
            letter.header(h::ERROR_CLASS).as_deref(),
            Some("malformed-body")
        );
        assert_eq!(
            letter.message.payload(),
            Some(body.as_slice()),
            "byte for byte"
        );
    }
    let out = read_topic(stack.bootstrap(), &names.output, 1, WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].source_event_id, valid);
    service.stop().await;
}

#[tokio::test]
async fn a_dead_letter_too_large_for_the_broker_goes_as_a_reference_and_the_partition_goes_on() {
    // The service's producer takes records up to 100 kB; the record is 150 kB.
    let (stack, names, service, feeder) = started(&["-X", "message.max.bytes=100000"]).await;
    let huge = vec![7u8; 150_000];
    let huge_at = feeder
        .send_exactly(&names.topic, 0, b"huge", Some(huge), vec![])
        .await;
    let (valid, _) = feeder
        .send_with_headers(&names.topic, 0, &order("BOOK-1", "EUR"), vec![])
        .await;
    let dead = read_topic(stack.bootstrap(), &names.dlq(), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(
        letter.header(h::ERROR_CLASS).as_deref(),
        Some("bad-magic-byte")
    );
    assert_eq!(letter.header(h::VALUE_DROPPED).as_deref(), Some("150000"));
    assert_eq!(letter.header(h::ORIGINAL_OFFSET), Some(huge_at.to_string()));
    assert!(
        letter.message.payload().is_none(),
        "a reference: the value is left out"
    );
    assert!(
        letter.header(h::ERROR_MESSAGE).unwrap().contains("refused"),
        "{:?}",
        letter.header(h::ERROR_MESSAGE)
    );
    let out = read_topic(stack.bootstrap(), &names.output, 1, WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    assert_eq!(out.len(), 1, "the partition goes on");
    assert_eq!(out[0].source_event_id, valid);
    assert_eq!(
        service
            .metric(
                "kafkit_dead_letters_reduced_total",
                &[("kafkit_copy_form", "reference")]
            )
            .await,
        1.0
    );
    service.stop().await;
}

/// A destination that does not exist is an outage, not the record's fault:
/// the record waits (its offset, and those behind it, are not committed),
/// `/readyz` says which topic is missing, and once it exists everything
/// goes on, nothing lost.
#[tokio::test]
async fn a_missing_dead_letter_topic_holds_the_record_turns_readyz_503_and_then_it_goes() {
    let stack = Stack::start().await;
    let names = Names::new();
    // Every topic but the DLQ.
    let present = names
        .all()
        .into_iter()
        .filter(|t| *t != names.dlq())
        .collect();
    create_topics(stack.bootstrap(), present).await;
    let service = spawn_service(
        &names,
        stack.bootstrap(),
        &stack.registry.url,
        &["--create-topics", "false"],
    )
    .await;
    let feeder = Feeder::new(stack.bootstrap(), &stack.registry.url);
    // Refused by the rules: its copy goes to the DLQ, which is missing.
    let (refused, _) = feeder
        .send_with_headers(&names.topic, 0, &order("BOOK-1", "JPY"), vec![])
        .await;
    let (behind, _) = feeder
        .send_with_headers(&names.topic, 0, &order("BOOK-1", "EUR"), vec![])
        .await;
    let readyz = || async {
        let answer = reqwest::get(format!("{}/readyz", service.ops_url))
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    };
    let (status, detail) = readyz().await;
    assert_eq!(status, 503, "{detail}");
    assert!(
        detail.contains(&names.dlq()),
        "names the missing topic: {detail}"
    );
    assert!(
        detail.contains("urn:kafkit:problem:not-ready") && detail.contains("destinations: "),
        "a not-ready problem naming the failed check: {detail}"
    );
    create_topics(stack.bootstrap(), vec![names.dlq()]).await;
    let dead = read_topic(stack.bootstrap(), &names.dlq(), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("ce_id"), Some(refused));
    // The order behind it may have been answered before the hold and again
    // after the rewind: the same confirmation each time.
    let out = read_topic(stack.bootstrap(), &names.output, 1, WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    assert!(!out.is_empty());
    assert!(out.iter().all(|c| c.source_event_id == behind));
    assert!(out.iter().all(|c| c.event_id == confirmation_id(&behind)));
    let mut ready = readyz().await;
    for _ in 0..50 {
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        ready = readyz().await;
    }
    assert_eq!(
        ready.0, 200,
        "ready again once the topic exists: {}",
        ready.1
    );
    service.stop().await;
}

/// A header name that is not UTF-8 (the protocol allows it; rdkafka's
/// reader panics on it, and its writer cannot send it, so the record is
/// written with a hand-made Produce request): the record is dead-lettered,
/// byte for byte, as `unreadable-header`, and the order behind it is
/// confirmed.
#[tokio::test]
async fn a_header_name_that_is_not_utf8_is_dead_lettered_and_the_partition_goes_on() {
    let (stack, names, service, feeder) = started(&[]).await;
    let placed = order("BOOK-1", "EUR");
    let payload = feeder.codec.encode(&names.topic, &placed).await.unwrap();
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> =
        kafkit_events::EventHeaders::new::<shared_events::OrderPlaced>("/raw")
            .to_pairs()
            .into_iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v))
            .collect();
    headers.push((b"x-\xff\xfe-name".to_vec(), b"value".to_vec()));
    let record = devstack::raw::RawRecord {
        key: Some(placed.order_id.clone().into_bytes()),
        value: Some(payload.clone()),
        headers,
    };
    let (bootstrap, topic) = (stack.bootstrap().to_owned(), names.topic.clone());
    let offset =
        tokio::task::spawn_blocking(move || devstack::raw::produce(&bootstrap, &topic, 0, &record))
            .await
            .unwrap()
            .unwrap();
    let (behind, _) = feeder
        .send_with_headers(&names.topic, 0, &order("BOOK-1", "EUR"), vec![])
        .await;

    let dead = read_topic(stack.bootstrap(), &names.dlq(), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].header(h::ERROR_CLASS).as_deref(),
        Some("unreadable-header")
    );
    assert_eq!(dead[0].header(h::ORIGINAL_OFFSET), Some(offset.to_string()));
    assert_eq!(dead[0].message.payload(), Some(payload.as_slice()));
    let out = read_topic(stack.bootstrap(), &names.output, 1, WAIT).await;
    let out = confirmations(&stack.registry.url, &out).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].source_event_id, behind, "the order behind it");
    service.stop().await;
}
