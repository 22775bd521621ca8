//! `POST /v1/orders` and `/v1/orders/batch` against a real broker and registry.
#![allow(clippy::unwrap_used)]

use crate::support::{Stack, spawn_app, valid_order};
use apache_avro::types::Value as Avro;
use rdkafka::message::{Headers, Message};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use serde_json::json;

fn field<'a>(record: &'a Avro, name: &str) -> &'a Avro {
    let Avro::Record(fields) = record else {
        panic!("not a record: {record:?}")
    };
    &fields.iter().find(|(n, _)| n == name).unwrap().1
}

#[tokio::test]
async fn a_valid_order_is_acknowledged_and_lands_on_the_topic_with_its_headers() {
    let stack = Stack::start().await;
    let app = spawn_app(stack.kafka.bootstrap_servers(), &stack.registry.url, &[]).await;
    let reply = app.post_order(&valid_order()).await;
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = &reply.body;
    assert_eq!(body["topic"], json!(app.topic));
    let order_id = body["order_id"].as_str().unwrap();
    let event_id = body["event_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(order_id).is_ok() && uuid::Uuid::parse_str(event_id).is_ok());

    let partition = i32::try_from(body["partition"].as_i64().unwrap()).unwrap();
    let record = app
        .read_record(partition, body["offset"].as_i64().unwrap())
        .await;
    assert_eq!(record.key(), Some(order_id.as_bytes()), "keyed by order id");
    let headers: Vec<(String, String)> = record
        .headers()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("ce_specversion"), Some("1.0"));
    assert_eq!(header("ce_id"), Some(event_id));
    assert_eq!(header("ce_type"), Some("io.kafkit.orders.OrderPlaced"));
    assert_eq!(header("ce_source"), Some("/producer-service"));
    assert_eq!(header("content-type"), Some("application/avro"));
    assert!(header("ce_time").is_some());
    assert!(
        header("traceparent")
            .unwrap()
            .parse::<kafkit_events::TraceParent>()
            .is_ok()
    );

    // Decoded by a client that knows nothing of kafkit.
    let decoder = AvroDecoder::new(SrSettings::new(stack.registry.url.clone()));
    let decoded = decoder.decode(record.payload()).await.unwrap();
    assert_eq!(
        decoded.name.unwrap().fullname(None),
        "io.kafkit.orders.OrderPlaced"
    );
    let value = decoded.value;
    assert!(matches!(field(&value, "order_id"), Avro::Uuid(u) if u.to_string() == order_id));
    assert_eq!(
        field(&value, "customer_id"),
        &Avro::String("customer-42".into())
    );
    assert_eq!(field(&value, "currency"), &Avro::String("EUR".into()));
    assert_eq!(
        field(&value, "note"),
        &Avro::Union(1, Box::new(Avro::String("gift wrap".into())))
    );
    assert!(
        matches!(field(&value, "placed_at"), Avro::TimestampMillis(ms) if *ms > 1_700_000_000_000)
    );
    let Avro::Array(items) = field(&value, "items") else {
        panic!("items")
    };
    assert_eq!(items.len(), 2);
    assert_eq!(field(&items[1], "sku"), &Avro::String("PEN-9".into()));
    assert_eq!(field(&items[1], "quantity"), &Avro::Int(10));
    assert_eq!(field(&items[1], "unit_price_cents"), &Avro::Long(150));
    assert_eq!(app.records_on_topic().await, 1);
}

