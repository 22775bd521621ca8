//! Optional HTTP basic authentication: with users configured, every request
//! but the probes (`/healthz`, `/readyz`, `/metrics`) must name one.
//!
//! Users come from `--users user:password,...` (`SCHEMA_REGISTRY_USERS`)
//! and/or `--users-file` (`SCHEMA_REGISTRY_USERS_FILE`, one `user:password`
//! a line, `#` comments). Passwords are kept as SHA-256 digests only.

use crate::error::CONTENT_TYPE;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where users are configured; none means no authentication.
#[derive(Clone, Default)]
pub struct Users {
    pub inline: Vec<(String, String)>,
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.inline.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("Users")
            .field("inline", &names)
            .field("file", &self.file)
            .finish()
    }
}

/// Users given on the command line or in the environment.
#[derive(Clone)]
pub struct UserList(pub Vec<(String, String)>);

impl std::fmt::Debug for UserList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_tuple("UserList").field(&names).finish()
    }
}

/// For clap: `user:password,user2:password2`.
pub fn parse_user_list(text: &str) -> Result<UserList, String> {
    parse_users(text).map(UserList)
}

/// `user:password,user2:password2` (or one a line).
pub fn parse_users(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|pair| {
            pair.split_once(':')
                .filter(|(user, password)| !user.is_empty() && !password.is_empty())
                .map(|(user, password)| (user.to_owned(), password.to_owned()))
                .ok_or_else(|| "expected user:password".to_owned())
        })
        .collect()
}

/// The users a request may authenticate as (user → password digest).
#[derive(Debug, Clone, Default)]
pub struct Credentials(Arc<HashMap<String, [u8; 32]>>);

fn digest(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

impl Credentials {
    pub fn load(users: &Users) -> Result<Self, String> {
        let mut all = users.inline.clone();
        if let Some(path) = &users.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("could not read {}: {e}", path.display()))?;
            all.extend(parse_users(&text).map_err(|e| format!("{}: {e}", path.display()))?);
        }
        Ok(Self(Arc::new(
            all.into_iter().map(|(u, p)| (u, digest(&p))).collect(),
        )))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let decoded = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok());
        let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return false;
        };
        self.0.get(user).is_some_and(|d| *d == digest(password))
    }
}

/// Refuses requests without a configured user's credentials (401).
pub async fn require_user(
    State(credentials): State<Credentials>,
    request: Request,
    next: Next,
) -> Response {
    let open = matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics");
    if credentials.is_empty()
        || open
        || credentials.admits(request.headers().get(header::AUTHORIZATION))
    {
        return next.run(request).await;
    }
    let body = serde_json::json!({
        "error_code": 40101,
        "message": "Unauthorized: send HTTP basic credentials of a configured user",
    });
    let mut response = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"schema-registry\""),
    );
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_from_pairs_and_lines_and_passwords_are_checked() {
        assert_eq!(
            parse_users("a:1, b:two\n# c:3\n").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "two".into())]
        );
        assert!(parse_users("nocolon").is_err());
        let credentials = Credentials::load(&Users {
            inline: parse_users("alice:s3cret").unwrap(),
            file: None,
        })
        .unwrap();
        let basic = |pair: &str| {
            HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
            .unwrap()
        };
        assert!(credentials.admits(Some(&basic("alice:s3cret"))));
        assert!(!credentials.admits(Some(&basic("alice:wrong"))));
        assert!(!credentials.admits(Some(&basic("bob:s3cret"))));
        assert!(!credentials.admits(None));
    }
}
