//! Applying pulled server changes to the local store: the "apply" phase of
//! sync. A page is applied, recorded and the cursor advanced in the one
//! write transaction the caller holds, so a crash or a lost connection
//! leaves either the whole page or none of it.
//!
//! The rule (the server's log holds *effective* changes: each entry lists
//! every field its change touched, valued as the server resolved it): a
//! pulled field is applied unless a local change whose own entry is still to
//! come touches it: one waiting in the outbox, or one the server accepted at
//! a later sequence than the entry being applied (a sync that pushed it and
//! was cut short before pulling that far). That local change's own entry,
//! coming back in a later pull, carries the server's verdict for the field;
//! so devices converge without keeping per-field clocks, and a till never
//! shows an older state of its own records than the one it wrote (a voided
//! bill never reads as open again).
//!
//! Guarantees:
//! - pulled records go through the same row writers as local edits, so the
//!   FTS rows, tags and (after commit) the ranked index follow;
//! - every pulled change is recorded in the change log with origin `remote`
//!   (history shows it; the outbox never holds it); a change this device
//!   made itself is already there and is not recorded twice;
//! - bills of other devices are stored outside this device's hash chain
//!   (`chain_pos` is NULL: the server verifies their chains), and the metrics
//!   of every customer a pulled bill touches are recomputed from the bills
//!   in the same transaction;
//! - the local unique index on identity contacts stays whole: a pulled
//!   contact a local live customer still holds is held as shared until the
//!   key is free, and put back as the server holds it then (see `held`);
//! - fields this build does not know are kept in the record's `extra`;
//! - a merge (a customer entry setting `merged_into`, see `dedup`) carries
//!   the loser's whole record and is taken as it is, whatever the local copy
//!   or the outbox holds: the server froze the loser as that tombstone, and
//!   a local edit of it still waiting is redirected to the survivor when it
//!   arrives. This device's bills of the loser move to the survivor in the
//!   same transaction (the unpushed ones too: the server redirects them when
//!   they arrive), both customers' metrics are recomputed, and the tombstone
//!   maps the old id to the survivor for every later read and sale
//!   (`customers::resolve_live`);
//! - an entry that cannot be applied (a record this device never saw
//!   created) is recorded and skipped with a warning, never blocking the log.

use std::collections::BTreeSet;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::protocol::{RawServerChange, ServerChange};
use super::{bootstrap, erasure, held, SyncError};
use crate::bills::{self, chain, Bill};
use crate::changes::{Change, Fields};
use crate::clock::Hlc;
use crate::customers::{self, Customer};
use crate::error::{Error, Result};
use crate::portability::erase;
use crate::store::Writer;

/// What applying one page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Entries that changed a local record.
    pub changed: usize,
    /// Entries skipped (unknown entity, or a record never seen created).
    pub skipped: usize,
}

/// A pulled change decoded ahead of its transaction (see [`prepare`]).
#[derive(Debug)]
pub(crate) struct Pulled {
    /// The change as the server sent it: its texts go to the change log.
    raw: RawServerChange,
    /// Its fields, decoded.
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// A bill's fields read as the bill at version 1: what a bill new to
    /// this device, with no local change waiting, is written as.
    Bill(Box<Bill>),
    /// Any other change, its fields as a map (`before` is left empty: the
    /// appliers never read it).
    Change(Box<ServerChange>),
}

/// Decodes a pulled page. It runs where the page was fetched, off the
/// store's writer, so decoding page N+1 overlaps writing page N; a bill is
/// read straight from its JSON text (see `bootstrap::decode_bill`).
pub(crate) fn prepare(
    changes: Vec<RawServerChange>,
) -> std::result::Result<Vec<Pulled>, SyncError> {
    changes
        .into_iter()
        .map(|raw| {
            if !is_object(&raw.before) {
                return Err(not_an_object());
            }
            let bill = (raw.entity == bills::ENTITY)
                .then(|| bootstrap::decode_bill(&raw.entity_id, raw.fields.get()))
                .flatten();
            let body = match bill {
                Some(bill) => Body::Bill(Box::new(bill)),
                None => Body::Change(Box::new(server_change(&raw)?)),
            };
            Ok(Pulled { raw, body })
        })
        .collect()
}

/// `raw` with its fields as a map.
fn server_change(raw: &RawServerChange) -> std::result::Result<ServerChange, SyncError> {
    Ok(ServerChange {
        server_seq: raw.server_seq,
        change: Change {
            change_id: raw.change_id,
            entity: raw.entity.clone(),
            entity_id: raw.entity_id.clone(),
            op: raw.op.clone(),
            fields: serde_json::from_str(raw.fields.get()).map_err(|_| not_an_object())?,
            before: Fields::new(),
            hlc: raw.hlc.clone(),
            device: raw.device.clone(),
            staff: raw.staff.clone(),
            at_ms: raw.at_ms,
        },
    })
}

