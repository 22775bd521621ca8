//! Events encoded by shared-events travel through a real Tansu broker and a
//! real schema registry and come back equal; bad payloads get typed errors.
#![allow(clippy::unwrap_used)]

use apache_avro::types::Value;
use devstack::TestKafka;
use kafkit_events::{CodecSettings, DecodeError, Event, EventCodec, EventHeaders, SubjectStrategy};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schema_registry::{Application, RegistrySettings, RunningRegistry, StorageSettings};
use schema_registry_converter::async_impl::avro::AvroEncoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use shared_events::{OrderConfirmed, OrderItem, OrderPlaced};
use std::net::SocketAddr;
use std::time::Duration;

/// A registry on the test broker, or `SCHEMA_REGISTRY_URL` when set.
struct Registry {
    url: String,
    own: Option<RunningRegistry>,
}

impl Registry {
    async fn start(kafka: &TestKafka) -> Self {
        match std::env::var("SCHEMA_REGISTRY_URL") {
            Ok(url) => Self { url, own: None },
            Err(_) => Self::start_own(kafka).await,
        }
    }

    /// Always our own, for tests that stop it.
    async fn start_own(kafka: &TestKafka) -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let own = RunningRegistry::on_kafka(kafka.bootstrap_servers(), &name("_schemas"), listen)
            .await
            .unwrap();
        Self {
            url: own.url.clone(),
            own: Some(own),
        }
    }

    async fn stop(&mut self) {
        if let Some(own) = self.own.take() {
            own.stop().await.unwrap();
        }
    }
}

fn name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn order() -> OrderPlaced {
    OrderPlaced {
        order_id: uuid::Uuid::new_v4().to_string(),
        customer_id: "customer-1".into(),
        items: vec![
            OrderItem {
                sku: "SKU-1".into(),
                quantity: 3,
                unit_price_cents: 499,
            },
            OrderItem {
                sku: "SKU-2".into(),
                quantity: 1,
                unit_price_cents: 12_000,
            },
        ],
        currency: "EUR".into(),
        placed_at: 1_764_000_000_123,
        note: None,
    }
}

fn codec(url: &str) -> EventCodec {
    EventCodec::new(CodecSettings::new(url)).unwrap()
}

/// Produces `payload` to `topic` and reads that record back.
async fn through_kafka(
    bootstrap: &str,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: &EventHeaders,
) -> rdkafka::message::OwnedMessage {
    let (servers, topic_name) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || devstack::ensure_topic(&servers, &topic_name, 3))
        .await
        .unwrap()
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    let mut kafka_headers = OwnedHeaders::new();
    for (name, value) in headers.to_pairs() {
        kafka_headers = kafka_headers.insert(Header {
            key: name,
            value: Some(&value),
        });
    }
    let rdkafka::producer::future_producer::Delivery {
        partition, offset, ..
    } = producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(kafka_headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", name("test-group"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .unwrap()
        .unwrap();
    message.detach()
}

