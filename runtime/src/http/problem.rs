//! Errors as `application/problem+json` (RFC 9457), in one place.

use super::idempotency::{Finality, StoredAnswer};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Content type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One broken rule of a request, by field.
///
/// ```
/// use kafkit_runtime::http::FieldError;
///
/// let error = FieldError {
///     field: "items[0].quantity".into(),
///     message: "must be at least 1".into(),
/// };
/// assert_eq!(
///     serde_json::to_value(&error)?,
///     serde_json::json!({"field": "items[0].quantity", "message": "must be at least 1"}),
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// JSON path of the field, e.g. `items[2].quantity`; empty for the body itself.
    pub field: String,
    /// What is wrong with it, for people.
    pub message: String,
}

/// An HTTP error with a reason a caller can act on.
///
/// As a response it is [`body`](Self::body) with content type
/// [`PROBLEM_JSON`] (and `Retry-After` when set):
///
/// ```
/// use axum::http::StatusCode;
/// use kafkit_runtime::http::{FieldError, Problem};
/// use serde_json::json;
///
/// let problem = Problem::new(StatusCode::NOT_FOUND, "Unknown order", "no order 42");
/// assert_eq!(
///     problem.body(),
///     json!({
///         "type": "about:blank",
///         "title": "Unknown order",
///         "status": 404,
///         "detail": "no order 42",
///     }),
/// );
///
/// let invalid = Problem::invalid(
///     "Invalid order",
///     vec![FieldError {
///         field: "currency".into(),
///         message: "must be an ISO 4217 code".into(),
///     }],
/// );
/// let body = invalid.body();
/// assert_eq!(body["status"], 400);
/// assert_eq!(body["detail"], "1 rule(s) broken; see errors");
/// assert_eq!(body["errors"][0]["field"], "currency");
/// ```
#[derive(Debug, Clone)]
pub struct Problem {
    /// HTTP status of the answer, also `status` in the body.
    pub status: StatusCode,
    /// Short summary of the kind of problem (`title`), e.g. "Malformed JSON".
    pub title: &'static str,
    /// What went wrong this time (`detail`).
    pub detail: String,
    /// Broken rules, by field (validation errors only).
    pub errors: Vec<FieldError>,
    /// Seconds, for 503: when trying again makes sense.
    pub retry_after: Option<u64>,
    /// The problem type (RFC 9457 `type`); `about:blank` when the status says it all.
    pub kind: &'static str,
}

/// The event may or may not be in Kafka: no answer came in time.
pub const OUTCOME_UNKNOWN: &str = "urn:kafkit:problem:outcome-unknown";
/// Nothing was published: no broker or registry could take the event now.
pub const NOT_TAKEN: &str = "urn:kafkit:problem:unavailable";
/// `/readyz`: something the service needs is not there now.
pub const NOT_READY: &str = "urn:kafkit:problem:not-ready";

impl Problem {
    /// A problem of type `about:blank`, without field errors or `Retry-After`.
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            kind: "about:blank",
        }
    }

    /// 400 with the broken rules in `errors`, e.g. titled "Invalid order".
    pub fn invalid(title: &'static str, errors: Vec<FieldError>) -> Self {
        let detail = format!("{} rule(s) broken; see errors", errors.len());
        Self {
            errors,
            ..Self::new(StatusCode::BAD_REQUEST, title, detail)
        }
    }

    /// The event was not accepted; the caller may send the same request again.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            kind: NOT_TAKEN,
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Event not accepted, try again",
                detail,
            )
        }
    }

    /// `/readyz` refused: `detail` names each condition that failed and why.
    pub fn not_ready(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            kind: NOT_READY,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "Not ready", detail)
        }
    }

    /// No answer in time: the event may still be stored. Whether a retry is
    /// safe depends on the caller having sent an `Idempotency-Key`.
    pub fn outcome_unknown(waited: std::time::Duration, keyed: bool, retry_after: u64) -> Self {
        let retry = if keyed {
            "Sending the same request with the same Idempotency-Key is safe: it gets the real \
             answer (the same order id), never a second event."
        } else {
            "A retry without an Idempotency-Key may store it twice: send one to retry safely."
        };
        Self {
            retry_after: Some(retry_after),
            kind: OUTCOME_UNKNOWN,
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Outcome unknown",
                format!(
                    "the event was handed to Kafka but no acknowledgement came within {} ms; \
                     it may still be stored. {retry}",
                    waited.as_millis()
                ),
            )
        }
    }

    /// As an answer the idempotency store keeps: a 5xx published nothing
    /// (a later try must run again), anything else is final.
    pub fn stored(&self) -> StoredAnswer {
        StoredAnswer {
            status: self.status,
            content_type: PROBLEM_JSON,
            body: self.body().to_string().into(),
            retry_after: self.retry_after,
            finality: if self.status.is_server_error() {
                Finality::NotTaken
            } else {
                Finality::Final
            },
        }
    }

    /// The problem+json body: `type`, `title`, `status`, `detail`, and
    /// `errors` when there are any.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "type": self.kind,
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
