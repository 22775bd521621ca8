//! Every REST endpoint, happy path and Confluent error codes, over real HTTP.
#![allow(clippy::unwrap_used)]

use crate::support::{MEDIA_TYPE, record, spawn_app};
use serde_json::json;

fn v1() -> String {
    record("Order", r#"{"name":"id","type":"string"}"#)
}

fn v2_with_default() -> String {
    record(
        "Order",
        r#"{"name":"id","type":"string"},{"name":"note","type":["null","string"],"default":null}"#,
    )
}

#[tokio::test]
async fn registering_returns_an_id_and_the_same_schema_again_returns_the_same_id() {
    let app = spawn_app().await;
    assert_eq!(app.get("/subjects").await.body, json!([]));
    let first = app.register("orders-value", &v1()).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.content_type, MEDIA_TYPE);
    let id = first.body["id"].as_u64().unwrap();
    // Same schema with different whitespace: same id, no new version.
    let spaced = v1().replace(',', " , ");
    assert_eq!(app.register_ok("orders-value", &spaced).await, id);
    assert_eq!(
        app.get("/subjects/orders-value/versions").await.body,
        json!([1])
    );
    assert_eq!(app.get("/subjects").await.body, json!(["orders-value"]));
}

#[tokio::test]
async fn the_same_schema_under_two_subjects_shares_one_global_id() {
    let app = spawn_app().await;
    let a = app.register_ok("a-value", &v1()).await;
    let b = app.register_ok("b-value", &v1()).await;
    assert_eq!(a, b);
    let other = app
        .register_ok("c-value", &record("Other", r#"{"name":"x","type":"int"}"#))
        .await;
    assert_ne!(other, a);
}

#[tokio::test]
async fn versions_are_fetched_by_number_latest_and_as_raw_schema() {
    let app = spawn_app().await;
    let id1 = app.register_ok("s", &v1()).await;
    let id2 = app.register_ok("s", &v2_with_default()).await;
    let one = app.get("/subjects/s/versions/1").await;
    assert_eq!(
        one.body,
        json!({"subject": "s", "version": 1, "id": id1, "schema": v1()})
    );
    let latest = app.get("/subjects/s/versions/latest").await;
    assert_eq!(
        (latest.body["version"].clone(), latest.body["id"].clone()),
        (json!(2), json!(id2))
    );
    assert_eq!(
        app.get("/subjects/s/versions/-1").await.body["version"],
        json!(2)
    );
    let raw = app.get("/subjects/s/versions/1/schema").await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.text, v1());
    assert_eq!(app.get("/subjects/s/versions").await.body, json!([1, 2]));
}

#[tokio::test]
async fn unknown_subjects_versions_and_bad_versions_get_confluent_errors() {
    let app = spawn_app().await;
    app.get("/subjects/nope/versions")
        .await
        .assert_error(404, 40401);
    app.get("/subjects/nope/versions/1")
        .await
        .assert_error(404, 40401);
    app.register_ok("s", &v1()).await;
    let message = app
        .get("/subjects/s/versions/7")
        .await
        .assert_error(404, 40402);
    assert!(message.contains('7'), "{message}");
    for bad in ["abc", "0", "-2", "99999999999", "1.5"] {
        app.get(&format!("/subjects/s/versions/{bad}"))
            .await
            .assert_error(422, 42202);
    }
    app.delete("/subjects/s/versions/abc")
        .await
        .assert_error(422, 42202);
}

#[tokio::test]
async fn schemas_are_fetched_by_global_id_and_types_are_listed() {
    let app = spawn_app().await;
    let id = app.register_ok("s", &v1()).await;
    let reply = app.get(&format!("/schemas/ids/{id}")).await;
    assert_eq!(reply.body, json!({ "schema": v1() }));
    // schema_registry_converter always asks with ?deleted=true.
    assert_eq!(
        app.get(&format!("/schemas/ids/{id}?deleted=true"))
            .await
            .body,
        json!({ "schema": v1() })
    );
    assert_eq!(
        app.get(&format!("/schemas/ids/{id}/schema")).await.text,
        v1()
    );
    app.get("/schemas/ids/9999").await.assert_error(404, 40403);
    app.get("/schemas/ids/not-a-number")
        .await
        .assert_error(404, 40403);
    assert_eq!(app.get("/schemas/types").await.body, json!(["AVRO"]));
}

#[tokio::test]
async fn looking_up_a_schema_finds_its_version_or_says_why_not() {
    let app = spawn_app().await;
    let id = app.register_ok("s", &v1()).await;
    let found = app.post("/subjects/s", json!({ "schema": v1() })).await;
    assert_eq!(
        found.body,
        json!({"subject": "s", "version": 1, "id": id, "schema": v1()})
    );
    app.post("/subjects/s", json!({ "schema": v2_with_default() }))
        .await
        .assert_error(404, 40403);
    app.post("/subjects/other", json!({ "schema": v1() }))
        .await
        .assert_error(404, 40401);
}

#[tokio::test]
async fn soft_then_permanent_deletion_of_a_version() {
    let app = spawn_app().await;
    let id1 = app.register_ok("s", &v1()).await;
    app.register_ok("s", &v2_with_default()).await;
    app.delete("/subjects/s/versions/1?permanent=true")
        .await
        .assert_error(404, 40407);
    assert_eq!(app.delete("/subjects/s/versions/1").await.body, json!(1));
    assert_eq!(app.get("/subjects/s/versions").await.body, json!([2]));
    assert_eq!(
        app.get("/subjects/s/versions?deleted=true").await.body,
        json!([1, 2])
    );
    app.get("/subjects/s/versions/1")
        .await
        .assert_error(404, 40402);
    assert_eq!(
        app.get("/subjects/s/versions/1?deleted=true").await.body["id"],
        json!(id1)
    );
    // Old records still decode: the id resolves after a soft delete.
    assert_eq!(app.get(&format!("/schemas/ids/{id1}")).await.status, 200);
    app.delete("/subjects/s/versions/1")
        .await
        .assert_error(404, 40406);
    assert_eq!(
        app.delete("/subjects/s/versions/1?permanent=true")
            .await
            .body,
        json!(1)
    );
    assert_eq!(
        app.get("/subjects/s/versions?deleted=true").await.body,
        json!([2])
    );
    app.get(&format!("/schemas/ids/{id1}"))
        .await
        .assert_error(404, 40403);
    app.delete("/subjects/s/versions/5")
        .await
        .assert_error(404, 40402);
    app.delete("/subjects/nope/versions/1")
        .await
        .assert_error(404, 40401);
}

#[tokio::test]
async fn soft_then_permanent_deletion_of_a_subject() {
    let app = spawn_app().await;
    app.register_ok("s", &v1()).await;
    app.register_ok("s", &v2_with_default()).await;
    app.delete("/subjects/s?permanent=true")
        .await
        .assert_error(404, 40405);
    assert_eq!(app.delete("/subjects/s").await.body, json!([1, 2]));
    assert_eq!(app.get("/subjects").await.body, json!([]));
    assert_eq!(app.get("/subjects?deleted=true").await.body, json!(["s"]));
    app.get("/subjects/s/versions")
        .await
        .assert_error(404, 40401);
    app.delete("/subjects/s").await.assert_error(404, 40404);
    assert_eq!(
        app.delete("/subjects/s?permanent=true").await.body,
        json!([1, 2])
    );
    assert_eq!(app.get("/subjects?deleted=true").await.body, json!([]));
    app.delete("/subjects/s").await.assert_error(404, 40401);
    // Re-registering after a permanent delete starts again at version 1.
    app.register_ok("s", &v1()).await;
    assert_eq!(app.get("/subjects/s/versions").await.body, json!([1]));
}

#[tokio::test]
async fn global_and_subject_compatibility_config() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/config").await.body,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        app.put("/config", json!({"compatibility": "FULL"}))
            .await
            .body,
        json!({"compatibility": "FULL"})
    );
    assert_eq!(
        app.get("/config").await.body,
        json!({"compatibilityLevel": "FULL"})
    );
    app.get("/config/s").await.assert_error(404, 40408);
    assert_eq!(
        app.get("/config/s?defaultToGlobal=true").await.body,
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        app.put("/config/s", json!({"compatibility": "none"}))
            .await
            .body,
        json!({"compatibility": "NONE"})
    );
    assert_eq!(
        app.get("/config/s").await.body,
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(
        app.delete("/config/s").await.body,
        json!({"compatibilityLevel": "NONE"})
    );
    app.get("/config/s").await.assert_error(404, 40408);
    app.delete("/config/s").await.assert_error(404, 40408);
    let message = app
        .put("/config", json!({"compatibility": "SIDEWAYS"}))
        .await
        .assert_error(422, 42203);
    assert!(message.contains("SIDEWAYS"), "{message}");
    app.put("/config/s", json!({}))
        .await
        .assert_error(422, 42203);
}

