//! `kafkit console`: the dead-letter topics in a browser. An overview per
//! DLQ topic (counts by error class, oldest and newest), a list with filters
//! and paging, and each dead letter in full: why it died, where it came
//! from, its payload decoded through the registry, every header, and its
//! trace id. Server-rendered HTML from this binary, readable without
//! JavaScript. Bound to 127.0.0.1 by default; anywhere else it asks for a
//! token.

pub mod index;
pub mod pages;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, Query as QueryParams, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use index::{Index, Query};
use kafkit_events::EventCodec;
use kafkit_messaging::{KafkaArgs, KafkaSettings, SchemaRegistryArgs, Secret};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// Where to serve. Anywhere but a loopback address needs --token.
    #[arg(long, env = "KAFKIT_CONSOLE_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// A dead-letter topic to show; repeatable.
    #[arg(long = "dlq", default_value = "orders.dlq")]
    pub dlqs: Vec<String>,
    /// Asked of every request (`Authorization: Bearer <token>` or `?token=`).
    #[arg(long, env = "KAFKIT_CONSOLE_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// A tracing UI's trace page, `{trace_id}` replaced, e.g.
    /// http://localhost:16686/trace/{trace_id} for Jaeger.
    #[arg(long, env = "KAFKIT_CONSOLE_TRACE_URL")]
    pub trace_url: Option<String>,
    #[command(flatten)]
    pub registry: SchemaRegistryArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// What every page reads.
#[derive(Clone)]
struct Console {
    index: Index,
    codec: Arc<EventCodec>,
    trace_url: Option<Arc<str>>,
}

/// Whether a request may see the console: always without a token,
/// otherwise only with that token as a bearer header or `token` parameter.
pub fn allowed(token: Option<&str>, authorization: Option<&str>, query: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let bearer = authorization.and_then(|a| a.strip_prefix("Bearer "));
    let param = query.and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")));
    [bearer, param]
        .into_iter()
        .flatten()
        .any(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses to serve beyond this machine without a token.
pub fn check_exposure(listen: SocketAddr, token: Option<&Secret>) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() && token.is_none() {
        anyhow::bail!(
            "the console shows record contents: bound to {listen} it needs --token (or KAFKIT_CONSOLE_TOKEN); on this machine only, keep the default 127.0.0.1"
        );
    }
    Ok(())
}

/// The console's routes over `index`.
pub fn router(
    index: Index,
    codec: Arc<EventCodec>,
    token: Option<Secret>,
    trace_url: Option<String>,
) -> Router {
    let console = Console {
        index,
        codec,
        trace_url: trace_url.map(Arc::from),
    };
    let token: Option<Arc<str>> = token.map(|t| Arc::from(t.expose()));
    Router::new()
        .route("/", get(overview))
        .route("/dlq/{topic}", get(list))
        .route("/dlq/{topic}/{partition}/{offset}", get(detail))
        .with_state(console)
        .layer(axum::middleware::from_fn(move |request: Request, next: Next| {
            let token = token.clone();
            async move {
                let authorization = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if allowed(token.as_deref(), authorization, request.uri().query()) {
                    next.run(request).await
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Bearer")],
                        "this console needs its token: Authorization: Bearer <token>, or ?token=<token>",
                    )
                        .into_response()
                }
            }
        }))
}

async fn overview(State(console): State<Console>) -> Html<String> {
    Html(pages::overview(&console.index.overview()).into_string())
}

async fn list(
    State(console): State<Console>,
    Path(topic): Path<String>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    match console.index.list(&topic, &query) {
        Some(page) => Html(pages::list(&topic, &query, &page).into_string()).into_response(),
        None => not_watched(&topic),
    }
}

async fn detail(
    State(console): State<Console>,
    Path((topic, partition, offset)): Path<(String, i32, i64)>,
) -> Response {
    let Some(letter) = console.index.get(&topic, partition, offset) else {
        if console.index.topics().contains(&topic) {
            return (
                StatusCode::NOT_FOUND,
                format!("no dead letter at {topic}/{partition}/{offset}"),
            )
                .into_response();
        }
        return not_watched(&topic);
    };
    let value = crate::dlq::watch::decoded(&console.codec, letter.value.as_deref()).await;
    Html(pages::detail(&letter, &value, console.trace_url.as_deref()).into_string()).into_response()
}

fn not_watched(topic: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("{topic} is not a dead-letter topic this console watches (--dlq)"),
    )
        .into_response()
}

/// `kafkit console`: reads the DLQ topics and serves the pages until Ctrl-C.
pub async fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    check_exposure(args.listen, args.token.as_ref())?;
    let kafka = KafkaSettings::from(args.kafka.clone());
    let codec = Arc::new(EventCodec::new(args.registry.codec_settings())?);
    let index = Index::new(&args.dlqs);
    for topic in &args.dlqs {
        tokio::spawn(index::read_into(
            index.clone(),
            kafka.clone(),
            topic.clone(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "kafkit console on http://{} (dead letters of {})",
        listener.local_addr()?,
        args.dlqs.join(", ")
    );
    axum::serve(listener, router(index, codec, args.token, args.trace_url))
        .with_graceful_shutdown(kafkit_messaging::shutdown_signal())
        .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn without_a_token_anyone_on_the_bound_address_may_look() {
        assert!(allowed(None, None, None));
    }

    #[test]
    fn with_a_token_only_a_request_carrying_it_gets_in() {
        let token = Some("s3cret");
        assert!(!allowed(token, None, None));
        assert!(!allowed(token, Some("Bearer nope"), Some("token=nope")));
        assert!(allowed(token, Some("Bearer s3cret"), None));
        assert!(allowed(token, None, Some("class=x&token=s3cret")));
        assert!(!allowed(token, Some("Basic s3cret"), None));
    }

    #[test]
    fn only_a_loopback_address_goes_without_a_token() {
        let token: Secret = "t".parse().unwrap();
        assert!(check_exposure("127.0.0.1:8090".parse().unwrap(), None).is_ok());
        let exposed: SocketAddr = "0.0.0.0:8090".parse().unwrap();
        let refused = check_exposure(exposed, None).unwrap_err().to_string();
        assert!(refused.contains("--token"), "{refused}");
        assert!(check_exposure(exposed, Some(&token)).is_ok());
    }
}
