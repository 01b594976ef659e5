//! The right to erasure: anonymise one customer everywhere the device keeps
//! them, in one write transaction.
//!
//! What erasure does:
//! - the customer record: name becomes [`ERASED_NAME`]; phone, email,
//!   address, notes, birthday and tags are cleared; so are fields a newer
//!   app wrote (kept in `extra`), which this build cannot know to be
//!   harmless: only [`KEPT_ON_ERASURE`] stays. `erased_at` and `deleted_at`
//!   are set and the version moves on. It goes through `customers::put`, so
//!   tags, the search row and an `erase` change follow;
//! - their bills lose the denormalised `customer_phone`; money, numbers and
//!   the customer link stay, and the hash chain stays valid because it does
//!   not cover the phone. No bill change is recorded: the customer's `erase`
//!   change is what sync ships, and applying it clears the phone on that
//!   customer's bills wherever they are, as here;
//! - the change log keeps every row, who, what and when (the schema's
//!   triggers forbid anything else), but personal values are redacted: in
//!   `before` they become `null`; in `fields`, the values sync replays, they
//!   become the erased record's values (`"Erased customer"`, `null`, empty),
//!   so every change stays a valid change of the model and a replay of the
//!   log ends in the erased record. On the customer's bills, and on bills
//!   moved off them before payment (`bill_past_customers`), `customer_phone`
//!   becomes `null` in both;
//! - no trace stays in the files: the store zeroes freed space
//!   (`secure_delete`, set when it opens), the whole FTS5 index is merged so
//!   the customer's old terms leave it, and after the commit the WAL, which
//!   still holds the pages as they were, is checkpointed and truncated
//!   (`Store::write`, for every transaction that scrubs). A reader in a long
//!   transaction can keep the checkpoint from finishing; the next one does.
//!
//! Erasure reaches every copy: a till that pulls the `erase` change does
//! the same to its own (`scrub`, from `sync::incoming`), over its edits of
//! the person still waiting to be pushed; the server clears its log and the
//! bills it keeps alike (`sync::erasure`); and a change made where the
//! erasure was not yet known (a till offline) writes no personal data back
//! (`sync::conflict`). A pulled erasure truncates the WAL as a local one does.
//!
//! Erasing an erased customer changes nothing and returns them as they are.

use std::collections::BTreeSet;

use rusqlite::params;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::bills;
use crate::customers::{self, Address, Customer};
use crate::error::Result;
use crate::store::{Store, Writer};

/// The name an erased customer keeps.
pub const ERASED_NAME: &str = "Erased customer";

/// The customer fields that hold personal data, as the change log names them.
pub const PERSONAL_FIELDS: [&str; 7] = [
    "name", "phone", "email", "address", "notes", "birthday", "tags",
];

/// The customer fields an erasure keeps: none of them says anything of the
/// person. Every other field is erased, the known personal ones
/// ([`PERSONAL_FIELDS`]) and any a newer app wrote, which this build cannot
/// know to be harmless.
pub const KEPT_ON_ERASURE: [&str; 9] = [
    "id",
    "number",
    "stage",
    "created_at_ms",
    "updated_at_ms",
    "version",
    "deleted_at_ms",
    "merged_into",
    "erased_at_ms",
];

/// Whether an erasure erases customer field `key` (see [`KEPT_ON_ERASURE`]).
pub fn is_personal(key: &str) -> bool {
    !KEPT_ON_ERASURE.contains(&key)
}

/// The op of an erasure's change, a till's or the server's.
pub const ERASE_OP: &str = "erase";

impl Store {
    /// Erases customer `id`'s personal data (see the module docs) and returns
    /// the erased record. Works on deleted and merged customers too; an
    /// unknown id is [`crate::Error::NotFound`].
    pub fn erase_customer(&self, id: Uuid) -> Result<Customer> {
        self.write(|w| {
            let (rid, before) = customers::load(w, id)?;
            if before.erased_at_ms.is_some() {
                return Ok(before);
            }
            erase(w, rid, &before)
        })
    }
}

