//! The conflict rules of sync (DESIGN section 6), written once, as pure
//! functions over field maps and HLC stamps. The server resolves every pushed
//! change with them; tests below pin each rule in a table.
//!
//! The rules:
//! - **Customers merge per field, last writer wins.** Each field remembers
//!   the stamp of the change that wrote it; an incoming value replaces it only
//!   when its stamp is greater. Stamps compare by their full text form
//!   (wall time, counter, then node), so two devices writing in the same
//!   millisecond still have one deterministic winner, and replaying a change
//!   is a no-op.
//! - **Tags are a set.** A change's tag edit is the delta between its
//!   `before.tags` and `fields.tags` (tags added, tags removed). Each tag
//!   remembers the stamp of the last add or remove of it, and the latest one
//!   decides (a last-writer-wins element set), so concurrent edits of
//!   different tags both survive, in any arrival order.
//! - **A soft delete is a field** (`deleted_at_ms`), resolved like any other;
//!   a restore is a later write of `null`.
//! - **Bills are immutable once final.** Identity fields (number, store,
//!   device, kind, currency, refunded bill) never change; an open bill merges
//!   per field; once paid, only the status (forward only), voiding, the
//!   refunded amounts and appended payments may change. Refunds are new
//!   bills, so they append by construction; the refunded amounts they move
//!   on the sale grow by each change's own delta, so refunds of one sale
//!   made at two tills at once both count. The one server-made change a
//!   final bill allows is a dedup merge moving it to the surviving customer
//!   (see `dedup`): it renames the customer, never money.
//! - **Customers merged away by dedup** are tombstones: a device change that
//!   arrives for one applies to its survivor (see `dedup::redirect`).
//! - **Clocks far ahead are clamped**: a stamp more than
//!   [`MAX_CLOCK_AHEAD_MS`] ahead of the server is pulled back to the
//!   server's time, in the order the device made them (see [`Clamp`]),
//!   so one wrong device clock cannot win every future conflict.
//! - **Unknown fields round-trip**: a field this build does not know (written
//!   by a newer app) is kept and merged like any other, never dropped.
//!
//! Every function either changes the state and returns the effective change,
//! or returns a [`Rejection`] and leaves the state untouched.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::erasure::is_erased;
use super::protocol::{field, RejectReason};
use crate::bills::{totals, BillLine, BillStatus, Payment, PriceMode};
use crate::changes::{Change, Fields};
use crate::clock::Hlc;
use crate::portability::erase::{erased_value, is_personal, PERSONAL_FIELDS};

/// How far ahead of the server a device's clock may run before its stamps
/// are clamped: five minutes covers ordinary drift on tills that sync their
/// clocks rarely, and stops a clock set a day ahead from winning for a day.
pub const MAX_CLOCK_AHEAD_MS: i64 = 5 * 60 * 1_000;

/// The merge state of one record: current values, and the stamp of the last
/// write of each field and of each tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordState {
    /// Current value of every field ever written, unknown ones included.
    pub values: Fields,
    /// Field name -> text form of the stamp that wrote its current value.
    pub clocks: BTreeMap<String, String>,
    /// Tag -> its last add or remove. Customers only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, TagClock>,
}

/// The last add or remove of one tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagClock {
    /// Whether the last write added (true) or removed it.
    pub present: bool,
    /// The stamp of that write.
    pub hlc: String,
}

/// What resolving one change did: the effective change to log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// Every field the change touched, valued as the record holds it now.
    pub fields: Fields,
    /// Those fields' values just before.
    pub before: Fields,
}

/// Why a change was refused; the state was left untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable code.
    pub reason: RejectReason,
    /// Detail naming the field; never personal data.
    pub message: String,
}

impl Rejection {
    /// A rejection with `reason` and `message`.
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

/// Whether a write stamped `incoming` replaces one stamped `current`:
/// strictly later by full text (the node breaks ties); a field never written
/// is always replaced. Equal stamps mean the same change: a no-op.
pub fn wins(incoming: &str, current: Option<&str>) -> bool {
    current.is_none_or(|current| incoming > current)
}

/// The server's clock over one device's changes, at server time `now_ms`.
#[derive(Debug, Clone)]
pub struct Clamp {
    now_ms: i64,
    last: Option<Hlc>,
}

impl Clamp {
    /// A clock for a batch received at `now_ms` from a device whose last
    /// clamped stamp, from any earlier batch, was `last`.
    pub fn new(now_ms: i64, last: Option<Hlc>) -> Clamp {
        Clamp { now_ms, last }
    }

    /// Whether `stamp` runs more than [`MAX_CLOCK_AHEAD_MS`] ahead.
    pub fn ahead(&self, stamp: &Hlc) -> bool {
        stamp.wall_ms > self.now_ms.saturating_add(MAX_CLOCK_AHEAD_MS)
    }

    /// `stamp` pulled back to the server's time when it runs ahead; `None`
    /// when it is fine as it is. A device ahead of the server has every
    /// stamp ahead, and all of those the server receives within one
    /// millisecond land on it, in one batch or in several: each one takes a
    /// counter past the last one clamped, so the device's edits keep their
    /// order and none is taken for a replay of another.
    pub fn stamp(&mut self, stamp: &Hlc) -> Option<Hlc> {
        if !self.ahead(stamp) {
            return None;
        }
        let clamped = match self.last.as_ref() {
            Some(last) if last.wall_ms >= self.now_ms => Hlc {
                wall_ms: last.wall_ms,
                counter: last.counter.saturating_add(1),
                node: stamp.node.clone(),
            },
            _ => Hlc {
                wall_ms: self.now_ms,
                ..stamp.clone()
            },
        };
        self.last = Some(clamped.clone());
        Some(clamped)
    }

