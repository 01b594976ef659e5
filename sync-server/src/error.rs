//! Every way a request can fail, and the one place each becomes an HTTP
//! response: a status and an [`ErrorBody`] with a stable code. Messages name
//! limits and fields, never personal data; internal failures are logged with
//! the request's id and answered without detail.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use till_core::sync::protocol::{ErrorBody, ErrorCode, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use crate::storage::StorageError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON, bad query parameter.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No usable token.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// The token was revoked.
    #[error("device revoked")]
    DeviceRevoked,
    /// The client's protocol version is missing or not spoken here.
    #[error("unsupported protocol version")]
    UnsupportedProtocol,
    /// The body is larger than the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// More changes in one push than allowed.
    #[error("batch of {got} changes exceeds {max}")]
    BatchTooLarge {
        /// Changes sent.
        got: usize,
        /// The cap.
        max: usize,
    },
    /// The device sent more requests than its rate limit allows.
    #[error("rate limited for {retry_after_secs} s")]
    RateLimited {
        /// When the device's next request will pass, in whole seconds.
        retry_after_secs: u64,
    },
    /// Too many long-poll waits are open: the device's own (`device`) or
    /// the server's in all.
    #[error("too many open waits")]
    WaitsFull {
        /// The device's own limit was reached, not the server's.
        device: bool,
    },
    /// The request ran past the server's time limit.
    #[error("request timed out")]
    Timeout,
    /// The device must bootstrap again.
    #[error("rebootstrap required: {0}")]
    RebootstrapRequired(String),
    /// No such route.
    #[error("not found")]
    NotFound,
    /// Not ready to serve (storage down, shutting down).
    #[error("unavailable")]
    Unavailable,
    /// The storage backend failed; the detail is logged, not returned.
    #[error("storage: {0}")]
    Storage(String),
    /// Anything else; the detail is logged, not returned.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::CursorAhead { .. } | StorageError::BehindHorizon { .. } => {
                ApiError::RebootstrapRequired(e.to_string())
            }
            other => ApiError::Storage(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // The rejection's own text can quote the body: keep only its kind.
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::BadRequest("expected Content-Type: application/json".into())
            }
            _ => ApiError::BadRequest("body is not JSON of the expected shape".into()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(_: QueryRejection) -> Self {
        ApiError::BadRequest("query parameters are not valid".into())
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, ErrorCode, String) {
        use ApiError::*;
        match self {
            BadRequest(m) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m.clone()),
            Unauthorized(m) => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                (*m).into(),
            ),
            DeviceRevoked => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::DeviceRevoked,
                "this device's token was revoked; enroll it again".into(),
            ),
            UnsupportedProtocol => (
                StatusCode::UPGRADE_REQUIRED,
                ErrorCode::UnsupportedProtocolVersion,
                format!(
                    "send header till-protocol with a version from {MIN_PROTOCOL_VERSION} \
                     to {PROTOCOL_VERSION}; update the app if it is older"
                ),
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "request body exceeds the size limit; send smaller batches".into(),
            ),
            BatchTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BatchTooLarge,
                self.to_string(),
            ),
            RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!(
                    "this device sends more requests than its rate limit; \
                     retry after {retry_after_secs} s"
                ),
            ),
            WaitsFull { device: true } => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "this device holds as many open waits as it may; retry when one ends".into(),
            ),
            WaitsFull { device: false } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the server holds as many open waits as it may; retry".into(),
            ),
            Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Timeout,
                "request took too long; retry".into(),
            ),
            RebootstrapRequired(m) => (StatusCode::GONE, ErrorCode::RebootstrapRequired, m.clone()),
            NotFound => (
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such endpoint".into(),
            ),
            Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "not ready; retry".into(),
            ),
            Storage(_) | Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "internal error; retry later".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        match &self {
            ApiError::Storage(detail) => tracing::error!(error = %detail, "storage failed"),
            ApiError::Internal(detail) => tracing::error!(error = %detail, "request failed"),
            _ => {}
        }
        let supported_versions = matches!(self, ApiError::UnsupportedProtocol)
            .then_some([MIN_PROTOCOL_VERSION, PROTOCOL_VERSION]);
        let mut response = (
            status,
            Json(ErrorBody {
                code,
                message,
                supported_versions,
            }),
        )
            .into_response();
        let retry_after = match self {
            ApiError::RateLimited { retry_after_secs } => Some(retry_after_secs),
            _ => code.is_retryable().then_some(1),
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, ApiError::Storage(_)) {
            response.extensions_mut().insert(StorageFailed);
        }
        response
    }
}

/// Marks a response whose request failed in storage, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct StorageFailed;