/// The value personal field `key` holds once erased, as the change log
/// writes it: what [`anonymised`] leaves (a test holds the two together).
pub fn erased_value(key: &str) -> Value {
    match key {
        "name" => Value::from(ERASED_NAME),
        "tags" => Value::Array(Vec::new()),
        "notes" => Value::from(""),
        "address" => serde_json::to_value(Address::default()).unwrap_or_default(),
        _ => Value::Null,
    }
}

/// The erased form of `before`, as of `now_ms`.
fn anonymised(before: &Customer, now_ms: i64) -> Customer {
    Customer {
        name: ERASED_NAME.to_owned(),
        phone: None,
        email: None,
        address: Address::default(),
        tags: Vec::new(),
        notes: String::new(),
        birthday: None,
        erased_at_ms: Some(now_ms),
        // A customer deleted earlier keeps the time they were deleted.
        deleted_at_ms: before.deleted_at_ms.or(Some(now_ms)),
        version: before.version + 1,
        updated_at_ms: now_ms,
        ..before.clone()
    }
}

fn erase(w: &mut Writer<'_>, rid: i64, before: &Customer) -> Result<Customer> {
    let after = anonymised(before, w.now_ms);
    customers::put(w, Some(rid), Some(before), &after, ERASE_OP)?;
    scrub(w, &after)?;
    Ok(after)
}

