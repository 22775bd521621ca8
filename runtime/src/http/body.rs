//! Reading a JSON request body the way a public API must: the content type
//! checked (415), the size bounded (413, answered even to a client that
//! sends everything before it reads), the `Idempotency-Key` header checked.

use super::problem::Problem;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::{Duration, Instant};

const JSON: &str = "application/json";

/// A body past the limit is still read (and thrown away) up to this many
/// bytes, so a client that sends it all before reading gets its 413.
const DRAIN_MAX_BYTES: usize = 16 * 1024 * 1024;
/// And for at most this long.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);

/// Reads a JSON body: 415 for another content type, 413 past `limit` bytes,
/// 400 for a body that cannot be read.
pub async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != JSON && !essence.ends_with("+json") {
        let shown = if content_type.is_empty() {
            "none".to_owned()
        } else {
            format!("{content_type:?}")
        };
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            format!("send Content-Type: application/json (got {shown})"),
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
            format!("the body may be at most {limit} bytes"),
        )
    };
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // A client that waits for 100 Continue (curl) reads the 413 before
    // sending; one that sends first (urllib, most scripts) must be read to
    // the end or it sees a broken pipe instead of the answer.
    if declared.is_some_and(|n| n > limit && (expects_continue || n > DRAIN_MAX_BYTES)) {
        return Err(too_large());
    }
    let mut body = body;
    let mut kept = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut seen = 0usize;
    let started = Instant::now();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(_) if seen > limit => return Err(too_large()),
            Err(e) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "Unreadable body",
                    e.to_string(),
                ));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > DRAIN_MAX_BYTES || started.elapsed() > DRAIN_MAX_TIME {
            break;
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(Bytes::from(kept))
}

/// Parses a body read by [`read_json_body`]; 400 "Malformed JSON" when it
/// is not JSON.
///
/// ```
/// use kafkit_runtime::http::parse_json;
///
/// let value = parse_json(br#"{"currency": "EUR"}"#).ok();
/// assert_eq!(value, Some(serde_json::json!({"currency": "EUR"})));
///
/// let problem = parse_json(b"{\"currency\":").err().map(|p| (p.status.as_u16(), p.title));
/// assert_eq!(problem, Some((400, "Malformed JSON")));
/// ```
pub fn parse_json(body: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "Malformed JSON",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// The request's `Idempotency-Key`, if it sent one.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match raw.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key)),
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "Invalid Idempotency-Key",
            "the key must be 1 to 255 visible ASCII characters",
        )),
    }
}
