//! The embedded SQLite backend: one file in the data directory, nothing to
//! install. The default for a head office that fits on one machine.
//!
//! Concurrency: WAL mode, one writer connection behind a mutex (every push
//! and admin write is one `BEGIN IMMEDIATE` transaction on it), and read-only
//! connections from a small pool for pulls and token lookups, so pulls never
//! wait for pushes. All work runs on `spawn_blocking`. SQLite's single writer
//! gives the ordering guarantee of the storage model for free: sequences are
//! assigned and committed one transaction at a time. Other processes (the
//! admin CLI while the server runs) write through SQLite's file lock and the
//! busy timeout.
//!
//! The schema is versioned in `user_version` with one `.sql` step per version.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{named_params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde_json::value::RawValue;
use till_core::checkpoint::Checkpointer;
use till_core::sync::conflict::{self, Clamp, RecordState};
use till_core::sync::dedup::{self, Entry, IdentityKey, Ledger, MergeRecord, StoredBill};
use till_core::sync::erasure;
use till_core::sync::protocol::{
    HistoryPage, PullResponse, PushOutcome, RejectReason, SnapshotRecord,
};
use till_core::Change;

use super::{
    Compaction, DeviceInfo, Horizon, OverRefund, SnapshotPage, SnapshotPhase, SnapshotPosition,
    Storage, StorageError, StorageResult, TokenLookup,
};
use crate::auth::DeviceScope;
use crate::sync::apply::{self, Current, Entity};
use crate::sync::snapshot;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 6;
/// The database file's name inside the data directory.
pub const FILE_NAME: &str = "till-server.db";
/// How long a connection waits for another's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// Log entries deleted per compaction transaction: each holds the writer
/// for a short while only, so pushes carry on between them (see
/// `compacting_a_big_log_keeps_transactions_short` for the measurement).
const COMPACT_CHUNK: i64 = 10_000;

/// The writer's automatic checkpoint threshold, in WAL pages. The
/// checkpoint runs inside the commit that crosses it, syncing both files
/// while every push waits; fewer of them copy each hot page (the tenant's
/// row, the ends of the log and its indexes) fewer times. 50 tills pushing
/// 400 changes each (`TILL_SYNC_BENCH_ONLY=push cargo bench -p
/// till-sync-server --bench sync -- --quick`, medians of 3, load 6.5-7 on 2
/// cores): 4,609 changes/s at SQLite's 1,000, 5,504 at 4,000, 5,286 at
/// 10,000, server CPU per change unchanged (100-107 us).
const WAL_CHECKPOINT_PAGES: i64 = 4_000;

/// Commits between two checkpoints on a thread of their own, in PASSIVE
/// mode beside the writer (see `till_core::checkpoint`; a push of 100
/// changes writes a few hundred WAL pages): the writer's own checkpoint
/// then copies only what that thread has not, and rewinds the WAL. With 50
/// tills pushing 2,000 changes each (`TILL_SYNC_BENCH_ONLY=push cargo bench
/// -p till-sync-server --bench sync`), 9,515-9,898 changes/s with every
/// checkpoint in the writer's commits (10% of the server's CPU, on the
/// thread every push waits for), 11,480-11,482 with this one (10,994 every
/// 4 commits, 10,432 every 16; one run each).
const COMMITS_PER_CHECKPOINT: u32 = 8;

/// The SQLite backend. Cheap to clone: clones share the connections.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    checkpointer: Option<Checkpointer>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic mid-transaction rolled it back; the connection is still sound.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SqliteStorage {
    /// Opens (creating or upgrading) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> StorageResult<SqliteStorage> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StorageError::Backend(format!("data directory: {e}")))?;
        let path = data_dir.join(FILE_NAME);
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
        migrate(&mut conn)?;
        let checkpointer = Checkpointer::start(&path, COMMITS_PER_CHECKPOINT);
        Ok(SqliteStorage {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                checkpointer,
            }),
        })
    }

    /// Runs `f` in one immediate transaction on the writer, off the runtime.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> StorageResult<T> + Send + 'static,
    ) -> StorageResult<T> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            if let Some(checkpointer) = &inner.checkpointer {
                checkpointer.committed();
            }
            Ok(value)
        })
        .await
    }

    /// Runs `f` in one read transaction (a consistent snapshot), off the runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> StorageResult<T> + Send + 'static,
    ) -> StorageResult<T> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = match lock(&inner.readers).pop() {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    conn.busy_timeout(BUSY_TIMEOUT)?;
                    conn
                }
            };
            let result = (|| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let value = f(&tx)?;
                tx.finish()?;
                Ok(value)
            })();
            let mut idle = lock(&inner.readers);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StorageResult<T> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Backend(format!("storage task failed: {e}")))?
}

