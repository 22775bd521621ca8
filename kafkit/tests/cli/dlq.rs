//! `kafkit dlq inspect` and `kafkit dlq replay`, run as a user runs them,
//! against dead letters a real consumer-service wrote.
#![allow(clippy::unwrap_used)]

use crate::support::kafkit;

use clap::Parser;
use devstack::TestKafka;
use kafkit_events::{CodecSettings, EventCodec, EventHeaders};
use kafkit_messaging::headers as h;
use kafkit_messaging::{KafkaSettings, OutgoingRecord, ProducerSettings, Publisher};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schema_registry::testing::Stack;
use shared_events::{OrderItem, OrderPlaced};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn order(sku: &str, currency: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: uuid::Uuid::new_v4().to_string(),
        customer_id: "c".into(),
        items: vec![OrderItem {
            sku: sku.into(),
            quantity: 1,
            unit_price_cents: 100,
        }],
        currency: currency.into(),
        placed_at: 1,
        note: None,
    }
}

/// All records of `topic` once `want` arrived (or `within` passed) and it went quiet.
async fn read(bootstrap: &str, topic: &str, want: usize, within: Duration) -> Vec<OwnedMessage> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", name("reader"))
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(5)))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + within;
        let (mut out, mut quiet) = (Vec::new(), 0);
        while (out.len() < want && Instant::now() < deadline) || (out.len() >= want && quiet < 3) {
            match consumer.poll(Duration::from_millis(300)) {
                Some(m) => {
                    out.push(m.unwrap().detach());
                    quiet = 0;
                }
                None if out.len() >= want => quiet += 1,
                None => {}
            }
        }
        out
    })
    .await
    .unwrap()
}

fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .map(|h| String::from_utf8_lossy(h.value.unwrap()).into_owned())
}

