//! HTTP to the sync server: one request at a time, with the protocol
//! header and the device's bearer token, answers read as protocol types.
//!
//! Failures are classed once, here: connect errors, timeouts, 408, 429 and
//! 5xx are retried with exponential backoff and full jitter (a 429 or 503
//! waits at least its `Retry-After`), up to a bounded number of attempts;
//! everything else ends the sync with a typed [`SyncError`]. Retrying a push
//! is safe because the server applies a change id once.

use std::time::Duration;

use rand::Rng;
use reqwest::header::RETRY_AFTER;
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::client::{SyncConfig, SyncObserver};
use super::error::SyncError;
use super::protocol::{
    BootstrapPage, ErrorBody, ErrorCode, HistoryPage, PullResponse, PushRequest, PushResponse,
    RawServerChange, WaitResponse, PROTOCOL_HEADER, PROTOCOL_VERSION,
};
use crate::changes::Change;

/// Longest `Retry-After` honoured; a server asking for more is retried
/// after this (the attempt bound still ends the sync).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// The HTTP side of one sync client. Clones share the connection pool, so
/// a request can run ahead on its own task.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    http: reqwest::Client,
    base: String,
    token: String,
    request_timeout: Duration,
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
}

/// One attempt's failure.
enum Failure {
    /// Worth another attempt, after at least `wait` (a `Retry-After`).
    Retry {
        cause: String,
        wait: Option<Duration>,
    },
    /// Ends the sync.
    Fatal(SyncError),
}

