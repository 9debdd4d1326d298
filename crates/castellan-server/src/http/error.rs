//! The `/v1` error body and the one mapping of service errors to HTTP statuses.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ServiceError;

use super::MAX_BODY;

/// A `/v1` error: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The status (for surfaces that answer in another shape, such as the Vault-shaped API).
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"castellan\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m)
            }
            ServiceError::NotFound(m) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{m} not found"))
            }
            ServiceError::Conflict(m) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{m} already exists"),
            ),
            ServiceError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            ServiceError::Precondition(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            ServiceError::NotInitialized => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_initialized",
                e.to_string(),
            ),
            ServiceError::Pki(p) => match p {
                castellan_core::pki::PkiError::KeyGeneration
                | castellan_core::pki::PkiError::Build { .. } => {
                    tracing::error!(error = %p, "issuance failed");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "issuance_failed",
                        "the certificate could not be issued",
                    )
                }
                castellan_core::pki::PkiError::UnknownProfile { .. } => {
                    ApiError::new(StatusCode::NOT_FOUND, p.code(), p.to_string())
                }
                other => ApiError::new(StatusCode::BAD_REQUEST, other.code(), other.to_string()),
            },
            // The cause (host and port of the database) is for the operator: in the log once, when the
            // probe finds the outage, and in `/v1/sys/status`; not in every answer to every caller.
            ServiceError::Store(castellan_store::StoreError::Unavailable(_)) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store is unreachable; retry shortly",
            ),
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service could not complete the request",
                )
            }
        }
    }
}

pub(crate) fn json_rejection(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over {MAX_BODY} bytes"),
        );
    }
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", r.body_text())
}