    /// The last stamp this clock clamped, to seed the device's next batch.
    pub fn last(&self) -> Option<&Hlc> {
        self.last.as_ref()
    }
}

/// The tags a change adds and removes: `fields.tags` minus `before.tags`,
/// and the reverse. A change that does not touch tags has an empty delta.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagDelta {
    /// Tags the change added.
    pub add: BTreeSet<String>,
    /// Tags the change removed.
    pub remove: BTreeSet<String>,
}

/// The tag delta of `change`; see [`TagDelta`].
pub fn tag_delta(change: &Change) -> TagDelta {
    if !change.fields.contains_key("tags") {
        return TagDelta::default();
    }
    let set = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let after = set(field(&change.fields, "tags"));
    let before = set(field(&change.before, "tags"));
    TagDelta {
        add: after.difference(&before).cloned().collect(),
        remove: before.difference(&after).cloned().collect(),
    }
}

/// Fields a device may never write: the server owns them.
const SERVER_OWNED: [&str; 1] = ["merged_into"];

/// Resolves a customer change stamped `hlc` against `state`.
pub fn apply_customer(
    state: &mut RecordState,
    change: &Change,
    hlc: &str,
) -> Result<Resolved, Rejection> {
    if let Some(owned) = SERVER_OWNED
        .iter()
        .find(|f| change.fields.contains_key(**f))
    {
        return Err(Rejection::new(
            RejectReason::Forbidden,
            format!("{owned} is set by the server only"),
        ));
    }
    // Erasure is final, whatever the stamps say. The erasing change clears
    // every personal field, even one a later-stamped edit wrote first, and
    // keeps no before-image of them; a change made where the erasure was
    // not yet known (a till offline) writes no personal data back: its
    // personal fields resolve to the erased values, which reach the till
    // that made it with its own entry.
    let erased = is_erased(&state.values);
    let erasing = !erased && is_erased(&change.fields);
    let mut resolved = Resolved::default();
    if erasing {
        // The known personal fields, and any other a newer app wrote.
        let personal: BTreeSet<String> = PERSONAL_FIELDS
            .map(str::to_owned)
            .into_iter()
            .chain(state.values.keys().filter(|k| is_personal(k)).cloned())
            .collect();
        for key in personal {
            erase_field(state, &key, hlc);
            resolved
                .fields
                .insert(key.clone(), field(&state.values, &key).clone());
            resolved.before.insert(key, Value::Null);
        }
    }
    for (key, value) in &change.fields {
        let old = field(&state.values, key).clone();
        let personal = is_personal(key);
        if erasing && personal {
            continue;
        } else if erased && personal {
            // Left as erased.
        } else if key == "tags" {
            let delta = tag_delta(change);
            let writes = delta
                .add
                .iter()
                .map(|t| (t, true))
                .chain(delta.remove.iter().map(|t| (t, false)));
            for (tag, present) in writes {
                let current = state.tags.get(tag).map(|c| c.hlc.as_str());
                if wins(hlc, current) {
                    state.tags.insert(
                        tag.clone(),
                        TagClock {
                            present,
                            hlc: hlc.to_owned(),
                        },
                    );
                }
            }
            // BTreeMap order keeps the set sorted, as till-core stores it.
            let now: Vec<Value> = state
                .tags
                .iter()
                .filter(|(_, c)| c.present)
                .map(|(t, _)| Value::String(t.clone()))
                .collect();
            state.values.insert(key.clone(), Value::Array(now));
        } else if wins(hlc, state.clocks.get(key).map(String::as_str)) {
            state.values.insert(key.clone(), value.clone());
            state.clocks.insert(key.clone(), hlc.to_owned());
        }
        resolved
            .fields
            .insert(key.clone(), field(&state.values, key).clone());
        resolved.before.insert(key.clone(), old);
    }
    Ok(resolved)
}

/// Gives personal field `key` its erased value, stamped no earlier than
/// the write it replaces. Tags go with their clocks, names included: an
/// erased record takes no personal write again, so no tag clock is needed.
fn erase_field(state: &mut RecordState, key: &str, hlc: &str) {
    let later = |current: &str| current.max(hlc).to_owned();
    if key == "tags" {
        state.tags.clear();
    }
    let clock = later(state.clocks.get(key).map_or("", String::as_str));
    state.values.insert(key.to_owned(), erased_value(key));
    state.clocks.insert(key.to_owned(), clock);
}

/// Bill fields fixed at creation.
const BILL_IDENTITY: [&str; 7] = [
    "number",
    "store_id",
    "device_id",
    "kind",
    "refund_of",
    "currency",
    "opened_at_ms",
];
/// Bill fields a final bill may still change, each under its own rule.
const BILL_FINAL_MUTABLE: [&str; 6] = [
    "status",
    "voided_at_ms",
    "void_seal",
    "refunded_total",
    "lines",
    "payments",
];
/// Line fields a refund moves on a final sale; each only grows.
const LINE_REFUND_FIELDS: [&str; 3] = ["refunded_qty_milli", "refunded_gross", "refunded_tax"];

/// Whether a bill's status may go from `from` to `to`. Staying put is
/// allowed (a replay); otherwise only forward: open -> paid | voided,
/// paid -> partly refunded | refunded | voided, partly refunded -> refunded,
/// and any refunded state -> voided. A till voids only a sale nothing was
/// refunded from, but another till may have refunded it meanwhile: both
/// happened, so the sale ends voided and keeps its refunds (see
/// [`apply_bill`]) rather than the server refusing either.
pub fn status_may_move(from: BillStatus, to: BillStatus) -> bool {
    use BillStatus::*;
    from == to
        || matches!(
            (from, to),
            (Open, Paid)
                | (Open, Voided)
                | (Paid, PartlyRefunded)
                | (Paid, Refunded)
                | (Paid, Voided)
                | (PartlyRefunded, Refunded)
                | (PartlyRefunded, Voided)
                | (Refunded, Voided)
        )
}

