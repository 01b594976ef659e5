//! Applying a bootstrap snapshot: the records of the device's scope as the
//! server holds them now, a page at a time (see
//! [`BootstrapPage`](super::protocol::BootstrapPage) for why current state
//! followed by a pull from the snapshot's sequence is exact).
//!
//! Each page goes through the same appliers as pulled changes (`incoming`):
//! a snapshot record is the effective change, at the snapshot's sequence,
//! that sets every field the server holds, so the rule that a field keeps
//! its local value while a local change whose own entry comes later touches
//! it holds here too, and a long-offline device keeps its unsynced edits
//! until their own entries come back in later pulls. A merged-away
//! customer comes as its tombstone (`merged_into` set), which maps its id
//! to the survivor as a pulled merge does.
//!
//! Guarantees:
//! - a page is applied and the bootstrap's progress recorded in the
//!   caller's one transaction; the cursor moves to the snapshot's sequence
//!   only with the last page (see `outbox`), so a bootstrap cut short at any
//!   point resumes where it stopped and never claims to be caught up;
//! - a bill new to the device, with no local change waiting, is written
//!   as the snapshot has it (decoded off the writer, see [`prepare`]), and the
//!   customers' metrics are recomputed from the bills in one pass in the
//!   last page's transaction: moving them bill by bill cost about a tenth
//!   of a bootstrap (`cargo bench -p till-sync-server --bench sync`), and
//!   until the last page the store is not caught up anyway;
//! - in a store holding no customer and no bill, the lookups keyed by
//!   something random (a bill's customer, a customer's name, the digits of
//!   phone search) are built once, with the last page (see `deferred`);
//! - the snapshot is not written to the change log record by record (it is
//!   state, not changes: a million bills would double the file): one
//!   `bootstrap` entry, committed with the last page, tells the ranked search
//!   index to rebuild, so a crash right after still leaves it rebuilding;
//! - the device's clock moves past every stamp it receives;
//! - a device enrolled again under the same code on a fresh file continues
//!   its own numbering and hash chain after the bills and customers the
//!   snapshot gave back, instead of reissuing their numbers.

use std::collections::HashSet;

use rusqlite::{named_params, OptionalExtension};
use serde_json::json;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::incoming::{self, Applied};
use super::protocol::{BootstrapPage, ServerChange, SnapshotRecord};
use super::{deferred, held};
use crate::bills::{self, chain, Bill};
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

/// A bootstrap page read ahead of its transaction, bills decoded.
#[derive(Debug)]
pub(crate) struct PreparedPage {
    /// The snapshot's server sequence.
    pub snapshot_seq: i64,
    /// The records, in the page's order.
    pub records: Vec<Prepared>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
}

/// One snapshot record, read ahead.
#[derive(Debug)]
pub(crate) enum Prepared {
    /// A bill, decoded from its fields.
    Bill {
        /// The bill, at version 1.
        bill: Box<Bill>,
        /// The latest stamp in it.
        hlc: String,
    },
    /// Any other record, as sent.
    Other(SnapshotRecord),
    /// A bill whose fields do not make a bill.
    Unreadable,
}

/// Decodes a page's records. It runs where the page was fetched, off the
/// store's writer, so decoding page N+1 overlaps writing page N. A bill is
/// read straight from its JSON text with its id and version put in front,
/// never through a map of its fields, which cost about twice as much
/// (`cargo bench -p till-sync-server --bench sync`); fields that already
/// name an id or version (a duplicate field to the reader) take the map way.
pub(crate) fn prepare(page: BootstrapPage<Box<RawValue>>) -> PreparedPage {
    let records = page
        .records
        .into_iter()
        .map(|record| {
            let SnapshotRecord {
                entity,
                id,
                fields,
                hlc,
            } = record;
            if entity == bills::ENTITY {
                return match decode_bill(&id, fields.get()) {
                    Some(bill) => Prepared::Bill {
                        bill: Box::new(bill),
                        hlc,
                    },
                    None => Prepared::Unreadable,
                };
            }
            match serde_json::from_str(fields.get()) {
                Ok(fields) => Prepared::Other(SnapshotRecord {
                    entity,
                    id,
                    fields,
                    hlc,
                }),
                Err(_) => Prepared::Unreadable,
            }
        })
        .collect();
    PreparedPage {
        snapshot_seq: page.snapshot_seq,
        records,
        next: page.next,
    }
}

/// The bill `id`, at version 1, from the JSON object text `fields`.
pub(super) fn decode_bill(id: &str, fields: &str) -> Option<Bill> {
    let rest = fields.trim_start().strip_prefix('{')?;
    let comma = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    let id_json = serde_json::to_string(id).ok()?;
    let text = format!("{{\"id\":{id_json},\"version\":1{comma}{rest}");
    serde_json::from_str(&text)
        .ok()
        .or_else(|| incoming::decode_bill(id, serde_json::from_str(fields).ok()?, 1))
}

