//! The AsyncAPI 3.0 document of a kafkit topic layout: for each consumed
//! topic its retry tiers and dead-letter topic, for each event its Avro
//! schema from `schemas/`, and the headers every record carries (CloudEvents,
//! trace context) and those kafkit adds on a hop. Header names, suffixes and
//! tier delays come from the code that writes them, so the document cannot
//! drift from the records.

use anyhow::Context;
use kafkit_events::headers as ce;
use kafkit_messaging::RetryPolicy;
use kafkit_messaging::headers as kafkit;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A topic and the event it carries, read from its `.avsc`.
#[derive(Debug, Clone)]
pub struct TopicEvent {
    pub topic: String,
    /// The Avro full name (`namespace.name`): the CloudEvents `type`.
    pub full_name: String,
    /// The record's own name: the message's id in the document.
    pub name: String,
    pub schema: Value,
    pub file: PathBuf,
}

impl TopicEvent {
    /// `topic` carrying the record in `file`.
    pub fn read(topic: &str, file: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the schema {}", file.display()))?;
        let schema: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        let name = schema["name"]
            .as_str()
            .with_context(|| format!("{} has no record name", file.display()))?
            .to_owned();
        let full_name = match schema["namespace"].as_str() {
            Some(namespace) if !name.contains('.') => format!("{namespace}.{name}"),
            _ => name.clone(),
        };
        let name = full_name
            .rsplit('.')
            .next()
            .unwrap_or(&full_name)
            .to_owned();
        Ok(Self {
            topic: topic.to_owned(),
            full_name,
            name,
            schema,
            file: file.to_owned(),
        })
    }
}

/// What the document describes.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    /// Topics consumed with retry tiers and a DLQ.
    pub consumes: Vec<TopicEvent>,
    /// Topics the handlers publish to.
    pub publishes: Vec<TopicEvent>,
    pub policy: RetryPolicy,
    /// `host:port` of the local broker, the document's one server.
    pub server: String,
}