fn status_of(value: &Value) -> Option<BillStatus> {
    value.as_str().and_then(|s| s.parse().ok())
}

/// Resolves a bill change stamped `hlc` against `state`.
pub fn apply_bill(
    state: &mut RecordState,
    change: &Change,
    hlc: &str,
) -> Result<Resolved, Rejection> {
    let immutable = |message: String| Rejection::new(RejectReason::BillImmutable, message);
    for key in BILL_IDENTITY {
        if let (Some(old), Some(new)) = (state.values.get(key), change.fields.get(key)) {
            if old != new && !old.is_null() {
                return Err(immutable(format!("{key} of a bill never changes")));
            }
        }
    }
    if let Some(new) = change.fields.get("status") {
        status_of(new).ok_or_else(|| {
            Rejection::new(RejectReason::Validation, "status is not a bill status")
        })?;
    }
    let current = status_of(field(&state.values, "status"));
    let is_final = current.is_some_and(|s| s != BillStatus::Open);
    let values = match is_final {
        true => final_bill_values(&state.values, change).map_err(immutable)?,
        false => change.fields.clone(),
    };
    if let (Some(from), Some(to)) = (current, values.get("status").and_then(status_of)) {
        if !status_may_move(from, to) {
            return Err(Rejection::new(
                RejectReason::InvalidTransition,
                format!("bill status cannot move from {from} to {to}"),
            ));
        }
    }

    // A sale paid by this change must add up as till-core computes it. Only
    // the till that opened a bill changes it while open, so the change's
    // fields are its newest: the bill as paid is they over the state.
    let paid = |key: &str| values.get(key).unwrap_or(field(&state.values, key));
    if !is_final
        && values.get("status").and_then(status_of) == Some(BillStatus::Paid)
        && paid("kind") == "sale"
    {
        paid_sale_adds_up(paid)?;
    }
    let mut resolved = Resolved::default();
    for (key, value) in values {
        let old = field(&state.values, &key).clone();
        // A final bill's changes were checked to only move forward: they
        // apply whatever their stamp, so a clamped stamp cannot undo a refund.
        if is_final || wins(hlc, state.clocks.get(&key).map(String::as_str)) {
            state.values.insert(key.clone(), value);
            state.clocks.insert(key.clone(), hlc.to_owned());
        }
        resolved
            .fields
            .insert(key.clone(), field(&state.values, &key).clone());
        resolved.before.insert(key, old);
    }
    Ok(resolved)
}

/// Whether a paid sale (`get` reads its fields) adds up: line amounts and
/// totals as [`totals::compute`] makes them from its items, and tenders that
/// cover the total. The server keeps no amount a till could not have written.
fn paid_sale_adds_up<'a>(get: impl Fn(&str) -> &'a Value) -> Result<(), Rejection> {
    let invalid = |what: &str| {
        Rejection::new(
            RejectReason::Validation,
            format!("{what} of the paid sale do not add up"),
        )
    };
    let int = |key: &str| get(key).as_i64().unwrap_or_default();
    let lines = Vec::<BillLine>::deserialize(get("lines")).map_err(|_| invalid("lines"))?;
    let payments = Vec::<Payment>::deserialize(get("payments")).map_err(|_| invalid("payments"))?;
    let mode = get("price_mode")
        .as_str()
        .and_then(|m| m.parse::<PriceMode>().ok())
        .ok_or_else(|| invalid("prices"))?;
    let mut computed = lines.clone();
    let t = totals::compute(&mut computed, int("bill_discount"), mode)
        .map_err(|_| invalid("amounts"))?;
    let amounts = |l: &BillLine| (l.bill_discount, l.net, l.tax, l.gross);
    let totals = (t.subtotal, t.discount, t.tax, t.total);
    let sent = (
        int("subtotal"),
        int("discount_total"),
        int("tax_total"),
        int("total"),
    );
    if !computed.iter().map(amounts).eq(lines.iter().map(amounts)) || totals != sent {
        return Err(invalid("line amounts and totals"));
    }
    let paid = payments
        .iter()
        .try_fold(0i64, |sum, p| sum.checked_add(p.amount))
        .ok_or_else(|| invalid("payments"))?;
    if paid != int("paid_total") || paid < t.total {
        return Err(invalid("payments"));
    }
    Ok(())
}