#[tokio::test]
async fn every_validation_rule_gives_a_400_by_field_and_produces_nothing() {
    let stack = Stack::start().await;
    let app = spawn_app(stack.kafka.bootstrap_servers(), &stack.registry.url, &[]).await;
    let with = |path: &str, value: serde_json::Value| {
        let mut order = valid_order();
        match path.split_once('.') {
            Some((_, item_field)) => order["items"][0][item_field] = value,
            None => order[path] = value,
        }
        order
    };
    let cases = [
        (with("items", json!([])), "items"),
        (with("items.quantity", json!(0)), "items[0].quantity"),
        (with("items.quantity", json!(1.5)), "items[0].quantity"),
        (
            with("items.unit_price_cents", json!(-1)),
            "items[0].unit_price_cents",
        ),
        (with("items.sku", json!("")), "items[0].sku"),
        (with("items.sku", json!("S".repeat(65))), "items[0].sku"),
        (with("items.gift", json!(true)), "items[0].gift"),
        (with("currency", json!("ZZZ")), "currency"),
        (with("currency", json!("eur")), "currency"),
        (with("customer_id", json!("c".repeat(65))), "customer_id"),
        (with("customer_id", json!(null)), "customer_id"),
        (with("note", json!("n".repeat(501))), "note"),
        (with("coupon", json!("FREE")), "coupon"),
        (json!(["not", "an", "object"]), ""),
    ];
    for (body, expected) in &cases {
        let reply = app.post_order(body).await;
        reply.assert_problem(400);
        assert_eq!(reply.error_fields(), [*expected], "{body}");
    }
    let everything_wrong = json!({"customer_id": "", "items": [{"sku": "A", "quantity": -2, "unit_price_cents": "x"}], "currency": "QQQ", "extra": 1});
    let reply = app.post_order(&everything_wrong).await;
    reply.assert_problem(400);
    assert_eq!(
        reply.error_fields(),
        [
            "extra",
            "customer_id",
            "currency",
            "items[0].quantity",
            "items[0].unit_price_cents"
        ]
    );
    assert_eq!(app.records_on_topic().await, 0);
}

#[tokio::test]
async fn malformed_json_oversize_bodies_and_wrong_content_types_are_refused() {
    let stack = Stack::start().await;
    let app = spawn_app(
        stack.kafka.bootstrap_servers(),
        &stack.registry.url,
        &["--max-body-bytes", "2048"],
    )
    .await;
    app.send(
        "/v1/orders",
        "application/json",
        b"{\"customer_id\": ".to_vec(),
        None,
    )
    .await
    .assert_problem(400);
    let mut huge = valid_order();
    huge["note"] = json!("x".repeat(4000));
    app.post_order(&huge).await.assert_problem(413);
    app.send(
        "/v1/orders",
        "text/plain",
        valid_order().to_string().into_bytes(),
        None,
    )
    .await
    .assert_problem(415);
    app.send("/v1/orders", "application/xml", b"<order/>".to_vec(), None)
        .await
        .assert_problem(415);
    let charset = app
        .send(
            "/v1/orders",
            "application/json; charset=utf-8",
            valid_order().to_string().into_bytes(),
            None,
        )
        .await;
    assert_eq!(charset.status, 202, "{charset:?}");
    app.get("/v1/nothing").await.assert_problem(404);
    app.get("/v1/orders").await.assert_problem(405);
    assert_eq!(
        app.records_on_topic().await,
        1,
        "only the valid order was produced"
    );
}

/// A client that writes its whole body before reading (Python's `urllib`,
/// most scripts) reads the 413: the service reads what it refuses, instead
/// of closing the connection under the client's feet (a broken pipe).
#[tokio::test]
async fn a_5_mb_body_sent_in_full_before_reading_gets_its_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start().await;
    let app = spawn_app(stack.kafka.bootstrap_servers(), &stack.registry.url, &[]).await;
    let address = app.url.trim_start_matches("http://").to_owned();
    let body = vec![b' '; 5 * 1024 * 1024];
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
        .write_all(&body)
        .await
        .expect("the whole body is taken, not cut off by an early close");
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("at most 262144 bytes"), "{answer}");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let stack = Stack::start().await;
    let app = spawn_app(stack.kafka.bootstrap_servers(), &stack.registry.url, &[]).await;
    let first = app.post_order_with_key(&valid_order(), "key-1").await;
    assert_eq!(first.status, 202);
    let again = app.post_order_with_key(&valid_order(), "key-1").await;
    assert_eq!(again.status, 202);
    assert_eq!(
        again.body, first.body,
        "the same order id, event id and offset"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let mut other = valid_order();
    other["customer_id"] = json!("someone-else");
    app.post_order_with_key(&other, "key-1")
        .await
        .assert_problem(422);
    // A rejected body is a final answer too, and the key stays bound to it.
    let bad = json!({"customer_id": "c"});
    assert_eq!(app.post_order_with_key(&bad, "key-2").await.status, 400);
    assert_eq!(
        app.post_order_with_key(&bad, "key-2")
            .await
            .header("idempotent-replayed"),
        Some("true")
    );
    assert_eq!(
        app.post_order_with_key(&valid_order(), "key-3")
            .await
            .status,
        202
    );
    assert_eq!(app.records_on_topic().await, 2, "key-1 once, key-3 once");
}

