//! Generated hostile records interleaved with valid orders on every
//! partition: random bytes, the magic byte with a random or unknown schema
//! id, valid orders cut short or padded, empty and null values, header fuzz
//! (values that are not UTF-8, forged `kafkit.*` routing headers, a 64 KiB
//! header). Every valid order is confirmed, every hostile record is
//! dead-lettered byte for byte with a reason, none holds its partition.
//!
//! Size: `KAFKIT_FUZZ_RECORDS=N` writes 2N records per partition, each
//! hostile or valid at even odds (default 40: about 240 records, seconds;
//! 300 took a minute here); `KAFKIT_FUZZ_SEED` replays a run (the seed is
//! printed).
#![allow(clippy::unwrap_used)]

use crate::support::{confirmations, order, read_topic, started};
use kafkit_events::EventHeaders;
use kafkit_messaging::headers as h;
use rdkafka::message::Message;
use shared_events::OrderPlaced;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Partition and offset of a record on the main topic.
type Coordinates = (i32, i64);

/// splitmix64: small, seedable, good enough to pick cases.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Headers an attacker or a confused producer adds: forged routing, not
/// UTF-8, huge. On a main topic none of them may change what happens.
fn header_fuzz(dice: &mut Dice) -> Vec<(&'static str, Vec<u8>)> {
    let mut headers = Vec::new();
    for _ in 0..dice.below(4) {
        headers.push(match dice.below(8) {
            0 => (h::ORIGINAL_TOPIC, b"nope".to_vec()),
            1 => (h::ATTEMPT, b"4294967295".to_vec()),
            2 => (h::ATTEMPT, b"-7".to_vec()),
            3 => (h::RETRY_NOT_BEFORE, b"99999999999999999999".to_vec()),
            4 => (h::ORIGINAL_OFFSET, dice.bytes(8)),
            5 => ("x-binary", vec![0xff, 0xfe, 0x00, 0xc3]),
            6 => ("x-huge", vec![b'h'; 64 * 1024]),
            _ => (h::ERROR_CLASS, vec![0x80; 16]),
        });
    }
    headers
}

/// One hostile value and what kind it is.
fn hostile_value(dice: &mut Dice, valid: &[u8]) -> (&'static str, Option<Vec<u8>>) {
    match dice.below(7) {
        0 => {
            let len = dice.below(200);
            ("random bytes", Some(dice.bytes(len)))
        }
        1 => {
            // Magic byte, an id no registry handed out, a random body.
            let mut value = vec![0, 0x7f];
            value.extend(dice.bytes(3));
            let len = dice.below(64);
            value.extend(dice.bytes(len));
            ("unknown schema id", Some(value))
        }
        2 => {
            // The real schema id, a random body.
            let mut value = valid[..5].to_vec();
            let len = dice.below(64);
            value.extend(dice.bytes(len));
            ("random body", Some(value))
        }
        3 => {
            let cut = 1 + dice.below(valid.len() - 5);
            ("truncated", Some(valid[..valid.len() - cut].to_vec()))
        }
        4 => {
            let mut value = valid.to_vec();
            let len = 1 + dice.below(4);
            value.extend(dice.bytes(len));
            ("padded", Some(value))
        }
        5 => ("empty", Some(Vec::new())),
        _ => ("null", None),
    }
}

#[tokio::test]
async fn hostile_records_among_valid_orders_are_dead_lettered_byte_for_byte_and_hold_nothing() {
    let per_partition: usize = std::env::var("KAFKIT_FUZZ_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("KAFKIT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("KAFKIT_FUZZ_SEED={seed} KAFKIT_FUZZ_RECORDS={per_partition}");
    let mut dice = Dice(seed);
    let (stack, names, service, feeder) = started(&[]).await;
    let template = feeder
        .codec
        .encode(&names.topic, &order("BOOK-1", "EUR"))
        .await
        .unwrap();

    // (partition, offset) → (kind, value) of each hostile record.
    let mut hostile: HashMap<Coordinates, (&str, Option<Vec<u8>>)> = HashMap::new();
    let mut valid = HashSet::new();
    for _ in 0..per_partition * 2 {
        for partition in 0..3 {
            if dice.below(2) == 0 {
                let (kind, value) = hostile_value(&mut dice, &template);
                let mut headers = EventHeaders::new::<OrderPlaced>("/fuzz").to_pairs();
                if dice.below(3) == 0 {
                    headers.clear();
                }
                headers.extend(header_fuzz(&mut dice));
                let key = dice.bytes(8);
                let offset = feeder
                    .send_exactly(&names.topic, partition, &key, value.clone(), headers)
                    .await;
                hostile.insert((partition, offset), (kind, value));
            } else {
                let (event_id, _) = feeder
                    .send_with_headers(
                        &names.topic,
                        partition,
                        &order("BOOK-1", "EUR"),
                        header_fuzz(&mut dice),
                    )
                    .await;
                valid.insert(event_id);
            }
        }
    }
    eprintln!(
        "{} hostile records, {} valid orders",
        hostile.len(),
        valid.len()
    );

    let wait = Duration::from_secs(60);
    let dead = read_topic(stack.bootstrap(), &names.dlq(), hostile.len(), wait).await;
    let out = read_topic(stack.bootstrap(), &names.output, valid.len(), wait).await;
    let confirmed: HashSet<String> = confirmations(&stack.registry.url, &out)
        .await
        .into_iter()
        .map(|c| c.source_event_id)
        .collect();
    assert_eq!(
        confirmed, valid,
        "every valid order confirmed, and only those"
    );

    let mut seen = HashSet::new();
    for record in &dead {
        let at = (
            record
                .header(h::ORIGINAL_PARTITION)
                .unwrap()
                .parse()
                .unwrap(),
            record.header(h::ORIGINAL_OFFSET).unwrap().parse().unwrap(),
        );
        let (kind, value) = hostile
            .get(&at)
            .unwrap_or_else(|| panic!("a dead letter for {at:?}, which was a valid order"));
        assert_eq!(
            record.message.payload().map(<[u8]>::to_vec),
            *value,
            "{kind} at {at:?}: dead-lettered byte for byte"
        );
        assert_eq!(record.header(h::ORIGINAL_TOPIC), Some(names.topic.clone()));
        let class = record.header(h::ERROR_CLASS).unwrap_or_default();
        assert!(!class.is_empty(), "{kind} at {at:?}: a reason");
        seen.insert(at);
    }
    let missing: Vec<_> = hostile
        .iter()
        .filter(|(at, _)| !seen.contains(*at))
        .map(|(at, (kind, _))| (at, kind))
        .collect();
    assert!(missing.is_empty(), "not dead-lettered: {missing:?}");
    assert_eq!(dead.len(), hostile.len(), "each hostile record once");
    let holds = service
        .metric(
            "kafkit_partition_holds_total",
            &[("kafkit_hold_reason", "outage")],
        )
        .await;
    assert_eq!(holds, 0.0, "no hostile record is taken for an outage");
    service.stop().await;
}
