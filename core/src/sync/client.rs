//! The device side of sync: a till exchanging its change log with the
//! head-office server, in explicit phases.
//!
//! The model. The change log is the outbox: local changes whose `pushed_at`
//! is NULL are waiting for the server. The server orders every accepted
//! change of the tenant into one log of *effective* changes; the device
//! keeps a cursor, the last server sequence it applied.
//!
//! One sync runs these phases, each committing as it goes, so it can stop
//! anywhere (network gone, app killed) and the next sync resumes:
//!
//! 1. **Push**: outbox changes, oldest first, in batches of at most
//!    [`MAX_PUSH_BATCH`]. Each batch's answer is recorded in one
//!    transaction: accepted and duplicate changes are marked acknowledged,
//!    rejected ones are acknowledged *and* quarantined with their reason, so
//!    they never block the changes behind them. An answer that is lost means
//!    the batch is pushed again; the server applies a change id once.
//! 2. **Bootstrap**, when the device never pulled, when a bootstrap is
//!    under way, or when the server answers a pull with
//!    `rebootstrap_required` (its log was compacted past the cursor): the
//!    current state of the device's scope, page after page, each page
//!    applied with the bootstrap's progress in one transaction (see
//!    `bootstrap`); the last page moves the cursor to the snapshot's
//!    sequence. It runs after the push, so a long-offline device's outbox
//!    is already on the server and in the snapshot; edits made meanwhile stay
//!    in the outbox and keep their local values (the `incoming` rule).
//! 3. **Pull**: pages after the cursor until the server says there are no
//!    more. Each page is applied (see `incoming`) and the cursor advanced in
//!    one transaction. A page whose cursor another sync moved meanwhile is
//!    dropped and pulled again from the stored cursor, so two syncs running
//!    at once never apply a page twice out of order.
//! 4. **Finish**: the sync time (or the error that ended it) is recorded for
//!    [`Store::sync_status`].
//!
//! Pages are fetched one ahead: the next page is requested before the
//! current one is applied, so the server reads and the network carries page
//! N+1 while the device writes page N. At most two pages are held at once.
//!
//! Between syncs, an idle till waits for news with
//! [`AsyncSyncClient::wait_for_changes`] (or the blocking
//! [`SyncClient::wait_for_changes`]): one long-poll request that returns as
//! soon as the server holds changes after the device's cursor, so the app
//! syncs the moment another till's sale lands instead of polling.
//!
//! Failures: the transport retries what can heal by itself (see
//! `transport`); the rest ends the sync with [`Error::Sync`] carrying a
//! [`SyncError`], local data intact.
//!
//! Concurrency: the database work runs on the caller's task (short
//! transactions through the store's one writer); the page fetched ahead runs
//! as its own task. [`SyncClient`] owns a small runtime (one worker, for the
//! fetch ahead) for apps without one; [`AsyncSyncClient`] is the same engine
//! for apps that have their own runtime.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::bootstrap::PreparedPage;
use super::error::SyncError;
use super::incoming::Pulled;
use super::outbox::BootstrapProgress;
use super::protocol::{PullResponse, MAX_BOOTSTRAP_PAGE, MAX_PULL_PAGE, MAX_PUSH_BATCH};
use super::transport::Transport;
use super::{bootstrap, incoming, outbox};
use crate::error::{Error, Result};
use crate::store::Store;

/// Bootstraps one sync starts at most. A snapshot compacted away while it
/// was applied is started once more; a server compacting faster than the
/// device can bootstrap ends the sync instead of looping.
const MAX_BOOTSTRAP_STARTS: u32 = 3;

/// How to reach the server and how hard to try.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The server's base address, e.g. `https://sync.example.com`.
    pub server_url: String,
    /// This device's bearer token, from enrollment.
    pub token: String,
    /// Changes per push; capped at [`MAX_PUSH_BATCH`].
    pub push_batch: usize,
    /// Changes per pull page; capped at [`MAX_PULL_PAGE`].
    pub pull_page: u32,
    /// Records per bootstrap page; capped at [`MAX_BOOTSTRAP_PAGE`].
    pub bootstrap_page: u32,
    /// Attempts per request before the sync gives up (at least 1).
    pub max_attempts: u32,
    /// The first retry waits up to this; each later one up to twice as long.
    pub base_delay: Duration,
    /// No single wait is longer (except a server's `Retry-After`).
    pub max_delay: Duration,
    /// Longest one request may take, answer included.
    pub request_timeout: Duration,
    /// Longest the connection may take to open.
    pub connect_timeout: Duration,
}

