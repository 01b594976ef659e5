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
//! 2. **Pull**: pages after the cursor until the server says there are no
//!    more. Each page is applied (see `incoming`) and the cursor advanced in
//!    one transaction. A page whose cursor another sync moved meanwhile is
//!    dropped and pulled again from the stored cursor, so two syncs running
//!    at once never apply a page twice out of order.
//! 3. **Finish**: the sync time (or the error that ended it) is recorded for
//!    [`Store::sync_status`].
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
//! transactions through the store's one writer). [`SyncClient`] owns a
//! current-thread tokio runtime for apps without one; [`AsyncSyncClient`] is
//! the same engine for apps that have their own runtime.

use std::time::Duration;

use super::error::SyncError;
use super::protocol::{ServerChange, DEFAULT_PULL_PAGE, MAX_PULL_PAGE, MAX_PUSH_BATCH};
use super::transport::Transport;
use super::{incoming, outbox};
use crate::error::{Error, Result};
use crate::store::Store;

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
    /// Defaults for a till: full batches, 5 attempts from 500 ms to 30 s
    /// apart (about a minute of trying before the app hears of it), 30 s
    /// per request, matching the server's own request timeout.
    pub fn new(server_url: impl Into<String>, token: impl Into<String>) -> SyncConfig {
        SyncConfig {
            server_url: server_url.into(),
            token: token.into(),
            push_batch: MAX_PUSH_BATCH,
            pull_page: DEFAULT_PULL_PAGE,
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
    /// Of those, the ones that changed a local record.
    pub applied: usize,
    /// Pulled pages applied.
    pub pages: usize,
    /// The cursor after the sync.
    pub cursor: i64,
}

/// The sync engine for callers with their own tokio runtime.
#[derive(Debug)]
pub struct AsyncSyncClient {
    transport: Transport,
    push_batch: usize,
    pull_page: u32,
}

impl AsyncSyncClient {
    /// A client for `config`; fails on an unusable configuration.
    pub fn new(config: &SyncConfig) -> Result<AsyncSyncClient> {
        Ok(AsyncSyncClient {
            transport: Transport::new(config)?,
            push_batch: config.push_batch.clamp(1, MAX_PUSH_BATCH),
            pull_page: config.pull_page.clamp(1, MAX_PULL_PAGE),
        })
    }

    /// Runs one sync of `store`: push, pull, finish.
    pub async fn sync(&self, store: &Store, observer: &dyn SyncObserver) -> Result<SyncSummary> {
        let mut summary = SyncSummary::default();
        let outcome = async {
            observer.phase(SyncPhase::Push);
            self.push(store, observer, &mut summary).await?;
            observer.phase(SyncPhase::Pull);
            self.pull(store, observer, &mut summary).await
        }
        .await;
        observer.phase(SyncPhase::Finish);
        let message = outcome.as_ref().err().map(|e| match e {
            Error::Sync(s) => format!("{}: {s}", s.code()),
            other => other.to_string(),
        });
        store.write(|w| outbox::finish(w, message.as_deref()))?;
        outcome.map(|()| summary)
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
        loop {
            let batch = store.read(|conn| outbox::pending(conn, self.push_batch))?;
            if batch.is_empty() {
                return Ok(());
            }
            let changes: Vec<_> = batch.iter().map(|(_, c)| c.clone()).collect();
            let response = self.transport.push(&changes, observer).await?;
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

    /// Phase 2: pages after the cursor until there are no more.
    async fn pull(
        &self,
        store: &Store,
        observer: &dyn SyncObserver,
        summary: &mut SyncSummary,
    ) -> Result<()> {
        let mut cursor = store.read(outbox::cursor)?;
        loop {
            let page = self
                .transport
                .pull(cursor, self.pull_page, observer)
                .await?;
            if page.cursor < cursor {
                return Err(
                    SyncError::Protocol("the server moved the cursor backward".into()).into(),
                );
            }
            let changes: &[ServerChange] = &page.changes;
            let applied = store.write(|w| {
                if outbox::cursor(&w.tx)? != cursor {
                    return Ok(None);
                }
                let applied = incoming::apply_page(w, changes)?;
                outbox::set_cursor(w, page.cursor)?;
                Ok(Some(applied))
            })?;
            match applied {
                Some(applied) => {
                    summary.pulled += changes.len();
                    summary.applied += applied.changed;
                    summary.pages += 1;
                    cursor = page.cursor;
                    observer.pulled(changes.len(), cursor);
                }
                // Another sync applied pages meanwhile: go on from where it got.
                None => cursor = store.read(outbox::cursor)?,
            }
            summary.cursor = cursor;
            if !page.has_more && applied.is_some() {
                return Ok(());
            }
        }
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
    /// A client for `config`, with a current-thread runtime of its own.
    pub fn new(config: &SyncConfig) -> Result<SyncClient> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let inner = AsyncSyncClient::new(config)?;
        Ok(SyncClient { runtime, inner })
    }

    /// Runs one sync of `store`, blocking until it ends.
    pub fn sync(&self, store: &Store, observer: &dyn SyncObserver) -> Result<SyncSummary> {
        self.runtime.block_on(self.inner.sync(store, observer))
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