/// Removes what the store keeps of `erased`'s personal data beyond their
/// record: the search index's old terms, the phone on their bills and the
/// personal values in the change log. Runs where the erasure is made and
/// where it is pulled, in the transaction that writes the erased record.
pub(crate) fn scrub(w: &mut Writer<'_>, erased: &Customer) -> Result<()> {
    w.scrubbed = true;
    let id = erased.id.to_string();
    // (`customers_digits` is a plain B-tree: `secure_delete` zeroes its
    // deleted keys.) FTS5 only marks a deleted row's terms as deleted and keeps them (and
    // the terms of every earlier version of the row) in its segments until
    // they are merged; merging the whole index drops them now. 0.6 s with
    // 100,000 customers (`portability` test `import_and_erase_at_scale`).
    w.tx.prepare_cached("INSERT INTO customers_fts (customers_fts) VALUES ('optimize')")?
        .execute([])?;

    // Their bills, and the bills moved off them before payment.
    let bill_ids: Vec<String> =
        w.tx.prepare_cached(
            "SELECT id FROM bills WHERE customer_id = ?1
             UNION SELECT bill_id FROM bill_past_customers WHERE customer_id = ?1",
        )?
        .query_map([&id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    w.tx.prepare_cached(
        "UPDATE bills SET customer_phone = NULL
         WHERE customer_id = ?1 AND customer_phone IS NOT NULL",
    )?
    .execute([&id])?;

    redact_changes(w, customers::ENTITY, &id, redact)?;
    // Fields a newer app wrote, kept aside for it: this build cannot know
    // them to be harmless.
    w.tx.prepare_cached("UPDATE customers SET extra = '{}' WHERE id = ?1")?
        .execute([&id])?;
    for bill_id in &bill_ids {
        redact_changes(w, bills::ENTITY, bill_id, |fields, before| {
            redact_bill(fields, before, &id)
        })?;
    }
    Ok(())
}

/// Redacts the change records of `entity` `entity_id` with `redaction`
/// ([`redact`] or [`redact_bill`]).
fn redact_changes(
    w: &Writer<'_>,
    entity: &str,
    entity_id: &str,
    redaction: impl Fn(&mut Map<String, Value>, &mut Map<String, Value>) -> bool,
) -> Result<()> {
    let rows: Vec<(i64, String, Option<String>)> =
        w.tx.prepare_cached(
            "SELECT seq, fields, before FROM changes
             WHERE entity_id = ?1 AND entity = ?2 ORDER BY seq",
        )?
        .query_map([entity_id, entity], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut update =
        w.tx.prepare_cached("UPDATE changes SET fields = ?2, before = ?3 WHERE seq = ?1")?;
    for (seq, fields, before) in rows {
        let mut fields: Map<String, Value> = serde_json::from_str(&fields)?;
        let mut before: Map<String, Value> = match before {
            Some(text) => serde_json::from_str(&text)?,
            None => Map::new(),
        };
        if redaction(&mut fields, &mut before) {
            update.execute(params![
                seq,
                serde_json::to_string(&fields)?,
                (!before.is_empty())
                    .then(|| serde_json::to_string(&before))
                    .transpose()?,
            ])?;
        }
    }
    Ok(())
}

/// Redacts one change of an erased customer's data: each personal field
/// ([`is_personal`]) in `fields`, the values sync replays, takes its erased
/// value (so every change stays a valid change of the model and a replay
/// ends in the erased record); in `before` it becomes `null`. True when
/// anything changed. The one rule for a device's change log and the
/// server's.
pub fn redact(fields: &mut Map<String, Value>, before: &mut Map<String, Value>) -> bool {
    let personal: BTreeSet<String> = fields
        .keys()
        .chain(before.keys())
        .filter(|key| is_personal(key))
        .cloned()
        .collect();
    let mut changed = false;
    for key in &personal {
        changed |= replace(fields, key, erased_value(key));
        changed |= replace(before, key, Value::Null);
    }
    changed
}

/// Redacts erased customer `customer`'s phone in one change of a bill: on
/// each side (`fields`, `before`) that names them, or names no customer.
/// A side naming another customer keeps that customer's phone: a bill moved
/// between customers before payment holds both. True when anything changed.
/// The one rule for a device's change log and the server's.
pub fn redact_bill(
    fields: &mut Map<String, Value>,
    before: &mut Map<String, Value>,
    customer: &str,
) -> bool {
    let mut changed = false;
    for side in [fields, before] {
        let owner = side.get("customer_id").and_then(Value::as_str);
        if owner.is_none_or(|owner| owner == customer) {
            changed |= replace(side, "customer_phone", Value::Null);
        }
    }
    changed
}

/// Sets `key` to `value` where `map` has it; true when that changed anything.
fn replace(map: &mut Map<String, Value>, key: &str, value: Value) -> bool {
    match map.get_mut(key) {
        Some(current) if *current != value => {
            *current = value;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn erased_values_are_what_erasure_leaves() {
        let (_dir, store) = crate::store::scratch();
        let new = crate::NewCustomer {
            address: Address {
                line1: "12 MG Road".into(),
                city: "Pune".into(),
                ..Address::default()
            },
            tags: vec!["vip".into()],
            notes: "prefers mornings".into(),
            birthday: chrono::NaiveDate::from_ymd_opt(1990, 5, 1),
            ..crate::NewCustomer::named("Asha Rao")
                .with_phone("98765 43210")
                .with_email("asha@example.com")
        };
        let asha = store.create_customer(new).expect("customer");
        let erased = serde_json::to_value(anonymised(&asha, 1)).expect("json");
        for key in PERSONAL_FIELDS {
            assert_eq!(erased[key], erased_value(key), "{key}");
        }
    }

    #[test]
    fn replace_reports_only_real_changes() {
        let mut m = object(json!({"name": "Asha", "stage": "new"}));
        assert!(replace(&mut m, "name", json!(ERASED_NAME)));
        assert!(!replace(&mut m, "name", json!(ERASED_NAME)));
        assert!(
            !replace(&mut m, "phone", Value::Null),
            "absent keys stay absent"
        );
        assert_eq!(
            Value::Object(m),
            json!({"name": ERASED_NAME, "stage": "new"})
        );
    }
}
