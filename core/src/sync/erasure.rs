//! Erasure at the head office. A till erases a customer on request (see
//! `portability::erase`) and ships one `erase` change. Applying it, the
//! server clears that person's data from the rest of what it keeps, by the
//! rule the till's own change log follows ([`redact`]): their earlier log
//! entries, and the phone on their bills and in those bills' entries. So no
//! pull or bootstrap hands the data out again, to any till of any store.
//! The records merged into the erased customer are the same person: they
//! are erased too, and what the merges kept (before-images for undo,
//! aliases) loses the personal values.

use serde_json::Value;

use super::conflict;
use super::dedup::{self, Entry, Ledger, MergeRecord};
use crate::changes::{Change, Fields};
use crate::portability::erase::{erased_value, redact, redact_bill, ERASE_OP, PERSONAL_FIELDS};
use crate::sync::protocol::field;

/// Whether customer `values` are those of an erased customer.
pub fn is_erased(values: &Fields) -> bool {
    !field(values, "erased_at_ms").is_null()
}

/// Clears the data of the customer `erasing` has just erased (its entry,
/// already appended) from the rest of what the server keeps: their log
/// entries and bills, and what merges kept of the same person. Each record
/// merged into them is erased by a change of the server's own, stamped as
/// the erasure, which every till applies as it applies any erasure; the
/// merges' before-images lose their personal values and aliases go.
pub fn scrub<L: Ledger>(ledger: &mut L, erasing: &Entry, now_ms: i64) -> Result<(), L::Error> {
    let id = erasing.change.entity_id.as_str();
    scrub_record(ledger, id)?;
    let tombstones = ledger.merged_into(id)?;
    for tombstone in &tombstones {
        erase_tombstone(ledger, tombstone, erasing, now_ms)?;
        scrub_record(ledger, tombstone)?;
    }
    for member in std::iter::once(id).chain(tombstones.iter().map(String::as_str)) {
        for mut record in ledger.merges_of(member)? {
            if redact_merge(&mut record) {
                ledger.rewrite_merge(&record)?;
            }
        }
        ledger.drop_aliases(member)?;
    }
    Ok(())
}

/// Clears customer `id`'s personal data from the log, their bills and the
/// bills moved off them before payment.
fn scrub_record<L: Ledger>(ledger: &mut L, id: &str) -> Result<(), L::Error> {
    redact_entries(ledger, id, redact)?;
    let bill_phone = |fields: &mut Fields, before: &mut Fields| redact_bill(fields, before, id);
    for mut bill in ledger.bills_of(id)? {
        redact_entries(ledger, &bill.id, bill_phone)?;
        if let Some(phone) = bill.state.values.get_mut("customer_phone") {
            if !phone.is_null() {
                *phone = Value::Null;
                ledger.restate_bill(&bill)?;
            }
        }
    }
    for bill in ledger.bills_moved_off(id)? {
        redact_entries(ledger, &bill, bill_phone)?;
    }
    Ok(())
}

/// Erases tombstone `id` as `erasing` erased its survivor: the same
/// personal values and erasure time, by the conflict rules of any erasure.
fn erase_tombstone<L: Ledger>(
    ledger: &mut L,
    id: &str,
    erasing: &Entry,
    now_ms: i64,
) -> Result<(), L::Error> {
    let Some(mut state) = ledger.customer(id)? else {
        return Ok(());
    };
    if is_erased(&state.values) {
        return Ok(());
    }
    let mut fields: Fields = PERSONAL_FIELDS
        .iter()
        .map(|key| ((*key).to_owned(), erased_value(key)))
        .collect();
    let at = field(&erasing.state.values, "erased_at_ms").clone();
    fields.insert("erased_at_ms".into(), at);
    let change = dedup::server_change(
        &erasing.change,
        crate::customers::ENTITY,
        id,
        ERASE_OP,
        fields,
        Fields::new(),
        now_ms,
    );
    // Only `merged_into` is refused from a change, and this one has none.
    let Ok(resolved) = conflict::apply_customer(&mut state, &change, &change.hlc) else {
        return Ok(());
    };
    ledger.append(&Entry {
        state,
        store: None,
        change: Change {
            fields: resolved.fields,
            before: resolved.before,
            ..change
        },
    })?;
    Ok(())
}

/// Erases the personal values of both before-images of a merge and its
/// aliases; whether anything changed.
fn redact_merge(record: &mut MergeRecord) -> bool {
    let mut changed = !record.aliases.is_empty();
    record.aliases.clear();
    for state in [&mut record.survivor_before, &mut record.loser_before] {
        changed |= !state.tags.is_empty();
        state.tags.clear();
        // A before-image is a record of the past, not a change: it has no
        // before side of its own.
        changed |= redact(&mut state.values, &mut Fields::new());
    }
    changed
}

/// Redacts every log entry of record `id` with `redaction` ([`redact`] or
/// [`redact_bill`]).
fn redact_entries<L: Ledger>(
    ledger: &mut L,
    id: &str,
    redaction: impl Fn(&mut Fields, &mut Fields) -> bool,
) -> Result<(), L::Error> {
    for (seq, mut change) in ledger.entries_of(id)? {
        if redaction(&mut change.fields, &mut change.before) {
            ledger.rewrite_entry(seq, &change)?;
        }
    }
    Ok(())
}