#[tokio::test]
async fn an_order_placed_event_round_trips_through_kafka_in_the_confluent_wire_format() {
    let kafka = TestKafka::start();
    let registry = Registry::start(&kafka).await;
    let codec = codec(&registry.url);
    let topic = name("orders");
    let sent = OrderPlaced {
        note: Some("ring twice".into()),
        ..order()
    };

    let payload = codec.encode(&topic, &sent).await.unwrap();
    let schema_id = codec.schema_id::<OrderPlaced>(&topic).await.unwrap();
    assert_eq!(payload[0], 0, "magic byte");
    assert_eq!(
        u32::from_be_bytes(payload[1..5].try_into().unwrap()),
        schema_id
    );

    let headers = EventHeaders::new::<OrderPlaced>("/test");
    let message = through_kafka(
        kafka.bootstrap_servers(),
        &topic,
        &sent.order_id,
        &payload,
        &headers,
    )
    .await;
    assert_eq!(message.key(), Some(sent.order_id.as_bytes()));
    let decoded = codec
        .decode::<OrderPlaced>(message.payload())
        .await
        .unwrap();
    assert_eq!(decoded.event, sent);
    assert_eq!(decoded.schema_id, schema_id);
    let read =
        EventHeaders::from_pairs(message.headers().unwrap().iter().map(|h| (h.key, h.value)))
            .unwrap();
    assert_eq!(
        (read.id.as_str(), read.event_type.as_str()),
        (headers.id.as_str(), OrderPlaced::CE_TYPE)
    );
    assert_eq!(read.traceparent, headers.traceparent);

    // The schema was registered under the TopicNameStrategy subject.
    let subject: serde_json::Value = reqwest::get(format!(
        "{}/subjects/{topic}-value/versions/latest",
        registry.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(subject["id"], serde_json::json!(schema_id));
}

#[tokio::test]
async fn after_the_first_record_no_registry_request_is_needed() {
    let kafka = TestKafka::start();
    let mut registry = Registry::start_own(&kafka).await;
    let codec = codec(&registry.url);
    let topic = name("orders");
    let first = codec.encode(&topic, &order()).await.unwrap();
    codec.decode::<OrderPlaced>(Some(&first)).await.unwrap();
    registry.stop().await;
    // The registry is gone: encoding and decoding work from the cache alone.
    let again = order();
    let payload = codec.encode(&topic, &again).await.unwrap();
    assert_eq!(
        codec
            .decode::<OrderPlaced>(Some(&payload))
            .await
            .unwrap()
            .event,
        again
    );
    // A fresh codec has no cache and must report the outage as transient.
    let cold = self::codec(&codec.settings().registry_url);
    let err = cold
        .decode::<OrderPlaced>(Some(&payload))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::RegistryUnavailable { .. }),
        "{err}"
    );
    assert!(err.is_transient());
    let err = cold.encode(&topic, &again).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn undecodable_payloads_get_permanent_typed_errors() {
    let kafka = TestKafka::start();
    let registry = Registry::start(&kafka).await;
    let codec = codec(&registry.url);
    let topic = name("orders");
    let good = codec.encode(&topic, &order()).await.unwrap();

    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        ("tombstone", None, "no-payload"),
        (
            "json instead of avro",
            Some(br#"{"order_id":"x"}"#.to_vec()),
            "bad-magic-byte",
        ),
        ("header cut short", Some(vec![0, 0, 1]), "truncated-header"),
        (
            "unknown schema id",
            Some([&[0u8, 0x7f, 0xff, 0xff, 0xfe][..], &good[5..]].concat()),
            "unknown-schema-id",
        ),
        (
            "body cut short",
            Some(good[..good.len() - 6].to_vec()),
            "malformed-body",
        ),
    ];
    for (case, payload, class) in cases {
        let err = codec
            .decode::<OrderPlaced>(payload.as_deref())
            .await
            .unwrap_err();
        assert_eq!(err.class(), class, "{case}: {err}");
        assert!(!err.is_transient(), "{case} is the record's fault");
        assert!(!err.to_string().is_empty());
    }

    let confirmed = OrderConfirmed {
        order_id: uuid::Uuid::new_v4().to_string(),
        total_cents: 1,
        confirmed_at: 1,
        source_event_id: "e".into(),
    };
    let other = codec
        .encode(&name("confirmations"), &confirmed)
        .await
        .unwrap();
    let err = codec.decode::<OrderPlaced>(Some(&other)).await.unwrap_err();
    assert!(matches!(err, DecodeError::WrongEventType { .. }), "{err}");
    assert_eq!(
        codec
            .decode::<OrderConfirmed>(Some(&other))
            .await
            .unwrap()
            .event,
        confirmed
    );
}

#[tokio::test]
async fn records_written_with_a_newer_compatible_schema_still_decode() {
    let kafka = TestKafka::start();
    let registry = Registry::start(&kafka).await;
    let topic = name("orders");
    // A producer on a newer contract: one more field, with a default.
    let mut evolved: serde_json::Value = serde_json::from_str(OrderPlaced::SCHEMA_JSON).unwrap();
    evolved["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "channel", "type": "string", "default": "web"}));
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
        topic.clone(),
        false,
        SuppliedSchema::new(
            Some(OrderPlaced::FULL_NAME.into()),
            SchemaType::Avro,
            evolved.to_string(),
        ),
    );
    let encoder = AvroEncoder::new(SrSettings::new(registry.url.clone()));
    let sent = order();
    let mut value = apache_avro::to_value(&sent).unwrap();
    if let Value::Record(fields) = &mut value {
        fields.push(("channel".into(), Value::String("mobile".into())));
    }
    let payload = encoder.encode_value(value, &strategy).await.unwrap();
    let decoded = codec(&registry.url)
        .decode::<OrderPlaced>(Some(&payload))
        .await
        .unwrap();
    assert_eq!(decoded.event, sent);
}

#[tokio::test]
async fn subject_strategies_decide_where_the_schema_is_registered() {
    let kafka = TestKafka::start();
    let registry = Registry::start(&kafka).await;
    let topic = name("orders");
    for (strategy, subject) in [
        (
            SubjectStrategy::RecordName,
            OrderPlaced::FULL_NAME.to_owned(),
        ),
        (
            SubjectStrategy::TopicRecordName,
            format!("{topic}-{}", OrderPlaced::FULL_NAME),
        ),
    ] {
        let settings = CodecSettings {
            subject_strategy: strategy,
            ..CodecSettings::new(registry.url.clone())
        };
        let codec = EventCodec::new(settings).unwrap();
        assert_eq!(codec.subject_for::<OrderPlaced>(&topic), subject);
        let payload = codec.encode(&topic, &order()).await.unwrap();
        let found = reqwest::get(format!(
            "{}/subjects/{subject}/versions/latest",
            registry.url
        ))
        .await
        .unwrap();
        assert_eq!(
            found.status().as_u16(),
            200,
            "{strategy}: subject {subject}"
        );
        codec.decode::<OrderPlaced>(Some(&payload)).await.unwrap();
    }
    // UseLatest never registers: without a registered schema it is refused, not retried.
    let settings = CodecSettings {
        registration: kafkit_events::RegistrationMode::UseLatest,
        ..CodecSettings::new(registry.url.clone())
    };
    let err = EventCodec::new(settings)
        .unwrap()
        .encode(&name("unregistered"), &order())
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
}

/// kafkit's codec sends the configured basic credentials to a registry that
/// asks for them (as hosted registries do): encode and decode work with
/// them; without them the registry's refusal is the error.
#[tokio::test]
async fn the_codec_authenticates_to_a_registry_that_asks_for_credentials() {
    let registry = Application::build(RegistrySettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        storage: StorageSettings::Memory,
        users: schema_registry::Users {
            inline: vec![("svc".into(), "pw".into())],
            file: None,
        },
    })
    .await
    .unwrap()
    .spawn();
    let topic = name("orders");
    let authenticated = EventCodec::new(CodecSettings {
        basic_auth: Some(("svc".into(), "pw".into())),
        ..CodecSettings::new(registry.url.clone())
    })
    .unwrap();
    let placed = order();
    let bytes = authenticated.encode(&topic, &placed).await.unwrap();
    let decoded = authenticated
        .decode::<OrderPlaced>(Some(&bytes))
        .await
        .unwrap();
    assert_eq!(decoded.event, placed);
    let anonymous = EventCodec::new(CodecSettings::new(registry.url.clone())).unwrap();
    let refused = anonymous.encode(&topic, &placed).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    registry.stop().await.unwrap();
}