impl SyncConfig {
    /// Defaults for a till: full batches and full pull pages (1,000
    /// offline bills reach a second till in 4 requests, not 8, with pages of
    /// 1,000 changes of about 1 kB each), full bootstrap pages (a million
    /// bills bootstrapped in 32 s with pages of 5,000 records, 38 s with
    /// 2,000: fewer commits write each index page fewer times), 5 attempts
    /// from 500 ms to 30 s apart (about a minute of trying before the app
    /// hears of it), 30 s per request, matching the server's own request
    /// timeout.
    pub fn new(server_url: impl Into<String>, token: impl Into<String>) -> SyncConfig {
        SyncConfig {
            server_url: server_url.into(),
            token: token.into(),
            push_batch: MAX_PUSH_BATCH,
            pull_page: MAX_PULL_PAGE,
            bootstrap_page: MAX_BOOTSTRAP_PAGE,
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The phases of one sync, as [`SyncObserver::phase`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPhase {
    /// Sending the outbox.
    Push,
    /// Applying a snapshot of the device's scope.
    Bootstrap,
    /// Fetching and applying server changes.
    Pull,
    /// Recording the outcome.
    Finish,
}

/// Hears how a sync progresses (for a progress bar, logs, tests). Every
/// method has a no-op default; calls come from the syncing task.
pub trait SyncObserver: Send + Sync {
    /// A phase begins.
    fn phase(&self, _phase: SyncPhase) {}
    /// A push batch was answered and its answer recorded.
    fn pushed(&self, _acknowledged: usize, _quarantined: usize) {}
    /// A pulled page was applied and the cursor moved to `cursor`.
    fn pulled(&self, _changes: usize, _cursor: i64) {}
    /// A bootstrap page of `records` of the snapshot at `snapshot_seq` was applied.
    fn bootstrapped(&self, _records: usize, _snapshot_seq: i64) {}
    /// A request failed in a retryable way; the next attempt follows `delay`.
    fn retrying(&self, _attempt: u32, _delay: Duration, _cause: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl SyncObserver for NoopObserver {}

/// What one sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Local changes the server acknowledged (accepted or already had).
    pub pushed: usize,
    /// Local changes the server rejected, now quarantined.
    pub quarantined: usize,
    /// Server changes pulled.
    pub pulled: usize,
    /// Of the changes pulled and the snapshot records bootstrapped, the ones
    /// that changed a local record.
    pub applied: usize,
    /// Pulled pages applied.
    pub pages: usize,
    /// Snapshot records applied by a bootstrap.
    pub bootstrapped: usize,
    /// The cursor after the sync.
    pub cursor: i64,
}

/// The sync engine for callers with their own tokio runtime.
#[derive(Debug)]
pub struct AsyncSyncClient {
    pub(super) transport: Transport,
    push_batch: usize,
    pull_page: u32,
    bootstrap_page: u32,
}

impl AsyncSyncClient {
    /// A client for `config`; fails on an unusable configuration.
    pub fn new(config: &SyncConfig) -> Result<AsyncSyncClient> {
        Ok(AsyncSyncClient {
            transport: Transport::new(config)?,
            push_batch: config.push_batch.clamp(1, MAX_PUSH_BATCH),
            pull_page: config.pull_page.clamp(1, MAX_PULL_PAGE),
            bootstrap_page: config.bootstrap_page.clamp(1, MAX_BOOTSTRAP_PAGE),
        })
    }

    /// Runs one sync of `store`: push, pull, finish.
    pub async fn sync(&self, store: &Store, observer: &dyn SyncObserver) -> Result<SyncSummary> {
        let mut summary = SyncSummary::default();
        let outcome = async {
            observer.phase(SyncPhase::Push);
            self.push(store, observer, &mut summary).await?;
            if store.read(outbox::needs_bootstrap)? {
                observer.phase(SyncPhase::Bootstrap);
                self.bootstrap(store, observer, &mut summary).await?;
            }
            observer.phase(SyncPhase::Pull);
            match self.pull(store, observer, &mut summary).await {
                // The log after the cursor was compacted away (or the cursor
                // came from another server): bootstrap again. The outbox was
                // pushed above and stays pending until acknowledged.
                Err(Error::Sync(SyncError::RebootstrapRequired)) => {
                    observer.phase(SyncPhase::Bootstrap);
                    self.bootstrap(store, observer, &mut summary).await?;
                    observer.phase(SyncPhase::Pull);
                    self.pull(store, observer, &mut summary).await
                }
                other => other,
            }
        }
        .await;
        observer.phase(SyncPhase::Finish);
        let message = outcome.as_ref().err().map(|e| match e {
            Error::Sync(s) => format!("{}: {s}", s.code()),
            other => other.to_string(),
        });
        let recorded = store.write(|w| outbox::finish(w, message.as_deref()));
        // A failed sync reports what failed it, even when recording that
        // failed too (a full disk fails both).
        if let (Err(_), Err(also)) = (&outcome, &recorded) {
            tracing::warn!(error = %also, "the failed sync was not recorded");
        }
        outcome.and(recorded).map(|()| summary)
    }

    /// Waits until the server holds changes this device has not pulled, or
    /// until `timeout` (the server caps it, at 25 s by default) runs out:
    /// `true` means sync now, `false` means nothing came; wait again. One
    /// long-poll request, so a till sees another till's sale within moments
    /// without polling. Retryable failures are retried like a sync's.
    pub async fn wait_for_changes(&self, store: &Store, timeout: Duration) -> Result<bool> {
        let cursor = store.read(outbox::cursor)?;
        let answer = self.transport.wait(cursor, timeout, &NoopObserver).await?;
        Ok(answer.changes)
    }

    /// Phase 1: the outbox, batch by batch, until it is empty.
    async fn push(
        &self,
        store: &Store,
        observer: &dyn SyncObserver,
        summary: &mut SyncSummary,
    ) -> Result<()> {
        let mut limit = self.push_batch;
        loop {
            let batch = store.read(|conn| outbox::pending(conn, limit))?;
            if batch.is_empty() {
                return Ok(());
            }
            let changes: Vec<_> = batch.iter().map(|(_, c)| c.clone()).collect();
            let response = match self.transport.push(&changes, observer).await {
                // Big bills fill a batch past the server's body limit: send
                // fewer at a time for the rest of this sync, or the same
                // batch would be refused at every sync and nothing behind
                // it would ever reach head office.
                Err(SyncError::Refused { status: 413, .. }) if changes.len() > 1 => {
                    limit = changes.len() / 2;
                    tracing::info!(limit, "push batch too large for the server; halving it");
                    continue;
                }
                response => response?,
            };
            let ids_match = response.results.len() == batch.len()
                && response
                    .results
                    .iter()
                    .zip(&changes)
                    .all(|(r, c)| r.change_id == c.change_id.to_string());
            if !ids_match {
                return Err(SyncError::Protocol(
                    "push results do not match the changes sent".into(),
                )
                .into());
            }
            let (acked, rejected) =
                store.write(|w| outbox::record_results(w, &batch, &response.results))?;
            summary.pushed += acked;
            summary.quarantined += rejected;
            observer.pushed(acked, rejected);
        }
    }

    /// Phase 2: a snapshot of the device's scope, resumed where the last
    /// one stopped or started anew, until its last page is applied.
    async fn bootstrap(
        &self,
        store: &Store,
        observer: &dyn SyncObserver,
        summary: &mut SyncSummary,
    ) -> Result<()> {
        for _ in 0..MAX_BOOTSTRAP_STARTS {
            let mut progress = store.read(outbox::bootstrap_progress)?;
            let mut fetch = self.bootstrap_page(progress.as_ref().map(|p| p.next.clone()));
            loop {
                let page = match fetch.join(observer).await {
                    // The snapshot being resumed was compacted away: start a new one.
                    Err(SyncError::RebootstrapRequired) if progress.is_some() => {
                        store.write(|w| {
                            if outbox::bootstrap_progress(&w.tx)? == progress {
                                outbox::set_bootstrap_progress(w, None)?;
                            }
                            Ok(())
                        })?;
                        break;
                    }
                    page => page?,
                };
                if progress
                    .as_ref()
                    .is_some_and(|p| p.snapshot_seq != page.snapshot_seq)
                {
                    return Err(SyncError::Protocol(
                        "the server changed the snapshot mid-bootstrap".into(),
                    )
                    .into());
                }
                let ahead = page.next.clone().map(|n| self.bootstrap_page(Some(n)));
                let PreparedPage {
                    snapshot_seq,
                    records,
                    next,
                } = page;
                let count = records.len();
                let expected = progress.clone();
                let next_progress = next.map(|next| BootstrapProgress { snapshot_seq, next });
                let applied = store.write(|w| {
                    if outbox::bootstrap_progress(&w.tx)? != expected {
                        return Ok(None);
                    }
                    let applied = bootstrap::apply_page(w, records, snapshot_seq)?;
                    match &next_progress {
                        Some(p) => outbox::set_bootstrap_progress(w, Some(p))?,
                        None => bootstrap::complete(w, snapshot_seq)?,
                    }
                    Ok(Some(applied))
                })?;
                // Another sync moved this bootstrap on meanwhile; it finishes it.
                let Some(applied) = applied else {
                    return Ok(());
                };
                summary.bootstrapped += count;
                summary.applied += applied.changed;
                observer.bootstrapped(count, snapshot_seq);
                match (next_progress, ahead) {
                    (Some(p), Some(ahead)) => {
                        progress = Some(p);
                        fetch = ahead;
                    }
                    _ => {
                        summary.cursor = snapshot_seq;
                        return Ok(());
                    }
                }
            }
        }
        Err(SyncError::Protocol("the snapshot was compacted away at every start".into()).into())
    }

    /// Phase 3: pages after the cursor until there are no more.
    async fn pull(
        &self,
        store: &Store,
        observer: &dyn SyncObserver,
        summary: &mut SyncSummary,
    ) -> Result<()> {
        let mut cursor = store.read(outbox::cursor)?;
        let mut fetch = self.pull_page(cursor);
        loop {
            let page = fetch.join(observer).await?;
            if page.cursor < cursor {
                return Err(
                    SyncError::Protocol("the server moved the cursor backward".into()).into(),
                );
            }
            let ahead = page.has_more.then(|| self.pull_page(page.cursor));
            let PullResponse {
                changes,
                cursor: next,
                ..
            } = page;
            let count = changes.len();
            let applied = store.write(|w| {
                if outbox::cursor(&w.tx)? != cursor || outbox::bootstrap_progress(&w.tx)?.is_some()
                {
                    return Ok(None);
                }
                let applied = incoming::apply_page(w, changes)?;
                outbox::set_cursor(w, next)?;
                Ok(Some(applied))
            })?;
            match applied {
                Some(applied) => {
                    summary.pulled += count;
                    summary.applied += applied.changed;
                    summary.pages += 1;
                    cursor = next;
                    summary.cursor = cursor;
                    observer.pulled(count, cursor);
                    match ahead {
                        Some(ahead) => fetch = ahead,
                        None => return Ok(()),
                    }
                }
                // Another sync is bootstrapping: it brings the store up to date.
                None if store.read(outbox::bootstrap_progress)?.is_some() => return Ok(()),
                // Another sync applied pages meanwhile: go on from where it got.
                None => {
                    cursor = store.read(outbox::cursor)?;
                    summary.cursor = cursor;
                    fetch = self.pull_page(cursor);
                }
            }
        }
    }

    /// Starts fetching the pull page after `cursor`, and decoding its changes.
    fn pull_page(&self, cursor: i64) -> Ahead<PullResponse<Pulled>> {
        let limit = self.pull_page;
        Ahead::start(&self.transport, move |t, log| async move {
            let page = t.pull(cursor, limit, &*log).await?;
            tokio::task::spawn_blocking(move || {
                Ok(PullResponse {
                    changes: incoming::prepare(page.changes)?,
                    cursor: page.cursor,
                    has_more: page.has_more,
                })
            })
            .await
            .map_err(|_| SyncError::Protocol("decoding a pull page failed".into()))?
        })
    }

    /// Starts fetching the bootstrap page at `after` (a new snapshot's first
    /// page when `None`), and decoding its bills.
    fn bootstrap_page(&self, after: Option<String>) -> Ahead<PreparedPage> {
        let limit = self.bootstrap_page;
        Ahead::start(&self.transport, move |t, log| async move {
            let page = t.bootstrap(after.as_deref(), limit, &*log).await?;
            tokio::task::spawn_blocking(move || bootstrap::prepare(page))
                .await
                .map_err(|_| SyncError::Protocol("decoding a bootstrap page failed".into()))
        })
    }
}

/// A request running on its own task while the syncing task applies the
/// previous answer. The retries it makes reach the observer when it is
/// joined; dropping it cancels the request.
#[derive(Debug)]
struct Ahead<T> {
    task: tokio::task::JoinHandle<Result<T, SyncError>>,
    retries: Arc<Retries>,
}

impl<T: Send + 'static> Ahead<T> {
    fn start<F, Fut>(transport: &Transport, request: F) -> Ahead<T>
    where
        F: FnOnce(Transport, Arc<Retries>) -> Fut,
        Fut: Future<Output = Result<T, SyncError>> + Send + 'static,
    {
        let retries = Arc::new(Retries::default());
        let task = tokio::spawn(request(transport.clone(), Arc::clone(&retries)));
        Ahead { task, retries }
    }

    /// The answer, once it is in.
    async fn join(mut self, observer: &dyn SyncObserver) -> Result<T, SyncError> {
        let outcome = (&mut self.task).await;
        let retries = std::mem::take(
            &mut *self
                .retries
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (attempt, delay, cause) in retries {
            observer.retrying(attempt, delay, &cause);
        }
        match outcome {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(SyncError::Protocol("the request was cancelled".into())),
        }
    }
}

impl<T> Drop for Ahead<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The retries of a request fetched ahead, kept for its observer.
#[derive(Debug, Default)]
struct Retries(Mutex<Vec<(u32, Duration, String)>>);

impl SyncObserver for Retries {
    fn retrying(&self, attempt: u32, delay: Duration, cause: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push((
            attempt,
            delay,
            cause.to_owned(),
        ));
    }
}

/// The sync engine with its own small runtime, for blocking callers (the
/// FFI, a background thread of the app). Do not call it from inside a tokio
/// runtime; use [`AsyncSyncClient`] there.
#[derive(Debug)]
pub struct SyncClient {
    runtime: tokio::runtime::Runtime,
    inner: AsyncSyncClient,
}

impl SyncClient {
    /// A client for `config`, with a runtime of its own: the calling thread
    /// applies pages while one worker thread fetches the next.
    pub fn new(config: &SyncConfig) -> Result<SyncClient> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let inner = AsyncSyncClient::new(config)?;
        Ok(SyncClient { runtime, inner })
    }

    /// Runs one sync of `store`, blocking until it ends.
    pub fn sync(&self, store: &Store, observer: &dyn SyncObserver) -> Result<SyncSummary> {
        self.block_on(self.inner.sync(store, observer))
    }

    /// Runs `f` on this client's runtime.
    pub(super) fn block_on<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    /// The engine inside.
    pub(super) fn inner(&self) -> &AsyncSyncClient {
        &self.inner
    }

    /// Blocks until the server holds changes this device has not pulled
    /// (`true`) or `timeout` runs out (`false`); see
    /// [`AsyncSyncClient::wait_for_changes`].
    pub fn wait_for_changes(&self, store: &Store, timeout: Duration) -> Result<bool> {
        self.runtime
            .block_on(self.inner.wait_for_changes(store, timeout))
    }
}

impl Store {
    /// Syncs this store with the server of `config`, blocking until done:
    /// pushes the outbox, pulls and applies what the server has, records the
    /// outcome. See [`SyncClient`] to keep one client (and its connections)
    /// across syncs.
    pub fn sync(&self, config: &SyncConfig, observer: &dyn SyncObserver) -> Result<SyncSummary> {
        SyncClient::new(config)?.sync(self, observer)
    }
}
