//! `schema_registry_converter`, unchanged, as the client of this registry.
#![allow(clippy::unwrap_used)]

use crate::support::{record, spawn_app};
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_subjects, get_all_versions, get_schema_by_id,
    get_schema_by_subject_and_version, is_compatible_schema, post_schema,
};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

fn avro(schema: &str) -> SuppliedSchema {
    SuppliedSchema::new(
        Some("test.Order".into()),
        SchemaType::Avro,
        schema.to_owned(),
    )
}

#[tokio::test]
async fn the_converter_registers_lists_fetches_and_checks_compatibility() {
    let app = spawn_app().await;
    let sr = SrSettings::new(app.url.clone());
    let v1 = record("Order", r#"{"name":"id","type":"string"}"#);
    let v2 = record(
        "Order",
        r#"{"name":"id","type":"string"},{"name":"n","type":"int","default":0}"#,
    );
    let breaking = record(
        "Order",
        r#"{"name":"id","type":"string"},{"name":"n","type":"int"}"#,
    );

    let registered = post_schema(&sr, "orders-value".into(), avro(&v1))
        .await
        .unwrap();
    assert_eq!(registered.schema, v1);
    assert_eq!(
        post_schema(&sr, "orders-value".into(), avro(&v1))
            .await
            .unwrap()
            .id,
        registered.id
    );
    assert!(
        is_compatible_schema(&sr, "orders-value".into(), avro(&v2))
            .await
            .unwrap()
    );
    assert!(
        !is_compatible_schema(&sr, "orders-value".into(), avro(&breaking))
            .await
            .unwrap()
    );
    let second = post_schema(&sr, "orders-value".into(), avro(&v2))
        .await
        .unwrap();
    assert_ne!(second.id, registered.id);

    assert_eq!(
        get_all_subjects(&sr).await.unwrap(),
        vec!["orders-value".to_owned()]
    );
    assert_eq!(
        get_all_versions(&sr, "orders-value".into()).await.unwrap(),
        vec![1, 2]
    );
    let by_id = get_schema_by_id(registered.id, &sr).await.unwrap();
    assert_eq!(by_id.schema, v1);
    let latest = get_schema_by_subject_and_version(&sr, "orders-value", None)
        .await
        .unwrap();
    assert_eq!((latest.id, latest.version), (second.id, Some(2)));

    let type_change = record("Order", r#"{"name":"id","type":"int"}"#);
    let err = post_schema(&sr, "orders-value".into(), avro(&type_change))
        .await
        .unwrap_err();
    assert!(
        !err.retriable,
        "an incompatible schema is not worth retrying: {err}"
    );
    let missing = get_schema_by_id(9_999, &sr).await.unwrap_err();
    assert!(missing.error.contains("404"), "{missing}");
}