/// What a change of a final bill writes, once checked: only
/// [`BILL_FINAL_MUTABLE`] fields may differ, payments only append, lines
/// change only in their refunded amounts, and refunded amounts only grow.
///
/// Refunded amounts (the bill's and each line's) grow by the change's own
/// delta, its `fields` minus its `before`, on top of what the record holds:
/// two tills refunding one sale while offline each send "0 -> 100", and the
/// sale ends with 200 refunded, as its two refund bills say. A change
/// without a before-image (none is ever sent for an update, but the rule
/// must not depend on it) is taken as the new total. The status of a paid
/// sale then follows its merged lines: refunded when every line is, partly
/// refunded when some are; a voided sale stays voided.
fn final_bill_values(current: &Fields, change: &Change) -> Result<Fields, String> {
    let voided = status_of(field(current, "status")) == Some(BillStatus::Voided);
    let mut values = Fields::new();
    for (key, new) in &change.fields {
        let old = field(current, key);
        let value = match key.as_str() {
            "refunded_total" => grown(old, change.before.get(key), new)
                .ok_or_else(|| "refunded_total of a bill only grows".to_string())?,
            "lines" => refunded_lines(old, change.before.get(key), new)?,
            "payments" => {
                let (Some(old), Some(new)) = (old.as_array(), new.as_array()) else {
                    return Err("payments of a final bill only append".into());
                };
                if new.len() < old.len() || new[..old.len()] != old[..] {
                    return Err("payments of a final bill only append".into());
                }
                Value::Array(new.clone())
            }
            _ if old == new || BILL_FINAL_MUTABLE.contains(&key.as_str()) => new.clone(),
            _ => return Err(format!("{key} of a final bill never changes")),
        };
        values.insert(key.clone(), value);
    }
    // Refunded amounts decide a sale's status, whether or not the change
    // said so: a till's second partial refund sends no status, yet with
    // another till's refund merged in it may complete the sale.
    let status = values.get("status").unwrap_or(field(current, "status"));
    let settled = matches!(
        status_of(status),
        Some(BillStatus::Paid | BillStatus::PartlyRefunded | BillStatus::Refunded)
    );
    if let (true, Some(lines)) = (settled, values.get("lines").and_then(Value::as_array)) {
        let amount = |line: &Value, key: &str| line.get(key).and_then(Value::as_i64).unwrap_or(0);
        let refunded = |l: &Value| amount(l, "refunded_qty_milli");
        let status = match (
            voided,
            lines.iter().all(|l| refunded(l) >= amount(l, "qty_milli")),
            lines.iter().any(|l| refunded(l) > 0),
        ) {
            // Refunded at one till after another voided it: it stays voided.
            (true, ..) => BillStatus::Voided,
            (false, true, _) => BillStatus::Refunded,
            (false, false, true) => BillStatus::PartlyRefunded,
            (false, false, false) => BillStatus::Paid,
        };
        values.insert("status".into(), Value::String(status.to_string()));
    }
    Ok(values)
}

/// Whether bill `values` are those of a sale refunded beyond its total:
/// tills that refunded it while offline each paid out, and the merged
/// refunds add up past it. Kept, since the money went; head office is told.
pub fn over_refunded(values: &Fields) -> bool {
    let amount = |key: &str| field(values, key).as_i64().unwrap_or(0);
    amount("refunded_total") > amount("total")
}

/// `old` grown by a change's delta, `new` minus `before` (an absent or null
/// `before` amount is 0; no before-image at all means `new` is the total);
/// `None` when the change would shrink it.
fn grown(old: &Value, before: Option<&Value>, new: &Value) -> Option<Value> {
    let old = old.as_i64().unwrap_or(0);
    let new = new.as_i64()?;
    let delta = match before {
        Some(before) => new.checked_sub(before.as_i64().unwrap_or(0))?,
        None => new.checked_sub(old)?,
    };
    (delta >= 0).then(|| Value::from(old.saturating_add(delta)))
}