#[tokio::test]
async fn a_batch_publishes_its_valid_orders_and_reports_each_item() {
    let stack = Stack::start().await;
    let app = spawn_app(
        stack.kafka.bootstrap_servers(),
        &stack.registry.url,
        &["--max-batch-orders", "3"],
    )
    .await;
    let mut invalid = valid_order();
    invalid["items"][0]["quantity"] = json!(0);
    let reply = app
        .post_batch(&json!({"orders": [valid_order(), invalid, valid_order()]}))
        .await;
    assert_eq!(reply.status, 207, "{reply:?}");
    assert_eq!(
        (
            reply.body["accepted"].clone(),
            reply.body["invalid"].clone()
        ),
        (json!(2), json!(1))
    );
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[1]["status"], "invalid");
    assert_eq!(
        results[1]["errors"][0]["field"],
        "orders[1].items[0].quantity"
    );
    assert_eq!(results[2]["status"], "accepted");
    assert_ne!(results[0]["order_id"], results[2]["order_id"]);
    assert_eq!(app.records_on_topic().await, 2);

    let all_good = app
        .post_batch(&json!({"orders": [valid_order(), valid_order()]}))
        .await;
    assert_eq!(all_good.status, 202);
    let too_many = app
        .post_batch(
            &json!({"orders": [valid_order(), valid_order(), valid_order(), valid_order()]}),
        )
        .await;
    assert_eq!(too_many.assert_problem(400)["errors"][0]["field"], "orders");
    app.post_batch(&json!({"orders": []}))
        .await
        .assert_problem(400);
    app.post_batch(&json!([valid_order()]))
        .await
        .assert_problem(400);
    assert_eq!(app.records_on_topic().await, 4);
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let stack = Stack::start().await;
    let app = spawn_app(stack.kafka.bootstrap_servers(), &stack.registry.url, &[]).await;
    let alive = app.get("/healthz").await;
    assert_eq!(alive.status, 200);
    assert_eq!(alive.header("content-type"), Some("application/json"));
    assert_eq!(alive.body, json!({"status": "alive"}));
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    // The same operations JSON as every kafkit service, with this one's checks.
    assert_eq!(
        ready.body,
        json!({"status": "ready", "checks": {"kafka": "ok", "schema_registry": "ok"}})
    );
    assert_eq!(app.post_order(&valid_order()).await.status, 202);
    assert_eq!(app.post_order(&json!({})).await.status, 400);
    let metrics = app.get("/metrics").await.text;
    use kafkit_telemetry::metrics::sum;
    let requests = |status: &str| {
        sum(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[
                ("http_route", "/v1/orders"),
                ("http_request_method", "POST"),
                ("http_response_status_code", status),
            ],
        )
    };
    assert_eq!(requests("202"), 1.0, "{metrics}");
    assert_eq!(requests("400"), 1.0, "{metrics}");
    assert_eq!(
        sum(
            &metrics,
            "messaging_client_sent_messages_total",
            &[("messaging_destination_name", &app.topic)]
        ),
        1.0,
        "{metrics}"
    );
    assert!(
        !metrics.contains("error_type"),
        "the one send was taken: {metrics}"
    );
    assert_eq!(
        sum(
            &metrics,
            "messaging_client_operation_duration_seconds_count",
            &[("messaging_destination_name", &app.topic)]
        ),
        1.0,
        "{metrics}"
    );
    assert!(metrics.contains("http_server_active_requests"), "{metrics}");
}