#[tokio::test]
async fn bad_bodies_get_a_clear_error_and_change_nothing() {
    let app = spawn_app().await;
    let malformed = app
        .call(
            reqwest::Method::POST,
            "/subjects/s/versions",
            Some("{not json".into()),
        )
        .await;
    malformed.assert_error(400, 400);
    app.post("/subjects/s/versions", json!({"schema": 42}))
        .await
        .assert_error(422, 422);
    let message = app
        .register("s", r#"{"type":"record","name":"R"}"#)
        .await
        .assert_error(422, 42201);
    assert!(message.starts_with("Invalid schema"), "{message}");
    app.register("s", "not json at all")
        .await
        .assert_error(422, 42201);
    app.register("s", "").await.assert_error(422, 42201);
    app.post("/subjects/s/versions", json!({}))
        .await
        .assert_error(422, 42201);
    let message = app
        .post(
            "/subjects/s/versions",
            json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}),
        )
        .await
        .assert_error(422, 42201);
    assert!(message.contains("PROTOBUF"), "{message}");
    let with_refs =
        json!({"schema": v1(), "references": [{"name": "x", "subject": "y", "version": 1}]});
    app.post("/subjects/s/versions", with_refs)
        .await
        .assert_error(422, 42201);
    app.post(
        "/compatibility/subjects/s/versions/latest",
        json!({"schema": "{"}),
    )
    .await
    .assert_error(422, 42201);
    assert_eq!(
        app.get("/subjects").await.body,
        json!([]),
        "nothing was registered"
    );
    app.get("/no/such/path").await.assert_error(404, 404);
    let wrong_method = app.call(reqwest::Method::PATCH, "/subjects", None).await;
    wrong_method.assert_error(405, 405);
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/readyz").await.status, 200);
    assert_eq!(app.get("/").await.body, json!({}));
}

