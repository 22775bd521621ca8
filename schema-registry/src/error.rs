//! The registry's errors, with Confluent's HTTP statuses and error codes.
//!
//! Clients such as `schema_registry_converter` and the Java serializers read
//! `error_code`, so the codes follow Confluent's exactly.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Content type of every response, errors included.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("{0}")]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "Version {version} of subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted { subject: String, version: u32 },
    #[error(
        "Version {version} of subject '{subject}' was not deleted first before being permanently deleted"
    )]
    VersionNotSoftDeleted { subject: String, version: u32 },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectLevelNotConfigured(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error("{0}")]
    InvalidCompatibilityLevel(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: {}", details.join("; "))]
    Incompatible {
        subject: String,
        details: Vec<String>,
    },
    #[error("Malformed JSON body: {0}")]
    MalformedJson(String),
    #[error("Unprocessable entity: {0}")]
    Unprocessable(String),
    #[error("Error while storing to the _schemas topic: {0}")]
    Store(String),
    #[error("{0}")]
    Fenced(String),
    #[error("Subject {0} is in read-only mode")]
    ReadOnlyMode(String),
    #[error("{0}")]
    InvalidMode(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotConfigured(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::SubjectNotFound(_)
            | Self::VersionNotFound(_)
            | Self::SchemaNotFound(_)
            | Self::SubjectSoftDeleted(_)
            | Self::SubjectNotSoftDeleted(_)
            | Self::VersionSoftDeleted { .. }
            | Self::VersionNotSoftDeleted { .. }
            | Self::SubjectLevelNotConfigured(_)
            | Self::SubjectModeNotConfigured(_) => StatusCode::NOT_FOUND,
            Self::InvalidSchema(_)
            | Self::InvalidVersion(_)
            | Self::InvalidCompatibilityLevel(_)
            | Self::Unprocessable(_)
            | Self::ReadOnlyMode(_)
            | Self::InvalidMode(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Incompatible { .. } => StatusCode::CONFLICT,
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Fenced(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Confluent's `error_code`.
    pub fn error_code(&self) -> u32 {
        match self {
            Self::SubjectNotFound(_) => 40401,
            Self::VersionNotFound(_) => 40402,
            Self::SchemaNotFound(_) => 40403,
            Self::SubjectSoftDeleted(_) => 40404,
            Self::SubjectNotSoftDeleted(_) => 40405,
            Self::VersionSoftDeleted { .. } => 40406,
            Self::VersionNotSoftDeleted { .. } => 40407,
            Self::SubjectLevelNotConfigured(_) => 40408,
            Self::InvalidSchema(_) => 42201,
            Self::InvalidVersion(_) => 42202,
            Self::InvalidCompatibilityLevel(_) => 42203,
            Self::Unprocessable(_) => 422,
            Self::Incompatible { .. } => 409,
            Self::MalformedJson(_) => 400,
            Self::Store(_) => 50001,
            // Confluent's "error while forwarding to the leader": not the writer.
            Self::Fenced(_) => 50003,
            Self::ReadOnlyMode(_) => 42205,
            Self::InvalidMode(_) => 42204,
            Self::SubjectModeNotConfigured(_) => 40409,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({"error_code": self.error_code(), "message": self.to_string()});
        let mut response = (self.status(), body.to_string()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}
