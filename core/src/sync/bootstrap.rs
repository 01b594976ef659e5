//! Applying a bootstrap snapshot: the records of the device's scope as the
//! server holds them now, a page at a time (see
//! [`BootstrapPage`](super::protocol::BootstrapPage) for why current state
//! followed by a pull from the snapshot's sequence is exact).
//!
//! Each page goes through the same appliers as pulled changes (`incoming`):
//! a snapshot record is the effective change that sets every field the
//! server holds, so the rule that a field a pending local change touches
//! keeps its local value holds here too, and a long-offline device keeps
//! its unsynced edits until their own entries come back in later pulls.
//!
//! Guarantees:
//! - a page is applied and the bootstrap's progress recorded in the
//!   caller's one transaction; the cursor moves to the snapshot's sequence
//!   only with the last page (see `outbox`), so a bootstrap cut short at any
//!   point resumes where it stopped and never claims to be caught up;
//! - the snapshot is not written to the change log record by record (it is
//!   state, not changes: a million bills would double the file): one
//!   `bootstrap` entry, committed with the last page, tells the ranked search
//!   index to rebuild, so a crash right after still leaves it rebuilding;
//! - the device's clock moves past every stamp it receives;
//! - a device enrolled again under the same code on a fresh file continues
//!   its own numbering and hash chain after the bills and customers the
//!   snapshot gave back, instead of reissuing their numbers.

use rusqlite::named_params;
use serde_json::json;
use uuid::Uuid;

use super::incoming::{self, Applied};
use super::protocol::SnapshotRecord;
use crate::bills::{self, chain};
use crate::changes::{Change, Fields};
use crate::clock::Hlc;
use crate::customers;
use crate::error::Result;
use crate::store::Writer;

/// The change-log `op` of a completed bootstrap (entity [`BOOTSTRAP_ENTITY`]).
pub(crate) const BOOTSTRAP_OP: &str = "bootstrap";
/// The change-log `entity` of bootstrap entries.
const BOOTSTRAP_ENTITY: &str = "sync";
/// The `op` snapshot records are applied as.
const SNAPSHOT_OP: &str = "snapshot";

/// Applies one page of snapshot records.
pub(crate) fn apply_page(w: &mut Writer<'_>, records: Vec<SnapshotRecord>) -> Result<Applied> {
    let mut applied = Applied::default();
    for record in records {
        let stamp = record.hlc.parse::<Hlc>().ok();
        if let Some(stamp) = &stamp {
            w.observe(stamp);
        }
        let change = Change {
            change_id: Uuid::nil(),
            entity: record.entity,
            entity_id: record.id,
            op: SNAPSHOT_OP.into(),
            fields: record.fields,
            before: Fields::new(),
            hlc: record.hlc,
            device: String::new(),
            staff: String::new(),
            // The record's last write: what a customer's `updated_at` shows.
            at_ms: stamp.map_or(w.now_ms, |s| s.wall_ms),
        };
        let did = match change.entity.as_str() {
            customers::ENTITY => incoming::apply_customer(w, &change)?,
            bills::ENTITY => incoming::apply_bill(w, &change)?,
            _ => None,
        };
        match did {
            Some(true) => applied.changed += 1,
            Some(false) => {}
            None => {
                tracing::warn!(entity = %change.entity, "snapshot record skipped: unreadable");
                applied.skipped += 1;
            }
        }
    }
    Ok(applied)
}

/// Completes a bootstrap in the transaction of its last page: the cursor
/// moves to `snapshot_seq`, the device's own sequences continue after what
/// the snapshot holds, and the change log records the bootstrap.
pub(crate) fn complete(w: &mut Writer<'_>, snapshot_seq: i64) -> Result<()> {
    super::outbox::complete_bootstrap(w, snapshot_seq)?;
    continue_own_sequences(w)?;
    let stamp = w.stamp().to_string();
    w.tx.prepare_cached(
        "INSERT INTO changes (change_id, entity, entity_id, op, fields, hlc, device_id,
                              staff_id, at, origin, pushed_at)
         VALUES (:change_id, :entity, :entity_id, :op, :fields, :hlc, :device, :staff, :at,
                 'remote', :at)",
    )?
    .execute(named_params! {
        ":change_id": Uuid::now_v7().to_string(),
        ":entity": BOOTSTRAP_ENTITY,
        ":entity_id": BOOTSTRAP_OP,
        ":op": BOOTSTRAP_OP,
        ":fields": json!({ "snapshot_seq": snapshot_seq }).to_string(),
        ":hlc": stamp,
        ":device": w.settings.node,
        ":staff": w.staff,
        ":at": w.now_ms,
    })?;
    Ok(())
}

/// Moves the bill number, chain position and customer number sequences past
/// the device's own records the snapshot brought (they only ever grow).
fn continue_own_sequences(w: &Writer<'_>) -> Result<()> {
    let identity = &w.settings.identity;
    let bill_seq: Option<i64> = w.tx.query_row(
        "SELECT max(seq) FROM bills WHERE store_id = ?1 AND device_id = ?2",
        [&identity.store, &identity.device],
        |r| r.get(0),
    )?;
    let chain_pos: Option<i64> =
        w.tx.query_row("SELECT max(chain_pos) FROM bills", [], |r| r.get(0))?;
    let prefix = format!("{}-{}-C", identity.store, identity.device);
    let customer_seq: Option<i64> = w.tx.query_row(
        "SELECT max(CAST(substr(number, length(?1) + 1) AS INTEGER)) FROM customers
         WHERE substr(number, 1, length(?1)) = ?1",
        [&prefix],
        |r| r.get(0),
    )?;
    let mut raise = w.tx.prepare_cached(
        "INSERT INTO sequences (name, last) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET last = max(last, excluded.last)",
    )?;
    for (name, last) in [
        (bills::SEQUENCE, bill_seq),
        (chain::CHAIN_SEQUENCE, chain_pos),
        (customers::SEQUENCE, customer_seq),
    ] {
        if let Some(last) = last.filter(|l| *l > 0) {
            raise.execute(rusqlite::params![name, last])?;
        }
    }
    Ok(())
}
