//! The device's side of sync state, in its own SQLite tables (schema v3 and
//! v4): the outbox (local changes not yet acknowledged, read from the change
//! log), the pull cursor, a bootstrap in progress, the last sync time and
//! error, and the quarantine.
//!
//! Guarantees:
//! - a change leaves the outbox only in the transaction that records the
//!   server's answer for it: acknowledged (`pushed_at` set, with the
//!   `server_seq` of its log entry when accepted) or quarantined
//!   (`pushed_at` set *and* a quarantine row with the reason), so a
//!   rejected change is never pushed again and never blocks the ones behind
//!   it, and a lost answer means the change is simply pushed again (the
//!   server applies a change id once);
//! - the cursor only moves in the transaction that applied the page it
//!   covers (see `incoming`), or the last page of a bootstrap (see
//!   `bootstrap`); while a bootstrap is in progress it stays where it was
//!   and nothing is pulled.

use rusqlite::{named_params, Connection};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::protocol::{PushOutcome, PushResult};
use crate::changes::Change;
use crate::error::{Error, Result};
use crate::store::{Store, Writer};

/// The outbox, oldest first, up to `limit` changes: local changes the server
/// has not acknowledged.
pub(crate) fn pending(conn: &Connection, limit: usize) -> Result<Vec<(i64, Change)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM changes WHERE pushed_at IS NULL AND origin = 'local'
         ORDER BY seq LIMIT ?1",
        crate::changes::CHANGE_COLUMNS
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map([limit], Change::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Records the server's answer to one pushed batch, in the caller's
/// transaction: `(accepted or duplicate, quarantined)` counts.
pub(crate) fn record_results(
    w: &Writer<'_>,
    sent: &[(i64, Change)],
    results: &[PushResult],
) -> Result<(usize, usize)> {
    let mut ack = w.tx.prepare_cached(
        "UPDATE changes SET pushed_at = :now, server_seq = :server_seq
         WHERE seq = :seq AND pushed_at IS NULL",
    )?;
    let mut quarantine = w.tx.prepare_cached(
        "INSERT INTO quarantine (change_id, reason, message, at)
         VALUES (:id, :reason, :message, :now) ON CONFLICT (change_id) DO NOTHING",
    )?;
    let (mut acked, mut rejected) = (0, 0);
    for ((seq, change), result) in sent.iter().zip(results) {
        let server_seq = match &result.outcome {
            PushOutcome::Accepted { server_seq } | PushOutcome::Duplicate { server_seq } => {
                Some(*server_seq)
            }
            PushOutcome::Rejected { .. } => None,
        };
        ack.execute(named_params! { ":now": w.now_ms, ":seq": seq, ":server_seq": server_seq })?;
        match &result.outcome {
            PushOutcome::Accepted { .. } | PushOutcome::Duplicate { .. } => acked += 1,
            PushOutcome::Rejected { reason, message } => {
                quarantine.execute(named_params! {
                    ":id": change.change_id.to_string(),
                    ":reason": reason.as_str(),
                    ":message": message,
                    ":now": w.now_ms,
                })?;
                rejected += 1;
            }
        }
    }
    Ok((acked, rejected))
}

/// The last server sequence this device applied.
pub(crate) fn cursor(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT cursor FROM sync_state WHERE id = 1", [], |r| {
            r.get(0)
        })?,
    )
}

/// Moves the cursor, in the transaction that applied the page.
pub(crate) fn set_cursor(w: &Writer<'_>, cursor: i64) -> Result<()> {
    w.tx.prepare_cached("UPDATE sync_state SET cursor = ?1 WHERE id = 1")?
        .execute([cursor])?;
    Ok(())
}

/// A bootstrap in progress: its snapshot and where its next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BootstrapProgress {
    /// The snapshot's server sequence.
    pub snapshot_seq: i64,
    /// The server's position of the next page.
    pub next: String,
}

/// The bootstrap this device is in the middle of, if any.
pub(crate) fn bootstrap_progress(conn: &Connection) -> Result<Option<BootstrapProgress>> {
    let (seq, next): (Option<i64>, Option<String>) = conn
        .prepare_cached("SELECT bootstrap_seq, bootstrap_next FROM sync_state WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(seq
        .zip(next)
        .map(|(snapshot_seq, next)| BootstrapProgress { snapshot_seq, next }))
}

/// Whether the device must bootstrap before it can pull: one is in
/// progress, or it never pulled and never bootstrapped.
pub(crate) fn needs_bootstrap(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT bootstrap_seq IS NOT NULL OR (cursor = 0 AND bootstrapped_at IS NULL)
             FROM sync_state WHERE id = 1",
        )?
        .query_row([], |r| r.get(0))?)
}

/// Records the bootstrap's progress (`None`: none in progress), in the
/// transaction that applied the page it follows.
pub(crate) fn set_bootstrap_progress(
    w: &Writer<'_>,
    progress: Option<&BootstrapProgress>,
) -> Result<()> {
    w.tx.prepare_cached(
        "UPDATE sync_state SET bootstrap_seq = ?1, bootstrap_next = ?2 WHERE id = 1",
    )?
    .execute(rusqlite::params![
        progress.map(|p| p.snapshot_seq),
        progress.map(|p| &p.next)
    ])?;
    Ok(())
}

