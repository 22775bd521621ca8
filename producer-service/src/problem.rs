//! Errors as `application/problem+json` (RFC 9457), in one place.

use crate::domain::FieldError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An HTTP error with a reason a caller can act on.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    /// Broken rules, by field (validation errors only).
    pub errors: Vec<FieldError>,
    /// Seconds, for 503: when trying again makes sense.
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = format!("{} rule(s) broken; see errors", errors.len());
        Self {
            errors,
            ..Self::new(StatusCode::BAD_REQUEST, "Invalid order", detail)
        }
    }

    /// The event was not accepted; the caller may send the same request again.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Event not accepted, try again",
                detail,
            )
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "type": "about:blank",
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