fn not_an_object() -> SyncError {
    SyncError::Protocol("a pulled change's fields are not a JSON object".into())
}

/// Whether a JSON text (valid, as a `RawValue` is) is an object.
fn is_object(text: &RawValue) -> bool {
    text.get().trim_start().starts_with('{')
}

/// Applies `changes` (one pulled page, by ascending server sequence).
pub(crate) fn apply_page(w: &mut Writer<'_>, changes: Vec<Pulled>) -> Result<Applied> {
    w.bulk()?;
    let mut applied = Applied::default();
    for Pulled { raw, body } in changes {
        if let Ok(stamp) = raw.hlc.parse::<Hlc>() {
            w.observe(&stamp);
        }
        record_remote(w, &raw)?;
        let did = match body {
            Body::Bill(bill) => apply_pulled_bill(w, &raw, *bill)?,
            Body::Change(sc) => match sc.change.entity.as_str() {
                customers::ENTITY => apply_customer(w, &sc)?,
                bills::ENTITY => apply_bill(w, &sc)?,
                _ => None,
            },
        };
        match did {
            Some(true) => applied.changed += 1,
            Some(false) => {}
            None => {
                tracing::warn!(
                    server_seq = raw.server_seq,
                    entity = %raw.entity,
                    "pulled change skipped: unknown entity or record"
                );
                applied.skipped += 1;
            }
        }
    }
    held::restore(w)?;
    Ok(applied)
}

/// Records a pulled change in the change log as the server's, its fields
/// and before-image as the server sent them; a change already there (one
/// this device made) is left as it is.
fn record_remote(w: &Writer<'_>, change: &RawServerChange) -> Result<()> {
    // By position, in the order of the columns (see `bills::write_row`).
    w.tx.prepare_cached(
        "INSERT INTO changes (change_id, entity, entity_id, op, fields, before, hlc,
                              device_id, staff_id, at, origin, pushed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'remote', ?11)
         ON CONFLICT (change_id) DO NOTHING",
    )?
    .execute(rusqlite::params![
        change.change_id.to_string(),
        change.entity,
        change.entity_id,
        change.op,
        change.fields.get(),
        (!is_empty_object(&change.before)).then(|| change.before.get()),
        change.hlc,
        change.device,
        change.staff,
        change.at_ms,
        w.now_ms,
    ])?;
    Ok(())
}

/// Whether a JSON object text has no members.
fn is_empty_object(text: &RawValue) -> bool {
    text.get()
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .eq(*b"{}")
}

/// Applies a pulled bill read as `bill`: written as it is when it is new
/// here and no local change of it waits (the overlay of its fields on
/// nothing is the bill itself), else through [`apply_bill`].
fn apply_pulled_bill(w: &Writer<'_>, raw: &RawServerChange, bill: Bill) -> Result<Option<bool>> {
    if has_pending(w, &raw.entity_id, raw.server_seq)? || bills::exists(&w.tx, &raw.entity_id)? {
        return apply_bill(w, &server_change(raw)?);
    }
    insert_new_bill(w, bill)?;
    Ok(Some(true))
}

/// Writes a bill new to this device, in its place in the chain, and adds
/// its share to its customer's metrics. A bill new here adds its own share:
/// reading the customer's other bills per pulled bill made pulls quadratic
/// in a regular's history.
fn insert_new_bill(w: &Writer<'_>, mut bill: Bill) -> Result<()> {
    place_in_chain(w, &mut bill, None)?;
    bills::write_row(w, None, None, &bill)?;
    crate::metrics::add_bill(w, &bill)
}

/// The condition on `changes` for local changes whose own log entry comes
/// after server sequence `?1`: those still in the outbox, and those the
/// server accepted later in its log. A pulled or snapshot value never
/// overwrites what they wrote. (A macro, so the statements using it stay
/// static text.)
macro_rules! pending_after {
    () => {
        "origin = 'local' AND (pushed_at IS NULL OR server_seq > ?1)"
    };
}
pub(super) use pending_after;

/// Whether a local change of `entity_id` whose own log entry comes after
/// `server_seq` waits (see `pending_after!`).
fn has_pending(w: &Writer<'_>, entity_id: &str, server_seq: i64) -> Result<bool> {
    Ok(w.tx
        .prepare_cached(concat!(
            "SELECT EXISTS (SELECT 1 FROM changes WHERE entity_id = ?2 AND ",
            pending_after!(),
            ")"
        ))?
        .query_row(rusqlite::params![server_seq, entity_id], |r| r.get(0))?)
}

