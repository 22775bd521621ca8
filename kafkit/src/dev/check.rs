//! `kafkit dev check`: the event contract end to end on the running stack.
//!
//! Encodes an `OrderPlaced` event through the registry (which registers its
//! schema), produces it with its CloudEvents headers, reads that exact record
//! back and decodes it, and fails unless what came back equals what was sent.

use anyhow::{Context, bail};
use kafkit_events::{CodecSettings, Event, EventCodec, EventHeaders};
use kafkit_messaging::{
    Delivered, KafkaSettings, OutgoingRecord, ProducerSettings, Publisher, TopicSpec, ensure_topics,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use shared_events::{OrderItem, OrderPlaced};
use std::time::{Duration, SystemTime};

/// Produces one `OrderPlaced` to `topic` and reads it back; errors unless equal.
pub async fn round_trip(bootstrap: &str, registry_url: &str, topic: &str) -> anyhow::Result<()> {
    let kafka = KafkaSettings::new(bootstrap);
    ensure_topics(&kafka, &[TopicSpec::new(topic, 3)]).await?;
    let codec = EventCodec::new(CodecSettings::new(registry_url))
        .context("failed to configure the registry client")?;
    let now_ms = i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let order = OrderPlaced {
        customer_id: "demo-customer".into(),
        placed_at: now_ms,
        note: Some("kafkit demo".into()),
        ..sample_order()
    };
    let payload = codec
        .encode(topic, &order)
        .await
        .context("failed to encode the event")?;
    let subject = codec.subject_for::<OrderPlaced>(topic);
    let registered: serde_json::Value =
        reqwest::get(format!("{registry_url}/subjects/{subject}/versions/latest"))
            .await?
            .error_for_status()?
            .json()
            .await?;
    println!(
        "registered schema: subject {subject}, version {}, id {}",
        registered["version"], registered["id"]
    );
    println!("  {}", registered["schema"].as_str().unwrap_or_default());

    let headers = EventHeaders::new::<OrderPlaced>("/kafkit-demo");
    let publisher = Publisher::new(&kafka, &ProducerSettings::default())?;
    let record = OutgoingRecord::event(topic, order.order_id.as_bytes(), payload.clone(), &headers);
    let Delivered {
        partition, offset, ..
    } = publisher
        .publish(&record)
        .await
        .context("the broker did not acknowledge the event")?;
    println!(
        "produced {} {} to {topic} partition {partition} offset {offset} ({} bytes, Confluent wire format)",
        OrderPlaced::FULL_NAME,
        order.order_id,
        payload.len()
    );

    let consumer: StreamConsumer =
        crate::reader::config(&kafka, &crate::reader::throwaway_group("check")).create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let message = tokio::time::timeout(Duration::from_secs(15), consumer.recv())
        .await
        .context("the event did not come back within 15 s")??;
    let decoded = codec.decode::<OrderPlaced>(message.payload()).await?;
    let read_headers = EventHeaders::from_pairs(
        message
            .headers()
            .into_iter()
            .flat_map(|h| h.iter())
            .map(|h| (h.key, h.value)),
    )?;
    println!(
        "consumed offset {} with ce_id {} and traceparent {}",
        message.offset(),
        read_headers.id,
        read_headers
            .traceparent
            .map(|t| t.to_string())
            .unwrap_or_default()
    );
    println!("decoded: {}", serde_json::to_string_pretty(&decoded.event)?);
    if decoded.event != order || read_headers.id != headers.id {
        bail!("the event read back differs from the one sent");
    }
    println!(
        "round trip OK: the decoded event equals the one sent (schema id {}).",
        decoded.schema_id
    );
    Ok(())
}

/// A two-line EUR order, shared by the check and the benchmarks.
pub(crate) fn sample_order() -> OrderPlaced {
    OrderPlaced {
        order_id: uuid::Uuid::new_v4().to_string(),
        customer_id: "sample-customer".into(),
        items: vec![
            OrderItem {
                sku: "BOOK-42".into(),
                quantity: 2,
                unit_price_cents: 1_999,
            },
            OrderItem {
                sku: "MUG-7".into(),
                quantity: 1,
                unit_price_cents: 850,
            },
        ],
        currency: "EUR".into(),
        placed_at: 1_764_000_000_000,
        note: None,
    }
}
