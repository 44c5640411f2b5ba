//! API errors: a stable code and a message for clients, internals in the logs.

use crate::runtime::HostError;
use crate::storage::StorageFault;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The database cannot be written: 507 when its disk is full, else 503. The operator's
    /// problem, but one the client must see to retry, so it says where and why.
    pub fn storage(f: StorageFault) -> Self {
        if f.disk_full {
            Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                f.message,
            )
        } else {
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", f.message)
        }
    }

    /// A failure of the host itself. Its detail (paths, database errors) is for the operator:
    /// it goes to the log under a reference number, and the client gets a stable message with
    /// that reference.
    pub fn internal(detail: &str) -> Self {
        static NEXT_REF: AtomicU64 = AtomicU64::new(1);
        let reference = NEXT_REF.fetch_add(1, Ordering::Relaxed);
        tracing::error!(reference, "internal error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!(
                "the host failed to complete this request; its log has the details under internal error {reference}"
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::NotFound(m) => ApiError::not_found(m),
            HostError::Invalid(m) => ApiError::invalid(m),
            HostError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            HostError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            HostError::Timeout(m) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", m),
            HostError::Storage(f) => ApiError::storage(f),
            HostError::Internal(e) => ApiError::internal(&format!("{e:#}")),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<StorageFault>() {
            Ok(f) => ApiError::storage(f),
            Err(e) => ApiError::internal(&format!("{e:#}")),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(&format!("a worker failed: {e}"))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn internal_errors_keep_their_detail_in_the_log() {
        let detail = "failed to open /srv/flow/data/flow.redb: Permission denied";
        let e = ApiError::from(HostError::Internal(anyhow::anyhow!("{detail}")));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code, "internal");
        assert!(!e.message.contains("/srv"), "{}", e.message);
        assert!(!e.message.contains("Permission"), "{}", e.message);
        assert!(e.message.contains("internal error "), "{}", e.message);
        // Each failure has its own reference, so a report can be found in the log.
        let other = ApiError::from(anyhow::anyhow!("{detail}"));
        assert_ne!(e.message, other.message);
        // Client errors are shown as they are.
        let e = ApiError::from(HostError::Invalid(
            "document 1: must be a JSON object".into(),
        ));
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::BAD_REQUEST, "document 1: must be a JSON object")
        );
        let e = ApiError::from(HostError::Timeout(
            "tasks did not catch up within 1s".into(),
        ));
        assert_eq!(e.status, StatusCode::GATEWAY_TIMEOUT);
    }
}
