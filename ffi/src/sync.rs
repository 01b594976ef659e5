//! Sync across the boundary: a blocking and an async sync of the store with
//! its server, progress reported to an observer the app implements in its
//! own language, and where the device stands.
//!
//! Threads: the blocking [`TillStore::sync`] runs on the caller's thread
//! (call it from a background thread or worker, never the UI thread); the
//! async [`TillStore::sync_async`] runs on uniffi's tokio executor and
//! suspends the caller's coroutine, task or promise. Either way the network
//! waits hold no store lock, so sales on other threads go on during a sync.

use std::sync::Arc;
use std::time::Duration;

use till_core as core;
use till_core::sync::{AsyncSyncClient, NoopObserver, SyncClient, SyncObserver};

use crate::bills::Bill;
use crate::convert::{mirror_enum, page};
use crate::error::parse_id;
use crate::error::Result;
use crate::store::TillStore;

mirror_enum!(
    /// The phases of one sync.
    SyncPhase = core::sync::SyncPhase {
        /// Sending the outbox.
        Push,
        /// Applying a snapshot of the device's scope (a new or long-offline device).
        Bootstrap,
        /// Fetching and applying server changes.
        Pull,
        /// Recording the outcome.
        Finish,
    }
);

/// Hears how a sync progresses, for a progress bar or logs. The app
/// implements it (a Kotlin or Swift class, a Python object, a JS object);
/// calls come from the syncing thread and must return quickly.
#[uniffi::export(with_foreign)]
pub trait SyncProgress: Send + Sync {
    /// A phase begins.
    fn phase(&self, phase: SyncPhase);
    /// A batch of local changes was answered: `acknowledged` accepted,
    /// `quarantined` refused for good (see [`SyncStatus::quarantined`]).
    fn pushed(&self, acknowledged: u64, quarantined: u64);
    /// A page of `changes` from the server was applied; the device is now at `cursor`.
    fn pulled(&self, changes: u64, cursor: i64);
    /// A request failed in a way worth retrying; the next attempt follows in `delay_ms`.
    fn retrying(&self, attempt: u32, delay_ms: u64, cause: String);
}

/// What one sync did.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncSummary {
    /// Local changes the server acknowledged.
    pub pushed: u64,
    /// Local changes the server refused, now quarantined.
    pub quarantined: u64,
    /// Server changes pulled.
    pub pulled: u64,
    /// Of the changes pulled and the snapshot records bootstrapped, the
    /// ones that changed a local record.
    pub applied: u64,
    /// Pages pulled.
    pub pages: u64,
    /// Snapshot records applied by a bootstrap.
    pub bootstrapped: u64,
    /// The last server sequence applied.
    pub cursor: i64,
}

/// A local change the server refused for good; it blocks nothing behind it.
#[derive(Debug, Clone, uniffi::Record)]
pub struct QuarantinedChange {
    /// The change's id.
    pub change_id: String,
    /// `customer` or `bill`.
    pub entity: String,
    /// The record it changed.
    pub entity_id: String,
    /// What it did (`create`, `update`, ...).
    pub op: String,
    /// The server's reason code, e.g. `validation`, `bill_immutable`.
    pub reason: String,
    /// The server's detail; names fields, never personal data.
    pub detail: String,
    /// When it was quarantined, ms since the Unix epoch.
    pub at_ms: i64,
}

/// A page of a customer's bills from every store of the tenant, whole
/// (lines, payments, store and device), newest first.
#[derive(Debug, Clone, uniffi::Record)]
pub struct TenantBillPage {
    /// The bills, as the server holds them (`version` is 0: not stored here).
    pub items: Vec<Bill>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next: Option<String>,
}

impl From<core::Page<core::Bill>> for TenantBillPage {
    fn from(p: core::Page<core::Bill>) -> Self {
        let (items, next) = page(p);
        TenantBillPage { items, next }
    }
}

/// Where this device stands with its server.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncStatus {
    /// Local changes the server has not acknowledged yet.
    pub pending_changes: i64,
    /// The last server sequence applied.
    pub cursor: i64,
    /// When the last complete sync ended, ms since the Unix epoch.
    pub last_sync_at_ms: Option<i64>,
    /// What ended the last sync, when it failed (cleared by a success).
    pub last_error: Option<String>,
    /// Quarantined changes, newest first (at most 200).
    pub quarantined: Vec<QuarantinedChange>,
}

/// A [`SyncProgress`] that ignores every call, for syncs nobody watches.
#[derive(Debug)]
struct Silent;

