//! The registry keeps its state in a compacted Kafka topic on a real broker.
#![allow(clippy::unwrap_used)]

use crate::support::{random_name, record, spawn_on_kafka, spawn_with};
use devstack::TestKafka;
use schema_registry::{KafkaStoreSettings, StorageSettings};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_restarted_registry_has_the_same_schemas_ids_config_and_deletions() {
    let kafka = TestKafka::start();
    let topic = random_name("_schemas");
    let v1 = record("Order", r#"{"name":"id","type":"string"}"#);
    let v2 = record(
        "Order",
        r#"{"name":"id","type":"string"},{"name":"n","type":"int","default":0}"#,
    );
    let gone = record("Gone", r#"{"name":"g","type":"string"}"#);

    let app = spawn_on_kafka(&kafka, &topic).await;
    let id1 = app.register_ok("orders-value", &v1).await;
    let id2 = app.register_ok("orders-value", &v2).await;
    assert_eq!(app.register_ok("mirror-value", &v1).await, id1);
    app.set_level("orders-value", "FULL_TRANSITIVE").await;
    assert_eq!(
        app.put("/config", json!({"compatibility": "FORWARD"}))
            .await
            .status,
        200
    );
    assert_eq!(app.delete("/subjects/mirror-value").await.status, 200);
    let gone_id = app.register_ok("gone-value", &gone).await;
    app.delete("/subjects/gone-value").await;
    assert_eq!(
        app.delete("/subjects/gone-value?permanent=true")
            .await
            .status,
        200
    );
    let before = (
        app.get("/subjects?deleted=true").await.body,
        app.get("/subjects/orders-value/versions/2").await.body,
        app.get("/subjects/mirror-value/versions?deleted=true")
            .await
            .body,
    );
    app.stop().await;

    let restarted = spawn_on_kafka(&kafka, &topic).await;
    let after = (
        restarted.get("/subjects?deleted=true").await.body,
        restarted
            .get("/subjects/orders-value/versions/2")
            .await
            .body,
        restarted
            .get("/subjects/mirror-value/versions?deleted=true")
            .await
            .body,
    );
    assert_eq!(after, before);
    assert_eq!(after.0, json!(["mirror-value", "orders-value"]));
    assert_eq!(
        restarted.get(&format!("/schemas/ids/{id2}")).await.body,
        json!({ "schema": v2 })
    );
    assert_eq!(
        restarted.get("/subjects").await.body,
        json!(["orders-value"]),
        "soft delete survived"
    );
    assert_eq!(
        restarted.get("/config").await.body,
        json!({"compatibilityLevel": "FORWARD"})
    );
    assert_eq!(
        restarted.get("/config/orders-value").await.body,
        json!({"compatibilityLevel": "FULL_TRANSITIVE"})
    );
    restarted
        .get(&format!("/schemas/ids/{gone_id}"))
        .await
        .assert_error(404, 40403);
    // Ids are never handed out twice, even after a permanent delete and a restart.
    let next = restarted
        .register_ok("new-value", &record("New", r#"{"name":"x","type":"long"}"#))
        .await;
    assert!(
        next > gone_id && next > id2,
        "{next} must be above {gone_id} and {id2}"
    );
}

#[tokio::test]
async fn registries_on_different_topics_do_not_see_each_other() {
    let kafka = TestKafka::start();
    let a = spawn_on_kafka(&kafka, &random_name("_schemas")).await;
    let b = spawn_on_kafka(&kafka, &random_name("_schemas")).await;
    a.register_ok("only-in-a", &record("A", r#"{"name":"x","type":"int"}"#))
        .await;
    assert_eq!(b.get("/subjects").await.body, json!([]));
    assert_eq!(b.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn when_the_broker_cannot_take_a_write_the_change_is_refused_and_not_applied() {
    let broker = TestKafka::own_broker();
    let store = KafkaStoreSettings {
        topic: random_name("_schemas"),
        timeout: Duration::from_secs(3),
        ..KafkaStoreSettings::new(broker.bootstrap_servers())
    };
    let app = spawn_with(StorageSettings::Kafka(store)).await;
    drop(broker);

    let schema = record("R", r#"{"name":"x","type":"int"}"#);
    app.register("s", &schema).await.assert_error(500, 50001);
    assert_eq!(
        app.get("/subjects").await.body,
        json!([]),
        "an unacknowledged change must not be visible"
    );
    app.get("/readyz").await.assert_error(503, 50300);
}

#[tokio::test]
async fn replay_reads_every_record_of_a_multi_record_batch() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use schema_registry::records::{LogRecord, SchemaRecord};

    let kafka = TestKafka::start();
    let topic = random_name("_schemas");
    devstack::ensure_topic(kafka.bootstrap_servers(), &topic, 1).unwrap();
    // Another writer's records, sent together so the producer batches them
    // (Tansu 0.6.0 then reports a high watermark below the last offset).
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("linger.ms", "100")
        .create()
        .unwrap();
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, subject)| {
            LogRecord::Schema(SchemaRecord {
                subject: (*subject).to_owned(),
                version: 1,
                id: u32::try_from(i).unwrap() + 1,
                schema: record(&subject.to_uppercase(), r#"{"name":"x","type":"int"}"#),
                deleted: false,
            })
            .to_kafka()
        })
        .collect();
    let sends = records.iter().map(|(key, value)| {
        let message = FutureRecord::to(&topic)
            .partition(0)
            .key(key)
            .payload(value.as_ref().unwrap());
        producer.send(message, Duration::from_secs(5))
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e).unwrap();
    }
    let app = spawn_on_kafka(&kafka, &topic).await;
    assert_eq!(app.get("/subjects").await.body, json!(["a", "b", "c"]));
    assert_eq!(
        app.register_ok("d", &record("D", r#"{"name":"y","type":"int"}"#))
            .await,
        4
    );
}

/// Compaction keeps the last record of each key and, after a while, drops
/// tombstones with the records they delete. Tansu does not compact, so the
/// test does it: the registry's topic is copied as compaction would leave it
/// and a registry started on the copy. The id of a permanently deleted
/// schema is still never handed out again; nor is the id an unreadable
/// record names.
#[tokio::test]
async fn ids_of_deleted_and_unreadable_schemas_are_not_reused_after_compaction() {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Offset, TopicPartitionList};

    let kafka = TestKafka::start();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let topic = random_name("_schemas");
    let app = spawn_on_kafka(&kafka, &topic).await;
    let kept = app
        .register_ok(
            "kept-value",
            &record("Kept", r#"{"name":"k","type":"string"}"#),
        )
        .await;
    let gone = app
        .register_ok(
            "gone-value",
            &record("Gone", r#"{"name":"g","type":"string"}"#),
        )
        .await;
    app.delete("/subjects/gone-value").await;
    assert_eq!(
        app.delete("/subjects/gone-value?permanent=true")
            .await
            .status,
        200
    );
    app.stop().await;

    // Read the whole topic, keep the last value of each key, drop tombstones.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", random_name("compactor"))
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut last: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut quiet = 0;
    while quiet < 4 {
        match consumer.poll(Duration::from_millis(300)) {
            Some(message) => {
                let message = message.unwrap();
                let key = message.key().unwrap().to_vec();
                last.retain(|(k, _)| *k != key);
                last.push((key, message.payload().map(<[u8]>::to_vec)));
                quiet = 0;
            }
            None => quiet += 1,
        }
    }
    let compacted = random_name("_schemas-compacted");
    devstack::ensure_topic(&bootstrap, &compacted, 1).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut copied = 0;
    for (key, value) in last.iter().filter_map(|(k, v)| Some((k, v.as_ref()?))) {
        let message = FutureRecord::to(&compacted)
            .partition(0)
            .key(key)
            .payload(value);
        producer
            .send(message, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        copied += 1;
    }
    eprintln!(
        "{} records on the topic, {copied} left by compaction",
        last.len()
    );

    let restarted = spawn_on_kafka(&kafka, &compacted).await;
    assert_eq!(restarted.get("/subjects").await.body, json!(["kept-value"]));
    let next = restarted
        .register_ok("new-value", &record("New", r#"{"name":"x","type":"long"}"#))
        .await;
    assert!(
        next > gone && next > kept,
        "{next} must be above {gone} (deleted) and {kept}"
    );
    restarted.stop().await;

    // And a schema record from some future layout this registry cannot read.
    let future_id = next + 5;
    let unreadable =
        serde_json::json!({"subject": "future-value", "id": future_id, "schemaType": 7});
    producer
        .send(
            FutureRecord::to(&compacted)
                .partition(0)
                .key(
                    br#"{"keytype":"SCHEMA","subject":"future-value","version":"one","magic":1}"#
                        .as_slice(),
                )
                .payload(&serde_json::to_vec(&unreadable).unwrap()),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let restarted = spawn_on_kafka(&kafka, &compacted).await;
    let after = restarted
        .register_ok(
            "newer-value",
            &record("Newer", r#"{"name":"y","type":"long"}"#),
        )
        .await;
    assert!(
        after > future_id,
        "{after} must be above {future_id}, named by a record this registry cannot read"
    );
}

/// A second registry on the same topic claims it: the first one is fenced
/// (refuses writes with 503 / 50003 naming the other, `/readyz` 503, reads
/// still answered), the second writes with ids above the first's.
#[tokio::test]
async fn a_second_instance_on_the_same_topic_fences_the_first() {
    let (kafka, topic, first, one) = registry_with_a_schema().await;
    let second = spawn_on_kafka(&kafka, &topic).await;
    let refused = first
        .register("b-value", &record("B", r#"{"name":"b","type":"string"}"#))
        .await;
    let message = refused.assert_error(503, 50003);
    assert!(message.contains("fenced"), "{message}");
    assert!(message.contains("claimed the topic after it"), "{message}");
    assert_eq!(first.get("/readyz").await.status, 503);
    assert_eq!(
        first.get("/subjects").await.body,
        json!(["a-value"]),
        "reads still answered"
    );
    let two = second
        .register_ok("b-value", &record("B", r#"{"name":"b","type":"string"}"#))
        .await;
    assert!(two > one, "{two} after {one}");
    assert_eq!(second.get("/readyz").await.status, 200);
    first.stop().await;
    second.stop().await;
}

/// A record on the topic this instance has not applied (its own write whose
/// acknowledgement was lost looks exactly like this) is read back before
/// the next change is planned: the next id is above the one it took.
#[tokio::test]
async fn a_record_written_behind_the_registrys_back_is_read_before_the_next_id() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use schema_registry::records::{LogRecord, SchemaRecord};

    let (kafka, topic, app, first) = registry_with_a_schema().await;
    let landed = LogRecord::Schema(SchemaRecord {
        subject: "lost-ack-value".into(),
        version: 1,
        id: u32::try_from(first).unwrap() + 1,
        schema: record("Lost", r#"{"name":"l","type":"string"}"#),
        deleted: false,
    });
    let (key, value) = landed.to_kafka();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&topic)
                .partition(0)
                .key(&key)
                .payload(value.as_ref().unwrap()),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let next = app
        .register_ok("b-value", &record("B", r#"{"name":"b","type":"string"}"#))
        .await;
    assert_eq!(next, first + 2, "not {} again", first + 1);
    assert_eq!(
        app.get("/subjects").await.body,
        json!(["a-value", "b-value", "lost-ack-value"])
    );
    app.stop().await;
}

/// A broker, a registry on a topic of its own, and one schema registered
/// (`a-value`): the start of the tests of one topic written by several.
async fn registry_with_a_schema() -> (TestKafka, String, crate::support::TestApp, u64) {
    let kafka = TestKafka::start();
    let topic = random_name("_schemas");
    let app = spawn_on_kafka(&kafka, &topic).await;
    let id = app
        .register_ok("a-value", &record("A", r#"{"name":"a","type":"string"}"#))
        .await;
    (kafka, topic, app, id)
}