/// Brings the database to [`SCHEMA_VERSION`], creating it when empty.
fn migrate(conn: &mut Connection) -> StorageResult<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StorageError::Backend(format!(
            "database schema {found} is newer than this build ({SCHEMA_VERSION})"
        )));
    }
    for version in found..SCHEMA_VERSION {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now == version {
            match version {
                0 => tx.execute_batch(include_str!("schema_v1.sql"))?,
                1 => tx.execute_batch(include_str!("schema_v2.sql"))?,
                2 => tx.execute_batch(include_str!("schema_v3.sql"))?,
                3 => tx.execute_batch(include_str!("schema_v4.sql"))?,
                4 => tx.execute_batch(include_str!("schema_v5.sql"))?,
                5 => tx.execute_batch(include_str!("schema_v6.sql"))?,
                _ => {
                    return Err(StorageError::Backend(format!(
                        "no upgrade step from schema {version}"
                    )))
                }
            }
            tx.pragma_update(None, "user_version", version + 1)?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// The table of an entity's materialised records.
fn table(entity: Entity) -> &'static str {
    match entity {
        Entity::Customer => "customers",
        Entity::Bill => "bills",
    }
}

/// Loads a record's merge state and (for bills) its store.
fn load(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    entity: Entity,
    id: &str,
) -> StorageResult<Option<Current>> {
    let store_column = match entity {
        Entity::Customer => "NULL",
        Entity::Bill => "store",
    };
    let row: Option<(String, Option<String>)> = tx
        .prepare_cached(&format!(
            "SELECT state, {store_column} FROM {} WHERE tenant = ?1 AND id = ?2",
            table(entity)
        ))?
        .query_row([tenant, id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(state, store)| {
        Ok(Current {
            state: serde_json::from_str(&state)?,
            store,
        })
    })
    .transpose()
}

/// Writes a record's new merge state.
fn store_record(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    entity: Entity,
    id: &str,
    state: &RecordState,
    store: Option<&str>,
    seq: i64,
) -> StorageResult<()> {
    let json = serde_json::to_string(state)?;
    match entity {
        Entity::Customer => {
            let (mut phone, mut email) = (None, None);
            for key in dedup::identity_keys(&state.values) {
                match key {
                    IdentityKey::Phone(p) => phone = Some(p),
                    IdentityKey::Email(e) => email = Some(e),
                }
            }
            tx.prepare_cached(
                "INSERT INTO customers (tenant, id, state, phone_e164, email, live, merged_into,
                                        updated_seq)
                 VALUES (:tenant, :id, :state, :phone, :email, :live, :merged_into, :seq)
                 ON CONFLICT (tenant, id) DO UPDATE SET state = excluded.state,
                     phone_e164 = excluded.phone_e164, email = excluded.email,
                     live = excluded.live, merged_into = excluded.merged_into,
                     updated_seq = excluded.updated_seq",
            )?
            .execute(named_params! {
                ":tenant": tenant, ":id": id, ":state": json, ":phone": phone, ":email": email,
                ":live": dedup::is_live(&state.values),
                ":merged_into": dedup::merged_into(&state.values), ":seq": seq,
            })?;
        }
        Entity::Bill => {
            tx.prepare_cached(
                "INSERT INTO bills (tenant, id, store, customer_id, state, updated_seq)
                 VALUES (:tenant, :id, :store, :customer, :state, :seq)
                 ON CONFLICT (tenant, id) DO UPDATE SET state = excluded.state,
                     customer_id = excluded.customer_id, updated_seq = excluded.updated_seq",
            )?
            .execute(named_params! {
                ":tenant": tenant, ":id": id, ":store": store, ":state": json,
                ":customer": state.values.get("customer_id").and_then(|v| v.as_str()),
                ":seq": seq,
            })?;
        }
    }
    Ok(())
}

/// Pushes one checked change inside the batch transaction.
fn push_one(
    tx: &rusqlite::Transaction<'_>,
    scope: &DeviceScope,
    change: &Change,
    clock: &mut Clamp,
    now_ms: i64,
) -> StorageResult<PushOutcome> {
    let change_id = change.change_id.to_string();
    // Structural idempotency: the first insert of a change id wins; any
    // later one finds the row and returns the first outcome.
    let fresh = tx
        .prepare_cached(
            "INSERT INTO received (tenant, change_id, device, received_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant, change_id) DO NOTHING",
        )?
        .execute(rusqlite::params![
            scope.tenant,
            change_id,
            scope.node(),
            now_ms
        ])?;
    if fresh == 0 {
        let (seq, reason, message): (Option<i64>, Option<String>, Option<String>) = tx
            .prepare_cached(
                "SELECT server_seq, reject_reason, reject_message FROM received
                 WHERE tenant = ?1 AND change_id = ?2",
            )?
            .query_row([&scope.tenant, &change_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        return Ok(match (seq, reason) {
            (Some(server_seq), _) => PushOutcome::Duplicate { server_seq },
            (None, reason) => PushOutcome::Rejected {
                reason: reason
                    .as_deref()
                    .and_then(RejectReason::parse)
                    .unwrap_or(RejectReason::Malformed),
                message: message.unwrap_or_default(),
            },
        });
    }

    let mut ledger = TenantLedger {
        tx,
        tenant: &scope.tenant,
    };
    // A change naming a merged-away customer applies to its survivor.
    let change = &dedup::redirect(&mut ledger, change)?;
    let entity = Entity::of(change);
    let current = match entity {
        Some(entity) => load(tx, &scope.tenant, entity, &change.entity_id)?,
        None => None,
    };
    let was_erased = current
        .as_ref()
        .is_some_and(|c| erasure::is_erased(&c.state.values));
    let was_over_refunded = current
        .as_ref()
        .is_some_and(|c| conflict::over_refunded(&c.state.values));
    let customer_before = current
        .as_ref()
        .and_then(|c| c.state.values.get("customer_id"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let resolution = match apply::resolve(scope, change, current, clock) {
        Ok(resolution) => resolution,
        Err(rejection) => {
            tx.prepare_cached(
                "UPDATE received SET reject_reason = ?3, reject_message = ?4
                 WHERE tenant = ?1 AND change_id = ?2",
            )?
            .execute(rusqlite::params![
                scope.tenant,
                change_id,
                rejection.reason.as_str(),
                rejection.message
            ])?;
            return Ok(PushOutcome::Rejected {
                reason: rejection.reason,
                message: rejection.message,
            });
        }
    };

    let entry = Entry {
        state: resolution.state,
        store: resolution.store,
        change: resolution.effective,
    };
    let seq = ledger.append(&entry)?;
    if entity == Some(Entity::Customer) && !was_erased && erasure::is_erased(&entry.state.values) {
        erasure::scrub(&mut ledger, &entry, now_ms)?;
    }
    if entity == Some(Entity::Bill) {
        if let Some(past) = customer_before {
            if entry
                .state
                .values
                .get("customer_id")
                .and_then(serde_json::Value::as_str)
                != Some(past.as_str())
            {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO bill_past_customers (tenant, customer_id, bill_id)
                     VALUES (?1, ?2, ?3)",
                )?
                .execute([&scope.tenant, &past, &change.entity_id])?;
            }
        }
    }
    if !was_over_refunded && conflict::over_refunded(&entry.state.values) {
        tracing::warn!(
            store = entry.store.as_deref().unwrap_or_default(),
            bill = %change.entity_id,
            "a sale's refunds from several tills add up past its total"
        );
    }
    tx.prepare_cached("UPDATE received SET server_seq = ?3 WHERE tenant = ?1 AND change_id = ?2")?
        .execute(rusqlite::params![scope.tenant, change_id, seq])?;
    if resolution.clamped {
        tx.prepare_cached(
            "UPDATE devices SET clock_clamps = clock_clamps + 1
             WHERE tenant = ?1 AND store = ?2 AND id = ?3",
        )?
        .execute([&scope.tenant, &scope.store, &scope.device])?;
    }
    let merges = dedup::merge_cluster(&mut ledger, &entry, now_ms)?;
    if !merges.is_empty() {
        tracing::info!(merged = merges.len(), "customers merged by exact key");
    }
    Ok(PushOutcome::Accepted { server_seq: seq })
}

/// The tenant's last sequence and compaction horizon.
fn head_and_horizon(tx: &rusqlite::Transaction<'_>, tenant: &str) -> StorageResult<(i64, i64)> {
    tx.prepare_cached("SELECT last_seq, horizon FROM tenants WHERE id = ?1")?
        .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StorageError::NotFound(format!("tenant {tenant}")))
}

/// The log entry `change` (a `Change` as stored) at `seq` as the JSON text
/// of a [`till_core::sync::protocol::ServerChange`]: the stored text with the
/// sequence put in front, so a pull copies entries instead of decoding and
/// encoding each one.
fn server_change(seq: i64, change: &str) -> StorageResult<Box<RawValue>> {
    let members = change
        .strip_prefix('{')
        .filter(|rest| rest.trim_start() != "}")
        .ok_or_else(|| StorageError::Backend(format!("log entry {seq} is not a change")))?;
    Ok(RawValue::from_string(format!(
        "{{\"server_seq\":{seq},{members}"
    ))?)
}

/// The tenant's head and horizon, read in the caller's snapshot; refuses a
/// `cursor` the log cannot continue from (behind the horizon: its entries
/// are gone; ahead of the head: it came from another server).
fn log_bounds(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    cursor: i64,
) -> StorageResult<(i64, i64)> {
    let (head, horizon) = head_and_horizon(tx, tenant)?;
    if cursor > head {
        return Err(StorageError::CursorAhead { cursor, head });
    }
    if cursor < horizon {
        return Err(StorageError::BehindHorizon { cursor, horizon });
    }
    Ok((head, horizon))
}

/// Rows of `(id, state)` a snapshot or history query returns, as records of `entity`.
fn snapshot_records(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: &[(&str, &dyn rusqlite::ToSql)],
    entity: &str,
) -> StorageResult<Vec<SnapshotRecord<Box<RawValue>>>> {
    let mut rows = stmt.query(params)?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let state = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
        records.push(snapshot::record(entity, id, state)?);
    }
    Ok(records)
}

/// Up to `n` records of `phase` visible to `scope`, after id `after`.
fn snapshot_phase(
    tx: &rusqlite::Transaction<'_>,
    scope: &DeviceScope,
    phase: SnapshotPhase,
    after: &str,
    n: usize,
) -> StorageResult<Vec<SnapshotRecord<Box<RawValue>>>> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    match phase {
        SnapshotPhase::Customers => snapshot_records(
            &mut tx.prepare_cached(
                "SELECT id, state FROM customers WHERE tenant = :tenant AND id > :after
                 ORDER BY id LIMIT :n",
            )?,
            named_params! { ":tenant": scope.tenant, ":after": after, ":n": n },
            Entity::Customer.as_str(),
        ),
        SnapshotPhase::Bills => snapshot_records(
            &mut tx.prepare_cached(
                "SELECT id, state FROM bills WHERE tenant = :tenant AND store = :store
                     AND id > :after
                 ORDER BY id LIMIT :n",
            )?,
            named_params! {
                ":tenant": scope.tenant, ":store": scope.store, ":after": after, ":n": n,
            },
            Entity::Bill.as_str(),
        ),
    }
}

/// Deletes the log entries of `tenant` at or below `horizon`, a chunk of
/// sequences per transaction, except the entries merge records name (see
/// the storage module docs); returns how many went.
fn delete_log_through(conn: &Mutex<Connection>, tenant: &str, horizon: i64) -> StorageResult<u64> {
    let mut removed = 0u64;
    let mut from = i64::MIN;
    loop {
        let mut guard = lock(conn);
        let tx = guard.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let first: Option<i64> = tx
            .prepare_cached("SELECT min(seq) FROM log WHERE tenant = ?1 AND seq >= ?2")?
            .query_row(rusqlite::params![tenant, from], |r| r.get(0))?;
        let Some(first) = first.filter(|f| *f <= horizon) else {
            return Ok(removed);
        };
        let last = first.saturating_add(COMPACT_CHUNK - 1).min(horizon);
        let n = tx
            .prepare_cached(
                "DELETE FROM log WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3
                   AND seq NOT IN (SELECT seq FROM merges WHERE tenant = ?1
                                   UNION ALL
                                   SELECT record ->> '$.survivor_seq' FROM merges
                                   WHERE tenant = ?1)",
            )?
            .execute(rusqlite::params![tenant, first, last])?;
        tx.commit()?;
        removed += n as u64;
        from = last.saturating_add(1);
    }
}

/// An identity key as the `aliases` table holds it: (kind, key).
fn key_parts(key: &IdentityKey) -> (&'static str, &str) {
    match key {
        IdentityKey::Phone(phone) => ("phone", phone),
        IdentityKey::Email(email) => ("email", email),
    }
}

/// The identity key an `aliases` row holds: [`key_parts`] undone.
fn key_from_parts(kind: &str, key: String) -> StorageResult<IdentityKey> {
    match kind {
        "phone" => Ok(IdentityKey::Phone(key)),
        "email" => Ok(IdentityKey::Email(key)),
        other => Err(StorageError::Backend(format!(
            "unknown alias kind {other:?}"
        ))),
    }
}

/// The dedup engine's view of one tenant, inside the push transaction.
struct TenantLedger<'a, 't> {
    tx: &'a rusqlite::Transaction<'t>,
    tenant: &'a str,
}

impl TenantLedger<'_, '_> {
    /// The ids one statement selects with the tenant as `?1` and `value` as `?2`.
    fn ids(&self, sql: &str, value: &str) -> StorageResult<Vec<String>> {
        let ids = self
            .tx
            .prepare_cached(sql)?
            .query_map([self.tenant, value], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }
}

impl Ledger for TenantLedger<'_, '_> {
    type Error = StorageError;

    fn customer(&mut self, id: &str) -> StorageResult<Option<RecordState>> {
        Ok(load(self.tx, self.tenant, Entity::Customer, id)?.map(|c| c.state))
    }

    fn merged_into_of(&mut self, id: &str) -> StorageResult<Option<Option<String>>> {
        Ok(self
            .tx
            .prepare_cached("SELECT merged_into FROM customers WHERE tenant = ?1 AND id = ?2")?
            .query_row([self.tenant, id], |r| r.get(0))
            .optional()?)
    }

    fn key_holders(&mut self, key: &IdentityKey) -> StorageResult<Vec<String>> {
        let (kind, value) = key_parts(key);
        // Without statistics SQLite takes `tenant = ?` on the primary key
        // for selective and scans the tenant's customers: 2,000 customers
        // each duplicating an earlier one, with a sale each, pushed at 99
        // changes/s that way (the scan grows with the tenant) and at 5,670/s
        // with the key's index named
        // (`cargo bench -p till-sync-server --bench dedup -- --quick`).
        let sql = match key {
            IdentityKey::Phone(_) => {
                "SELECT id FROM customers INDEXED BY customers_by_phone
                 WHERE tenant = ?1 AND phone_e164 = ?2 AND live = 1
                 UNION ALL
                 SELECT customer FROM aliases WHERE tenant = ?1 AND kind = ?3 AND key = ?2"
            }
            IdentityKey::Email(_) => {
                "SELECT id FROM customers INDEXED BY customers_by_email
                 WHERE tenant = ?1 AND email = ?2 AND live = 1
                 UNION ALL
                 SELECT customer FROM aliases WHERE tenant = ?1 AND kind = ?3 AND key = ?2"
            }
        };
        let ids = self
            .tx
            .prepare_cached(sql)?
            .query_map([self.tenant, value, kind], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn add_alias(&mut self, key: &IdentityKey, id: &str) -> StorageResult<()> {
        let (kind, value) = key_parts(key);
        self.tx
            .prepare_cached(
                "INSERT INTO aliases (tenant, kind, key, customer) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?
            .execute([self.tenant, kind, value, id])?;
        Ok(())
    }

    fn aliases_of(&mut self, id: &str) -> StorageResult<Vec<IdentityKey>> {
        let rows = self
            .tx
            // One index search per customer: written as a join, SQLite
            // scanned the tenant's aliases for the tombstones' side
            // (`EXPLAIN QUERY PLAN`).
            .prepare_cached(
                "SELECT kind, key FROM aliases INDEXED BY aliases_by_customer
                 WHERE tenant = ?1 AND customer IN (
                     SELECT ?2
                     UNION ALL
                     SELECT id FROM customers WHERE tenant = ?1 AND merged_into = ?2
                 )",
            )?
            .query_map([self.tenant, id], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(kind, key)| key_from_parts(&kind, key))
            .collect()
    }

    fn merged_into(&mut self, id: &str) -> StorageResult<Vec<String>> {
        self.ids(
            "SELECT id FROM customers WHERE tenant = ?1 AND merged_into = ?2 ORDER BY id",
            id,
        )
    }

    fn bills_of(&mut self, id: &str) -> StorageResult<Vec<StoredBill>> {
        let rows = self
            .tx
            // Named for the same reason as in `key_holders`.
            .prepare_cached(
                "SELECT id, store, state FROM bills INDEXED BY bills_by_customer
                 WHERE tenant = ?1 AND customer_id = ?2 ORDER BY id",
            )?
            .query_map([self.tenant, id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?))
            })?
            .collect::<rusqlite::Result<Vec<(String, String, String)>>>()?;
        rows.into_iter()
            .map(|(id, store, state)| {
                Ok(StoredBill {
                    id,
                    store,
                    state: serde_json::from_str(&state)?,
                })
            })
            .collect()
    }

    fn append(&mut self, entry: &Entry) -> StorageResult<i64> {
        let change = &entry.change;
        let entity = Entity::of(change)
            .ok_or_else(|| StorageError::Backend("an entry of an unknown entity".into()))?;
        // The tenant row lock: taken here, held to commit (see the module docs of storage).
        let seq: i64 = self
            .tx
            .prepare_cached(
                "UPDATE tenants SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
            )?
            .query_row([self.tenant], |r| r.get(0))?;
        store_record(
            self.tx,
            self.tenant,
            entity,
            &change.entity_id,
            &entry.state,
            entry.store.as_deref(),
            seq,
        )?;
        self.tx
            .prepare_cached(
                "INSERT INTO log (tenant, seq, store, entity, entity_id, change)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(rusqlite::params![
                self.tenant,
                seq,
                entry.store,
                change.entity,
                change.entity_id,
                serde_json::to_string(change)?
            ])?;
        Ok(seq)
    }

    fn entries_of(&mut self, id: &str) -> StorageResult<Vec<(i64, Change)>> {
        let rows = self
            .tx
            .prepare_cached(
                "SELECT seq, change FROM log WHERE tenant = ?1 AND entity_id = ?2 ORDER BY seq",
            )?
            .query_map([self.tenant, id], |r| {
                Ok((r.get(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<(i64, String)>>>()?;
        rows.into_iter()
            .map(|(seq, text)| Ok((seq, serde_json::from_str(&text)?)))
            .collect()
    }

    fn rewrite_entry(&mut self, seq: i64, change: &Change) -> StorageResult<()> {
        self.tx
            .prepare_cached("UPDATE log SET change = ?3 WHERE tenant = ?1 AND seq = ?2")?
            .execute(rusqlite::params![
                self.tenant,
                seq,
                serde_json::to_string(change)?
            ])?;
        Ok(())
    }

    fn restate_bill(&mut self, bill: &StoredBill) -> StorageResult<()> {
        self.tx
            .prepare_cached("UPDATE bills SET state = ?3 WHERE tenant = ?1 AND id = ?2")?
            .execute(rusqlite::params![
                self.tenant,
                bill.id,
                serde_json::to_string(&bill.state)?
            ])?;
        Ok(())
    }

    fn bills_moved_off(&mut self, id: &str) -> StorageResult<Vec<String>> {
        self.ids(
            "SELECT bill_id FROM bill_past_customers WHERE tenant = ?1 AND customer_id = ?2",
            id,
        )
    }

    fn merges_of(&mut self, id: &str) -> StorageResult<Vec<MergeRecord>> {
        merges_of(self.tx, self.tenant, id)
    }

    fn rewrite_merge(&mut self, record: &MergeRecord) -> StorageResult<()> {
        self.tx
            .prepare_cached("UPDATE merges SET record = ?3 WHERE tenant = ?1 AND seq = ?2")?
            .execute(rusqlite::params![
                self.tenant,
                record.tombstone_seq,
                serde_json::to_string(record)?
            ])?;
        Ok(())
    }

    fn drop_aliases(&mut self, id: &str) -> StorageResult<()> {
        self.tx
            .prepare_cached("DELETE FROM aliases WHERE tenant = ?1 AND customer = ?2")?
            .execute([self.tenant, id])?;
        Ok(())
    }

    fn record_merge(&mut self, record: &MergeRecord) -> StorageResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO merges (tenant, seq, survivor, loser, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(rusqlite::params![
                self.tenant,
                record.tombstone_seq,
                record.survivor,
                record.loser,
                serde_json::to_string(record)?
            ])?;
        Ok(())
    }
}

/// The records of the merges customer `id` of `tenant` took part in, as
/// survivor or loser, in merge order.
fn merges_of(conn: &Connection, tenant: &str, id: &str) -> StorageResult<Vec<MergeRecord>> {
    let rows = conn
        .prepare_cached(
            "SELECT record FROM merges WHERE tenant = ?1 AND survivor = ?2
             UNION
             SELECT record FROM merges WHERE tenant = ?1 AND loser = ?2",
        )?
        .query_map([tenant, id], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut records = rows
        .iter()
        .map(|json| serde_json::from_str(json))
        .collect::<Result<Vec<MergeRecord>, _>>()?;
    records.sort_by_key(|r| r.tombstone_seq);
    Ok(records)
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn ready(&self) -> StorageResult<()> {
        self.read(|tx| Ok(tx.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn device_by_token(&self, token_hash: &str) -> StorageResult<TokenLookup> {
        let hash = token_hash.to_owned();
        self.read(move |tx| {
            let row: Option<(String, String, String, Option<i64>)> = tx
                .prepare_cached(
                    "SELECT tenant, store, id, revoked_at FROM devices WHERE token_hash = ?1",
                )?
                .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            Ok(match row {
                None => TokenLookup::Unknown,
                Some((_, _, _, Some(_))) => TokenLookup::Revoked,
                Some((tenant, store, device, None)) => TokenLookup::Active(DeviceScope {
                    tenant,
                    store,
                    device,
                }),
            })
        })
        .await
    }

    async fn push(
        &self,
        scope: &DeviceScope,
        changes: Vec<Change>,
        now_ms: i64,
    ) -> StorageResult<Vec<PushOutcome>> {
        let scope = scope.clone();
        self.write(move |tx| {
            let last_clamp = tx
                .prepare_cached(
                    "SELECT last_clamp FROM devices WHERE tenant = ?1 AND store = ?2 AND id = ?3",
                )?
                .query_row([&scope.tenant, &scope.store, &scope.device], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .optional()?
                .flatten()
                .map(|s| s.parse())
                .transpose()
                .map_err(|_| StorageError::Backend("a device's last clamp is no stamp".into()))?;
            let mut clock = Clamp::new(now_ms, last_clamp);
            let outcomes = changes
                .iter()
                .map(|change| push_one(tx, &scope, change, &mut clock, now_ms))
                .collect::<StorageResult<Vec<_>>>()?;
            tx.prepare_cached(
                "UPDATE devices SET last_seen_at = ?4, last_clamp = ?5
                 WHERE tenant = ?1 AND store = ?2 AND id = ?3",
            )?
            .execute(rusqlite::params![
                scope.tenant,
                scope.store,
                scope.device,
                now_ms,
                clock.last().map(ToString::to_string)
            ])?;
            Ok(outcomes)
        })
        .await
    }

    async fn pull(
        &self,
        scope: &DeviceScope,
        cursor: i64,
        limit: u32,
    ) -> StorageResult<PullResponse<Box<RawValue>>> {
        let scope = scope.clone();
        self.read(move |tx| {
            // Head and page come from one snapshot, so jumping the cursor to
            // the head can never pass over a change this page did not see.
            let (head, _) = log_bounds(tx, &scope.tenant, cursor)?;
            let mut stmt = tx.prepare_cached(
                "SELECT seq, change FROM log
                 WHERE tenant = :tenant AND seq > :cursor AND (store IS NULL OR store = :store)
                 ORDER BY seq LIMIT :n",
            )?;
            let mut rows = stmt.query(named_params! {
                ":tenant": scope.tenant, ":cursor": cursor, ":store": scope.store,
                ":n": i64::from(limit) + 1,
            })?;
            let (mut changes, mut last, mut has_more) = (Vec::new(), None, false);
            while let Some(row) = rows.next()? {
                if changes.len() == limit as usize {
                    has_more = true;
                    break;
                }
                let seq: i64 = row.get(0)?;
                changes.push(server_change(seq, &row.get::<_, String>(1)?)?);
                last = Some(seq);
            }
            let cursor = match (has_more, last) {
                (true, Some(last)) => last,
                _ => head,
            };
            Ok(PullResponse {
                changes,
                cursor,
                has_more,
            })
        })
        .await
    }

    async fn bootstrap(
        &self,
        scope: &DeviceScope,
        from: Option<SnapshotPosition>,
        limit: u32,
    ) -> StorageResult<SnapshotPage> {
        let scope = scope.clone();
        self.read(move |tx| {
            let from = match from {
                Some(from) => {
                    log_bounds(tx, &scope.tenant, from.snapshot_seq)?;
                    from
                }
                None => SnapshotPosition {
                    snapshot_seq: head_and_horizon(tx, &scope.tenant)?.0,
                    phase: SnapshotPhase::Customers,
                    after_id: String::new(),
                },
            };
            let limit = limit.max(1) as usize;
            // One more than asked tells whether another page follows.
            let mut records = snapshot_phase(tx, &scope, from.phase, &from.after_id, limit + 1)?;
            if from.phase == SnapshotPhase::Customers && records.len() <= limit {
                let room = limit + 1 - records.len();
                records.extend(snapshot_phase(tx, &scope, SnapshotPhase::Bills, "", room)?);
            }
            let mut next = None;
            if records.len() > limit {
                records.truncate(limit);
                next = records.last().map(|last| SnapshotPosition {
                    snapshot_seq: from.snapshot_seq,
                    phase: if last.entity == Entity::Customer.as_str() {
                        SnapshotPhase::Customers
                    } else {
                        SnapshotPhase::Bills
                    },
                    after_id: last.id.clone(),
                });
            }
            Ok(SnapshotPage {
                snapshot_seq: from.snapshot_seq,
                records,
                next,
            })
        })
        .await
    }

    async fn customer_bills(
        &self,
        scope: &DeviceScope,
        customer_id: &str,
        after: Option<String>,
        limit: u32,
    ) -> StorageResult<HistoryPage<Box<RawValue>>> {
        let (tenant, customer) = (scope.tenant.clone(), customer_id.to_owned());
        self.read(move |tx| {
            // A merged-away customer's bills all moved to its survivor, and
            // `merged_into` is always one hop (see `dedup`).
            let customer: String = tx
                .prepare_cached(
                    "SELECT coalesce(merged_into, id) FROM customers WHERE tenant = ?1 AND id = ?2",
                )?
                .query_row([&tenant, &customer], |r| r.get(0))
                .optional()?
                .unwrap_or(customer);
            let n = i64::from(limit) + 1;
            // Two statements rather than `:after IS NULL OR ...`, so SQLite
            // seeks the index to the cursor.
            let mut bills = match &after {
                None => snapshot_records(
                    &mut tx.prepare_cached(
                        "SELECT id, state FROM bills WHERE tenant = :tenant AND customer_id = :c
                         ORDER BY id DESC LIMIT :n",
                    )?,
                    named_params! { ":tenant": tenant, ":c": customer, ":n": n },
                    Entity::Bill.as_str(),
                )?,
                Some(after) => snapshot_records(
                    &mut tx.prepare_cached(
                        "SELECT id, state FROM bills WHERE tenant = :tenant AND customer_id = :c
                             AND id < :after
                         ORDER BY id DESC LIMIT :n",
                    )?,
                    named_params! { ":tenant": tenant, ":c": customer, ":after": after, ":n": n },
                    Entity::Bill.as_str(),
                )?,
            };
            let next = (bills.len() > limit as usize).then(|| {
                bills.truncate(limit as usize);
                bills.last().map(|b| b.id.clone()).unwrap_or_default()
            });
            Ok(HistoryPage { bills, next })
        })
        .await
    }

    async fn compact(&self, tenant: &str, horizon: Horizon) -> StorageResult<Compaction> {
        let tenant = tenant.to_owned();
        // First raise the horizon, in its own transaction: from then on a
        // pull from below it is refused, so deleting the entries after it
        // can never hand anyone a partial log.
        let (head, horizon) = {
            let tenant = tenant.clone();
            self.write(move |tx| {
                let (head, current) = head_and_horizon(tx, &tenant)?;
                let wanted = match horizon {
                    Horizon::Seq(seq) => seq,
                    Horizon::ReceivedBefore(at_ms) => tx
                        .query_row(
                            "SELECT max(server_seq) FROM received
                             WHERE tenant = ?1 AND received_at < ?2",
                            rusqlite::params![tenant, at_ms],
                            |r| r.get::<_, Option<i64>>(0),
                        )?
                        .unwrap_or(0),
                };
                let horizon = wanted.min(head).max(current);
                tx.execute(
                    "UPDATE tenants SET horizon = ?2 WHERE id = ?1",
                    rusqlite::params![tenant, horizon],
                )?;
                Ok((head, horizon))
            })
            .await?
        };
        let inner = Arc::clone(&self.inner);
        let removed = blocking(move || delete_log_through(&inner.writer, &tenant, horizon)).await?;
        Ok(Compaction {
            horizon,
            head,
            removed,
        })
    }

    async fn changes_after(&self, scope: &DeviceScope, cursor: i64) -> StorageResult<bool> {
        let scope = scope.clone();
        self.read(move |tx| {
            log_bounds(tx, &scope.tenant, cursor)?;
            // Walks only the entries after the cursor: as cheap as the wait is short.
            let found = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM log WHERE tenant = :tenant AND seq > :cursor
                                    AND (store IS NULL OR store = :store))",
                )?
                .query_row(
                    named_params! {
                        ":tenant": scope.tenant, ":cursor": cursor, ":store": scope.store,
                    },
                    |r| r.get(0),
                )?;
            Ok(found)
        })
        .await
    }

    async fn merges(&self, tenant: &str, customer_id: &str) -> StorageResult<Vec<MergeRecord>> {
        let (tenant, id) = (tenant.to_owned(), customer_id.to_owned());
        self.read(move |tx| merges_of(tx, &tenant, &id)).await
    }

    async fn create_tenant(&self, tenant: &str, name: &str, now_ms: i64) -> StorageResult<()> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.write(move |tx| {
            let n = tx.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO NOTHING",
                rusqlite::params![tenant, name, now_ms],
            )?;
            if n == 0 {
                return Err(StorageError::AlreadyExists(format!("tenant {tenant}")));
            }
            Ok(())
        })
        .await
    }

    async fn create_store(
        &self,
        tenant: &str,
        store: &str,
        name: &str,
        now_ms: i64,
    ) -> StorageResult<()> {
        let (tenant, store, name) = (tenant.to_owned(), store.to_owned(), name.to_owned());
        self.write(move |tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = ?1)",
                [&tenant],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(StorageError::NotFound(format!("tenant {tenant}")));
            }
            let n = tx.execute(
                "INSERT INTO stores (tenant, id, name, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, id) DO NOTHING",
                rusqlite::params![tenant, store, name, now_ms],
            )?;
            if n == 0 {
                return Err(StorageError::AlreadyExists(format!(
                    "store {tenant}/{store}"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn enroll_device(
        &self,
        scope: &DeviceScope,
        token_hash: &str,
        now_ms: i64,
    ) -> StorageResult<()> {
        let (scope, hash) = (scope.clone(), token_hash.to_owned());
        self.write(move |tx| {
            let store_exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM stores WHERE tenant = ?1 AND id = ?2)",
                [&scope.tenant, &scope.store],
                |r| r.get(0),
            )?;
            if !store_exists {
                return Err(StorageError::NotFound(format!(
                    "store {}/{}",
                    scope.tenant, scope.store
                )));
            }
            // A new device, or a revoked one enrolled again with a new token.
            let n = tx.execute(
                "INSERT INTO devices (tenant, store, id, token_hash, enrolled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, store, id) DO UPDATE SET
                     token_hash = excluded.token_hash, enrolled_at = excluded.enrolled_at,
                     revoked_at = NULL
                 WHERE devices.revoked_at IS NOT NULL",
                rusqlite::params![scope.tenant, scope.store, scope.device, hash, now_ms],
            )?;
            if n == 0 {
                return Err(StorageError::AlreadyExists(format!(
                    "active device {}/{}/{}",
                    scope.tenant, scope.store, scope.device
                )));
            }
            Ok(())
        })
        .await
    }

    async fn revoke_device(&self, scope: &DeviceScope, now_ms: i64) -> StorageResult<()> {
        let scope = scope.clone();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?4)
                 WHERE tenant = ?1 AND store = ?2 AND id = ?3",
                rusqlite::params![scope.tenant, scope.store, scope.device, now_ms],
            )?;
            if n == 0 {
                return Err(StorageError::NotFound(format!(
                    "device {}/{}/{}",
                    scope.tenant, scope.store, scope.device
                )));
            }
            Ok(())
        })
        .await
    }

    async fn list_devices(&self, tenant: &str) -> StorageResult<Vec<DeviceInfo>> {
        let tenant = tenant.to_owned();
        self.read(move |tx| {
            // An unknown tenant is an error, not an empty list.
            head_and_horizon(tx, &tenant)?;
            let rows = tx
                .prepare_cached(
                    "SELECT tenant, store, id, enrolled_at, revoked_at, last_seen_at, clock_clamps
                     FROM devices WHERE tenant = ?1 ORDER BY store, id",
                )?
                .query_map([&tenant], |r| {
                    Ok(DeviceInfo {
                        tenant: r.get(0)?,
                        store: r.get(1)?,
                        device: r.get(2)?,
                        enrolled_at_ms: r.get(3)?,
                        revoked_at_ms: r.get(4)?,
                        last_seen_ms: r.get(5)?,
                        clock_clamps: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn over_refunded_sales(&self, tenant: &str) -> StorageResult<Vec<OverRefund>> {
        let tenant = tenant.to_owned();
        self.read(move |tx| {
            // An unknown tenant is an error, not an empty list.
            head_and_horizon(tx, &tenant)?;
            let rows = tx
                .prepare_cached(
                    "SELECT store, id, number, total, refunded FROM (
                         SELECT store, id,
                                state ->> '$.values.number' AS number,
                                state ->> '$.values.total' AS total,
                                state ->> '$.values.refunded_total' AS refunded
                         FROM bills WHERE tenant = ?1)
                     WHERE refunded > total ORDER BY store, number",
                )?
                .query_map([&tenant], |r| {
                    Ok(OverRefund {
                        store: r.get(0)?,
                        id: r.get(1)?,
                        number: r.get(2)?,
                        total: r.get(3)?,
                        refunded_total: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_database_is_at_the_current_schema_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(SqliteStorage::open(dir.path()).expect("create"));
        let storage = SqliteStorage::open(dir.path()).expect("reopen");
        let version: i64 = lock(&storage.inner.writer)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// The upgrade to version 4 finds in the log the bills moved off a
    /// customer before it, leaving out a merge's moves (the same person).
    #[test]
    fn bills_moved_before_version_4_are_found_in_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let conn = Connection::open(dir.path().join(FILE_NAME)).expect("v3");
            for step in [
                include_str!("schema_v1.sql"),
                include_str!("schema_v2.sql"),
                include_str!("schema_v3.sql"),
            ] {
                conn.execute_batch(step).expect("old schema");
            }
            conn.execute_batch(
                r#"INSERT INTO log (tenant, seq, store, entity, entity_id, change) VALUES
                   ('t1', 1, 'S1', 'bill', 'b1',
                    '{"op":"open","fields":{"customer_id":"x"},"before":{}}'),
                   ('t1', 2, 'S1', 'bill', 'b1',
                    '{"op":"set_customer","fields":{"customer_id":"y"},"before":{"customer_id":"x"}}'),
                   ('t1', 3, 'S1', 'bill', 'b2',
                    '{"op":"move_customer","fields":{"customer_id":"s"},"before":{"customer_id":"l"}}'),
                   ('t2', 4, 'S1', 'bill', 'b3',
                    '{"op":"set_customer","fields":{"customer_id":null},"before":{"customer_id":"z"}}');
                   PRAGMA user_version = 3;"#,
            )
            .expect("v3 log");
        }
        let storage = SqliteStorage::open(dir.path()).expect("upgrade");
        let conn = lock(&storage.inner.writer);
        let moved: Vec<(String, String, String)> = conn
            .prepare("SELECT tenant, customer_id, bill_id FROM bill_past_customers ORDER BY 1")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(
            moved,
            vec![
                ("t1".into(), "x".into(), "b1".into()),
                ("t2".into(), "z".into(), "b3".into())
            ]
        );
    }

    #[test]
    fn a_version_1_database_upgrades_in_place_keeping_its_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let conn = Connection::open(dir.path().join(FILE_NAME)).expect("v1");
            conn.execute_batch(include_str!("schema_v1.sql"))
                .expect("v1 schema");
            conn.execute_batch(
                "INSERT INTO tenants (id, name, created_at) VALUES ('t1', 't1', 1);
                 INSERT INTO customers (tenant, id, state, phone_e164, email, live, updated_seq)
                 VALUES ('t1', 'c1', '{\"values\":{},\"clocks\":{}}', '+911', NULL, 1, 1);
                 PRAGMA user_version = 1;",
            )
            .expect("v1 rows");
        }
        let storage = SqliteStorage::open(dir.path()).expect("upgrade");
        let conn = lock(&storage.inner.writer);
        let (phone, merged_into): (String, Option<String>) = conn
            .query_row(
                "SELECT phone_e164, merged_into FROM customers WHERE id = 'c1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("kept");
        assert_eq!((phone.as_str(), merged_into), ("+911", None));
        let empty: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM aliases) + (SELECT count(*) FROM merges)",
                [],
                |r| r.get(0),
            )
            .expect("new tables");
        assert_eq!(empty, 0);
    }
}