/// The lines of a final sale after a change of them: the lines as held,
/// each refunded amount grown by the change's delta (see [`grown`]); any
/// other difference in the lines is refused.
fn refunded_lines(old: &Value, before: Option<&Value>, new: &Value) -> Result<Value, String> {
    let fail = || "lines of a final bill change only by refunds".to_string();
    let (Some(old), Some(new)) = (old.as_array(), new.as_array()) else {
        return Err(fail());
    };
    let before = before.and_then(Value::as_array);
    if old.len() != new.len() || before.is_some_and(|b| b.len() != new.len()) {
        return Err(fail());
    }
    let mut merged = Vec::with_capacity(old.len());
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        let (Some(o), Some(n)) = (o.as_object(), n.as_object()) else {
            return Err(fail());
        };
        let b = before.and_then(|b| b[i].as_object());
        let mut line = o.clone();
        let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
        for key in keys {
            let (a, z) = (field(o, key), field(n, key));
            if LINE_REFUND_FIELDS.contains(&key.as_str()) {
                let from = b.map(|b| field(b, key));
                line.insert(key.clone(), grown(a, from, z).ok_or_else(fail)?);
            } else if a != z {
                return Err(fail());
            }
        }
        merged.push(Value::Object(line));
    }
    Ok(Value::Array(merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    use crate::portability::ERASED_NAME;

    /// A change of `entity` stamped at (`wall`, `counter`) by `node`.
    fn change(wall: i64, counter: u32, node: &str, fields: Value, before: Value) -> Change {
        let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
        Change {
            change_id: Uuid::now_v7(),
            entity: "customer".into(),
            entity_id: "c1".into(),
            op: "update".into(),
            fields: obj(fields),
            before: obj(before),
            hlc: stamp(wall, counter, node),
            device: node.into(),
            staff: "s".into(),
            at_ms: wall,
        }
    }

    fn stamp(wall: i64, counter: u32, node: &str) -> String {
        Hlc {
            wall_ms: wall,
            counter,
            node: node.into(),
        }
        .to_string()
    }

    /// Applies `changes` in order to a fresh customer; returns its values.
    fn customer_after(changes: &[&Change]) -> Value {
        let mut state = RecordState::default();
        for c in changes {
            apply_customer(&mut state, c, &c.hlc).expect("customer change applies");
        }
        Value::Object(state.values)
    }

    #[test]
    fn stamps_compare_by_time_then_counter_then_node() {
        let table = [
            // (incoming, current, wins)
            (stamp(2, 0, "S1/T1"), Some(stamp(1, 9, "S1/T9")), true),
            (stamp(1, 0, "S1/T9"), Some(stamp(2, 0, "S1/T1")), false),
            (stamp(5, 2, "S1/T1"), Some(stamp(5, 1, "S1/T2")), true),
            (stamp(5, 1, "S1/T2"), Some(stamp(5, 1, "S1/T1")), true),
            (stamp(5, 1, "S1/T1"), Some(stamp(5, 1, "S1/T2")), false),
            (stamp(5, 1, "S1/T1"), Some(stamp(5, 1, "S1/T1")), false),
            (stamp(0, 0, "S1/T1"), None, true),
        ];
        for (incoming, current, expected) in table {
            assert_eq!(
                wins(&incoming, current.as_deref()),
                expected,
                "{incoming} vs {current:?}"
            );
        }
    }

    /// Erasure wins whatever the stamps and the order of arrival: an edit
    /// stamped after it (a till offline) and one stamped between it and the
    /// erasing till's last sync both end erased, tags included.
    #[test]
    fn an_erased_customer_keeps_no_personal_data_in_any_arrival_order() {
        let create = change(
            10,
            0,
            "S1/T1",
            json!({"name": "Asha", "phone": "+919876543210", "tags": ["vip"], "stage": "new"}),
            json!({}),
        );
        let erase = change(
            20,
            0,
            "S1/T1",
            json!({"name": ERASED_NAME, "phone": null, "tags": [],
                   "erased_at_ms": 20, "deleted_at_ms": 20}),
            json!({"name": "Asha", "phone": "+919876543210", "tags": ["vip"]}),
        );
        let between = change(
            15,
            0,
            "S1/T2",
            json!({"notes": "12 MG Road", "tags": ["vip", "wholesale"], "stage": "loyal"}),
            json!({"notes": "", "tags": ["vip"], "stage": "new"}),
        );
        let after = change(
            30,
            0,
            "S1/T2",
            json!({"phone": "+919876500000", "email": "asha@example.com", "stage": "vip"}),
            json!({"phone": "+919876543210", "stage": "loyal"}),
        );
        let orders = [
            vec![&create, &between, &after, &erase],
            vec![&create, &erase, &between, &after],
            vec![&create, &after, &erase, &between],
        ];
        for order in orders {
            let mut state = RecordState::default();
            let mut effective = Vec::new();
            for c in &order {
                effective.push(apply_customer(&mut state, c, &c.hlc).expect("applies"));
            }
            for key in PERSONAL_FIELDS {
                assert_eq!(field(&state.values, key), &erased_value(key), "{key}");
            }
            assert!(state.tags.values().all(|t| !t.present));
            // Fields that are not personal still merge by their stamps.
            assert_eq!(state.values["stage"], json!("vip"));
            let erasing = order
                .iter()
                .position(|c| c.hlc == erase.hlc)
                .expect("erase");
            assert!(
                effective[erasing].before.values().all(Value::is_null),
                "the erasure keeps no before-image of personal data"
            );
            for (change, resolved) in order.iter().zip(&effective).skip(erasing + 1) {
                for key in change
                    .fields
                    .keys()
                    .filter(|k| PERSONAL_FIELDS.contains(&k.as_str()))
                {
                    assert_eq!(resolved.fields[key], erased_value(key), "{key}");
                }
            }
        }
    }

    #[test]
    fn customer_fields_merge_last_writer_wins_in_any_arrival_order() {
        let create = change(
            10,
            0,
            "S1/T1",
            json!({"name": "A", "notes": "n0", "stage": "new"}),
            json!({}),
        );
        let t1 = change(20, 0, "S1/T1", json!({"name": "B"}), json!({"name": "A"}));
        let t2 = change(
            21,
            0,
            "S2/T1",
            json!({"name": "C", "notes": "n2"}),
            json!({"name": "A", "notes": "n0"}),
        );
        let tie_low = change(30, 4, "S1/T1", json!({"stage": "loyal"}), json!({}));
        let tie_high = change(30, 4, "S1/T2", json!({"stage": "active"}), json!({}));
        let delete = change(40, 0, "S1/T1", json!({"deleted_at_ms": 40}), json!({}));
        let restore_stale = change(35, 0, "S2/T1", json!({"deleted_at_ms": null}), json!({}));
        let future = change(
            50,
            0,
            "S3/T1",
            json!({"x_loyalty_tier": {"level": 3}}),
            json!({}),
        );

        struct Case<'a> {
            name: &'a str,
            changes: Vec<&'a Change>,
            expected: Value,
        }
        let cases = [
            Case {
                name: "later stamp wins per field, untouched fields stay",
                changes: vec![&create, &t1, &t2],
                expected: json!({"name": "C", "notes": "n2", "stage": "new"}),
            },
            Case {
                name: "late arrival of an older write loses",
                changes: vec![&create, &t2, &t1],
                expected: json!({"name": "C", "notes": "n2", "stage": "new"}),
            },
            Case {
                name: "equal wall time and counter: the node decides",
                changes: vec![&create, &tie_high, &tie_low],
                expected: json!({"name": "A", "notes": "n0", "stage": "active"}),
            },
            Case {
                name: "tie decided the same in the other order",
                changes: vec![&create, &tie_low, &tie_high],
                expected: json!({"name": "A", "notes": "n0", "stage": "active"}),
            },
            Case {
                name: "soft delete is a field: an older restore loses",
                changes: vec![&create, &delete, &restore_stale],
                expected: json!({"name": "A", "notes": "n0", "stage": "new", "deleted_at_ms": 40}),
            },
            Case {
                name: "unknown fields from newer apps are kept",
                changes: vec![&create, &future],
                expected: json!({"name": "A", "notes": "n0", "stage": "new",
                                 "x_loyalty_tier": {"level": 3}}),
            },
            Case {
                name: "replaying a change is a no-op",
                changes: vec![&create, &t2, &t1, &t2, &create],
                expected: json!({"name": "C", "notes": "n2", "stage": "new"}),
            },
        ];
        for case in cases {
            assert_eq!(
                customer_after(&case.changes),
                case.expected,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn effective_change_reports_the_winner_for_every_touched_field() {
        let mut state = RecordState::default();
        let newer = change(20, 0, "S1/T2", json!({"name": "New"}), json!({}));
        let older = change(
            10,
            0,
            "S1/T1",
            json!({"name": "Old", "notes": "hi"}),
            json!({}),
        );
        apply_customer(&mut state, &newer, &newer.hlc).expect("newer");
        let resolved = apply_customer(&mut state, &older, &older.hlc).expect("older");
        assert_eq!(
            Value::Object(resolved.fields),
            json!({"name": "New", "notes": "hi"})
        );
        assert_eq!(
            Value::Object(resolved.before),
            json!({"name": "New", "notes": null})
        );
    }

    #[test]
    fn tags_merge_as_a_set_from_each_change_delta() {
        let create = change(10, 0, "S1/T1", json!({"tags": ["a", "b"]}), json!({}));
        let add_c = change(
            20,
            0,
            "S1/T1",
            json!({"tags": ["a", "b", "c"]}),
            json!({"tags": ["a", "b"]}),
        );
        let drop_a = change(
            21,
            0,
            "S2/T1",
            json!({"tags": ["b"]}),
            json!({"tags": ["a", "b"]}),
        );
        let readd_a_early = change(
            15,
            0,
            "S3/T1",
            json!({"tags": ["a", "b"]}),
            json!({"tags": ["b"]}),
        );
        let readd_a_late = change(
            25,
            0,
            "S3/T1",
            json!({"tags": ["a", "b"]}),
            json!({"tags": ["b"]}),
        );
        let table: [(&str, Vec<&Change>, Value); 5] = [
            (
                "concurrent add and remove of different tags both survive",
                vec![&create, &add_c, &drop_a],
                json!(["b", "c"]),
            ),
            (
                "same result in the other order",
                vec![&create, &drop_a, &add_c],
                json!(["b", "c"]),
            ),
            (
                "an older re-add loses to a later remove",
                vec![&create, &drop_a, &readd_a_early],
                json!(["b"]),
            ),
            (
                "a later re-add wins over an earlier remove",
                vec![&create, &readd_a_late, &drop_a],
                json!(["a", "b"]),
            ),
            (
                "replays change nothing",
                vec![&create, &add_c, &add_c, &create],
                json!(["a", "b", "c"]),
            ),
        ];
        for (name, changes, expected) in table {
            assert_eq!(customer_after(&changes)["tags"], expected, "{name}");
        }
        assert_eq!(
            tag_delta(&drop_a),
            TagDelta {
                add: BTreeSet::new(),
                remove: ["a".to_string()].into()
            }
        );
        assert_eq!(
            tag_delta(&change(1, 0, "x", json!({}), json!({}))),
            TagDelta::default()
        );
    }

    #[test]
    fn devices_may_not_write_server_owned_fields() {
        let mut state = RecordState::default();
        let merge = change(
            10,
            0,
            "S1/T1",
            json!({"merged_into": "c2", "name": "A"}),
            json!({}),
        );
        let err = apply_customer(&mut state, &merge, &merge.hlc).expect_err("refused");
        assert_eq!(err.reason, RejectReason::Forbidden);
        assert_eq!(state, RecordState::default(), "state untouched");
    }

    #[test]
    fn far_future_clocks_are_clamped_to_server_time() {
        let now = 1_000_000;
        let table = [
            (now, None),
            (now + MAX_CLOCK_AHEAD_MS, None),
            (now - 86_400_000, None),
            (now + MAX_CLOCK_AHEAD_MS + 1, Some(now)),
            (now + 86_400_000, Some(now)),
        ];
        for (wall, expected) in table {
            let s = Hlc {
                wall_ms: wall,
                counter: 3,
                node: "S1/T1".into(),
            };
            let clamped = Clamp::new(now, None).stamp(&s);
            assert_eq!(clamped.as_ref().map(|c| c.wall_ms), expected, "{wall}");
            if let Some(c) = clamped {
                assert_eq!((c.counter, c.node.as_str()), (3, "S1/T1"));
            }
        }
    }

    #[test]
    fn a_batch_clamped_to_one_millisecond_keeps_its_order() {
        let now = 1_000_000;
        let ahead = now + 86_400_000;
        let stamp = |wall_ms: i64, counter: u32| Hlc {
            wall_ms,
            counter,
            node: "S1/T1".into(),
        };
        let mut clock = Clamp::new(now, None);
        let made = [stamp(ahead, 0), stamp(ahead + 5, 0), stamp(ahead + 5, 1)];
        let clamped: Vec<Hlc> = made
            .iter()
            .map(|s| clock.stamp(s).expect("ahead"))
            .collect();
        assert!(clamped.iter().all(|c| c.wall_ms == now));
        assert!(
            clamped.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing: {clamped:?}"
        );
        // A stamp the server need not clamp is left alone.
        assert_eq!(clock.stamp(&stamp(now, 7)), None);

        // The device's next batch, received in the same millisecond, goes
        // on after the last stamp of this one, as does one received when
        // the server's clock has stepped back.
        for later_now in [now, now - 3] {
            let mut next = Clamp::new(later_now, clock.last().cloned());
            let first = next.stamp(&stamp(ahead + 9, 0)).expect("ahead");
            assert!(first > clamped[2], "{first:?} after {:?}", clamped[2]);
        }
        // A batch in a later millisecond starts afresh.
        let mut next = Clamp::new(now + 1, clock.last().cloned());
        assert_eq!(next.stamp(&stamp(ahead + 9, 0)), Some(stamp(now + 1, 0)));
    }

    fn bill(wall: i64, fields: Value, before: Value) -> Change {
        Change {
            entity: "bill".into(),
            ..change(wall, 0, "S1/T1", fields, before)
        }
    }

    /// Two teas at 1.00, untaxed, with `refunded` milli-units refunded.
    fn line(refunded: i64) -> Value {
        json!({"line_no": 1, "product_code": "TEA", "name": "Tea", "qty_milli": 2000,
               "unit_price": 100, "discount": 0, "tax_category": "", "tax_rate_bp": 0,
               "bill_discount": 0, "net": 200, "tax": 0, "gross": 200,
               "refunded_qty_milli": refunded, "refunded_gross": refunded / 10,
               "refunded_tax": 0})
    }

    /// The cash that pays the sale of [`line`].
    fn cash(seq: u32, amount: i64) -> Value {
        json!({"seq": seq, "method": "cash", "amount": amount, "tendered": amount,
               "reference": ""})
    }

    /// A sale paid by a change must add up as till-core makes it: line
    /// amounts and totals from its items, tenders covering the total.
    #[test]
    fn a_paid_sale_that_does_not_add_up_is_refused_and_changes_nothing() {
        let item = crate::NewLine::item("TEA", "Tea", 2, 150).taxed("GST5", 500);
        let mut lines = vec![BillLine::unpriced(1, &item)];
        let t = totals::compute(&mut lines, 0, PriceMode::Exclusive).expect("totals");
        let sale = |lines: &[BillLine], total: i64, paid: i64| {
            let payment = Payment {
                seq: 1,
                method: crate::TenderMethod::Cash,
                amount: paid,
                tendered: paid,
                reference: String::new(),
            };
            bill(
                10,
                json!({"kind": "sale", "status": "paid", "price_mode": "exclusive",
                       "bill_discount": 0, "subtotal": t.subtotal, "discount_total": t.discount,
                       "tax_total": t.tax, "total": total, "paid_total": paid,
                       "lines": lines, "payments": [payment]}),
                json!({}),
            )
        };
        let fine = sale(&lines, t.total, t.total);
        assert!(apply_bill(&mut RecordState::default(), &fine, &fine.hlc).is_ok());
        let mut cheap = lines.clone();
        cheap[0].gross -= 1;
        for bad in [
            sale(&lines, 1, 1),
            sale(&lines, t.total, t.total - 1),
            sale(&lines, t.total, 0),
            sale(&cheap, t.total, t.total),
        ] {
            let mut state = RecordState::default();
            let err = apply_bill(&mut state, &bad, &bad.hlc).expect_err("refused");
            assert_eq!(err.reason, RejectReason::Validation, "{}", err.message);
            assert_eq!(state, RecordState::default(), "state untouched");
        }
    }

    #[test]
    fn bill_status_moves_only_forward() {
        use BillStatus::*;
        let all = [Open, Paid, Voided, PartlyRefunded, Refunded];
        let allowed = [
            (Open, Paid),
            (Open, Voided),
            (Paid, PartlyRefunded),
            (Paid, Refunded),
            (Paid, Voided),
            (PartlyRefunded, Refunded),
            (PartlyRefunded, Voided),
            (Refunded, Voided),
        ];
        for from in all {
            for to in all {
                let expected = from == to || allowed.contains(&(from, to));
                assert_eq!(status_may_move(from, to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn bills_are_immutable_once_final() {
        let open = bill(
            10,
            json!({"number": "S1-T1-000001", "store_id": "S1", "device_id": "T1",
                   "kind": "sale", "status": "open", "price_mode": "inclusive",
                   "bill_discount": 0, "subtotal": 200, "discount_total": 0, "tax_total": 0,
                   "total": 200, "lines": [line(0)], "payments": []}),
            json!({}),
        );
        let add_line = bill(11, json!({"total": 300}), json!({"total": 200}));
        let pay = bill(
            12,
            json!({"status": "paid", "payments": [cash(1, 200)], "paid_total": 200}),
            json!({"status": "open"}),
        );
        let refund_part = bill(
            13,
            json!({"status": "partly_refunded", "refunded_total": 100, "lines": [line(1000)]}),
            json!({}),
        );
        let refund_rest = bill(
            14,
            json!({"status": "refunded", "refunded_total": 200, "lines": [line(2000)]}),
            json!({}),
        );
        let void = bill(
            15,
            json!({"status": "voided", "voided_at_ms": 15}),
            json!({}),
        );
        let reopen = bill(16, json!({"status": "open"}), json!({}));
        let edit_total = bill(16, json!({"total": 1}), json!({}));
        let renumber = bill(16, json!({"number": "S1-T1-000009"}), json!({}));
        let shrink_refund = bill(
            16,
            json!({"refunded_total": 50, "lines": [line(500)]}),
            json!({}),
        );
        let swap_line = bill(
            16,
            json!({"lines": [{"line_no": 1, "product_code": "COFFEE"}]}),
            json!({}),
        );
        let drop_payment = bill(16, json!({"payments": []}), json!({}));
        let append_payment = bill(
            16,
            json!({"payments": [cash(1, 200), cash(2, 0)]}),
            json!({}),
        );

        // (name, applied first, the change under test, expected outcome)
        type Case<'a> = (
            &'a str,
            Vec<&'a Change>,
            &'a Change,
            Result<(), RejectReason>,
        );
        let table: Vec<Case<'_>> = vec![
            ("open bills take edits", vec![&open], &add_line, Ok(())),
            ("paying an open bill", vec![&open], &pay, Ok(())),
            (
                "refund moves a paid bill forward",
                vec![&open, &pay],
                &refund_part,
                Ok(()),
            ),
            (
                "a second refund moves it on",
                vec![&open, &pay, &refund_part],
                &refund_rest,
                Ok(()),
            ),
            ("voiding a paid bill", vec![&open, &pay], &void, Ok(())),
            (
                "a paid bill cannot reopen",
                vec![&open, &pay],
                &reopen,
                Err(RejectReason::InvalidTransition),
            ),
            (
                "a voided bill cannot be paid again",
                vec![&open, &pay, &void],
                &pay,
                Err(RejectReason::InvalidTransition),
            ),
            (
                "amounts of a paid bill are fixed",
                vec![&open, &pay],
                &edit_total,
                Err(RejectReason::BillImmutable),
            ),
            (
                "a bill number never changes, even while open",
                vec![&open],
                &renumber,
                Err(RejectReason::BillImmutable),
            ),
            (
                "refunded amounts never shrink",
                vec![&open, &pay, &refund_part],
                &shrink_refund,
                Err(RejectReason::BillImmutable),
            ),
            (
                "lines of a paid bill change only by refunds",
                vec![&open, &pay],
                &swap_line,
                Err(RejectReason::BillImmutable),
            ),
            (
                "payments are never removed",
                vec![&open, &pay],
                &drop_payment,
                Err(RejectReason::BillImmutable),
            ),
            (
                "payments append",
                vec![&open, &pay],
                &append_payment,
                Ok(()),
            ),
            ("replaying the payment", vec![&open, &pay], &pay, Ok(())),
        ];
        for (name, first, under_test, expected) in table {
            let mut state = RecordState::default();
            for c in first {
                apply_bill(&mut state, c, &c.hlc).expect("setup applies");
            }
            let snapshot = state.clone();
            let got = apply_bill(&mut state, under_test, &under_test.hlc);
            assert_eq!(
                got.as_ref().map(|_| ()).map_err(|r| r.reason),
                expected,
                "{name}"
            );
            if got.is_err() {
                assert_eq!(state, snapshot, "{name}: state untouched");
            }
        }
    }

    #[test]
    fn refunds_of_one_sale_made_at_two_tills_at_once_both_count() {
        let open = bill(
            10,
            json!({"status": "open", "total": 200, "lines": [line(0)]}),
            json!({}),
        );
        let pay = bill(11, json!({"status": "paid"}), json!({"status": "open"}));
        // Each till saw the sale unrefunded and refunded one unit of its line.
        let refund_at = |wall: i64, node: &str| Change {
            entity: "bill".into(),
            ..change(
                wall,
                0,
                node,
                json!({"status": "partly_refunded", "refunded_total": 100,
                       "lines": [line(1000)]}),
                json!({"status": "paid", "refunded_total": 0, "lines": [line(0)]}),
            )
        };
        let (t1, t2) = (refund_at(20, "S1/T1"), refund_at(21, "S1/T2"));
        for order in [[&t1, &t2], [&t2, &t1]] {
            let mut state = RecordState::default();
            for c in [&open, &pay] {
                apply_bill(&mut state, c, &c.hlc).expect("setup applies");
            }
            let first = apply_bill(&mut state, order[0], &order[0].hlc).expect("first");
            assert_eq!(first.fields["status"], json!("partly_refunded"));
            let second = apply_bill(&mut state, order[1], &order[1].hlc).expect("second");
            // The effective change reports the merged amounts and status.
            assert_eq!(second.fields["refunded_total"], json!(200));
            assert_eq!(second.fields["lines"], json!([line(2000)]));
            assert_eq!(second.fields["status"], json!("refunded"));
            assert_eq!(state.values["refunded_total"], json!(200));
            assert_eq!(state.values["status"], json!("refunded"));
        }
        // A till's second partial refund carries no status; merged with
        // another till's refund it completes the sale all the same.
        let mut state = RecordState::default();
        for c in [&open, &pay, &t1] {
            apply_bill(&mut state, c, &c.hlc).expect("setup applies");
        }
        let second_part = bill(
            25,
            json!({"refunded_total": 200, "lines": [line(2000)]}),
            json!({"refunded_total": 100, "lines": [line(1000)]}),
        );
        let done = apply_bill(&mut state, &second_part, &second_part.hlc).expect("applies");
        assert_eq!(done.fields["status"], json!("refunded"));
        assert_eq!(state.values["status"], json!("refunded"));

        // A change that would take refunded amounts back is still refused.
        let mut state = RecordState::default();
        for c in [&open, &pay, &t1] {
            apply_bill(&mut state, c, &c.hlc).expect("setup applies");
        }
        let back = bill(
            30,
            json!({"refunded_total": 0, "lines": [line(0)]}),
            json!({"refunded_total": 100, "lines": [line(1000)]}),
        );
        let err = apply_bill(&mut state, &back, &back.hlc).expect_err("shrinks");
        assert_eq!(err.reason, RejectReason::BillImmutable);
    }

    #[test]
    fn a_void_and_a_refund_made_at_two_tills_at_once_both_stand() {
        let open = bill(
            10,
            json!({"status": "open", "total": 200, "lines": [line(0)]}),
            json!({}),
        );
        let pay = bill(11, json!({"status": "paid"}), json!({"status": "open"}));
        let void = bill(
            20,
            json!({"status": "voided", "voided_at_ms": 20}),
            json!({"status": "paid", "voided_at_ms": null}),
        );
        let refund = bill(
            21,
            json!({"status": "partly_refunded", "refunded_total": 100, "lines": [line(1000)]}),
            json!({"status": "paid", "refunded_total": 0, "lines": [line(0)]}),
        );
        for order in [[&void, &refund], [&refund, &void]] {
            let mut state = RecordState::default();
            for c in [&open, &pay, order[0], order[1]] {
                apply_bill(&mut state, c, &c.hlc).expect("applies");
            }
            assert_eq!(state.values["status"], json!("voided"));
            assert_eq!(state.values["voided_at_ms"], json!(20));
            assert_eq!(state.values["refunded_total"], json!(100));
            assert_eq!(state.values["lines"], json!([line(1000)]));
        }
    }

    #[test]
    fn a_final_bill_moves_forward_even_under_a_clamped_older_stamp() {
        let mut state = RecordState::default();
        let open = bill(100, json!({"status": "open", "total": 5}), json!({}));
        let pay = bill(200, json!({"status": "paid"}), json!({}));
        let void = bill(150, json!({"status": "voided"}), json!({}));
        for c in [&open, &pay, &void] {
            apply_bill(&mut state, c, &c.hlc).expect("applies");
        }
        assert_eq!(state.values["status"], json!("voided"));
    }
}