pub(crate) async fn spawn_consumer(
    bootstrap: &str,
    registry: &str,
    topic: &str,
    output: &str,
    group: &str,
    faults: &str,
) -> Running {
    let settings = consumer_service::Settings::parse_from([
        "consumer-service",
        "--listen",
        "127.0.0.1:0",
        "--topic",
        topic,
        "--output-topic",
        output,
        "--group",
        group,
        "--bootstrap-servers",
        bootstrap,
        "--registry-url",
        registry,
        "--faults",
        faults,
        // Each consumer of a test is the same static member restarted (as
        // a deployment's pod is): it gets the partitions back at once.
        "--group-instance-id",
        group,
    ]);
    let app = consumer_service::service(settings).build().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

pub(crate) struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops and waits, so the group sees the member leave.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn dead_letters_are_inspected_by_class_and_replayed_once_byte_for_byte() {
    let stack = Stack::start().await;
    let (kafka, registry) = (&stack.kafka, &stack.registry);
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let (topic, output, group) = (name("orders"), name("confirmations"), name("group"));
    let dlq = format!("{topic}.dlq");
    let first = spawn_consumer(
        &bootstrap,
        &registry.url,
        &topic,
        &output,
        &group,
        "FIXME:permanent",
    )
    .await;

    let codec = EventCodec::new(CodecSettings::new(registry.url.clone())).unwrap();
    let publisher = Publisher::new(
        &KafkaSettings::new(&bootstrap),
        &ProducerSettings::default(),
    )
    .unwrap();
    for placed in [
        order("FIXME-1", "EUR"),
        order("FIXME-2", "EUR"),
        order("BOOK-1", "JPY"),
    ] {
        let headers = EventHeaders::new::<OrderPlaced>("/test");
        let payload = codec.encode(&topic, &placed).await.unwrap();
        let record = OutgoingRecord::event(&topic, placed.order_id.as_bytes(), payload, &headers);
        publisher.publish(&record).await.unwrap();
    }
    let dead = read(&bootstrap, &dlq, 3, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 3);
    first.stop().await;

    // inspect: JSON lines filtered by class, then a summary line.
    let (ok, text) = kafkit(&[
        "dlq",
        "inspect",
        &dlq,
        "--class",
        "injected-permanent",
        "--output",
        "json",
        "--bootstrap-servers",
        &bootstrap,
    ]);
    assert!(ok, "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[..2]
            .iter()
            .all(|l| l["error_class"] == "injected-permanent"
                && l["original_topic"] == topic.as_str())
    );
    assert_eq!(lines[2]["total"], 2);
    let (ok, table) = kafkit(&["dlq", "inspect", &dlq, "--bootstrap-servers", &bootstrap]);
    assert!(
        ok && table.contains("3 dead letters") && table.contains("unsupported-currency"),
        "{table}"
    );

    // dry run: says what would move, moves nothing.
    let replay = [
        "dlq",
        "replay",
        &dlq,
        "--class",
        "injected-permanent",
        "--bootstrap-servers",
        &bootstrap,
    ];
    let (ok, text) = kafkit(&[&replay[..], &["--dry-run"]].concat());
    assert!(ok && text.contains("2 would move"), "{text}");
    assert_eq!(
        read(&bootstrap, &topic, 3, Duration::from_secs(10))
            .await
            .len(),
        3,
        "a dry run moves nothing"
    );

    let (ok, text) = kafkit(&replay);
    assert!(ok && text.contains("2 moved, 1 skipped"), "{text}");
    let all = read(&bootstrap, &topic, 5, Duration::from_secs(10)).await;
    let replayed: Vec<&OwnedMessage> = all
        .iter()
        .filter(|m| header(m, "kafkit.replay.from").is_some())
        .collect();
    assert_eq!(replayed.len(), 2);
    for message in &replayed {
        let from = header(message, "kafkit.replay.from").unwrap();
        let original = dead
            .iter()
            .find(|d| format!("{}/{}/{}", d.topic(), d.partition(), d.offset()) == from)
            .unwrap();
        assert_eq!(message.key(), original.key(), "key byte for byte");
        assert_eq!(message.payload(), original.payload(), "value byte for byte");
        assert!(header(message, "kafkit.replay.at").is_some());
        assert!(
            header(message, "kafkit.error.class").is_none(),
            "failure headers removed"
        );
        assert_eq!(
            header(message, "ce_id"),
            header(original, "ce_id"),
            "other headers kept"
        );
    }
    // A second run remembers and sends nothing; nothing was deleted from the DLQ.
    let (ok, text) = kafkit(&replay);
    assert!(ok && text.contains("0 moved"), "{text}");
    assert_eq!(
        read(&bootstrap, &dlq, 3, Duration::from_secs(10))
            .await
            .len(),
        3
    );

    // The fix is deployed where the replay sends them: they now succeed.
    let fixed = name("orders-fixed");
    let second = spawn_consumer(
        &bootstrap,
        &registry.url,
        &fixed,
        &output,
        &name("group"),
        "",
    )
    .await;
    let (ok, text) = kafkit(&[&replay[..], &["--to", &fixed]].concat());
    assert!(ok && text.contains("2 moved"), "{text}");
    assert_eq!(
        read(&bootstrap, &output, 2, Duration::from_secs(30))
            .await
            .len(),
        2,
        "both confirmed"
    );
    second.stop().await;
}

#[tokio::test]
async fn watch_shows_dead_letters_of_every_convention_that_arrive_after_it_starts() {
    let stack = Stack::start().await;
    let (kafka, registry) = (&stack.kafka, &stack.registry);
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let dlq = name("orders.dlq");
    let (servers, topic) = (bootstrap.clone(), dlq.clone());
    tokio::task::spawn_blocking(move || devstack::ensure_topic(&servers, &topic, 1).unwrap())
        .await
        .unwrap();
    let watcher = std::process::Command::new(env!("CARGO_BIN_EXE_kafkit"))
        .args([
            "dlq",
            "watch",
            &dlq,
            "--output",
            "json",
            "--idle-exit-secs",
            "6",
        ])
        .args([
            "--bootstrap-servers",
            &bootstrap,
            "--registry-url",
            &registry.url,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Give it time to join before anything arrives (it starts at the end).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let codec = EventCodec::new(CodecSettings::new(registry.url.clone())).unwrap();
    let publisher = Publisher::new(
        &KafkaSettings::new(&bootstrap),
        &ProducerSettings::default(),
    )
    .unwrap();
    let placed = order("BOOK-1", "JPY");
    let send = |key: &str, payload: Vec<u8>, headers: Vec<(&str, Vec<u8>)>| OutgoingRecord {
        topic: dlq.clone(),
        partition: None,
        key: Some(key.as_bytes().to_vec()),
        payload: Some(payload),
        headers: headers
            .into_iter()
            .map(|(n, v)| (n.to_owned().into(), v))
            .collect(),
    };
    let records = [
        send(
            "k-kafkit",
            codec.encode("orders", &placed).await.unwrap(),
            vec![
                ("kafkit.original.topic", b"orders".to_vec()),
                ("kafkit.original.partition", b"2".to_vec()),
                ("kafkit.original.offset", b"40".to_vec()),
                ("kafkit.attempt", b"1".to_vec()),
                ("kafkit.error.class", b"unsupported-currency".to_vec()),
                (
                    "kafkit.error.message",
                    b"currency JPY is not accepted".to_vec(),
                ),
            ],
        ),
        send(
            "k-spring",
            b"not avro".to_vec(),
            vec![
                ("kafka_dlt-original-topic", b"payments".to_vec()),
                ("kafka_dlt-original-partition", 3i32.to_be_bytes().to_vec()),
                ("kafka_dlt-original-offset", 77i64.to_be_bytes().to_vec()),
                (
                    "kafka_dlt-exception-fqcn",
                    b"java.lang.IllegalStateException".to_vec(),
                ),
                ("kafka_dlt-exception-message", b"boom".to_vec()),
            ],
        ),
        send(
            "k-connect",
            b"{}".to_vec(),
            vec![
                ("__connect.errors.topic", b"sink-in".to_vec()),
                ("__connect.errors.partition", b"0".to_vec()),
                ("__connect.errors.offset", b"5".to_vec()),
                (
                    "__connect.errors.exception.class.name",
                    b"org.apache.kafka.connect.errors.DataException".to_vec(),
                ),
                ("__connect.errors.exception.message", b"bad json".to_vec()),
            ],
        ),
    ];
    for record in &records {
        publisher.publish(record).await.unwrap();
    }
    let output = tokio::task::spawn_blocking(move || watcher.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["convention"], "kafkit");
    assert_eq!(lines[0]["error_class"], "unsupported-currency");
    assert_eq!(lines[0]["original_offset"], 40);
    assert_eq!(
        lines[0]["value"]["json"]["order_id"],
        placed.order_id.as_str(),
        "decoded through the registry"
    );
    assert_eq!(lines[0]["value"]["json"]["currency"], "JPY");
    assert_eq!(lines[1]["convention"], "spring-kafka");
    assert_eq!(
        (
            lines[1]["original_topic"].clone(),
            lines[1]["original_partition"].clone()
        ),
        (serde_json::json!("payments"), serde_json::json!(3))
    );
    assert_eq!(lines[1]["original_offset"], 77);
    assert_eq!(lines[1]["error_class"], "java.lang.IllegalStateException");
    assert_eq!(lines[1]["value"]["class"], "bad-magic-byte");
    assert_eq!(
        lines[1]["value"]["hex"], "6e6f74206176726f",
        "undecodable bytes shown as hex"
    );
    assert_eq!(lines[2]["convention"], "kafka-connect");
    assert_eq!(lines[2]["original_topic"], "sink-in");
    assert_eq!(lines[2]["error_message"], "bad json");
}

/// Writes `count` kafkit dead letters of `topic` to `<topic>.dlq`, one
/// partition; returns their DLQ coordinates as `replay.from` writes them.
async fn park(bootstrap: &str, topic: &str, count: usize) -> Vec<String> {
    let dlq = format!("{topic}.dlq");
    let (b, t, d) = (bootstrap.to_owned(), topic.to_owned(), dlq.clone());
    tokio::task::spawn_blocking(move || {
        devstack::ensure_topic(&b, &t, 1).unwrap();
        devstack::ensure_topic(&b, &d, 1).unwrap();
    })
    .await
    .unwrap();
    let publisher =
        Publisher::new(&KafkaSettings::new(bootstrap), &ProducerSettings::default()).unwrap();
    let mut parked = Vec::new();
    for i in 0..count {
        let record = OutgoingRecord {
            topic: dlq.clone(),
            partition: Some(0),
            key: Some(format!("key-{i}").into_bytes()),
            payload: Some(format!("value-{i}").into_bytes()),
            headers: vec![
                (h::ORIGINAL_TOPIC.into(), topic.as_bytes().to_vec()),
                (h::ORIGINAL_PARTITION.into(), b"0".to_vec()),
                (h::ORIGINAL_OFFSET.into(), i.to_string().into_bytes()),
                (h::ERROR_CLASS.into(), b"parked".to_vec()),
            ],
        };
        let at = publisher.publish(&record).await.unwrap();
        parked.push(format!("{dlq}/0/{}", at.offset));
    }
    parked
}

/// The offset `group` committed on partition 0 of `topic` (0 if none).
async fn remembered(bootstrap: &str, group: &str, topic: &str) -> i64 {
    devstack::read::committed_offsets(bootstrap, group, topic, 1).await[0].max(0)
}

/// How often each dead letter arrived back on `topic`.
async fn replayed(bootstrap: &str, topic: &str, want: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for record in read(bootstrap, topic, want, Duration::from_secs(20)).await {
        *seen
            .entry(header(&record, "kafkit.replay.from").unwrap())
            .or_insert(0) += 1;
    }
    seen
}

/// A replay stopped half way, by Ctrl-C or by SIGKILL, and run again sends
/// every dead letter, and sends again nothing the broker had acknowledged
/// and the replay had remembered (a SIGKILL between the two can repeat the
/// one record in between; Ctrl-C stops between records).
#[tokio::test]
async fn an_interrupted_replay_run_again_goes_on_where_it_stopped() {
    let kafka = TestKafka::start();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    for signal in ["TERM", "KILL"] {
        let topic = name("parked");
        let parked = park(&bootstrap, &topic, 30).await;
        let group = name("replay");
        let args = [
            "dlq",
            "replay",
            &format!("{topic}.dlq"),
            "--group",
            &group,
            "--bootstrap-servers",
            &bootstrap,
        ];
        // Slowly, so it is stopped half way; the pace is not part of what
        // the replay remembers (topic, filter, destination are).
        let first = std::process::Command::new(env!("CARGO_BIN_EXE_kafkit"))
            .args(args)
            .args(["--rate", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Stopped once some, not all, went back.
        let started = Instant::now();
        while remembered(&bootstrap, &group, &format!("{topic}.dlq")).await < 5 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the first replay sent nothing"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("{signal} sent {:?} after the start", started.elapsed());
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &first.id().to_string()])
            .status()
            .unwrap();
        let output = first.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        let before = replayed(&bootstrap, &topic, 0).await;
        assert!(
            before.len() < parked.len(),
            "{signal}: stopped before the end; it said: {said}"
        );
        if signal == "TERM" {
            assert!(said.contains("stopped after"), "{said}");
        }

        let (ok, text) = kafkit(&args);
        assert!(ok, "{text}");
        let after = replayed(&bootstrap, &topic, parked.len()).await;
        let mut keys: Vec<&String> = after.keys().collect();
        keys.sort();
        let mut want: Vec<&String> = parked.iter().collect();
        want.sort();
        assert_eq!(keys, want, "{signal}: every dead letter went back");
        let twice: Vec<_> = after.iter().filter(|(_, n)| **n > 1).collect();
        let allowed = if signal == "TERM" { 0 } else { 1 };
        assert!(
            twice.len() <= allowed,
            "{signal}: sent twice {twice:?} (the second run said: {text})"
        );
        eprintln!(
            "{signal}: {} sent before the stop, {} sent twice",
            before.len(),
            twice.len()
        );
    }
}

/// A record whose header name is not UTF-8 (written by hand: rdkafka cannot
/// write one, and its reader panics on one) does not crash `tail`,
/// `dlq inspect` or `dlq replay` (nor print a panic): each reads on, and a
/// replay moves the record byte for byte. (`dlq watch` reads records with
/// the same function as `inspect`.)
#[tokio::test]
async fn a_header_name_that_is_not_utf8_crashes_no_command() {
    let kafka = TestKafka::start();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let topic = name("parked");
    let dlq = format!("{topic}.dlq");
    let (b, t, d) = (bootstrap.clone(), topic.clone(), dlq.clone());
    tokio::task::spawn_blocking(move || {
        devstack::ensure_topic(&b, &t, 1).unwrap();
        devstack::ensure_topic(&b, &d, 1).unwrap();
        let record = devstack::raw::RawRecord {
            key: Some(b"k".to_vec()),
            value: Some(b"the value".to_vec()),
            headers: vec![
                (h::ORIGINAL_TOPIC.as_bytes().to_vec(), t.as_bytes().to_vec()),
                (h::ERROR_CLASS.as_bytes().to_vec(), b"parked".to_vec()),
                (b"x-\xff-name".to_vec(), b"v".to_vec()),
            ],
        };
        devstack::raw::produce(&b, &d, 0, &record).unwrap();
    })
    .await
    .unwrap();
    let (ok, text) = kafkit(&[
        "tail",
        &dlq,
        "--idle-exit-secs",
        "3",
        "--bootstrap-servers",
        &bootstrap,
    ]);
    assert!(ok, "tail: {text}");
    assert!(!text.contains("panicked"), "tail: {text}");
    let (ok, text) = kafkit(&[
        "dlq",
        "inspect",
        &dlq,
        "--output",
        "json",
        "--bootstrap-servers",
        &bootstrap,
    ]);
    assert!(ok, "inspect: {text}");
    assert!(!text.contains("panicked"), "inspect: {text}");
    assert!(text.contains("\"total\":1"), "inspect: {text}");
    let (ok, text) = kafkit(&["dlq", "replay", &dlq, "--bootstrap-servers", &bootstrap]);
    assert!(ok, "replay: {text}");
    assert!(text.contains("1 moved"), "replay: {text}");
    let back = read(&bootstrap, &topic, 1, Duration::from_secs(20)).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].payload(), Some(&b"the value"[..]));
}

/// `dlq export` writes every byte of each dead letter as JSON lines that
/// `dlq import` writes back byte for byte (a line it cannot read is named,
/// the others still go); `dlq edit` opens `$EDITOR` on the decoded payload
/// and replays the correction, marked edited, or names the refused field
/// and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_export_import_byte_for_byte_and_an_edit_is_replayed() {
    let stack = Stack::start().await;
    let bootstrap = stack.bootstrap().to_owned();
    let orig = name("orders");
    let (dlq, copy) = (format!("{orig}.dlq"), name("copy.dlq"));
    for topic in [orig.clone(), dlq.clone(), copy.clone()] {
        let servers = bootstrap.clone();
        tokio::task::spawn_blocking(move || devstack::ensure_topic(&servers, &topic, 1).unwrap())
            .await
            .unwrap();
    }
    let codec = EventCodec::new(CodecSettings::new(stack.registry.url.clone())).unwrap();
    let publisher = Publisher::new(
        &KafkaSettings::new(&bootstrap),
        &ProducerSettings::default(),
    )
    .unwrap();
    let letter = |key: &str, payload: Vec<u8>, extra: Vec<(&str, Vec<u8>)>| OutgoingRecord {
        topic: dlq.clone(),
        partition: Some(0),
        key: Some(key.as_bytes().to_vec()),
        payload: Some(payload),
        headers: [
            ("kafkit.original.topic", orig.as_bytes().to_vec()),
            ("kafkit.error.class", b"unsupported-currency".to_vec()),
        ]
        .into_iter()
        .chain(extra)
        .map(|(n, v)| (n.to_owned().into(), v))
        .collect(),
    };
    let (first, second) = (order("BOOK-1", "JPY"), order("BOOK-2", "JPY"));
    for record in [
        letter(
            &first.order_id,
            codec.encode(&orig, &first).await.unwrap(),
            vec![("binary", vec![0, 255, 7])],
        ),
        letter(
            &second.order_id,
            codec.encode(&orig, &second).await.unwrap(),
            vec![],
        ),
        letter("garbage", b"\x07not avro".to_vec(), vec![]),
    ] {
        publisher.publish(&record).await.unwrap();
    }
    let run = |args: &[&str], editor: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kafkit"));
        command.args(args).args(["--bootstrap-servers", &bootstrap]);
        if let Some(editor) = editor {
            command.env("EDITOR", editor).env_remove("VISUAL");
        }
        let out = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };

    // Export, then import into another topic: the same records, byte for byte.
    let file = std::env::temp_dir().join(format!("{}.jsonl", name("dead")));
    let (ok, text) = run(
        &["dlq", "export", &dlq, "--out", &file.to_string_lossy()],
        None,
    );
    assert!(ok && text.contains("3 dead letters exported"), "{text}");
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 3);
    let (ok, text) = run(
        &["dlq", "import", &copy, "--in", &file.to_string_lossy()],
        None,
    );
    assert!(ok && text.contains("3 imported, 0 failed"), "{text}");
    // Key, value and headers of each record, in order.
    type Shape = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);
    let shape = |records: Vec<devstack::read::Read>| -> Vec<Shape> {
        records
            .iter()
            .map(|r| {
                (
                    r.key().map(<[u8]>::to_vec),
                    r.payload().map(<[u8]>::to_vec),
                    r.headers.clone(),
                )
            })
            .collect()
    };
    let wait = Duration::from_secs(20);
    assert_eq!(
        shape(devstack::read::read_topic(&bootstrap, &copy, 3, wait).await),
        shape(devstack::read::read_topic(&bootstrap, &dlq, 3, wait).await)
    );
    // A line that is not an export is named; the others still go.
    let mut broken = std::fs::read_to_string(&file).unwrap();
    broken.push_str("{\"key_base64\": 5}\n");
    std::fs::write(&file, broken).unwrap();
    let (ok, text) = run(
        &["dlq", "import", &copy, "--in", &file.to_string_lossy()],
        None,
    );
    assert!(
        !ok && text.contains("3 imported, 1 failed") && text.contains("line 4"),
        "{text}"
    );
    std::fs::remove_file(&file).ok();

    // Edit: JPY corrected to EUR in $EDITOR, re-encoded, replayed, marked edited.
    let registry = ["--registry-url", stack.registry.url.as_str()];
    let (ok, text) = run(
        &[&["dlq", "edit", &dlq, "0", "0"][..], &registry].concat(),
        Some("sed -i s/JPY/EUR/"),
    );
    assert!(
        ok && text.contains(&format!("edited and sent to {orig}")),
        "{text}"
    );
    let replayed = devstack::read::read_topic(&bootstrap, &orig, 1, wait).await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        replayed[0].header("kafkit.replay.edited").as_deref(),
        Some("true")
    );
    assert_eq!(replayed[0].header("kafkit.error.class"), None);
    let corrected: OrderPlaced = codec.decode(replayed[0].payload()).await.unwrap().event;
    assert_eq!(
        (corrected.order_id.as_str(), corrected.currency.as_str()),
        (first.order_id.as_str(), "EUR")
    );
    // An edit the schema refuses names the field and sends nothing.
    let (ok, text) = run(
        &[&["dlq", "edit", &dlq, "0", "1"][..], &registry].concat(),
        Some("sed -i 's/\"quantity\": 1/\"quantity\": \"one\"/'"),
    );
    assert!(
        !ok && text.contains("items[0].quantity") && text.contains("nothing sent"),
        "{text}"
    );
    assert_eq!(
        devstack::read::read_topic(&bootstrap, &orig, 1, Duration::from_secs(3))
            .await
            .len(),
        1
    );
    // What was edited shows as dealt with.
    let (ok, text) = run(
        &[
            "dlq", "inspect", &dlq, "--status", "resolved", "--output", "json",
        ],
        None,
    );
    assert!(
        ok && text.contains("\"status\":\"replayed\"") && text.contains("\"total\":1"),
        "{text}"
    );
}
