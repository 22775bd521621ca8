//! `spawn_app()`: the real registry on port 0, with a client for its API.
#![allow(dead_code, clippy::unwrap_used)]

use devstack::TestKafka;
use schema_registry::RunningRegistry;
use schema_registry::{Application, KafkaStoreSettings, RegistrySettings, StorageSettings};
use serde_json::{Value, json};
use std::net::SocketAddr;

pub const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    server: RunningRegistry,
}

/// A response reduced to what the tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Asserts a Confluent error body and returns its message.
    pub fn assert_error(&self, status: u16, code: u64) -> String {
        assert_eq!(self.status, status, "status of {self:?}");
        assert_eq!(
            self.body["error_code"],
            json!(code),
            "error_code of {self:?}"
        );
        assert_eq!(self.content_type, MEDIA_TYPE);
        let message = self.body["message"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        message
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(StorageSettings::Memory).await
}

/// A registry whose state lives in `topic` on `kafka`.
pub async fn spawn_on_kafka(kafka: &TestKafka, topic: &str) -> TestApp {
    let store = KafkaStoreSettings {
        topic: topic.to_owned(),
        ..KafkaStoreSettings::new(kafka.bootstrap_servers())
    };
    spawn_with(StorageSettings::Kafka(store)).await
}

pub use devstack::random_name;

pub async fn spawn_with(storage: StorageSettings) -> TestApp {
    spawn_with_users(storage, schema_registry::Users::default()).await
}

/// A registry that asks for HTTP basic credentials of `users`.
pub async fn spawn_with_users(storage: StorageSettings, users: schema_registry::Users) -> TestApp {
    let settings = RegistrySettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        storage,
        users,
    };
    let server = Application::build(settings).await.unwrap().spawn();
    TestApp {
        url: server.url.clone(),
        client: reqwest::Client::new(),
        server,
    }
}

/// A record schema named `name` with the given fields JSON.
pub fn record(name: &str, fields: &str) -> String {
    format!(r#"{{"type":"record","name":"{name}","namespace":"test","fields":[{fields}]}}"#)
}

impl TestApp {
    /// Stops serving and waits until the listener is closed.
    pub async fn stop(self) {
        self.server.stop().await.unwrap();
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<String>) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.header("content-type", MEDIA_TYPE).body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(reqwest::Method::POST, path, Some(body.to_string()))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(reqwest::Method::PUT, path, Some(body.to_string()))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Registers `schema` under `subject`; returns the reply.
    pub async fn register(&self, subject: &str, schema: &str) -> Reply {
        self.post(
            &format!("/subjects/{subject}/versions"),
            json!({ "schema": schema }),
        )
        .await
    }

    /// Registers and returns the id, failing the test on an error.
    pub async fn register_ok(&self, subject: &str, schema: &str) -> u64 {
        let reply = self.register(subject, schema).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body["id"].as_u64().unwrap()
    }

    pub async fn set_level(&self, subject: &str, level: &str) {
        let reply = self
            .put(
                &format!("/config/{subject}"),
                json!({ "compatibility": level }),
            )
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
}