/// An id the AsyncAPI schema accepts for a topic name (`orders.retry.1` → `orders_retry_1`).
fn id(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

/// Headers of every kafkit event (CloudEvents Kafka binding, binary mode).
fn event_headers(full_name: &str) -> Map<String, Value> {
    let mut headers = Map::new();
    headers.insert(
        ce::CE_SPECVERSION.into(),
        json!({"type": "string", "const": ce::SPEC_VERSION}),
    );
    headers.insert(ce::CE_ID.into(), json!({"type": "string", "description": "Event id, a UUID; output events derive theirs from their input's (UUID v5), so a redelivery repeats it"}));
    headers.insert(
        ce::CE_TYPE.into(),
        json!({"type": "string", "const": full_name}),
    );
    headers.insert(
        ce::CE_SOURCE.into(),
        string("The service that wrote the event, e.g. /producer-service"),
    );
    headers.insert(
        ce::CE_TIME.into(),
        json!({"type": "string", "format": "date-time"}),
    );
    headers.insert(
        ce::CONTENT_TYPE.into(),
        json!({"type": "string", "const": ce::AVRO_CONTENT_TYPE}),
    );
    headers.insert(ce::TRACEPARENT.into(), json!({"type": "string", "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$", "description": "W3C trace context of the span that sent the record"}));
    headers.insert(ce::TRACESTATE.into(), string("W3C vendor trace state"));
    headers
}

/// kafkit's own headers on a retry or dead-letter copy (docs/DESIGN.md).
fn hop_headers(dead_letter: bool) -> Map<String, Value> {
    let ms = |what: &str| json!({"type": "string", "pattern": "^[0-9]+$", "description": format!("{what}, epoch milliseconds as decimal text")});
    let number =
        |what: &str| json!({"type": "string", "pattern": "^-?[0-9]+$", "description": what});
    let mut headers = Map::new();
    headers.insert(
        kafkit::ORIGINAL_TOPIC.into(),
        string("Topic the record was first written to; kept across hops"),
    );
    headers.insert(
        kafkit::ORIGINAL_PARTITION.into(),
        number("Its partition there"),
    );
    headers.insert(kafkit::ORIGINAL_OFFSET.into(), number("Its offset there"));
    headers.insert(kafkit::ORIGINAL_TIMESTAMP.into(), ms("Its timestamp there"));
    headers.insert(
        kafkit::CONSUMER_GROUP.into(),
        string("The consumer group that made the hop"),
    );
    headers.insert(
        kafkit::ATTEMPT.into(),
        number("Handler executions so far, the failed one included"),
    );
    headers.insert(
        kafkit::ERROR_CLASS.into(),
        string("Short stable name of the failure, e.g. unsupported-currency, malformed-body"),
    );
    headers.insert(
        kafkit::ERROR_MESSAGE.into(),
        string("The failure's message"),
    );
    headers.insert(kafkit::ERROR_DETAIL.into(), json!({"type": "string", "maxLength": kafkit::MAX_DETAIL_BYTES, "description": "The cause chain, bounded"}));
    headers.insert(
        kafkit::FAILURE_FIRST.into(),
        ms("When the record first failed"),
    );
    headers.insert(kafkit::FAILURE_LAST.into(), ms("When it failed last"));
    if dead_letter {
        headers.insert(kafkit::VALUE_DROPPED.into(), number("Value bytes left out of a dead letter the broker would not take whole: the record is then a reference (origin and error only)"));
    } else {
        headers.insert(
            kafkit::RETRY_NOT_BEFORE.into(),
            ms("Not handled before this time"),
        );
    }
    headers
}

fn message(
    event: &TopicEvent,
    title: &str,
    summary: &str,
    extra_headers: Map<String, Value>,
    required: &[&str],
) -> Value {
    let mut properties = event_headers(&event.full_name);
    properties.extend(extra_headers);
    json!({
        "name": event.full_name,
        "title": title,
        "summary": summary,
        "contentType": ce::AVRO_CONTENT_TYPE,
        "headers": {"type": "object", "required": required, "properties": properties},
        "payload": {
            "schemaFormat": "application/vnd.apache.avro;version=1.9.0",
            "schema": event.schema,
        },
        "bindings": {"kafka": {
            "key": {"type": "string", "description": "The record key; records of one key keep their order"},
            "schemaIdLocation": "payload",
            "schemaIdPayloadEncoding": "confluent",
            "bindingVersion": "0.5.0",
        }},
    })
}

fn delay(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The AsyncAPI 3.0 document of `layout`.
pub fn document(layout: &Layout) -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    let cloud_events = [
        ce::CE_SPECVERSION,
        ce::CE_ID,
        ce::CE_TYPE,
        ce::CE_SOURCE,
        ce::CE_TIME,
        ce::CONTENT_TYPE,
    ];
    let mut channel = |topic: &str, description: String, message_id: &str| {
        channels.insert(
            id(topic),
            json!({
                "address": topic,
                "description": description,
                "messages": {message_id: {"$ref": format!("#/components/messages/{message_id}")}},
                "bindings": {"kafka": {"topic": topic, "bindingVersion": "0.5.0"}},
            }),
        );
    };
    // An event as its producer writes it: the CloudEvents headers required.
    let plain = |event: &TopicEvent| {
        let summary = format!("{} in the Confluent wire format", event.full_name);
        message(event, &event.name, &summary, Map::new(), &cloud_events)
    };
    let mut operation = |name: String, action: &str, topic: &str, summary: String| {
        operations.insert(
            name,
            json!({"action": action, "channel": {"$ref": format!("#/channels/{}", id(topic))}, "summary": summary}),
        );
    };
    for event in &layout.consumes {
        let (main, dlq) = (&event.topic, layout.policy.dlq_topic(&event.topic));
        messages.insert(event.name.clone(), plain(event));
        channel(
            main,
            format!(
                "{} events, consumed with {} retry tiers and a dead-letter topic",
                event.full_name,
                layout.policy.delays.len()
            ),
            &event.name,
        );
        operation(
            format!("send_{}", id(main)),
            "send",
            main,
            format!(
                "Producers publish {} (producer-service for orders)",
                event.name
            ),
        );
        operation(format!("receive_{}", id(main)), "receive", main, "The main consumer group handles each record once it is settled: handled with its outputs acknowledged, or copied to a retry tier or the DLQ".into());
        let retry_id = format!("{}Retry", event.name);
        let mut required: Vec<&str> = cloud_events.to_vec();
        required.extend([
            kafkit::ORIGINAL_TOPIC,
            kafkit::ATTEMPT,
            kafkit::RETRY_NOT_BEFORE,
            kafkit::ERROR_CLASS,
            kafkit::FAILURE_FIRST,
            kafkit::FAILURE_LAST,
        ]);
        messages.insert(
            retry_id.clone(),
            message(event, &format!("{} to retry", event.name), "The failed record unchanged (key, value, headers) with kafkit's routing headers, replaced at each hop", hop_headers(false), &required),
        );
        for (tier, wait) in layout.policy.delays.iter().enumerate() {
            let tier = tier + 1;
            let topic = layout.policy.retry_topic(main, tier);
            channel(
                &topic,
                format!(
                    "Retry tier {tier}: records that failed transiently, handled again no sooner than {} after the failure",
                    delay(*wait)
                ),
                &retry_id,
            );
            operation(
                format!("send_{}", id(&topic)),
                "send",
                &topic,
                format!(
                    "A consumer copies a record that failed transiently for the {tier}{} time here",
                    ordinal(tier)
                ),
            );
            operation(format!("receive_{}", id(&topic)), "receive", &topic, "The retry consumer group pauses the partition until kafkit.retry.not-before, then handles the record again".into());
        }
        let dead_id = format!("{}DeadLetter", event.name);
        let mut required: Vec<&str> = vec![
            kafkit::ORIGINAL_TOPIC,
            kafkit::ORIGINAL_PARTITION,
            kafkit::ORIGINAL_OFFSET,
            kafkit::ATTEMPT,
            kafkit::ERROR_CLASS,
            kafkit::ERROR_MESSAGE,
        ];
        required.sort_unstable();
        messages.insert(
            dead_id.clone(),
            message(event, &format!("Dead {}", event.name), &format!("A record that failed for good: a permanent failure, the last attempt of {} or bytes that did not decode (then the value is the original bytes, not this schema, and the CloudEvents headers may be missing). Replayed by kafkit dlq replay", layout.policy.max_attempts), hop_headers(true), &required),
        );
        channel(
            &dlq,
            format!(
                "Dead letters of {main}: why each died is in its headers (kafkit dlq watch, inspect, replay)"
            ),
            &dead_id,
        );
        operation(
            format!("send_{}", id(&dlq)),
            "send",
            &dlq,
            "A consumer parks a record that cannot succeed here, with the reason".into(),
        );
        operation(format!("receive_{}", id(&dlq)), "receive", &dlq, "kafkit dlq watch / inspect read it; kafkit dlq replay sends records back to their original topic".into());
    }
    for event in &layout.publishes {
        messages.insert(event.name.clone(), plain(event));
        channel(
            &event.topic,
            format!(
                "{} events the handlers publish; acknowledged before their input's offset is stored",
                event.full_name
            ),
            &event.name,
        );
        operation(
            format!("send_{}", id(&event.topic)),
            "send",
            &event.topic,
            format!("Handlers publish {}", event.name),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": layout.title,
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Topics, events and headers of a kafkit system: each consumed topic with its retry tiers and dead-letter topic. Written by `kafkit docs asyncapi` from the schemas and kafkit's own header names.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": ce::AVRO_CONTENT_TYPE,
        "servers": {"local": {
            "host": layout.server,
            "protocol": "kafka",
            "description": "The local stack (kafkit dev up); in production, your cluster",
        }},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    })
}

fn ordinal(n: usize) -> &'static str {
    match n {
        1 => "st",
        2 => "nd",
        3 => "rd",
        _ => "th",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn orders() -> Layout {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Layout {
            title: "orders".into(),
            consumes: vec![
                TopicEvent::read("orders", &root.join("schemas/order_placed.avsc")).unwrap(),
            ],
            publishes: vec![
                TopicEvent::read(
                    "order-confirmations",
                    &root.join("schemas/order_confirmed.avsc"),
                )
                .unwrap(),
            ],
            policy: RetryPolicy::default(),
            server: "127.0.0.1:9092".into(),
        }
    }

    #[test]
    fn every_topic_of_the_layout_is_a_channel_with_its_event() {
        let doc = document(&orders());
        let addresses: Vec<&str> = doc["channels"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c["address"].as_str().unwrap())
            .collect();
        for topic in [
            "orders",
            "orders.retry.1",
            "orders.retry.2",
            "orders.retry.3",
            "orders.dlq",
            "order-confirmations",
        ] {
            assert!(addresses.contains(&topic), "{topic}: {addresses:?}");
        }
        let placed = &doc["components"]["messages"]["OrderPlaced"];
        assert_eq!(placed["name"], "io.kafkit.orders.OrderPlaced");
        assert_eq!(
            placed["headers"]["properties"]["ce_type"]["const"],
            "io.kafkit.orders.OrderPlaced"
        );
        assert_eq!(placed["payload"]["schema"]["name"], "OrderPlaced");
        let retry = &doc["components"]["messages"]["OrderPlacedRetry"]["headers"];
        assert!(
            retry["required"]
                .as_array()
                .unwrap()
                .contains(&json!("kafkit.retry.not-before"))
        );
        let dead = &doc["components"]["messages"]["OrderPlacedDeadLetter"]["headers"]["properties"];
        assert!(
            dead.get("kafkit.error.class").is_some()
                && dead.get("kafkit.retry.not-before").is_none()
        );
        assert_eq!(
            doc["channels"]["orders_retry_2"]["description"],
            "Retry tier 2: records that failed transiently, handled again no sooner than 10s after the failure"
        );
        // Every operation names a channel that exists.
        for (name, op) in doc["operations"].as_object().unwrap() {
            let target = op["channel"]["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/channels/");
            assert!(doc["channels"].get(target).is_some(), "{name} -> {target}");
        }
    }
}