#[tokio::test]
async fn hostile_schemas_get_an_answer_never_a_crash() {
    let app = spawn_app().await;
    let deep = format!("{}\"string\"{}", "[".repeat(200), "]".repeat(200));
    let hostile = [
        r#"{"type":"record","name":"R","fields":[{"name":"self","type":"R"}]}"#.to_owned(),
        r#"{"type":"fixed","name":"F","size":-1}"#.to_owned(),
        r#"{"type":"enum","name":"E","symbols":[]}"#.to_owned(),
        r#"{"type":"enum","name":"E","symbols":["A","A"]}"#.to_owned(),
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}"#
            .to_owned(),
        r#"{"type":"bytes","logicalType":"decimal","precision":-3,"scale":9}"#.to_owned(),
        r#"{"type":"array"}"#.to_owned(),
        r#"["null","null"]"#.to_owned(),
        r#"{"type":"record","name":"1bad","fields":[]}"#.to_owned(),
        "\"nosuchtype\"".to_owned(),
        deep,
    ];
    for schema in &hostile {
        for path in [
            "/subjects/h/versions",
            "/subjects/h",
            "/compatibility/subjects/h/versions",
        ] {
            let reply = app.post(path, json!({ "schema": schema })).await;
            assert!(
                [200, 404, 409, 422].contains(&reply.status),
                "{path} with {schema}: {reply:?}"
            );
        }
    }
    // The registry still serves after all of them.
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn metrics_count_api_requests_but_not_health_checks() {
    let app = spawn_app().await;
    app.register_ok("s", &v1()).await;
    app.get("/subjects").await;
    app.get("/healthz").await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains("schema_registry_requests_total 2\n"),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("schema_registry_subjects 1\n"),
        "{}",
        metrics.text
    );
}

