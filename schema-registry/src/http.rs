//! The REST API: Confluent's paths, bodies and error codes.
//!
//! Bodies are read as bytes and parsed here, so that malformed JSON, a wrong
//! field type or a schema that does not parse each get Confluent's error
//! instead of a framework default.

use crate::compatibility::CompatibilityLevel;
use crate::error::{ApiError, CONTENT_TYPE};
use crate::records::Mode;
use crate::registry::Registry;
use crate::state::{SubjectVersion, ValidSchema, VersionSpec};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

type Shared = State<Arc<Registry>>;
type Params = Query<HashMap<String, String>>;
type Answer = Result<Response, ApiError>;

/// Every route of the registry.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/types", get(|| async { reply(json!(["AVRO"])) }))
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_against_level),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_against_version),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
        .route(
            "/healthz",
            get(|| async { reply(json!({"status": "alive"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { not_found("HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async {
            error_body(
                StatusCode::METHOD_NOT_ALLOWED,
                405,
                "HTTP 405 Method Not Allowed",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            registry.clone(),
            count_requests,
        ))
        .with_state(registry)
}

fn with_content_type(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn reply(value: serde_json::Value) -> Response {
    with_content_type(value.to_string().into_response())
}

fn error_body(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({"error_code": code, "message": message}).to_string();
    with_content_type((status, body).into_response())
}

fn not_found(message: &str) -> Response {
    error_body(StatusCode::NOT_FOUND, 404, message)
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Sorts serde_json errors the way Confluent does: bad syntax is 400, a body
/// of the wrong shape is 422.
fn body_error(e: serde_json::Error) -> ApiError {
    match e.classify() {
        serde_json::error::Category::Data => ApiError::Unprocessable(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    }
}

#[derive(Deserialize)]
struct SchemaRequest {
    schema: Option<String>,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

fn schema_from_body(body: &[u8]) -> Result<ValidSchema, ApiError> {
    let request: SchemaRequest = serde_json::from_slice(body).map_err(body_error)?;
    match request.schema_type.as_deref() {
        None | Some("AVRO") => {}
        Some(other) => {
            return Err(ApiError::InvalidSchema(format!(
                "schema type {other} is not supported by this registry; only AVRO is"
            )));
        }
    }
    if !request.references.is_empty() {
        return Err(ApiError::InvalidSchema(
            "schema references are not supported by this registry".into(),
        ));
    }
    let text = request
        .schema
        .ok_or_else(|| ApiError::InvalidSchema("the request has no \"schema\" field".into()))?;
    ValidSchema::parse(&text)
}

fn level_from_body(body: &[u8]) -> Result<CompatibilityLevel, ApiError> {
    #[derive(Deserialize)]
    struct ConfigRequest {
        compatibility: Option<String>,
    }
    let request: ConfigRequest = serde_json::from_slice(body).map_err(body_error)?;
    let level = request.compatibility.ok_or_else(|| {
        ApiError::InvalidCompatibilityLevel("the request has no \"compatibility\" field".into())
    })?;
    level.parse().map_err(ApiError::InvalidCompatibilityLevel)
}

async fn list_subjects(State(registry): Shared, Query(params): Params) -> Answer {
    Ok(reply(json!(
        registry.read().subjects(flag(&params, "deleted"))
    )))
}

async fn list_versions(
    State(registry): Shared,
    Path(subject): Path<String>,
    Query(params): Params,
) -> Answer {
    Ok(reply(json!(
        registry
            .read()
            .versions(&subject, flag(&params, "deleted"))?
    )))
}

async fn register(State(registry): Shared, Path(subject): Path<String>, body: Bytes) -> Answer {
    let schema = schema_from_body(&body)?;
    let id = registry.register(&subject, &schema).await?;
    Ok(reply(json!({"id": id})))
}

async fn lookup(
    State(registry): Shared,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> Answer {
    let schema = schema_from_body(&body)?;
    let found = registry
        .read()
        .lookup(&subject, &schema, flag(&params, "deleted"))?;
    Ok(reply(json!(found)))
}

/// The version named in the path; `?deleted=true` includes soft-deleted ones.
fn find_version(
    registry: &Registry,
    subject: &str,
    version: &str,
    params: &HashMap<String, String>,
) -> Result<SubjectVersion, ApiError> {
    let spec = VersionSpec::parse(version)?;
    registry
        .read()
        .version(subject, spec, flag(params, "deleted"))
}

async fn get_version(
    State(registry): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> Answer {
    let found = find_version(&registry, &subject, &version, &params)?;
    Ok(reply(json!(found)))
}

async fn get_version_schema(
    State(registry): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> Answer {
    let found = find_version(&registry, &subject, &version, &params)?;
    Ok(with_content_type(found.schema.into_response()))
}

async fn delete_subject(
    State(registry): Shared,
    Path(subject): Path<String>,
    Query(params): Params,
) -> Answer {
    Ok(reply(json!(
        registry
            .delete_subject(&subject, flag(&params, "permanent"))
            .await?
    )))
}

async fn delete_version(
    State(registry): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> Answer {
    let spec = VersionSpec::parse(&version)?;
    Ok(reply(json!(
        registry
            .delete_version(&subject, spec, flag(&params, "permanent"))
            .await?
    )))
}

fn parse_id(id: &str) -> Result<u32, ApiError> {
    id.parse().map_err(|_| {
        ApiError::SchemaNotFound(format!("Schema {id} not found: ids are positive integers"))
    })
}

async fn schema_by_id(State(registry): Shared, Path(id): Path<String>) -> Answer {
    Ok(reply(
        json!({"schema": registry.read().schema_by_id(parse_id(&id)?)?}),
    ))
}

async fn raw_schema_by_id(State(registry): Shared, Path(id): Path<String>) -> Answer {
    Ok(with_content_type(
        registry
            .read()
            .schema_by_id(parse_id(&id)?)?
            .into_response(),
    ))
}

fn compatibility_answer(messages: Vec<String>, verbose: bool) -> Response {
    let mut body = json!({"is_compatible": messages.is_empty()});
    if verbose {
        body["messages"] = json!(messages);
    }
    reply(body)
}

async fn check_against_level(
    State(registry): Shared,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> Answer {
    let schema = schema_from_body(&body)?;
    let messages = registry.read().violations(&subject, &schema, None)?;
    Ok(compatibility_answer(messages, flag(&params, "verbose")))
}

async fn check_against_version(
    State(registry): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> Answer {
    let spec = VersionSpec::parse(&version)?;
    let schema = schema_from_body(&body)?;
    let messages = registry.read().violations(&subject, &schema, Some(spec))?;
    Ok(compatibility_answer(messages, flag(&params, "verbose")))
}

async fn get_global_config(State(registry): Shared) -> Answer {
    Ok(reply(
        json!({"compatibilityLevel": registry.read().global_level().to_string()}),
    ))
}

async fn put_global_config(State(registry): Shared, body: Bytes) -> Answer {
    let level = level_from_body(&body)?;
    registry.set_level(None, level).await?;
    Ok(reply(json!({"compatibility": level.to_string()})))
}

async fn get_subject_config(
    State(registry): Shared,
    Path(subject): Path<String>,
    Query(params): Params,
) -> Answer {
    let state = registry.read();
    let level = match state.subject_level(&subject) {
        Some(level) => level,
        None if flag(&params, "defaultToGlobal") => state.global_level(),
        None => return Err(ApiError::SubjectLevelNotConfigured(subject)),
    };
    Ok(reply(json!({"compatibilityLevel": level.to_string()})))
}

async fn put_subject_config(
    State(registry): Shared,
    Path(subject): Path<String>,
    body: Bytes,
) -> Answer {
    let level = level_from_body(&body)?;
    registry.set_level(Some(&subject), level).await?;
    Ok(reply(json!({"compatibility": level.to_string()})))
}

async fn delete_subject_config(State(registry): Shared, Path(subject): Path<String>) -> Answer {
    let previous = registry.delete_subject_level(&subject).await?;
    Ok(reply(json!({"compatibilityLevel": previous.to_string()})))
}

/// `{"mode": "READONLY"}` from a PUT body.
fn mode_from_body(body: &[u8]) -> Result<Mode, ApiError> {
    #[derive(Deserialize)]
    struct ModeRequest {
        mode: String,
    }
    let request: ModeRequest = serde_json::from_slice(body).map_err(body_error)?;
    request.mode.parse().map_err(ApiError::InvalidMode)
}

async fn get_global_mode(State(registry): Shared) -> Answer {
    Ok(reply(
        json!({"mode": registry.read().global_mode().to_string()}),
    ))
}

async fn put_global_mode(State(registry): Shared, body: Bytes) -> Answer {
    let mode = mode_from_body(&body)?;
    registry.set_mode(None, mode).await?;
    Ok(reply(json!({"mode": mode.to_string()})))
}

async fn get_subject_mode(
    State(registry): Shared,
    Path(subject): Path<String>,
    Query(params): Params,
) -> Answer {
    let state = registry.read();
    let mode = match state.subject_mode(&subject) {
        Some(mode) => mode,
        None if flag(&params, "defaultToGlobal") => state.global_mode(),
        None => return Err(ApiError::SubjectModeNotConfigured(subject)),
    };
    Ok(reply(json!({"mode": mode.to_string()})))
}

async fn put_subject_mode(
    State(registry): Shared,
    Path(subject): Path<String>,
    body: Bytes,
) -> Answer {
    let mode = mode_from_body(&body)?;
    registry.set_mode(Some(&subject), mode).await?;
    Ok(reply(json!({"mode": mode.to_string()})))
}

async fn delete_subject_mode(State(registry): Shared, Path(subject): Path<String>) -> Answer {
    let previous = registry.delete_subject_mode(&subject).await?;
    Ok(reply(json!({"mode": previous.to_string()})))
}

async fn readyz(State(registry): Shared) -> Response {
    match registry.store().check_ready().await {
        Ok(()) => reply(json!({"status": "ready"})),
        Err(e) => error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            50300,
            &format!("not ready: {e}"),
        ),
    }
}

/// Counts API requests, so a client's caching can be checked from outside.
async fn count_requests(
    State(registry): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !matches!(request.uri().path(), "/metrics" | "/healthz" | "/readyz") {
        registry
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    next.run(request).await
}

/// Prometheus text format.
async fn metrics(State(registry): Shared) -> Response {
    let state = registry.read();
    let body = format!(
        "# HELP schema_registry_requests_total API requests served.\n\
         # TYPE schema_registry_requests_total counter\n\
         schema_registry_requests_total {}\n\
         # HELP schema_registry_subjects Subjects with a live version.\n\
         # TYPE schema_registry_subjects gauge\n\
         schema_registry_subjects {}\n",
        registry.requests.load(std::sync::atomic::Ordering::Relaxed),
        state.subjects(false).len(),
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}
