//! till-sync-server: the head-office server tills sync with. It orders every
//! change of a tenant into one log, resolves conflicts with till-core's rules,
//! and serves each device the part of the log it may see.
//!
//! The facade is [`router`] (the whole HTTP API over an [`AppState`]) and
//! [`serve`] (runs it on a listener until a shutdown future resolves,
//! finishing in-flight requests first). `main.rs` only parses configuration;
//! tests start the same server on 127.0.0.1 port 0.
//!
//! Layers, outermost first: request id, tracing span (ids only), metrics,
//! timeout, gzip or zstd in and out, body size limit; then the `/v1` routes check
//! the protocol version before anything else, pushes, pulls, bootstrap
//! pages and histories take a
//! permit of the shared concurrency limit, and the token lookup takes a
//! cell of the device's rate limit ([`ratelimit`]).

pub mod auth;
pub mod error;
pub mod metrics;
pub mod ratelimit;
pub mod storage;
pub mod sync;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use till_core::sync::protocol::{is_supported, parse_version, DEFAULT_WAIT_MS, PROTOCOL_HEADER};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::ratelimit::{DeviceLimiter, RateLimit};
use crate::storage::Storage;
use crate::sync::wait::Waiters;

/// Limits the server enforces on every request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, after decompression.
    pub max_body_bytes: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Most pushes and pulls handled at once; more wait their turn.
    pub max_concurrent_requests: usize,
    /// Most push batches being stored at once, counting those whose
    /// request timed out but whose batch still runs to its commit; more
    /// wait their turn.
    pub max_concurrent_pushes: usize,
    /// How fast each device may send requests.
    pub rate: RateLimit,
    /// Longest a long-poll wait lasts, whatever the client asks; keep it
    /// below `request_timeout` so a wait ends with an answer.
    pub max_wait: Duration,
    /// How often an open wait re-reads storage even without a notification
    /// (the bound on hearing of pushes made by another server instance).
    pub wait_recheck: Duration,
    /// Most long-poll waits open at once, in all.
    pub max_waiters: usize,
    /// Most long-poll waits one device may hold open.
    pub max_waiters_per_device: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // A full push batch of large bills fits with room to spare.
            max_body_bytes: 8 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 256,
            // Batches commit one at a time on SQLite's single writer, so
            // more in flight only park threads of the blocking pool, which
            // every read shares: tills retrying pushes that time out behind
            // a slow writer once filled it and stalled pulls and token
            // checks too.
            max_concurrent_pushes: 32,
            rate: RateLimit::default(),
            max_wait: Duration::from_millis(DEFAULT_WAIT_MS),
            // One read per open wait every 5 s: 100 reads a second at 500
            // waits, next to nothing for SQLite; a push on this instance
            // wakes its waits at once anyway.
            wait_recheck: Duration::from_secs(5),
            // Each wait holds a connection, i.e. a file descriptor; 500 fit
            // under the 1,024 descriptors a Linux process gets by default
            // with room for pushes, pulls and the database. An open wait
            // costs about 35 KiB of server memory, 17 MiB for 500
            // (`ops.wait_kib` of `cargo bench -p till-sync-server --bench
            // ops`), so raise this together with `ulimit -n`.
            max_waiters: 500,
            // One wait per till, plus the ones a till's lost connections
            // leave behind until their timeout or the server notices.
            max_waiters_per_device: 4,
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
    /// The figures `/metrics` serves.
    pub metrics: Arc<Metrics>,
    /// The per-device rate limit.
    pub limiter: Arc<DeviceLimiter>,
    /// Permits for push batches being stored (see
    /// [`Limits::max_concurrent_pushes`]).
    pub pushes: Arc<tokio::sync::Semaphore>,
    /// Open long-poll waits and what wakes them.
    pub waiters: Arc<Waiters>,
    /// Cancelled once shutdown begins: readiness fails so balancers drain
    /// us, and open waits end.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// State over `storage` with `limits`.
    pub fn new(storage: Arc<dyn Storage>, limits: Limits) -> Self {
        #[allow(clippy::expect_used)]
        let metrics = Arc::new(Metrics::new().expect("metric names are distinct and valid"));
        let waiters = Waiters::new(
            limits.max_waiters,
            limits.max_waiters_per_device,
            metrics.waiters().clone(),
        );
        AppState {
            storage,
            limiter: Arc::new(DeviceLimiter::new(limits.rate)),
            pushes: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_pushes)),
            waiters: Arc::new(waiters),
            metrics,
            limits,
            shutdown: CancellationToken::new(),
        }
    }
}

/// Every route of the API: method, path, and the handler with the layers of
/// its own. Sync routes check the protocol version first; pushes and pulls
/// share one concurrency limit, which long-poll waits (counted apart) do not
/// take. [`router`] serves exactly these; `openapi.json` must describe
/// exactly these (a test holds the two together).
fn routes(
    busy: &GlobalConcurrencyLimitLayer,
) -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    let v1 = |handler: MethodRouter<AppState>| {
        handler.route_layer(middleware::from_fn(require_protocol))
    };
    vec![
        (
            Method::POST,
            "/v1/push",
            v1(post(sync::push).route_layer(busy.clone())),
        ),
        (
            Method::GET,
            "/v1/pull",
            v1(get(sync::pull).route_layer(busy.clone())),
        ),
        (Method::GET, "/v1/wait", v1(get(sync::wait::wait))),
        (
            Method::GET,
            "/v1/bootstrap",
            v1(get(sync::bootstrap::bootstrap).route_layer(busy.clone())),
        ),
        (
            Method::GET,
            "/v1/customers/{id}/bills",
            v1(get(sync::history::customer_bills).route_layer(busy.clone())),
        ),
        (Method::GET, "/healthz", get(|| async { "ok" })),
        (Method::GET, "/readyz", get(readyz)),
        (Method::GET, "/metrics", get(metrics::serve)),
    ]
}

/// The (method, path) of every route the server serves.
pub fn endpoints() -> Vec<(Method, &'static str)> {
    routes(&GlobalConcurrencyLimitLayer::new(1))
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let busy = GlobalConcurrencyLimitLayer::new(state.limits.max_concurrent_requests);
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

    routes(&busy)
        .into_iter()
        .fold(Router::new(), |api, (_, path, handler)| {
            api.route(path, handler)
        })
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
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    metrics::track,
                ))
                .layer(HandleErrorLayer::new(middleware_error))
                .timeout(state.limits.request_timeout)
                .layer(RequestDecompressionLayer::new())
                .layer(CompressionLayer::new()),
        )
        .with_state(state)
}

/// Runs the API on `listener` until `shutdown` resolves, then stops taking
/// connections, ends open long-poll waits, and returns once in-flight
/// requests (a push batch mid-commit included) have finished.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            token.cancel();
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
    if state.shutdown.is_cancelled() {
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
