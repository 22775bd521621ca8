//! Running a request that publishes, so that its caller always learns what
//! happened or that it cannot know yet.
//!
//! Each request runs in a task of its own (a caller that hangs up cannot
//! cancel a publish half way). With an `Idempotency-Key` it runs once per key
//! and body: a repeat gets the first answer again, or waits for it while the
//! first still runs, and a partial answer is handed to the next run to
//! resume. Without an answer by the deadline, or with every broker lost
//! meanwhile, the caller gets 503 `outcome-unknown`; the task goes on and
//! the key's entry gets the real answer for the retry.

use super::body::idempotency_key;
use super::idempotency::{Begin, IdempotencyStore, StoredAnswer};
use super::metrics::HttpMetrics;
use super::problem::Problem;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use kafkit_messaging::BrokerWatch;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

/// Runs publishing requests: idempotent by key, answered by a deadline.
#[derive(Debug, Clone)]
pub struct Ingest {
    idempotency: Arc<IdempotencyStore>,
    brokers: BrokerWatch,
    deadline: Duration,
    retry_after_secs: u64,
    metrics: HttpMetrics,
}

impl Ingest {
    /// Answers come within `deadline` (the producer's delivery timeout plus
    /// a little); a 503 tells the caller to try again after `retry_after_secs`.
    pub fn new(
        idempotency: Arc<IdempotencyStore>,
        brokers: BrokerWatch,
        deadline: Duration,
        retry_after_secs: u64,
        metrics: HttpMetrics,
    ) -> Self {
        Self {
            idempotency,
            brokers,
            deadline,
            retry_after_secs,
            metrics,
        }
    }

    /// Whether a broker answers, as the background probe last saw it.
    pub fn brokers(&self) -> &BrokerWatch {
        &self.brokers
    }

    /// Runs `handle` in a task of its own and answers with what it returns;
    /// `handle` gets the partial answer of an earlier run with the same key,
    /// to resume. `route` scopes the keys.
    pub async fn run<F, Fut>(
        &self,
        route: &str,
        headers: &HeaderMap,
        body: &Bytes,
        handle: F,
    ) -> Response
    where
        F: FnOnce(Option<StoredAnswer>) -> Fut + Send + 'static,
        Fut: Future<Output = StoredAnswer> + Send + 'static,
    {
        let key = match idempotency_key(headers) {
            Ok(key) => key,
            Err(problem) => return problem.into_response(),
        };
        let Some(key) = key else {
            let (answer, answers) = watch::channel(None);
            tokio::spawn(
                async move {
                    answer.send_replace(Some(handle(None).await));
                }
                .in_current_span(),
            );
            return self.await_answer(answers, false, false).await;
        };
        match self.idempotency.begin(route, key, body) {
            Begin::Replay(stored) => respond(stored, true),
            Begin::Mismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key reused",
                "this key was already used with a different request body",
            )
            .into_response(),
            Begin::Wait(answers) => self.await_answer(answers, true, true).await,
            Begin::Run(claim) => {
                let answers = claim.answers();
                let previous = claim.previous().cloned();
                let metrics = self.metrics.clone();
                tokio::spawn(
                    async move {
                        let answer = handle(previous).await;
                        metrics.idempotency_evicted(claim.finish(answer));
                    }
                    .in_current_span(),
                );
                self.await_answer(answers, false, true).await
            }
        }
    }

    /// The task's answer, or `outcome-unknown` at the deadline or when every
    /// broker is lost while waiting (if one was reachable when it began).
    async fn await_answer(
        &self,
        mut answers: watch::Receiver<Option<StoredAnswer>>,
        replayed: bool,
        keyed: bool,
    ) -> Response {
        let reachable = self.brokers.state().is_reachable();
        let lost = async {
            if reachable {
                self.brokers.lost().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let answer = tokio::select! {
            biased;
            answer = answers.wait_for(Option::is_some) => answer.ok().and_then(|a| a.clone()),
            () = tokio::time::sleep(self.deadline) => None,
            () = lost => None,
        };
        match answer {
            Some(answer) => respond(answer, replayed),
            None => {
                tracing::warn!(keyed, "no answer from Kafka in time: outcome unknown");
                Problem::outcome_unknown(self.deadline, keyed, self.retry_after_secs)
                    .into_response()
            }
        }
    }
}

/// An answer as a response; `replayed` marks a repeat of an earlier one
/// (`idempotent-replayed: true`).
pub fn respond(stored: StoredAnswer, replayed: bool) -> Response {
    let mut response = (
        stored.status,
        [(header::CONTENT_TYPE, stored.content_type)],
        stored.body,
    )
        .into_response();
    if let Some(seconds) = stored.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `router` with every request in a server span (continuing the caller's
/// trace when it sent `traceparent`) and measured by route and status.
pub fn traced<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    metrics: HttpMetrics,
) -> Router<S> {
    router.layer(middleware::from_fn_with_state(metrics, track_requests))
}

async fn track_requests(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let (traceparent, tracestate) = {
        let header = |name: &str| -> Option<String> {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header(kafkit_telemetry::context::TRACEPARENT),
            header(kafkit_telemetry::context::TRACESTATE),
        )
    };
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        "http.request.method" = method.as_str(),
        "http.route" = route.as_str(),
        "url.path" = path.as_str(),
        "http.response.status_code" = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    kafkit_telemetry::context::set_parent(&span, traceparent.as_deref(), tracestate.as_deref());
    kafkit_telemetry::context::record_ids(&span, traceparent.as_deref());
    metrics.request_started(&method, &route);
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    metrics.request_finished(&method, &route, status, started.elapsed());
    response
}
