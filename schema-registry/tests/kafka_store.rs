//! The registry keeps its state in a compacted Kafka topic on a real broker.
#![allow(clippy::unwrap_used)]

mod support;

use devstack::TestKafka;
use schema_registry::{KafkaStoreSettings, StorageSettings};
use serde_json::json;
use std::time::Duration;
use support::{random_name, record, spawn_on_kafka, spawn_with};

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