/// The fields of `entity_id` that local changes whose own log entry comes
/// after `server_seq` touch: those still in the outbox, and those the server
/// accepted later in its log than `server_seq`.
fn pending_fields(w: &Writer<'_>, entity_id: &str, server_seq: i64) -> Result<BTreeSet<String>> {
    let mut stmt = w.tx.prepare_cached(concat!(
        "SELECT fields FROM changes WHERE entity_id = ?2 AND ",
        pending_after!()
    ))?;
    let mut fields = BTreeSet::new();
    for text in stmt.query_map(rusqlite::params![server_seq, entity_id], |r| {
        r.get::<_, String>(0)
    })? {
        let map: Map<String, Value> = serde_json::from_str(&text?)?;
        fields.extend(map.into_iter().map(|(k, _)| k));
    }
    Ok(fields)
}

/// `base` with the pulled fields of `change` laid over it, except those a
/// pending local change touches. Returns whether anything differed.
fn overlay(base: &mut Map<String, Value>, change: &Change, pending: &BTreeSet<String>) -> bool {
    let mut changed = false;
    for (key, value) in &change.fields {
        if pending.contains(key) {
            continue;
        }
        if base.get(key) != Some(value) {
            base.insert(key.clone(), value.clone());
            changed = true;
        }
    }
    changed
}