/// Applies one page of the snapshot at `snapshot_seq`: each record as an
/// entry at that sequence would be (see `incoming`).
pub(crate) fn apply_page(
    w: &mut Writer<'_>,
    records: Vec<Prepared>,
    snapshot_seq: i64,
) -> Result<Applied> {
    w.bulk()?;
    deferred::begin_if_empty(w)?;
    w.defer_digits = deferred::digits_deferred(&w.tx)?;
    let mut applied = Applied::default();
    let pending = pending_records(w, snapshot_seq)?;
    for record in records {
        let record = match record {
            // A bill this device has never had, with no local change
            // waiting, is written as the snapshot has it; its customer's
            // metrics are recomputed with the last page.
            Prepared::Bill { mut bill, hlc } => {
                observe(w, &hlc);
                let id = bill.id.to_string();
                if !pending.contains(&id) && !bills::exists(&w.tx, &id)? {
                    incoming::place_in_chain(w, &mut bill, None)?;
                    bills::write_row(w, None, None, &bill)?;
                    applied.changed += 1;
                    continue;
                }
                SnapshotRecord {
                    entity: bills::ENTITY.into(),
                    id,
                    fields: incoming::as_object(bills::change_fields(&bill)?),
                    hlc,
                }
            }
            Prepared::Other(record) => {
                observe(w, &record.hlc);
                record
            }
            Prepared::Unreadable => {
                tracing::warn!("snapshot bill skipped: unreadable");
                applied.skipped += 1;
                continue;
            }
        };
        let change = ServerChange {
            server_seq: snapshot_seq,
            change: Change {
                change_id: Uuid::nil(),
                // The record's last write: what a customer's `updated_at` shows.
                at_ms: record.hlc.parse::<Hlc>().map_or(w.now_ms, |s| s.wall_ms),
                entity: record.entity,
                entity_id: record.id,
                op: SNAPSHOT_OP.into(),
                fields: record.fields,
                before: Fields::new(),
                hlc: record.hlc,
                device: String::new(),
                staff: String::new(),
            },
        };
        let did = match change.change.entity.as_str() {
            customers::ENTITY => incoming::apply_customer(w, &change)?,
            bills::ENTITY => incoming::apply_bill(w, &change)?,
            _ => None,
        };
        match did {
            Some(true) => applied.changed += 1,
            Some(false) => {}
            None => {
                tracing::warn!(entity = %change.change.entity, "snapshot record skipped: unreadable");
                applied.skipped += 1;
            }
        }
    }
    held::restore(w)?;
    Ok(applied)
}

/// Moves the device's clock past a stamp it received.
fn observe(w: &mut Writer<'_>, hlc: &str) {
    if let Ok(stamp) = hlc.parse::<Hlc>() {
        w.observe(&stamp);
    }
}

/// The records a local change touches whose own log entry comes after
/// `snapshot_seq` (still in the outbox, or accepted later): their snapshot
/// values go through the pending-field rule of `incoming`.
fn pending_records(w: &Writer<'_>, snapshot_seq: i64) -> Result<HashSet<String>> {
    let mut stmt = w.tx.prepare_cached(concat!(
        "SELECT DISTINCT entity_id FROM changes WHERE ",
        incoming::pending_after!()
    ))?;
    let ids = stmt
        .query_map([snapshot_seq], |r| r.get(0))?
        .collect::<rusqlite::Result<HashSet<String>>>()?;
    Ok(ids)
}

/// Completes a bootstrap in the transaction of its last page: the cursor
/// moves to `snapshot_seq`, deferred lookup structures are built,
/// customers' metrics are recomputed from the bills, the device's own
/// sequences continue after what the snapshot holds, and the change log
/// records the bootstrap.
pub(crate) fn complete(w: &mut Writer<'_>, snapshot_seq: i64) -> Result<()> {
    super::outbox::complete_bootstrap(w, snapshot_seq)?;
    deferred::finish(w)?;
    crate::metrics::recompute_all(w)?;
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
    // The chain goes on from its last bill: position and hash (its head).
    let chain_head: Option<(i64, Option<String>)> =
        w.tx.query_row(
            "SELECT chain_pos, hash FROM bills WHERE chain_pos IS NOT NULL
             ORDER BY chain_pos DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((pos, hash)) = chain_head {
        w.tx.prepare_cached(
            "INSERT INTO sequences (name, last, head) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET last = excluded.last, head = excluded.head
             WHERE excluded.last > last",
        )?
        .execute(rusqlite::params![chain::CHAIN_SEQUENCE, pos, hash])?;
    }
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
        (customers::SEQUENCE, customer_seq),
    ] {
        if let Some(last) = last.filter(|l| *l > 0) {
            raise.execute(rusqlite::params![name, last])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bill_reads_from_its_fields_with_its_id_and_version_whatever_the_fields_say() {
        let bill: Bill = serde_json::from_value(json!({
            "id": Uuid::now_v7(), "number": "S1-T1-000001", "store_id": "S1",
            "device_id": "T1", "staff_id": "p", "currency": "INR", "price_mode": "exclusive",
            "kind": "sale", "status": "open", "bill_discount": 0, "subtotal": 0,
            "discount_total": 0, "tax_total": 0, "total": 0, "paid_total": 0, "change_due": 0,
            "refunded_total": 0, "opened_at_ms": 1, "version": 1, "lines": [], "payments": [],
        }))
        .expect("bill");
        let id = bill.id.to_string();
        let serde_json::Value::Object(mut fields) = bills::change_fields(&bill).expect("fields")
        else {
            panic!("fields are an object");
        };
        let text = serde_json::to_string(&fields).expect("text");
        assert_eq!(decode_bill(&id, &text).as_ref(), Some(&bill));
        // Fields naming a version of their own still give version 1.
        fields.insert("version".into(), json!(7));
        let text = serde_json::to_string(&fields).expect("text");
        assert_eq!(decode_bill(&id, &text).as_ref(), Some(&bill));
        assert_eq!(decode_bill(&id, "[1]"), None);
        assert_eq!(decode_bill(&id, "{}"), None);
        assert_eq!(decode_bill(&id, &format!("{text} x")), None);
    }
}
