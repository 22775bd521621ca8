//! Compatibility accept/reject through the REST API under each level.
#![allow(clippy::unwrap_used)]

use crate::support::{record, spawn_app};
use serde_json::json;

const ID: &str = r#"{"name":"id","type":"string"}"#;
const NOTE_DEFAULT: &str = r#"{"name":"note","type":["null","string"],"default":null}"#;
const QTY_NO_DEFAULT: &str = r#"{"name":"qty","type":"int"}"#;

fn schema(fields: &[&str]) -> String {
    record("Order", &fields.join(","))
}

/// Asks the compatibility endpoint, verbose, and returns (compatible, messages).
async fn check(
    app: &crate::support::TestApp,
    subject: &str,
    version: &str,
    schema: &str,
) -> (bool, Vec<String>) {
    let reply = app
        .post(
            &format!("/compatibility/subjects/{subject}/versions/{version}?verbose=true"),
            json!({ "schema": schema }),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let messages = reply.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    (reply.body["is_compatible"].as_bool().unwrap(), messages)
}

#[tokio::test]
async fn backward_accepts_a_field_with_default_and_rejects_one_without_or_a_type_change() {
    let app = spawn_app().await;
    app.register_ok("s", &schema(&[ID])).await;
    assert_eq!(
        check(&app, "s", "latest", &schema(&[ID, NOTE_DEFAULT])).await,
        (true, vec![])
    );
    let (ok, messages) = check(&app, "s", "latest", &schema(&[ID, QTY_NO_DEFAULT])).await;
    assert!(!ok);
    assert!(messages[0].starts_with("BACKWARD"), "{messages:?}");
    let (ok, _) = check(&app, "s", "1", &schema(&[r#"{"name":"id","type":"int"}"#])).await;
    assert!(!ok, "string -> int is a breaking change");

    let rejected = app.register("s", &schema(&[ID, QTY_NO_DEFAULT])).await;
    let message = rejected.assert_error(409, 409);
    assert!(message.contains("incompatible"), "{message}");
    assert_eq!(
        app.get("/subjects/s/versions").await.body,
        json!([1]),
        "a rejected schema adds no version"
    );
    app.register_ok("s", &schema(&[ID, NOTE_DEFAULT])).await;
    assert_eq!(app.get("/subjects/s/versions").await.body, json!([1, 2]));
}

#[tokio::test]
async fn forward_accepts_a_new_field_without_default_and_rejects_removing_a_required_one() {
    let app = spawn_app().await;
    app.set_level("s", "FORWARD").await;
    app.register_ok("s", &schema(&[ID, QTY_NO_DEFAULT])).await;
    // Old readers ignore a field they do not know.
    let extended = schema(&[ID, QTY_NO_DEFAULT, r#"{"name":"sku","type":"string"}"#]);
    assert!(check(&app, "s", "latest", &extended).await.0);
    // Old readers need `qty`, which the new schema no longer writes.
    let (ok, messages) = check(&app, "s", "latest", &schema(&[ID])).await;
    assert!(!ok);
    assert!(messages[0].starts_with("FORWARD"), "{messages:?}");
    app.register("s", &schema(&[ID]))
        .await
        .assert_error(409, 409);
    app.register_ok("s", &extended).await;
}

#[tokio::test]
async fn full_accepts_only_changes_both_ways_readable() {
    let app = spawn_app().await;
    app.set_level("s", "FULL").await;
    app.register_ok("s", &schema(&[ID])).await;
    assert!(
        check(&app, "s", "latest", &schema(&[ID, NOTE_DEFAULT]))
            .await
            .0
    );
    assert!(
        !check(&app, "s", "latest", &schema(&[ID, QTY_NO_DEFAULT]))
            .await
            .0,
        "not backward"
    );
    app.register("s", &schema(&[ID, QTY_NO_DEFAULT]))
        .await
        .assert_error(409, 409);
    app.register_ok("s", &schema(&[ID, NOTE_DEFAULT])).await;
}

#[tokio::test]
async fn none_accepts_anything() {
    let app = spawn_app().await;
    app.set_level("s", "NONE").await;
    app.register_ok("s", &schema(&[ID])).await;
    app.register_ok("s", &schema(&[r#"{"name":"id","type":"int"}"#]))
        .await;
}

#[tokio::test]
async fn transitive_levels_check_every_version_plain_ones_only_the_latest() {
    let app = spawn_app().await;
    app.set_level("s", "NONE").await;
    app.register_ok("s", &schema(&[ID, QTY_NO_DEFAULT])).await; // v1 has qty
    app.register_ok("s", &schema(&[ID])).await; // v2 dropped it
    // v3 brings qty back as a long without default: v2 data lacks it.
    let v3 = schema(&[ID, r#"{"name":"qty","type":"long","default":0}"#]);
    app.set_level("s", "FORWARD").await;
    // FORWARD: latest (v2) can read v3 data (it ignores qty).
    assert!(check(&app, "s", "latest", &v3).await.0);
    app.set_level("s", "FORWARD_TRANSITIVE").await;
    // v1 readers expect an int qty and get a long: not readable.
    let reply = app
        .post(
            "/compatibility/subjects/s/versions?verbose=true",
            json!({ "schema": v3 }),
        )
        .await;
    assert_eq!(reply.body["is_compatible"], json!(false), "{reply:?}");
    assert!(
        reply.body["messages"][0]
            .as_str()
            .unwrap()
            .contains("version 1"),
        "{reply:?}"
    );
    app.register("s", &v3).await.assert_error(409, 409);
    app.set_level("s", "BACKWARD_TRANSITIVE").await;
    app.register_ok("s", &v3).await;
}

#[tokio::test]
async fn checking_a_subject_or_version_that_does_not_exist() {
    let app = spawn_app().await;
    let any = schema(&[ID]);
    // No versions yet: nothing to be incompatible with.
    let reply = app
        .post(
            "/compatibility/subjects/new/versions",
            json!({ "schema": any }),
        )
        .await;
    assert_eq!(reply.body, json!({"is_compatible": true}));
    app.post(
        "/compatibility/subjects/new/versions/latest",
        json!({ "schema": any }),
    )
    .await
    .assert_error(404, 40401);
    app.register_ok("s", &any).await;
    app.post(
        "/compatibility/subjects/s/versions/3",
        json!({ "schema": any }),
    )
    .await
    .assert_error(404, 40402);
    app.post(
        "/compatibility/subjects/s/versions/x",
        json!({ "schema": any }),
    )
    .await
    .assert_error(422, 42202);
}