/// The pulled fields this build does not know: those `record` drops.
fn unknown_fields(change: &Change, known: &Value) -> Map<String, Value> {
    change
        .fields
        .iter()
        .filter(|(k, _)| known.get(k.as_str()).is_none())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `result` with a not-found error read as `None`.
pub(super) fn not_found_as_none<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(found) => Ok(Some(found)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Applies a pulled customer change; `None` when it cannot be applied.
pub(super) fn apply_customer(w: &mut Writer<'_>, sc: &ServerChange) -> Result<Option<bool>> {
    let change = &sc.change;
    let Ok(id) = change.entity_id.parse::<Uuid>() else {
        return Ok(None);
    };
    let survivor = match change.fields.get("merged_into").and_then(Value::as_str) {
        Some(text) => match text.parse::<Uuid>() {
            Ok(survivor) => Some(survivor),
            Err(_) => return Ok(None),
        },
        None => None,
    };
    let current = not_found_as_none(customers::load(w, id))?;
    // A merge entry carries the loser's whole record as the server froze it:
    // it is taken as it is, over any local copy and any pending local edit.
    let (mut base, mut pending) = match (&current, survivor) {
        (_, Some(_)) => (Map::new(), BTreeSet::new()),
        (Some((_, c)), None) => (
            as_object(customers::change_fields(c)?),
            pending_fields(w, &change.entity_id, sc.server_seq)?,
        ),
        (None, None) => (
            Map::new(),
            pending_fields(w, &change.entity_id, sc.server_seq)?,
        ),
    };
    // An erasure is final here as where it was made: it takes personal
    // fields over pending local edits too, and the store's other traces of
    // them go (`erase::scrub`). A customer first seen erased left none.
    let erasing = current
        .as_ref()
        .is_some_and(|(_, c)| c.erased_at_ms.is_none())
        && erasure::is_erased(&change.fields);
    if erasing {
        pending.retain(|f| !erase::is_personal(f));
    }
    let changed = overlay(&mut base, change, &pending);
    if !changed && current.is_some() {
        return Ok(Some(false));
    }
    let (version, updated) = current.as_ref().map_or((0, change.at_ms), |(_, c)| {
        (c.version, c.updated_at_ms.max(change.at_ms))
    });
    base.insert("id".into(), Value::String(id.to_string()));
    base.insert("version".into(), Value::from(version + 1));
    base.insert("updated_at_ms".into(), Value::from(updated));
    let Ok(mut after) = serde_json::from_value::<Customer>(Value::Object(base)) else {
        return Ok(None);
    };
    let rid = current.as_ref().map(|(rid, _)| *rid);
    // A contact this entry sets is the server's again; one a local live
    // customer still holds is held as shared until the key is free (see
    // `held`): the server never had both live at once, so it will be.
    for field in held::FIELDS {
        if change.fields.contains_key(field) && !pending.contains(field) {
            held::release(w, &change.entity_id, field)?;
        }
    }
    for _ in 0..2 {
        match customers::check_unique(w, &after, rid) {
            Err(Error::Duplicate { field, .. }) => {
                tracing::debug!(field, "pulled customer's contact held as shared");
                match field {
                    "phone" => after.phone.iter_mut().for_each(|p| p.shared = true),
                    _ => after.email.iter_mut().for_each(|e| e.shared = true),
                }
                held::hold(w, &change.entity_id, field)?;
            }
            other => other?,
        }
    }
    let rid = customers::write_row(w, rid, current.as_ref().map(|(_, c)| c), &after)?;
    let extra = unknown_fields(change, &customers::change_fields(&after)?);
    if survivor.is_some() {
        w.tx.prepare_cached("UPDATE customers SET extra = ?1 WHERE rid = ?2")?
            .execute(rusqlite::params![serde_json::to_string(&extra)?, rid])?;
    } else if !extra.is_empty() {
        w.tx.prepare_cached("UPDATE customers SET extra = json_patch(extra, ?1) WHERE rid = ?2")?
            .execute(rusqlite::params![serde_json::to_string(&extra)?, rid])?;
    }
    if let Some(survivor) = survivor {
        take_over_bills(w, id, survivor)?;
    }
    if erasing {
        erase::scrub(w, &after)?;
    }
    Ok(Some(true))
}

/// A pulled merge of `loser` into `survivor`: this device's bills of the
/// loser move to the survivor, and both customers' metrics follow.
fn take_over_bills(w: &Writer<'_>, loser: Uuid, survivor: Uuid) -> Result<()> {
    let (loser, survivor) = (loser.to_string(), survivor.to_string());
    w.tx.prepare_cached("UPDATE bills SET customer_id = ?2 WHERE customer_id = ?1")?
        .execute([&loser, &survivor])?;
    for customer in [&loser, &survivor] {
        crate::metrics::recompute(w, customer)?;
    }
    Ok(())
}

/// Applies a pulled bill change; `None` when it cannot be applied.
pub(super) fn apply_bill(w: &Writer<'_>, sc: &ServerChange) -> Result<Option<bool>> {
    let change = &sc.change;
    if change.entity_id.parse::<Uuid>().is_err() {
        return Ok(None);
    }
    let pending = pending_fields(w, &change.entity_id, sc.server_seq)?;
    let current = not_found_as_none(bills::load(&w.tx, &change.entity_id, false))?;
    let mut base = match &current {
        Some((_, b)) => as_object(bills::change_fields(b)?),
        None => Map::new(),
    };
    let changed = overlay(&mut base, change, &pending);
    if !changed && current.is_some() {
        return Ok(Some(false));
    }
    let version = current.as_ref().map_or(0, |(_, b)| b.version) + 1;
    let Some(mut after) = decode_bill(&change.entity_id, base, version) else {
        return Ok(None);
    };
    let Some((rid, before)) = &current else {
        insert_new_bill(w, after)?;
        return Ok(Some(true));
    };
    place_in_chain(w, &mut after, Some(before))?;
    bills::write_row(w, Some(*rid), Some(before), &after)?;
    let mut touched: BTreeSet<String> = BTreeSet::new();
    touched.extend(after.customer_id.map(|c| c.to_string()));
    touched.extend(before.customer_id.map(|c| c.to_string()));
    for customer in touched {
        crate::metrics::recompute(w, &customer)?;
    }
    Ok(Some(true))
}

/// The bill `id` at `version` from its fields `base`; `None` when they do
/// not make a bill.
pub(super) fn decode_bill(id: &str, mut base: Map<String, Value>, version: i64) -> Option<Bill> {
    base.insert("id".into(), Value::String(id.to_owned()));
    base.insert("version".into(), Value::from(version));
    serde_json::from_value(Value::Object(base)).ok()
}

/// This device's chain holds its own bills only: another device's bill
/// keeps its hashes but takes no position here, and one of its own keeps
/// the position it has (`current`), or else the one it came with.
///
/// A paid sale of its own voided at a till whose app predates void seals
/// arrives unsealed. It came through the server, not from an edit of the
/// file, so this device seals it as its own void.
pub(super) fn place_in_chain(
    w: &Writer<'_>,
    bill: &mut Bill,
    current: Option<&Bill>,
) -> Result<()> {
    let identity = &w.settings.identity;
    let mine = bill.device_id == identity.device && bill.store_id == identity.store;
    if !mine {
        bill.chain_pos = None;
        return Ok(());
    }
    if let Some(b) = current {
        bill.chain_pos = b.chain_pos;
    }
    if bill.void_seal.is_none() && chain::voided_after_payment(bill) {
        bill.void_seal = Some(chain::void_seal(bill)?);
    }
    Ok(())
}

pub(super) fn as_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
