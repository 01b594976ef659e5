//! What the server counts, served at `GET /metrics` in the Prometheus text
//! format: requests by route, method and status with their latency, requests
//! in flight by route, pushed
//! changes by outcome and rejection reason, clock clamps, pull pages and the
//! changes they served, rate-limited requests, open long-poll waits and
//! storage failures.
//!
//! Each server owns its registry (nothing global), so several servers in one
//! process, as in tests, count apart. Labels take only bounded values (route
//! templates, not paths; known methods; status codes; reason codes): never a
//! tenant, device or anything a request carries.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use till_core::sync::protocol::{PushOutcome, PushResult, RejectReason};

use crate::error::{ApiError, StorageFailed};
use crate::AppState;

/// Latency buckets in seconds: 1 ms to 30 s. Pushes and pulls take a few
/// milliseconds to a second; long-poll waits run up to their 25 s cap.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every rejection reason, so each series exists (at 0) from the start.
const REJECT_REASONS: [RejectReason; 6] = [
    RejectReason::Malformed,
    RejectReason::Validation,
    RejectReason::Forbidden,
    RejectReason::UnknownRecord,
    RejectReason::BillImmutable,
    RejectReason::InvalidTransition,
];

/// The server's figures.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGaugeVec,
    changes: IntCounterVec,
    rejected: IntCounterVec,
    clock_clamps: IntCounter,
    pull_pages: IntCounter,
    pulled_changes: IntCounter,
    rate_limited: IntCounter,
    waiters: IntGauge,
    storage_errors: IntCounter,
}

impl Metrics {
    /// A fresh registry with every figure at zero.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("till_http_requests_total", "HTTP requests answered"),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "till_http_request_duration_seconds",
                "Time from request to response head",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new("till_http_requests_in_flight", "Requests being handled now"),
            &["route"],
        )?;
        let changes = IntCounterVec::new(
            Opts::new("till_push_changes_total", "Pushed changes by outcome"),
            &["outcome"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "till_push_rejected_total",
                "Rejected pushed changes by reason",
            ),
            &["reason"],
        )?;
        let clock_clamps = IntCounter::new(
            "till_clock_clamps_total",
            "Accepted changes whose device clock ran too far ahead and was clamped",
        )?;
        let pull_pages = IntCounter::new("till_pull_pages_total", "Pull pages served")?;
        let pulled_changes =
            IntCounter::new("till_pull_changes_total", "Changes served in pull pages")?;
        let rate_limited = IntCounter::new(
            "till_rate_limited_total",
            "Requests refused by the per-device rate limit",
        )?;
        let waiters = IntGauge::new("till_waiters", "Long-poll waits open now")?;
        let storage_errors = IntCounter::new(
            "till_storage_errors_total",
            "Requests that failed in the storage backend",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(changes.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(clock_clamps.clone()))?;
        registry.register(Box::new(pull_pages.clone()))?;
        registry.register(Box::new(pulled_changes.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(waiters.clone()))?;
        registry.register(Box::new(storage_errors.clone()))?;
        for outcome in ["accepted", "duplicate", "rejected"] {
            changes.with_label_values(&[outcome]);
        }
        for reason in REJECT_REASONS {
            rejected.with_label_values(&[reason.as_str()]);
        }
        Ok(Metrics {
            registry,
            requests,
            latency,
            in_flight,
            changes,
            rejected,
            clock_clamps,
            pull_pages,
            pulled_changes,
            rate_limited,
            waiters,
            storage_errors,
        })
    }

    /// Counts a push's results and the accepted changes whose clocks were clamped.
    pub fn pushed(&self, results: &[PushResult], clamped: u64) {
        for result in results {
            match &result.outcome {
                PushOutcome::Accepted { .. } => self.changes.with_label_values(&["accepted"]).inc(),
                PushOutcome::Duplicate { .. } => {
                    self.changes.with_label_values(&["duplicate"]).inc();
                }
                PushOutcome::Rejected { reason, .. } => {
                    self.changes.with_label_values(&["rejected"]).inc();
                    self.rejected.with_label_values(&[reason.as_str()]).inc();
                }
            }
        }
        self.clock_clamps.inc_by(clamped);
    }

    /// Counts a pull page of `changes` changes.
    pub fn pulled(&self, changes: usize) {
        self.pull_pages.inc();
        self.pulled_changes
            .inc_by(u64::try_from(changes).unwrap_or(u64::MAX));
    }

    /// Counts a request refused by the rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// The gauge of open waits.
    pub fn waiters(&self) -> &IntGauge {
        &self.waiters
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// Middleware: counts every request by route template, method and status,
/// with its latency; and storage failures, which error responses mark.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let metrics = &state.metrics;
    let started = Instant::now();
    // A guard, so a request whose client went away is no longer counted.
    let in_flight = metrics.in_flight.with_label_values(&[route.as_str()]);
    in_flight.inc();
    let _in_flight = GaugeGuard(in_flight);
    let response = next.run(req).await;
    metrics
        .latency
        .with_label_values(&[route.as_str(), method])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[route.as_str(), method, response.status().as_str()])
        .inc();
    if response.extensions().get::<StorageFailed>().is_some() {
        metrics.storage_errors.inc();
    }
    response
}

/// Decrements a gauge when dropped.
struct GaugeGuard(IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A method as a label: the standard ones by name, anything else as
/// `other`, so a client cannot mint new series.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

/// `GET /metrics`.
pub async fn serve(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(format!("metrics: {e}")))?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus::TEXT_FORMAT),
    );
    Ok(response)
}