/// Ends a bootstrap in the transaction of its last page: the cursor moves
/// to the snapshot's sequence, where pulls take over.
pub(crate) fn complete_bootstrap(w: &Writer<'_>, snapshot_seq: i64) -> Result<()> {
    w.tx.prepare_cached(
        "UPDATE sync_state SET cursor = ?1, bootstrap_seq = NULL, bootstrap_next = NULL,
             bootstrapped_at = ?2
         WHERE id = 1",
    )?
    .execute([snapshot_seq, w.now_ms])?;
    Ok(())
}

/// Records how the sync that just ended went.
pub(crate) fn finish(w: &Writer<'_>, error: Option<&str>) -> Result<()> {
    match error {
        None => w.tx.execute(
            "UPDATE sync_state SET last_sync_at = ?1, last_error = NULL, last_error_at = NULL
             WHERE id = 1",
            [w.now_ms],
        )?,
        Some(message) => w.tx.execute(
            "UPDATE sync_state SET last_error = ?1, last_error_at = ?2 WHERE id = 1",
            rusqlite::params![message, w.now_ms],
        )?,
    };
    Ok(())
}

/// A local change the server refused for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedChange {
    /// The change's id.
    pub change_id: Uuid,
    /// `customer` or `bill`.
    pub entity: String,
    /// The record it changed.
    pub entity_id: String,
    /// What it did (`create`, `update`, ...).
    pub op: String,
    /// The server's reason code (a `RejectReason` wire name).
    pub reason: String,
    /// The server's detail; names fields, never personal data.
    pub message: String,
    /// When it was quarantined, ms since the Unix epoch.
    pub at_ms: i64,
}

/// Where this device stands with the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Local changes not yet acknowledged by the server.
    pub pending_changes: i64,
    /// The last server sequence applied.
    pub cursor: i64,
    /// A bootstrap is under way: the store holds part of a snapshot and is
    /// not caught up until a sync completes it.
    pub bootstrapping: bool,
    /// When the last bootstrap completed.
    pub bootstrapped_at_ms: Option<i64>,
    /// When the last complete sync ended.
    pub last_sync_at_ms: Option<i64>,
    /// What ended the last sync, when it failed (cleared by a success).
    pub last_error: Option<String>,
    /// Quarantined changes, newest first (at most [`QUARANTINE_LIST_MAX`]).
    pub quarantined: Vec<QuarantinedChange>,
}

/// Most quarantined changes [`Store::sync_status`] lists.
pub const QUARANTINE_LIST_MAX: u32 = 200;

impl Store {
    /// Pending changes, last sync, last error and quarantined changes.
    pub fn sync_status(&self) -> Result<SyncStatus> {
        self.read(|conn| {
            let pending_changes: i64 = conn.query_row(
                "SELECT count(*) FROM changes WHERE pushed_at IS NULL AND origin = 'local'",
                [],
                |r| r.get(0),
            )?;
            let (cursor, last_sync_at_ms, last_error, bootstrapping, bootstrapped_at_ms) = conn
                .query_row(
                    "SELECT cursor, last_sync_at, last_error, bootstrap_seq IS NOT NULL,
                            bootstrapped_at
                     FROM sync_state WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?;
            let mut stmt = conn.prepare_cached(
                "SELECT q.change_id, c.entity, c.entity_id, c.op, q.reason, q.message, q.at
                 FROM quarantine q JOIN changes c ON c.change_id = q.change_id
                 ORDER BY q.at DESC, q.change_id DESC LIMIT ?1",
            )?;
            let quarantined = stmt
                .query_map([QUARANTINE_LIST_MAX], |r| {
                    let id: String = r.get(0)?;
                    Ok((
                        id,
                        QuarantinedChange {
                            change_id: Uuid::nil(),
                            entity: r.get(1)?,
                            entity_id: r.get(2)?,
                            op: r.get(3)?,
                            reason: r.get(4)?,
                            message: r.get(5)?,
                            at_ms: r.get(6)?,
                        },
                    ))
                })?
                .map(|row| {
                    let (id, mut q) = row?;
                    q.change_id = id
                        .parse()
                        .map_err(|_| Error::invalid("quarantine.change_id", "not a UUID"))?;
                    Ok(q)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(SyncStatus {
                pending_changes,
                cursor,
                bootstrapping,
                bootstrapped_at_ms,
                last_sync_at_ms,
                last_error,
                quarantined,
            })
        })
    }

    /// The oldest `limit` local changes the server has not acknowledged yet.
    pub fn pending_changes(&self, limit: u32) -> Result<Vec<Change>> {
        let limit = crate::page::limit(limit)? as usize;
        self.read(|conn| Ok(pending(conn, limit)?.into_iter().map(|(_, c)| c).collect()))
    }
}
