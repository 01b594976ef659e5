//! till-sync-server: the head-office server tills sync with. It orders every
//! change of a tenant into one log, resolves conflicts with till-core's rules,
//! and serves each device the part of the log it may see.
//!
//! The facade is [`router`] (the whole HTTP API over an [`AppState`]) and
//! [`serve`] (runs it on a listener until a shutdown future resolves,
//! finishing in-flight requests first). `main.rs` only parses configuration;
//! tests start the same server on 127.0.0.1 port 0.
//!
//! Layers, outermost first: request id, tracing span (ids only), timeout and
//! concurrency limit, gzip or zstd in and out, body size limit; then the `/v1`
//! routes check the protocol version before anything else.

pub mod auth;
pub mod error;
pub mod storage;
pub mod sync;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use till_core::sync::protocol::{is_supported, parse_version, PROTOCOL_HEADER};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::error::ApiError;
use crate::storage::Storage;

/// Limits the server enforces on every request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, after decompression.
    pub max_body_bytes: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Most requests handled at once; more wait their turn.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // A full push batch of large bills fits with room to spare.
            max_body_bytes: 8 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 256,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The storage backend.
    pub storage: Arc<dyn Storage>,
    /// Request limits.
    pub limits: Limits,
    /// Set once shutdown begins: readiness fails so balancers drain us.
    pub shutting_down: Arc<AtomicBool>,
}

impl AppState {
    /// State over `storage` with `limits`.
    pub fn new(storage: Arc<dyn Storage>, limits: Limits) -> Self {
        AppState {
            storage,
            limits,
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/push", post(sync::push))
        .route("/pull", get(sync::pull))
        .route("/bootstrap", get(sync::bootstrap::bootstrap))
        .route("/customers/{id}/bills", get(sync::history::customer_bills))
        .route_layer(middleware::from_fn(require_protocol));

    let make_span = |req: &Request| {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!(
            "request",
            request_id = %id,
            method = %req.method(),
            path = %req.uri().path(),
            tenant = tracing::field::Empty,
            device = tracing::field::Empty,
        )
    };

    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(HandleErrorLayer::new(middleware_error))
                .timeout(state.limits.request_timeout)
                .concurrency_limit(state.limits.max_concurrent_requests)
                .layer(RequestDecompressionLayer::new())
                .layer(CompressionLayer::new()),
        )
        .with_state(state)
}

/// Runs the API on `listener` until `shutdown` resolves, then stops taking
/// connections and returns once in-flight requests (a push batch mid-commit
/// included) have finished.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let flag = Arc::clone(&state.shutting_down);
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            flag.store(true, Ordering::SeqCst);
            tracing::info!("shutting down: finishing in-flight requests");
        })
        .await
}

/// Refuses requests without a protocol version this build speaks.
async fn require_protocol(req: Request, next: Next) -> Response {
    let version = req
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_version);
    match version {
        Some(v) if is_supported(v) => next.run(req).await,
        _ => ApiError::UnsupportedProtocol.into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::Unavailable);
    }
    state
        .storage
        .ready()
        .await
        .map_err(|_| ApiError::Unavailable)?;
    Ok(StatusCode::OK)
}

/// Errors of the tower layers (only the timeout can fail).
async fn middleware_error(error: tower::BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else {
        ApiError::Internal(error.to_string())
    }
}

/// Milliseconds since the Unix epoch, by the server's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