impl Transport {
    pub(crate) fn new(config: &SyncConfig) -> Result<Transport, SyncError> {
        let base = config.server_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(SyncError::Config(
                "server_url must start with https:// or http://".into(),
            ));
        }
        if config.token.trim().is_empty() {
            return Err(SyncError::Config("token is empty".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .gzip(true)
            .user_agent(concat!("till-core/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SyncError::Config(format!("http client: {e}")))?;
        Ok(Transport {
            http,
            base,
            token: config.token.clone(),
            request_timeout: config.request_timeout,
            max_attempts: config.max_attempts.max(1),
            base_delay: config.base_delay,
            max_delay: config.max_delay,
        })
    }

    /// `POST /v1/push` of `changes`.
    pub(crate) async fn push(
        &self,
        changes: &[Change],
        observer: &dyn SyncObserver,
    ) -> Result<PushResponse, SyncError> {
        let body = PushRequest {
            changes: changes.to_vec(),
        };
        let url = format!("{}/v1/push", self.base);
        self.send(|| self.http.post(&url).json(&body), observer)
            .await
    }

    /// `GET /v1/pull` after `cursor`.
    pub(crate) async fn pull(
        &self,
        cursor: i64,
        limit: u32,
        observer: &dyn SyncObserver,
    ) -> Result<PullResponse<RawServerChange>, SyncError> {
        let url = format!("{}/v1/pull?cursor={cursor}&limit={limit}", self.base);
        self.send(|| self.http.get(&url), observer).await
    }

    /// `GET /v1/bootstrap`: the first page of a new snapshot, or the page at
    /// `after` (a `next` the server gave). Records' fields are left as the
    /// server sent them, for `bootstrap::prepare` to decode.
    pub(crate) async fn bootstrap(
        &self,
        after: Option<&str>,
        limit: u32,
        observer: &dyn SyncObserver,
    ) -> Result<BootstrapPage<Box<RawValue>>, SyncError> {
        self.page("/v1/bootstrap", after, limit, observer).await
    }

    /// `GET /v1/customers/{id}/bills`: a page of a customer's bills from
    /// every store of the tenant.
    pub(crate) async fn customer_bills(
        &self,
        customer: &str,
        after: Option<&str>,
        limit: u32,
        observer: &dyn SyncObserver,
    ) -> Result<HistoryPage, SyncError> {
        let path = format!("/v1/customers/{customer}/bills");
        self.page(&path, after, limit, observer).await
    }

    /// `GET {path}?limit=M[&after=T]`: one page of a listing paged by the
    /// position the server gave with the page before.
    async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        after: Option<&str>,
        limit: u32,
        observer: &dyn SyncObserver,
    ) -> Result<T, SyncError> {
        let url = format!("{}{path}", self.base);
        let mut query = vec![("limit", limit.to_string())];
        query.extend(after.map(|a| ("after", a.to_owned())));
        self.send(|| self.http.get(&url).query(&query), observer)
            .await
    }

    /// `GET /v1/wait` after `cursor`, for up to `timeout`: whether the
    /// server has changes for this device. The request may take the whole
    /// wait plus the usual request time.
    pub(crate) async fn wait(
        &self,
        cursor: i64,
        timeout: Duration,
        observer: &dyn SyncObserver,
    ) -> Result<WaitResponse, SyncError> {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let url = format!("{}/v1/wait?cursor={cursor}&timeout_ms={millis}", self.base);
        let limit = timeout.saturating_add(self.request_timeout);
        self.send(|| self.http.get(&url).timeout(limit), observer)
            .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
        observer: &dyn SyncObserver,
    ) -> Result<T, SyncError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = request()
                .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
                .bearer_auth(&self.token)
                .send()
                .await;
            let failure = match sent {
                Ok(resp) if resp.status().is_success() => match resp.json::<T>().await {
                    Ok(body) => return Ok(body),
                    // The body was cut off or garbled in transit: retry.
                    Err(e) if !e.is_decode() => Failure::Retry {
                        cause: transport_cause(&e),
                        wait: None,
                    },
                    Err(_) => return Err(SyncError::Protocol("unreadable response body".into())),
                },
                Ok(resp) => classify(resp).await,
                Err(e) => Failure::Retry {
                    cause: transport_cause(&e),
                    wait: None,
                },
            };
            match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::Retry { cause, .. } if attempt >= self.max_attempts => {
                    return Err(SyncError::Unreachable {
                        attempts: attempt,
                        last: cause,
                    })
                }
                Failure::Retry { cause, wait } => {
                    let delay = self.delay(attempt, wait);
                    observer.retrying(attempt, delay, &cause);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Full jitter: uniform in `[0, min(max_delay, base_delay * 2^(attempt-1))]`,
    /// but never less than the server's `Retry-After`.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jitter = Duration::from_millis(rand::rng().random_range(0..=millis));
        match retry_after {
            Some(wait) => jitter.max(wait.min(MAX_RETRY_AFTER)),
            None => jitter,
        }
    }
}

/// What a transport error was, without the URL (which holds nothing
/// personal, but keeps the message short and stable).
fn transport_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect error".into()
    } else if e.is_body() || e.is_decode() {
        "response body cut off".into()
    } else {
        "transport error".into()
    }
}

/// Classes a non-success answer.
async fn classify(resp: Response) -> Failure {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body: Option<ErrorBody> = resp.json().await.ok();
    let code = body.as_ref().map(|b| b.code);
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        return Failure::Retry {
            cause: format!("HTTP {}", status.as_u16()),
            wait: retry_after,
        };
    }
    Failure::Fatal(match (status, code) {
        (_, Some(ErrorCode::DeviceRevoked)) => SyncError::DeviceRevoked,
        (StatusCode::UNAUTHORIZED, _) | (_, Some(ErrorCode::Unauthorized)) => {
            SyncError::Unauthorized
        }
        (StatusCode::UPGRADE_REQUIRED, _) | (_, Some(ErrorCode::UnsupportedProtocolVersion)) => {
            SyncError::UnsupportedProtocol {
                ours: PROTOCOL_VERSION,
                supported: body.and_then(|b| b.supported_versions),
            }
        }
        (StatusCode::GONE, _) | (_, Some(ErrorCode::RebootstrapRequired)) => {
            SyncError::RebootstrapRequired
        }
        (_, Some(code)) if code.is_retryable() => {
            return Failure::Retry {
                cause: format!("HTTP {}", status.as_u16()),
                wait: retry_after,
            }
        }
        _ => SyncError::Refused {
            status: status.as_u16(),
            code,
        },
    })
}