#[tokio::test]
async fn shutdown_lets_in_flight_orders_finish_and_every_202_is_on_the_topic() {
    let stack = Stack::start().await;
    let mut app = spawn_app(stack.kafka.bootstrap_servers(), &stack.registry.url, &[]).await;
    assert_eq!(app.post_order(&valid_order()).await.status, 202, "warm-up");
    let url = format!("{}/v1/orders", app.url);
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (app.client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(valid_order().to_string())
                    .send()
                    .await;
                response.map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    app.shutdown();
    let mut accepted = 1;
    for request in requests {
        match request.await.unwrap() {
            Ok(202) => accepted += 1,
            Ok(other) => panic!("a request during shutdown got {other}"),
            // Refused or cut before it was read: no 202, and nothing on the
            // topic for it (checked below).
            Err(_) => {}
        }
    }
    assert_eq!(
        app.records_on_topic().await,
        accepted,
        "every 202 is on the topic, nothing else"
    );
}

/// A batch of which only part could be published (here the producer's
/// local queue holds 5 records, so the rest of a 20-order batch is
/// unavailable) answers 207; the same batch again with the same
/// Idempotency-Key runs only what was unavailable, keeps the accepted
/// orders' ids, and ends in one 202 with every order stored exactly once.
#[tokio::test]
async fn a_partly_unavailable_batch_resumed_with_its_key_publishes_each_order_once() {
    let stack = Stack::start().await;
    let app = spawn_app(
        stack.kafka.bootstrap_servers(),
        &stack.registry.url,
        &["-X", "queue.buffering.max.messages=5"],
    )
    .await;
    let body = json!({"orders": vec![valid_order(); 20]})
        .to_string()
        .into_bytes();
    let post = || {
        app.send(
            "/v1/orders/batch",
            "application/json",
            body.clone(),
            Some("batch-1"),
        )
    };
    let first = post().await;
    assert_eq!(first.status, 207, "{first:?}");
    let unavailable = first.body["unavailable"].as_u64().unwrap();
    assert!(unavailable > 0, "{first:?}");
    let kept: Vec<(usize, String)> = first.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, r)| r["status"] == "accepted")
        .map(|(i, r)| (i, r["order_id"].as_str().unwrap().to_owned()))
        .collect();
    let mut last = first;
    for _ in 0..30 {
        if last.status == 202 {
            break;
        }
        assert_eq!(last.status, 207, "{last:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        last = post().await;
    }
    assert_eq!(last.status, 202, "{last:?}");
    let results = last.body["results"].as_array().unwrap();
    for (index, order_id) in &kept {
        assert_eq!(
            results[*index]["order_id"], *order_id,
            "item {index} keeps the order id of its first run"
        );
    }
    let mut stored = app.read_keys(20, std::time::Duration::from_secs(30)).await;
    stored.sort();
    let mut answered: Vec<String> = results
        .iter()
        .map(|r| r["order_id"].as_str().unwrap().to_owned())
        .collect();
    answered.sort();
    assert_eq!(stored, answered, "each order once, none twice");
    let replay = post().await;
    assert_eq!(replay.status, 202);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
}

/// The running service answers as its OpenAPI document says. schemathesis
/// (pinned by scripts/install-deploy-tools.sh) reads `/openapi.json` from
/// the service and sends generated requests, valid and invalid, to every
/// operation; it fails on any 5xx and on any status, content type, header
/// or body the document does not give for that operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_service_answers_as_its_openapi_document_says() {
    let stack = Stack::start().await;
    let app = spawn_app(stack.kafka.bootstrap_servers(), &stack.registry.url, &[]).await;
    let served = app.get("/openapi.json").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/json"));
    assert_eq!(served.body["openapi"], "3.1.0");
    assert_eq!(
        served.body["components"]["schemas"]["Batch"]["properties"]["orders"]["maxItems"], 100,
        "the limits are the running settings'"
    );
    let checks = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
    .join(",");
    let junit = std::env::temp_dir().join(format!(
        "{}.xml",
        crate::support::random_name("schemathesis")
    ));
    let run = tokio::process::Command::new(devstack::tools::tool("schemathesis"))
        .args([
            "run",
            &format!("{}/openapi.json", app.url),
            "--checks",
            &checks,
            "--max-examples",
            "100",
            "--seed",
            "20261127",
            "--workers",
            "1",
            "--no-color",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--report",
            "junit",
            "--report-junit-path",
            &junit.to_string_lossy(),
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "schemathesis failed:\n{report}");
    // Not a vacuous pass: every operation was tested, and valid orders were
    // published and acknowledged.
    let tested = std::fs::read_to_string(&junit).unwrap_or_default();
    std::fs::remove_file(&junit).ok();
    for operation in ["POST /v1/orders", "POST /v1/orders/batch", "GET /readyz"] {
        assert!(
            tested.contains(operation),
            "{operation} not tested:\n{tested}\n{report}"
        );
    }
    assert!(!app.keys_on_topic().await.is_empty(), "{report}");
}
