//! Where the server keeps tenants, devices, the materialised records and the
//! per-tenant change log, behind one interface with one backend per database:
//! embedded SQLite ([`sqlite`], the default) today, PostgreSQL later.
//!
//! **Async trait, blocking work off the runtime.** The trait is async so a
//! PostgreSQL backend can use an async driver directly; the SQLite backend
//! runs each call on `spawn_blocking` against its own connections, so a slow
//! disk never stalls the request executor.
//!
//! **The model a backend keeps** (per tenant):
//! - `received`: every change id ever pushed, with its outcome (server
//!   sequence or rejection). A unique key on (tenant, change id) and
//!   `INSERT .. ON CONFLICT DO NOTHING` make a repeated push structurally a
//!   no-op that returns the first outcome.
//! - records (customers, bills): each record's [`RecordState`]: its field
//!   values and the stamps that wrote them, so conflicts resolve the same way
//!   whatever order changes arrive in.
//! - the log: one entry per accepted change, the *effective* change (see
//!   `till_core::sync::protocol::ServerChange`), at a tenant-wide sequence.
//!
//! **Sequence assignment: commit order equals sequence order.** A push runs
//! in one transaction that first takes the tenant's row lock by bumping its
//! counter (`UPDATE tenants SET last_seq = last_seq + 1 .. RETURNING
//! last_seq`), then writes the record and the log entry at that sequence. A
//! second writer of the same tenant blocks on that row until the first
//! commits, so sequence N+1 can never become visible before N: a pull that
//! has read up to N can never later find a smaller sequence appear behind its
//! cursor. SQLite gets this from its single writer; PostgreSQL must take the
//! same row lock (the `UPDATE` does) and read at READ COMMITTED or stricter.
//!
//! Resolution itself is not the backend's business: a backend redirects the
//! change ([`dedup::redirect`]: a change of a merged-away customer lands on
//! its survivor), loads the current state, calls
//! [`crate::sync::apply::resolve`], and stores what it returns; after a
//! customer change it runs [`dedup::merge_cluster`] in the same transaction,
//! through a [`dedup::Ledger`] over its tables, so a merge is committed (and
//! sequenced) with the change that caused it. Every backend thus applies
//! identical rules.
//!
//! **Dedup** also keeps, per tenant: each live customer's identity keys, the
//! aliases merges left (keys that stay with a survivor), each customer's
//! `merged_into`, and one [`MergeRecord`] per customer folded into another.
//!
//! [`RecordState`]: till_core::sync::conflict::RecordState
//! [`dedup::redirect`]: till_core::sync::dedup::redirect
//! [`dedup::merge_cluster`]: till_core::sync::dedup::merge_cluster
//! [`dedup::Ledger`]: till_core::sync::dedup::Ledger

pub mod sqlite;

use async_trait::async_trait;
use till_core::sync::dedup::MergeRecord;
use till_core::sync::protocol::{PullResponse, PushOutcome};
use till_core::Change;

use crate::auth::DeviceScope;

/// What a backend can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A named tenant, store or device does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A tenant, store or device with that id already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The pull cursor is ahead of the tenant's log: the device's state came
    /// from another server or a restored backup, and it must bootstrap again.
    #[error("cursor {cursor} is ahead of the log (last sequence {head})")]
    CursorAhead {
        /// The cursor sent.
        cursor: i64,
        /// The tenant's last sequence.
        head: i64,
    },
    /// The database failed; the message names no personal data.
    #[error("database: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Backend(e.to_string())
    }
}

impl From<serde_json::Error> for StorageError {
    fn from(e: serde_json::Error) -> Self {
        StorageError::Backend(format!("stored JSON: {e}"))
    }
}

/// Result of every storage call.
pub type StorageResult<T> = Result<T, StorageError>;

/// An enrolled device, as the admin CLI lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Tenant id.
    pub tenant: String,
    /// Store code.
    pub store: String,
    /// Device code.
    pub device: String,
    /// When enrolled, ms since the Unix epoch.
    pub enrolled_at_ms: i64,
    /// When revoked, if it was.
    pub revoked_at_ms: Option<i64>,
    /// When it last pushed.
    pub last_seen_ms: Option<i64>,
    /// How many of its changes arrived with a clock too far ahead.
    pub clock_clamps: i64,
}

/// What a token resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLookup {
    /// An enrolled, active device.
    Active(DeviceScope),
    /// A device whose token was revoked.
    Revoked,
    /// No device has this token.
    Unknown,
}

/// The storage interface; see the module docs for the model and the
/// ordering guarantee every backend must keep.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// Whether the database answers.
    async fn ready(&self) -> StorageResult<()>;

    /// The device holding the token whose SHA-256 hex digest is `token_hash`.
    async fn device_by_token(&self, token_hash: &str) -> StorageResult<TokenLookup>;

    /// Applies checked changes of `scope`'s device, oldest first, in one
    /// transaction; one outcome per change, in order. `now_ms` is the
    /// server's clock, for clamping stamps from the future.
    async fn push(
        &self,
        scope: &DeviceScope,
        changes: Vec<Change>,
        now_ms: i64,
    ) -> StorageResult<Vec<PushOutcome>>;

    /// Up to `limit` log entries after `cursor` visible to `scope`: the
    /// tenant's customers and the scope's store's bills.
    async fn pull(
        &self,
        scope: &DeviceScope,
        cursor: i64,
        limit: u32,
    ) -> StorageResult<PullResponse>;

    /// Whether the log holds a change visible to `scope` after `cursor`,
    /// read from the database (not from anything cached), so a long-poll
    /// wait's answer is true when given even with several server instances
    /// on one database. Fails with [`StorageError::CursorAhead`] as
    /// [`Storage::pull`] does.
    async fn changes_after(&self, scope: &DeviceScope, cursor: i64) -> StorageResult<bool>;

    /// The merges customer `customer_id` of `tenant` took part in, as
    /// survivor or loser, oldest first.
    async fn merges(&self, tenant: &str, customer_id: &str) -> StorageResult<Vec<MergeRecord>>;

    /// Creates a tenant.
    async fn create_tenant(&self, tenant: &str, name: &str, now_ms: i64) -> StorageResult<()>;

    /// Creates a store of an existing tenant.
    async fn create_store(
        &self,
        tenant: &str,
        store: &str,
        name: &str,
        now_ms: i64,
    ) -> StorageResult<()>;

    /// Enrolls a device of an existing store with the hash of its token; a
    /// revoked device may be enrolled again (with a new token), an active one
    /// may not.
    async fn enroll_device(
        &self,
        scope: &DeviceScope,
        token_hash: &str,
        now_ms: i64,
    ) -> StorageResult<()>;

    /// Revokes a device's token; its next request is refused.
    async fn revoke_device(&self, scope: &DeviceScope, now_ms: i64) -> StorageResult<()>;

    /// The devices of a tenant, by store and device.
    async fn list_devices(&self, tenant: &str) -> StorageResult<Vec<DeviceInfo>>;
}