/// Confluent's `/mode`: `READONLY` (global or per subject) refuses new
/// versions and deletions with 42205; registering what is already there and
/// reading still work; modes this registry does not know are 42204.
#[tokio::test]
async fn read_only_mode_refuses_changes_per_subject_and_globally() {
    let app = spawn_app().await;
    let a = record("A", r#"{"name":"a","type":"string"}"#);
    let a2 = record(
        "A",
        r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#,
    );
    let b = record("B", r#"{"name":"b","type":"string"}"#);
    app.register_ok("a-value", &a).await;
    assert_eq!(app.get("/mode").await.body, json!({"mode": "READWRITE"}));
    assert_eq!(
        app.put("/mode/a-value", json!({"mode": "READONLY"}))
            .await
            .body,
        json!({"mode": "READONLY"})
    );
    app.register("a-value", &a2).await.assert_error(422, 42205);
    assert_eq!(
        app.register_ok("a-value", &a).await,
        1,
        "what is already there is answered"
    );
    app.delete("/subjects/a-value")
        .await
        .assert_error(422, 42205);
    app.register_ok("b-value", &b).await;
    assert_eq!(
        app.get("/mode/a-value").await.body,
        json!({"mode": "READONLY"})
    );
    app.get("/mode/b-value").await.assert_error(404, 40409);
    assert_eq!(
        app.get("/mode/b-value?defaultToGlobal=true").await.body,
        json!({"mode": "READWRITE"})
    );
    app.put("/mode", json!({"mode": "IMPORT"}))
        .await
        .assert_error(422, 42204);
    app.put("/mode", json!({"mode": "READONLY"})).await;
    app.register("c-value", &b).await.assert_error(422, 42205);
    assert_eq!(
        app.get("/subjects").await.body,
        json!(["a-value", "b-value"])
    );
    app.put("/mode", json!({"mode": "READWRITE"})).await;
    assert_eq!(
        app.delete("/mode/a-value").await.body,
        json!({"mode": "READONLY"})
    );
    assert_eq!(app.register_ok("a-value", &a2).await, 3);
}

/// With users configured, every API request needs one's HTTP basic
/// credentials (401 with `WWW-Authenticate` otherwise); the probes do not.
#[tokio::test]
async fn with_users_configured_requests_need_their_credentials() {
    let users = schema_registry::Users {
        inline: vec![("alice".into(), "s3cret".into())],
        file: None,
    };
    let app =
        crate::support::spawn_with_users(schema_registry::StorageSettings::Memory, users).await;
    let client = reqwest::Client::new();
    let get = |user: Option<(&str, &str)>| {
        let mut request = client.get(format!("{}/subjects", app.url));
        if let Some((user, password)) = user {
            request = request.basic_auth(user, Some(password));
        }
        request.send()
    };
    let refused = get(None).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Basic realm=\"schema-registry\""
    );
    assert_eq!(
        refused.json::<serde_json::Value>().await.unwrap()["error_code"],
        40101
    );
    assert_eq!(get(Some(("alice", "wrong"))).await.unwrap().status(), 401);
    assert_eq!(get(Some(("bob", "s3cret"))).await.unwrap().status(), 401);
    assert_eq!(get(Some(("alice", "s3cret"))).await.unwrap().status(), 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        let answer = client
            .get(format!("{}{open}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{open}");
    }
}
