//! `kafkit console`: the dead-letter topics in a browser. An overview per
//! DLQ topic (counts by error class, oldest and newest), a list with filters
//! and paging, and each dead letter in full: why it died, where it came
//! from, its payload decoded through the registry, every header, and its
//! trace id. Server-rendered HTML from this binary, readable without
//! JavaScript. Bound to 127.0.0.1 by default; anywhere else it asks for a
//! token.

pub mod index;
pub mod pages;

use crate::dlq::record::DeadLetter;
use crate::dlq::resolved::{self, Resolution, Status};
use anyhow::Context;
use axum::Router;
use axum::extract::{Form, Path, Query as QueryParams, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use index::{Index, Query};
use kafkit_events::EventCodec;
use kafkit_messaging::{
    KafkaArgs, KafkaSettings, ProducerSettings, Publisher, SchemaRegistryArgs, Secret,
};
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

/// What the console serves from: the dead letters it watches, the
/// registry (to decode, and to re-encode an edit against the subject's
/// latest schema), the producer its actions write with.
#[derive(Debug, Clone)]
pub struct Parts {
    pub index: Index,
    pub codec: Arc<EventCodec>,
    pub registry: crate::schemas::Registry,
    pub subjects: kafkit_events::SubjectStrategy,
    pub publisher: Publisher,
    /// A tracing UI's trace page, `{trace_id}` replaced.
    pub trace_url: Option<String>,
}

type Console = Arc<Parts>;

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
pub fn router(parts: Parts, token: Option<Secret>) -> Router {
    let console: Console = Arc::new(parts);
    let token: Option<Arc<str>> = token.map(|t| Arc::from(t.expose()));
    Router::new()
        .route("/", get(overview))
        .route("/dlq/{topic}", get(list))
        .route(
            "/dlq/{topic}/replay",
            get(replay_preview).post(replay_filtered),
        )
        .route("/dlq/{topic}/events", get(arrivals))
        .route("/dlq/{topic}/{partition}/{offset}", get(detail))
        .route("/dlq/{topic}/{partition}/{offset}/resolve", post(resolve))
        .route("/dlq/{topic}/{partition}/{offset}/replay", post(replay_one))
        .route("/dlq/{topic}/{partition}/{offset}/edit", post(edit_and_replay))
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
    let state = console.index.resolution(&crate::dlq::coordinates(&letter));
    let page = pages::detail(
        &letter,
        &value,
        state.as_ref(),
        None,
        console.trace_url.as_deref(),
    );
    Html(page.into_string()).into_response()
}

/// What the edit form sends: the corrected payload as JSON.
#[derive(Debug, serde::Deserialize)]
struct EditForm {
    json: String,
}

/// Re-encodes the corrected payload against the latest schema of the
/// subject the dead letter was written under, and sends it back to the
/// topic it came from, marked `kafkit.replay.edited`. A payload the schema
/// refuses gets its page again, each refused field named, and nothing is sent.
async fn edit_and_replay(
    State(console): State<Console>,
    Path((topic, partition, offset)): Path<(String, i32, i64)>,
    Form(form): Form<EditForm>,
) -> Response {
    let Some(letter) = console.index.get(&topic, partition, offset) else {
        return not_watched(&topic);
    };
    let id = crate::dlq::coordinates(&letter);
    let value = crate::dlq::watch::decoded(&console.codec, letter.value.as_deref()).await;
    let refused = |errors: Vec<crate::dlq::edit::FieldError>| {
        let state = console.index.resolution(&id);
        let page = pages::detail(
            &letter,
            &value,
            state.as_ref(),
            Some((&form.json, &errors)),
            console.trace_url.as_deref(),
        );
        (StatusCode::UNPROCESSABLE_ENTITY, Html(page.into_string())).into_response()
    };
    let whole = |message: String| {
        vec![crate::dlq::edit::FieldError {
            field: String::new(),
            message,
        }]
    };
    let json: serde_json::Value = match serde_json::from_str(&form.json) {
        Ok(json) => json,
        Err(e) => return refused(whole(format!("not JSON: {e}"))),
    };
    let Some(full_name) = value["type"].as_str() else {
        return refused(whole(
            "a payload that never decoded: no schema to re-encode against".into(),
        ));
    };
    let sent = crate::dlq::edit::replay_edited(
        &letter,
        full_name,
        &json,
        &console.registry,
        console.subjects,
        &console.publisher,
        "from the console",
    )
    .await;
    let outcome = match sent {
        Err(errors) => return refused(errors),
        Ok(sent) => settled(&console, &id, sent),
    };
    Html(pages::replayed(&topic, &[(id, outcome)]).into_string()).into_response()
}

/// New dead letters of `topic` as server-sent events (`dead-letter`), each
/// a list row the page puts on top; comments keep the connection alive.
async fn arrivals(State(console): State<Console>, Path(topic): Path<String>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    if !console.index.topics().contains(&topic) {
        return not_watched(&topic);
    }
    let receiver = console.index.arrivals();
    let events = futures::stream::unfold((receiver, topic), |(mut receiver, topic)| async move {
        loop {
            match receiver.recv().await {
                Ok(letter) if letter.dlq_topic == topic => {
                    let row = pages::row(&letter).into_string();
                    let event = Event::default().event("dead-letter").data(row);
                    return Some((Ok::<_, std::convert::Infallible>(event), (receiver, topic)));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What a resolve form sends.
#[derive(Debug, serde::Deserialize)]
struct ResolveForm {
    status: Status,
    reason: String,
}

/// Records how one dead letter was dealt with, in `<dlq>.resolved`.
async fn resolve(
    State(console): State<Console>,
    Path((topic, partition, offset)): Path<(String, i32, i64)>,
    Form(form): Form<ResolveForm>,
) -> Response {
    let Some(letter) = console.index.get(&topic, partition, offset) else {
        return not_watched(&topic);
    };
    if form.reason.trim().is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "say why: the reason is kept with it",
        )
            .into_response();
    }
    let id = crate::dlq::coordinates(&letter);
    let state = Resolution {
        status: form.status,
        reason: form.reason.trim().to_owned(),
        at_ms: crate::dlq::now_ms(),
    };
    match resolved::record(&console.publisher, &topic, &id, &state).await {
        Ok(()) => {
            console.index.resolve(id, Some(state));
            Redirect::to(&pages::detail_link(&letter)).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")).into_response(),
    }
}

/// The open dead letters `query` selects: what a replay of it would send.
fn selected(console: &Console, topic: &str, query: &Query) -> Option<Vec<DeadLetter>> {
    let open = Query {
        status: Some("open".into()),
        ..query.clone()
    };
    console.index.matching(topic, &open)
}

/// What a replay of the filtered open dead letters would send, with the
/// form that sends it.
async fn replay_preview(
    State(console): State<Console>,
    Path(topic): Path<String>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    match selected(&console, &topic, &query) {
        Some(letters) => {
            Html(pages::replay_preview(&topic, &query, &letters).into_string()).into_response()
        }
        None => not_watched(&topic),
    }
}

/// Sends each open dead letter the filter selects back to the topic it came
/// from and records it as replayed: the same replay again sends nothing.
async fn replay_filtered(
    State(console): State<Console>,
    Path(topic): Path<String>,
    Form(query): Form<Query>,
) -> Response {
    let Some(letters) = selected(&console, &topic, &query) else {
        return not_watched(&topic);
    };
    let outcomes = replay_all(&console, &topic, &letters).await;
    Html(pages::replayed(&topic, &outcomes).into_string()).into_response()
}

/// Sends one dead letter back (its page is its preview).
async fn replay_one(
    State(console): State<Console>,
    Path((topic, partition, offset)): Path<(String, i32, i64)>,
) -> Response {
    let Some(letter) = console.index.get(&topic, partition, offset) else {
        return not_watched(&topic);
    };
    let outcomes = replay_all(&console, &topic, std::slice::from_ref(&letter)).await;
    Html(pages::replayed(&topic, &outcomes).into_string()).into_response()
}

/// Each dead letter's id and where it went, or why it did not: key and
/// value byte for byte to the topic it came from, with the audit headers
/// of `kafkit dlq replay` and without the failure headers; then recorded
/// as replayed in `<dlq>.resolved`.
async fn replay_all(
    console: &Console,
    dlq: &str,
    letters: &[DeadLetter],
) -> Vec<(String, Result<String, String>)> {
    let mut outcomes = Vec::new();
    for letter in letters {
        let id = crate::dlq::coordinates(letter);
        let Some(destination) = letter.original_topic.clone() else {
            outcomes.push((id, Err("no original topic in its headers".into())));
            continue;
        };
        let record = crate::dlq::replay_record(letter, &id, &destination);
        let reason = format!("replayed to {destination} from the console");
        let sent = resolved::send_back(&console.publisher, dlq, &id, &record, reason).await;
        let outcome = sent.and_then(|sent| settled(console, &id, sent));
        outcomes.push((id, outcome));
    }
    outcomes
}

/// Where a dead letter went back to, its state shown at once (before the
/// reader brings it back from `<dlq>.resolved`); or why it is not recorded.
fn settled(console: &Console, id: &str, sent: resolved::SentBack) -> Result<String, String> {
    match sent.recorded {
        Ok(()) => {
            console.index.resolve(id.to_owned(), Some(sent.state));
            Ok(sent.destination)
        }
        Err(e) => Err(format!(
            "sent to {}, but not recorded as replayed: {e}",
            sent.destination
        )),
    }
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
        resolved::ensure(&kafka, topic).await?;
        tokio::spawn(index::read_into(
            index.clone(),
            kafka.clone(),
            topic.clone(),
        ));
        tokio::spawn(index::read_resolutions_into(
            index.clone(),
            kafka.clone(),
            topic.clone(),
        ));
    }
    let publisher = Publisher::new(&kafka, &ProducerSettings::default())?;
    let parts = Parts {
        index,
        codec,
        registry: crate::schemas::Registry::of(&args.registry.connection)?,
        subjects: args.registry.subject_strategy,
        publisher,
        trace_url: args.trace_url,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "kafkit console on http://{} (dead letters of {})",
        listener.local_addr()?,
        args.dlqs.join(", ")
    );
    axum::serve(listener, router(parts, args.token))
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
