//! `kafkit schemas` and `kafkit topics`, run as a user runs them.
#![allow(clippy::unwrap_used)]

use crate::support::kafkit;

use schema_registry::{
    Application as Registry, RegistrySettings, RunningRegistry, StorageSettings,
};
use std::net::SocketAddr;

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas");

// Multi-threaded: the registry serves on the runtime while the test blocks on the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_register_list_show_and_check_gates_an_incompatible_change() {
    let registry = RunningRegistry::in_memory().await.unwrap();
    let url = registry.url.clone();
    let at = ["--registry-url", url.as_str()];

    let (ok, text) = kafkit(&[&["schemas", "register", "--dir", SCHEMAS][..], &at].concat());
    assert!(ok, "{text}");
    assert!(
        text.contains("order-confirmations-value  version 1")
            && text.contains("orders-value  version 1"),
        "{text}"
    );
    let (ok, again) = kafkit(&[&["schemas", "register", "--dir", SCHEMAS][..], &at].concat());
    assert!(
        ok && again.contains("orders-value  version 1"),
        "registering again changes nothing: {again}"
    );

    let (ok, list) = kafkit(&[&["schemas", "list"][..], &at].concat());
    assert!(ok && list.contains("orders-value  version 1  id"), "{list}");
    let (ok, show) = kafkit(&[&["schemas", "show", "orders-value"][..], &at].concat());
    assert!(ok && show.contains("\"OrderPlaced\""), "{show}");
    let (ok, missing) = kafkit(&[&["schemas", "show", "nope-value"][..], &at].concat());
    assert!(!ok && missing.contains("not found"), "{missing}");

    let (ok, text) = kafkit(&[&["schemas", "check", "--dir", SCHEMAS][..], &at].concat());
    assert!(ok && text.contains("ok            orders-value"), "{text}");

    // A new required field breaks BACKWARD compatibility: the gate fails.
    let mut schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{SCHEMAS}/order_placed.avsc")).unwrap(),
    )
    .unwrap();
    schema["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "channel", "type": "string"}));
    let dir =
        std::env::temp_dir().join(format!("kafkit-schemas-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let breaking = dir.join("order_placed.avsc");
    std::fs::write(&breaking, schema.to_string()).unwrap();
    let (ok, text) = kafkit(&[&["schemas", "check", breaking.to_str().unwrap()][..], &at].concat());
    assert!(!ok, "an incompatible schema must fail the check: {text}");
    assert!(
        text.contains("INCOMPATIBLE  orders-value") && text.contains("BACKWARD"),
        "{text}"
    );
    // With a default it passes.
    schema["fields"].as_array_mut().unwrap().last_mut().unwrap()["default"] =
        serde_json::json!("web");
    std::fs::write(&breaking, schema.to_string()).unwrap();
    let (ok, text) = kafkit(&[&["schemas", "check", breaking.to_str().unwrap()][..], &at].concat());
    assert!(ok, "{text}");
    std::fs::remove_dir_all(dir).ok();
    let (ok, text) = kafkit(&["schemas", "list", "--registry-url", "http://127.0.0.1:9"]);
    assert!(
        !ok && text.contains("kafkit dev up"),
        "an unreachable registry says what to run: {text}"
    );
}

#[test]
fn topics_create_is_idempotent_and_lists_the_tiers() {
    let kafka = devstack::TestKafka::start();
    let bootstrap = kafka.bootstrap_servers();
    let topic = format!("orders-{}", uuid::Uuid::new_v4().simple());
    let create = [
        "topics",
        "create",
        topic.as_str(),
        "--partitions",
        "2",
        "--tiers",
        "2",
        "--bootstrap-servers",
        bootstrap,
    ];
    let (ok, first) = kafkit(&create);
    assert!(ok, "{first}");
    let (ok, second) = kafkit(&create);
    assert!(ok, "creating again is fine: {second}");
    let (ok, list) = kafkit(&["topics", "list", "--bootstrap-servers", bootstrap]);
    assert!(ok, "{list}");
    for name in [
        topic.clone(),
        format!("{topic}.retry.1"),
        format!("{topic}.retry.2"),
        format!("{topic}.dlq"),
    ] {
        assert!(
            list.contains(&format!("{name}  2 partitions")),
            "{name} in {list}"
        );
    }
}

#[test]
fn topics_describe_shows_offsets_and_the_lag_of_a_group_that_committed() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::Duration;

    // Memory storage: Tansu 0.6.0 with SQLite storage does not list a group
    // that committed offsets without ever joining.
    let kafka = devstack::TestKafka::start_on(devstack::Storage::Memory);
    let bootstrap = kafka.bootstrap_servers();
    let topic = format!("described-{}", uuid::Uuid::new_v4().simple());
    devstack::ensure_topic(bootstrap, &topic, 2).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for i in 0..5 {
        let key = format!("k{i}");
        producer
            .send(BaseRecord::to(&topic).partition(0).key(&key).payload("v"))
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
    // A group that has read two of partition 0's five records.
    let group = format!("billing-{}", uuid::Uuid::new_v4().simple());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut done = TopicPartitionList::new();
    done.add_partition_offset(&topic, 0, Offset::Offset(2))
        .unwrap();
    consumer.commit(&done, CommitMode::Sync).unwrap();

    let describe = [
        "topics",
        "describe",
        topic.as_str(),
        "--output",
        "json",
        "--bootstrap-servers",
        bootstrap,
    ];
    let (ok, text) = kafkit(&describe);
    assert!(ok, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["partitions"].as_array().unwrap().len(), 2, "{text}");
    let high = json["partitions"][0]["high"].as_i64().unwrap();
    assert!(high >= 2, "{text}");
    let groups = json["groups"].as_array().unwrap();
    let ours = groups
        .iter()
        .find(|g| g["group"] == group.as_str())
        .unwrap_or_else(|| panic!("{group} not in {text}"));
    assert_eq!(ours["partitions"][0]["committed"], 2, "{text}");
    assert_eq!(ours["partitions"][0]["lag"], high - 2, "{text}");
    assert!(ours["partitions"][1]["committed"].is_null(), "{text}");

    let (ok, table) = kafkit(&[&describe[..3], &describe[5..]].concat());
    assert!(ok && table.contains(&group), "{table}");
    let (ok, missing) = kafkit(&[
        "topics",
        "describe",
        "nope",
        "--bootstrap-servers",
        bootstrap,
    ]);
    assert!(!ok && missing.contains("does not exist"), "{missing}");
}

#[test]
fn an_unreachable_broker_is_named_with_what_to_run() {
    let nobody = format!("127.0.0.1:{}", devstack::free_port().unwrap());
    let commands = [
        &["dlq", "watch", "orders.dlq"][..],
        &["dlq", "inspect", "orders.dlq"],
        &["topics", "describe", "orders"],
    ];
    // In parallel: each waits out the client's 10 s metadata timeout.
    let outcomes: Vec<(bool, String)> = std::thread::scope(|scope| {
        let running: Vec<_> = commands
            .iter()
            .map(|command| {
                let args = [*command, &["--bootstrap-servers", nobody.as_str()]].concat();
                scope.spawn(move || kafkit(&args))
            })
            .collect();
        running.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (command, (ok, text)) in commands.iter().zip(outcomes) {
        assert!(!ok, "{command:?} must fail: {text}");
        assert!(
            text.contains(&format!("could not reach Kafka at {nobody}"))
                && text.contains("kafkit dev up"),
            "{command:?}: {text}"
        );
        assert!(
            !text.contains("librdkafka"),
            "no client library noise: {text}"
        );
    }
}

/// A registry that asks for credentials (as hosted ones do): `kafkit
/// schemas` sends them from `--registry-user`/`--registry-password` (or
/// `SCHEMA_REGISTRY_BASIC_AUTH_*`), and without them says which flags to pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_commands_send_the_registry_credentials() {
    let registry = Registry::build(RegistrySettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        storage: StorageSettings::Memory,
        users: schema_registry::Users {
            inline: vec![("ci".into(), "pw".into())],
            file: None,
        },
    })
    .await
    .unwrap()
    .spawn();
    let url = registry.url.clone();
    let (ok, text) = kafkit(&["schemas", "list", "--registry-url", &url]);
    assert!(!ok, "{text}");
    assert!(text.contains("--registry-user"), "{text}");
    let with = [
        "--registry-url",
        url.as_str(),
        "--registry-user",
        "ci",
        "--registry-password",
        "pw",
    ];
    let (ok, text) = kafkit(&[&["schemas", "register", "--dir", SCHEMAS][..], &with].concat());
    assert!(ok && text.contains("orders-value  version 1"), "{text}");
    let (ok, text) = kafkit(&[&["schemas", "list"][..], &with].concat());
    assert!(ok && text.contains("orders-value  version 1"), "{text}");
    registry.stop().await.unwrap();
}
