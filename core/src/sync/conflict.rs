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
//!   refunded amounts (only growing) and appended payments may change.
//!   Refunds are new bills, so they append by construction. The one
//!   server-made change a final bill allows is a dedup merge moving it to the
//!   surviving customer (see `dedup`): it renames the customer, never money.
//! - **Customers merged away by dedup** are tombstones: a device change that
//!   arrives for one applies to its survivor (see `dedup::redirect`).
//! - **Clocks far ahead are clamped**: a stamp more than
//!   [`MAX_CLOCK_AHEAD_MS`] ahead of the server is pulled back to the
//!   server's time, so one wrong device clock cannot win every future conflict.
//! - **Unknown fields round-trip**: a field this build does not know (written
//!   by a newer app) is kept and merged like any other, never dropped.
//!
//! Every function either changes the state and returns the effective change,
//! or returns a [`Rejection`] and leaves the state untouched.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::protocol::{field, RejectReason};
use crate::bills::BillStatus;
use crate::changes::{Change, Fields};
use crate::clock::Hlc;

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

/// `stamp` pulled back to the server's time when it runs more than
/// `max_ahead_ms` ahead of `now_ms`; `None` when it is fine as it is.
/// The counter and node are kept, so the clamped stamp stays unique.
pub fn clamp(stamp: &Hlc, now_ms: i64, max_ahead_ms: i64) -> Option<Hlc> {
    (stamp.wall_ms > now_ms.saturating_add(max_ahead_ms)).then(|| Hlc {
        wall_ms: now_ms,
        ..stamp.clone()
    })
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
    let mut resolved = Resolved::default();
    for (key, value) in &change.fields {
        let old = field(&state.values, key).clone();
        if key == "tags" {
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
const BILL_FINAL_MUTABLE: [&str; 5] = [
    "status",
    "voided_at_ms",
    "refunded_total",
    "lines",
    "payments",
];
/// Line fields a refund moves on a final sale; each only grows.
const LINE_REFUND_FIELDS: [&str; 3] = ["refunded_qty_milli", "refunded_gross", "refunded_tax"];

/// Whether a bill's status may go from `from` to `to`. Staying put is
/// allowed (a replay); otherwise only forward: open -> paid | voided,
/// paid -> partly refunded | refunded | voided, partly refunded -> refunded.
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
    let current = status_of(field(&state.values, "status"));
    if let Some(new) = change.fields.get("status") {
        let to = status_of(new).ok_or_else(|| {
            Rejection::new(RejectReason::Validation, "status is not a bill status")
        })?;
        if let Some(from) = current {
            if !status_may_move(from, to) {
                return Err(Rejection::new(
                    RejectReason::InvalidTransition,
                    format!("bill status cannot move from {from} to {to}"),
                ));
            }
        }
    }
    let is_final = current.is_some_and(|s| s != BillStatus::Open);
    if is_final {
        check_final_bill_change(&state.values, &change.fields).map_err(immutable)?;
    }

    let mut resolved = Resolved::default();
    for (key, value) in &change.fields {
        let old = field(&state.values, key).clone();
        // A final bill's changes were checked to only move forward: they
        // apply whatever their stamp, so a clamped stamp cannot undo a refund.
        if is_final || wins(hlc, state.clocks.get(key).map(String::as_str)) {
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

/// Checks a change of a final bill: only [`BILL_FINAL_MUTABLE`] fields, the
/// refunded amounts only growing, payments only appended, lines otherwise equal.
fn check_final_bill_change(current: &Fields, fields: &Fields) -> Result<(), String> {
    for (key, new) in fields {
        let old = field(current, key);
        if old == new {
            continue;
        }
        if !BILL_FINAL_MUTABLE.contains(&key.as_str()) {
            return Err(format!("{key} of a final bill never changes"));
        }
        match key.as_str() {
            "refunded_total" => grows(old, new)
                .then_some(())
                .ok_or_else(|| "refunded_total of a bill only grows".to_string())?,
            "payments" => {
                let (Some(old), Some(new)) = (old.as_array(), new.as_array()) else {
                    return Err("payments of a final bill only append".into());
                };
                if new.len() < old.len() || new[..old.len()] != old[..] {
                    return Err("payments of a final bill only append".into());
                }
            }
            "lines" => check_refunded_lines(old, new)?,
            _ => {}
        }
    }
    Ok(())
}

/// Whether an integer amount stayed or grew (an absent old amount is 0).
fn grows(old: &Value, new: &Value) -> bool {
    new.as_i64().unwrap_or(i64::MIN) >= old.as_i64().unwrap_or(0)
}

/// Lines of a final sale: same lines, refunded amounts equal or larger.
fn check_refunded_lines(old: &Value, new: &Value) -> Result<(), String> {
    let fail = || "lines of a final bill change only by refunds".to_string();
    let (Some(old), Some(new)) = (old.as_array(), new.as_array()) else {
        return Err(fail());
    };
    if old.len() != new.len() {
        return Err(fail());
    }
    for (o, n) in old.iter().zip(new) {
        let (Some(o), Some(n)) = (o.as_object(), n.as_object()) else {
            return Err(fail());
        };
        let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
        for key in keys {
            let (a, b) = (field(o, key), field(n, key));
            let ok = if LINE_REFUND_FIELDS.contains(&key.as_str()) {
                grows(a, b)
            } else {
                a == b
            };
            if !ok {
                return Err(fail());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

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
            let clamped = clamp(&s, now, MAX_CLOCK_AHEAD_MS);
            assert_eq!(clamped.as_ref().map(|c| c.wall_ms), expected, "{wall}");
            if let Some(c) = clamped {
                assert_eq!((c.counter, c.node.as_str()), (3, "S1/T1"));
            }
        }
    }

    fn bill(wall: i64, fields: Value, before: Value) -> Change {
        Change {
            entity: "bill".into(),
            ..change(wall, 0, "S1/T1", fields, before)
        }
    }

    fn line(refunded: i64) -> Value {
        json!({"line_no": 1, "product_code": "TEA", "qty_milli": 2000, "gross": 200,
               "refunded_qty_milli": refunded, "refunded_gross": refunded / 10,
               "refunded_tax": 0})
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
                   "kind": "sale", "status": "open", "total": 200, "lines": [line(0)],
                   "payments": []}),
            json!({}),
        );
        let add_line = bill(11, json!({"total": 300}), json!({"total": 200}));
        let pay = bill(
            12,
            json!({"status": "paid", "payments": [{"seq": 1, "amount": 200}],
                   "paid_total": 200}),
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
            json!({"payments": [{"seq": 1, "amount": 200}, {"seq": 2, "amount": 0}]}),
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
                "a refunded bill cannot be voided",
                vec![&open, &pay, &refund_rest],
                &void,
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
