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
//! **Compaction keeps state, drops history.** A tenant's log may be cut up
//! to a horizon (see [`Storage::compact`]): the records keep their state,
//! the idempotency ledger keeps every change id, and the entries at or below
//! the horizon are gone. The horizon is raised *before* any entry is
//! deleted, and pulls read it in the same snapshot as the log, so a pull
//! either sees the whole log after its cursor or is told to bootstrap again
//! ([`StorageError::BehindHorizon`]); it is never given a partial log.
//! Merge records are kept whole, and so are the two log entries each one
//! names (the loser's tombstone and the survivor's entry): undoing a merge
//! starts from them, so compaction skips them (a pull never reads below its
//! cursor, so they are never served).
//!
//! **Snapshots are current state.** A bootstrap page is the records' state
//! when the page is read, in id order (see
//! `till_core::sync::protocol::BootstrapPage` for why that is enough).
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
use serde_json::value::RawValue;
use till_core::sync::dedup::MergeRecord;
use till_core::sync::protocol::{HistoryPage, PullResponse, PushOutcome, SnapshotRecord};
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
    /// The cursor (or a bootstrap's snapshot) is older than the tenant's
    /// compaction horizon: the log it needs is gone, bootstrap again.
    #[error("cursor {cursor} is older than the log's compaction horizon {horizon}")]
    BehindHorizon {
        /// The cursor or snapshot sequence sent.
        cursor: i64,
        /// The tenant's horizon.
        horizon: i64,
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

/// A sale refunded beyond its total, as the admin CLI lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverRefund {
    /// The sale's store.
    pub store: String,
    /// The sale's id.
    pub id: String,
    /// Its bill number.
    pub number: String,
    /// Its total, in minor units.
    pub total: i64,
    /// What its refunds add up to, in minor units.
    pub refunded_total: i64,
}

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

/// Which kind of record a snapshot position is in: a bootstrap sends the
/// tenant's customers first, then the store's bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPhase {
    /// Customers, by id.
    Customers,
    /// The store's bills, by id.
    Bills,
}

/// Where a bootstrap stands: the snapshot it belongs to and the last record
/// sent. The HTTP layer turns it into the page's opaque `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPosition {
    /// The snapshot's server sequence.
    pub snapshot_seq: i64,
    /// The kind of record sent last.
    pub phase: SnapshotPhase,
    /// The id of the record sent last (empty: none of `phase` yet).
    pub after_id: String,
}

/// One bootstrap page as a backend returns it: the records' fields are the
/// stored JSON, passed through unparsed.
#[derive(Debug, Clone)]
pub struct SnapshotPage {
    /// The snapshot's server sequence.
    pub snapshot_seq: i64,
    /// The records, customers before bills, each kind by id.
    pub records: Vec<SnapshotRecord<Box<RawValue>>>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<SnapshotPosition>,
}

/// How far to compact a tenant's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    /// Every entry at or below this sequence (capped at the head).
    Seq(i64),
    /// Every entry of a change received before this time, ms since the epoch.
    ReceivedBefore(i64),
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// The tenant's horizon now: pulls from a cursor below it must bootstrap.
    pub horizon: i64,
    /// The tenant's last sequence.
    pub head: i64,
    /// Log entries removed by this call.
    pub removed: u64,
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
    /// tenant's customers and the scope's store's bills, each the JSON text
    /// of a [`till_core::sync::protocol::ServerChange`].
    async fn pull(
        &self,
        scope: &DeviceScope,
        cursor: i64,
        limit: u32,
    ) -> StorageResult<PullResponse<Box<RawValue>>>;

    /// Whether the log holds a change visible to `scope` after `cursor`,
    /// read from the database (not from anything cached), so a long-poll
    /// wait's answer is true when given even with several server instances
    /// on one database. Fails with [`StorageError::CursorAhead`] and
    /// [`StorageError::BehindHorizon`] as [`Storage::pull`] does.
    async fn changes_after(&self, scope: &DeviceScope, cursor: i64) -> StorageResult<bool>;

    /// The merges customer `customer_id` of `tenant` took part in, as
    /// survivor or loser, oldest first.
    async fn merges(&self, tenant: &str, customer_id: &str) -> StorageResult<Vec<MergeRecord>>;

    /// One page of a snapshot of `scope`'s records, at most `limit`: from
    /// the start of a new snapshot at the current head when `from` is
    /// `None`, else after `from`. A snapshot older than the horizon (or
    /// ahead of the head) is refused: the device starts a new one.
    async fn bootstrap(
        &self,
        scope: &DeviceScope,
        from: Option<SnapshotPosition>,
        limit: u32,
    ) -> StorageResult<SnapshotPage>;

    /// Up to `limit` bills of customer `customer_id` of `scope`'s tenant,
    /// from every store, newest (greatest id) first, after bill id `after`
    /// (exclusive). A merged-away customer's id reads its survivor's bills;
    /// an unknown customer has no bills.
    async fn customer_bills(
        &self,
        scope: &DeviceScope,
        customer_id: &str,
        after: Option<String>,
        limit: u32,
    ) -> StorageResult<HistoryPage<Box<RawValue>>>;

    /// Cuts `tenant`'s log up to `horizon`, keeping every record's state;
    /// the horizon never moves backward. Works in short transactions, so
    /// pushes and pulls carry on meanwhile.
    async fn compact(&self, tenant: &str, horizon: Horizon) -> StorageResult<Compaction>;

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

    /// The tenant's sales refunded beyond their total, by store and number:
    /// tills that each refunded one sale while offline all paid out, and
    /// their refunds add up past it (`till_core::sync::conflict`). For head
    /// office to look into. Reads every bill of the tenant.
    async fn over_refunded_sales(&self, tenant: &str) -> StorageResult<Vec<OverRefund>>;
}