impl SyncProgress for Silent {
    fn phase(&self, _phase: SyncPhase) {}
    fn pushed(&self, _acknowledged: u64, _quarantined: u64) {}
    fn pulled(&self, _changes: u64, _cursor: i64) {}
    fn retrying(&self, _attempt: u32, _delay_ms: u64, _cause: String) {}
}

/// An observer that ignores every call: pass it to `sync` when no progress
/// is shown. (The observer is not optional because uniffi-bindgen-react-native
/// 0.31 cannot pass an app's object inside an optional argument.)
#[uniffi::export]
pub fn silent_progress() -> Arc<dyn SyncProgress> {
    Arc::new(Silent)
}

/// Hands core's progress calls to the app's observer.
struct Progress(Arc<dyn SyncProgress>);

impl SyncObserver for Progress {
    fn phase(&self, phase: core::sync::SyncPhase) {
        self.0.phase(phase.into());
    }

    fn pushed(&self, acknowledged: usize, quarantined: usize) {
        self.0.pushed(acknowledged as u64, quarantined as u64);
    }

    fn pulled(&self, changes: usize, cursor: i64) {
        self.0.pulled(changes as u64, cursor);
    }

    fn retrying(&self, attempt: u32, delay: Duration, cause: &str) {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.0.retrying(attempt, delay_ms, cause.to_owned());
    }
}

impl From<core::SyncSummary> for SyncSummary {
    fn from(s: core::SyncSummary) -> Self {
        SyncSummary {
            pushed: s.pushed as u64,
            quarantined: s.quarantined as u64,
            pulled: s.pulled as u64,
            applied: s.applied as u64,
            pages: s.pages as u64,
            bootstrapped: s.bootstrapped as u64,
            cursor: s.cursor,
        }
    }
}

impl From<core::QuarantinedChange> for QuarantinedChange {
    fn from(q: core::QuarantinedChange) -> Self {
        QuarantinedChange {
            change_id: q.change_id.to_string(),
            entity: q.entity,
            entity_id: q.entity_id,
            op: q.op,
            reason: q.reason,
            detail: q.message,
            at_ms: q.at_ms,
        }
    }
}

#[uniffi::export]
impl TillStore {
    /// Syncs with the configured server, blocking this thread until done:
    /// pushes the outbox, pulls and applies the server's changes.
    pub fn sync(&self, progress: Arc<dyn SyncProgress>) -> Result<SyncSummary> {
        Ok(self
            .store
            .sync(self.sync_config()?, &Progress(progress))?
            .into())
    }

    /// A customer's bills from every store of the tenant, newest first, a
    /// page at a time, asked of the server (a till holds its own store's
    /// bills only; [`TillStore::customer_bills`] reads those offline). The
    /// bills are not stored on this device. Blocks like [`TillStore::sync`].
    pub fn customer_bills_everywhere(
        &self,
        customer_id: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<TenantBillPage> {
        let id = parse_id("customer_id", &customer_id)?;
        let client = SyncClient::new(self.sync_config()?)?;
        Ok(client
            .customer_bills(&self.store, id, cursor.as_deref(), limit, &NoopObserver)?
            .into())
    }

    /// Pending changes, the last sync, its error and quarantined changes.
    pub fn sync_status(&self) -> Result<SyncStatus> {
        let status = self.store.sync_status()?;
        Ok(SyncStatus {
            pending_changes: status.pending_changes,
            cursor: status.cursor,
            last_sync_at_ms: status.last_sync_at_ms,
            last_error: status.last_error,
            quarantined: status.quarantined.into_iter().map(Into::into).collect(),
        })
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl TillStore {
    /// [`TillStore::sync`] as a suspending call (Kotlin `suspend`, Swift
    /// `async`, Python `async`, a JS promise).
    pub async fn sync_async(&self, progress: Arc<dyn SyncProgress>) -> Result<SyncSummary> {
        let client = AsyncSyncClient::new(self.sync_config()?)?;
        Ok(client.sync(&self.store, &Progress(progress)).await?.into())
    }

    /// [`TillStore::customer_bills_everywhere`] as a suspending call.
    pub async fn customer_bills_everywhere_async(
        &self,
        customer_id: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<TenantBillPage> {
        let id = parse_id("customer_id", &customer_id)?;
        let client = AsyncSyncClient::new(self.sync_config()?)?;
        Ok(client
            .customer_bills(&self.store, id, cursor.as_deref(), limit, &NoopObserver)
            .await?
            .into())
    }
}
