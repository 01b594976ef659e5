//! Why a sync did not complete, one variant per thing the app can act on.
//!
//! Two classes, as DESIGN section 6 asks: [`SyncError::is_retryable`] is
//! true when the same sync later can succeed on its own (network trouble,
//! server overload: the retries inside one sync were used up), false when a
//! person or the app must act (re-enroll, update the app, re-bootstrap).
//! Messages carry status codes and server error codes, never record data.

use super::protocol::ErrorCode;

/// What ended a sync early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The server did not know the device's token: check the configured
    /// token, or enroll the device.
    #[error("the server does not know this device's token")]
    Unauthorized,

    /// The device's token was revoked: enroll the device again.
    #[error("this device was revoked; enroll it again")]
    DeviceRevoked,

    /// The server does not speak this app's protocol version: update the
    /// app (or the server). `supported` is the server's `[oldest, newest]`.
    #[error("the server does not speak protocol version {ours} (it speaks {supported:?})")]
    UnsupportedProtocol {
        /// The version this build speaks.
        ours: u32,
        /// The range the server named, when it named one.
        supported: Option<[u32; 2]>,
    },

    /// The device's cursor is older than the server keeps: it must bootstrap
    /// again (its outbox is kept).
    #[error("the server asks this device to bootstrap again")]
    RebootstrapRequired,

    /// The server refused the request for good (a 4xx other than the ones
    /// above: malformed request, body or batch too large, forbidden).
    #[error("the server refused the request: HTTP {status} ({code:?})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The protocol error code, when the body carried one.
        code: Option<ErrorCode>,
    },

    /// Network trouble, timeouts, 5xx or 429 outlasted every retry of this
    /// sync; try again later. `last` says what the final attempt met.
    #[error("server unreachable after {attempts} attempts: {last}")]
    Unreachable {
        /// Attempts made for the request that gave up.
        attempts: u32,
        /// What the last attempt met (a status or a transport error kind).
        last: String,
    },

    /// The server's answer broke the protocol (unreadable body, one push
    /// result per change missing). Retrying may help after a server fix.
    #[error("the server's answer broke the protocol: {0}")]
    Protocol(String),

    /// The sync configuration is unusable (bad server address, empty token).
    #[error("invalid sync configuration: {0}")]
    Config(String),
}

impl SyncError {
    /// Whether trying the same sync later can succeed without anyone acting.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SyncError::Unreachable { .. } | SyncError::Protocol(_))
    }

    /// A stable snake_case code for logs, the FFI and `sync_status`.
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::Unauthorized => "unauthorized",
            SyncError::DeviceRevoked => "device_revoked",
            SyncError::UnsupportedProtocol { .. } => "unsupported_protocol_version",
            SyncError::RebootstrapRequired => "rebootstrap_required",
            SyncError::Refused { .. } => "refused",
            SyncError::Unreachable { .. } => "unreachable",
            SyncError::Protocol(_) => "protocol",
            SyncError::Config(_) => "config",
        }
    }
}
