//! How the server takes one pushed change, in two phases every storage
//! backend shares:
//!
//! 1. [`check`] (stateless): the change parses, names a known entity, a UUID
//!    record id and a valid clock stamp; it was stamped by the pushing device
//!    itself; its values pass till-core's own validation rules.
//! 2. [`resolve`] (against the stored record): scope (a bill belongs to the
//!    pushing device's store), existence (only a create may introduce a
//!    record), clock clamping, then till-core's conflict rules. It returns the
//!    record's new merge state and the effective change to log.
//!
//! Both are pure, so the rules are identical on every backend and tested
//! without a database. A rejection from either is permanent for that change.

use serde_json::value::RawValue;
use serde_json::Value;
use till_core::clock::Hlc;
use till_core::sync::conflict::{self, Clamp, RecordState, Rejection};
use till_core::sync::protocol::RejectReason;
use till_core::sync::validate;
use till_core::Change;
use uuid::Uuid;

use crate::auth::DeviceScope;

/// The kinds of records sync carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// Tenant-wide.
    Customer,
    /// Belongs to one store.
    Bill,
}

impl Entity {
    /// The entity of a change, if it is one sync knows.
    pub fn of(change: &Change) -> Option<Entity> {
        match change.entity.as_str() {
            "customer" => Some(Entity::Customer),
            "bill" => Some(Entity::Bill),
            _ => None,
        }
    }

    /// The entity's name in changes and snapshots.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Customer => "customer",
            Entity::Bill => "bill",
        }
    }
}

/// A stored record as [`resolve`] needs it.
#[derive(Debug, Clone)]
pub struct Current {
    /// Its merge state.
    pub state: RecordState,
    /// For a bill, its store.
    pub store: Option<String>,
}

/// What resolving an accepted change produced.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// Which table the record lives in.
    pub entity: Entity,
    /// The record's new merge state.
    pub state: RecordState,
    /// For a bill, its store (the log entry's visibility).
    pub store: Option<String>,
    /// The effective change to log.
    pub effective: Change,
    /// The device's stamp was clamped to the server's clock.
    pub clamped: bool,
}

fn reject(reason: RejectReason, message: impl Into<String>) -> Rejection {
    Rejection::new(reason, message)
}

/// Phase 1: reads one pushed change (its JSON text, as the request held it)
/// and checks it alone. On failure returns the change id it carried (empty if
/// none) with the reason.
///
/// Read straight into a [`Change`]: going through a `serde_json::Value` first
/// cost a second pass and a copy of every value.
pub fn check(scope: &DeviceScope, raw: &RawValue) -> Result<Change, (String, Rejection)> {
    // serde's messages can quote values (personal data): say only what failed.
    let change: Change = serde_json::from_str(raw.get()).map_err(|_| {
        (
            carried_change_id(raw),
            reject(
                RejectReason::Malformed,
                "not a change record (change_id, entity, entity_id, op, fields, before, hlc, \
                 device, staff, at_ms)",
            ),
        )
    })?;
    let fail = |r: Rejection| (change.change_id.to_string(), r);
    let Some(entity) = Entity::of(&change) else {
        return Err(fail(reject(RejectReason::Malformed, "unknown entity")));
    };
    // One spelling per record: an upper-case or braced form of an id would
    // otherwise start a second record of the same entity.
    if change
        .entity_id
        .parse::<Uuid>()
        .map_or(true, |id| id.to_string() != change.entity_id)
    {
        return Err(fail(reject(
            RejectReason::Malformed,
            "entity_id is not a UUID in its lower-case hyphenated form",
        )));
    }
    let stamp: Hlc = change
        .hlc
        .parse()
        .map_err(|_| fail(reject(RejectReason::Malformed, "hlc is not a clock stamp")))?;
    if stamp.node != change.device {
        return Err(fail(reject(
            RejectReason::Malformed,
            "hlc node differs from the change's device",
        )));
    }
    if change.device != scope.node() {
        return Err(fail(reject(
            RejectReason::Forbidden,
            "change was made by another device",
        )));
    }
    let valid = match entity {
        Entity::Customer => validate::customer_fields(&change),
        Entity::Bill => validate::bill_fields(&change),
    };
    valid.map_err(|e| fail(reject(RejectReason::Validation, e.to_string())))?;
    Ok(change)
}

/// The `change_id` a change that is not a change record carried, if it
/// carried one as a string.
fn carried_change_id(raw: &RawValue) -> String {
    #[derive(serde::Deserialize)]
    struct Carried {
        change_id: Value,
    }
    serde_json::from_str::<Carried>(raw.get())
        .ok()
        .and_then(|c| c.change_id.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Phase 2: resolves a checked change against the stored record (`None`
/// when the server has never seen it), on the server's clock for the batch.
pub fn resolve(
    scope: &DeviceScope,
    change: &Change,
    current: Option<Current>,
    clock: &mut Clamp,
) -> Result<Resolution, Rejection> {
    let entity =
        Entity::of(change).ok_or_else(|| reject(RejectReason::Malformed, "unknown entity"))?;
    let stamp: Hlc = change
        .hlc
        .parse()
        .map_err(|_| reject(RejectReason::Malformed, "hlc is not a clock stamp"))?;
    let clamped = clock.stamp(&stamp);
    let hlc = clamped.as_ref().unwrap_or(&stamp).to_string();
    let field_str = |key: &str| change.fields.get(key).and_then(Value::as_str);

    let (mut state, store) = match (entity, current) {
        (Entity::Customer, Some(current)) => (current.state, None),
        (Entity::Customer, None) if change.fields.contains_key("name") => {
            (RecordState::default(), None)
        }
        (Entity::Customer, None) => {
            return Err(reject(
                RejectReason::UnknownRecord,
                "customer was never created on the server",
            ))
        }
        (Entity::Bill, Some(current)) => {
            if current.store.as_deref() != Some(scope.store.as_str()) {
                return Err(reject(
                    RejectReason::Forbidden,
                    "bill belongs to another store",
                ));
            }
            // Only the till that opened a bill finishes it: the bill takes
            // its number and joins that till's hash chain. Final bills take
            // status moves (refunds, voids) from any till of the store.
            let values = &current.state.values;
            let open = values.get("status").and_then(Value::as_str) == Some("open");
            if open && values.get("device_id").and_then(Value::as_str) != Some(&scope.device) {
                return Err(reject(
                    RejectReason::Forbidden,
                    "an open bill changes only at the till that opened it",
                ));
            }
            (current.state, current.store)
        }
        (Entity::Bill, None) => match (field_str("store_id"), field_str("device_id")) {
            (Some(store), Some(device)) if store == scope.store && device == scope.device => {
                (RecordState::default(), Some(store.to_owned()))
            }
            (Some(_), Some(_)) => {
                return Err(reject(
                    RejectReason::Forbidden,
                    "a device creates bills of its own store and device only",
                ))
            }
            _ => {
                return Err(reject(
                    RejectReason::UnknownRecord,
                    "bill was never created on the server",
                ))
            }
        },
    };

    let resolved = match entity {
        Entity::Customer => conflict::apply_customer(&mut state, change, &hlc)?,
        Entity::Bill => conflict::apply_bill(&mut state, change, &hlc)?,
    };
    Ok(Resolution {
        entity,
        state,
        store,
        // Field by field: cloning the whole change would copy its values
        // (a bill's lines) only to drop them.
        effective: Change {
            change_id: change.change_id,
            entity: change.entity.clone(),
            entity_id: change.entity_id.clone(),
            op: change.op.clone(),
            fields: resolved.fields,
            before: resolved.before,
            hlc,
            device: change.device.clone(),
            staff: change.staff.clone(),
            at_ms: change.at_ms,
        },
        clamped: clamped.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(store: &str, device: &str) -> DeviceScope {
        DeviceScope {
            tenant: "t".into(),
            store: store.into(),
            device: device.into(),
        }
    }

    fn change_json(entity: &str, fields: Value, device: &str, wall: i64) -> Value {
        json!({
            "change_id": Uuid::now_v7().to_string(),
            "entity": entity,
            "entity_id": Uuid::now_v7().to_string(),
            "op": "create",
            "fields": fields,
            "before": {},
            "hlc": format!("{wall:015}-{:010}-{device}", 0),
            "device": device,
            "staff": "s",
            "at_ms": wall,
        })
    }

    /// [`check`] of a JSON value, as a request would carry it.
    fn check(scope: &DeviceScope, value: Value) -> Result<Change, (String, Rejection)> {
        let raw = serde_json::value::to_raw_value(&value).expect("serialises");
        super::check(scope, &raw)
    }

    fn rejected(result: Result<Change, (String, Rejection)>) -> Option<RejectReason> {
        result.err().map(|(_, r)| r.reason)
    }

    #[test]
    fn check_reads_each_change_alone() {
        let me = scope("S1", "T1");
        let good = change_json("customer", json!({"name": "A"}), "S1/T1", 5);
        let mut wrong_entity = good.clone();
        wrong_entity["entity"] = json!("coupon");
        let mut bad_id = good.clone();
        bad_id["entity_id"] = json!("42");
        let mut upper_id = good.clone();
        upper_id["entity_id"] = json!(good["entity_id"].as_str().expect("id").to_uppercase());
        let mut braced_id = good.clone();
        braced_id["entity_id"] = json!(format!("{{{}}}", good["entity_id"].as_str().expect("id")));
        let mut bad_hlc = good.clone();
        bad_hlc["hlc"] = json!("yesterday");
        let mut other_node = good.clone();
        other_node["hlc"] = json!("000000000000005-0000000000-S1/T2");
        let table = [
            (good.clone(), None),
            (json!([1, 2]), Some(RejectReason::Malformed)),
            (json!({"change_id": "x"}), Some(RejectReason::Malformed)),
            (wrong_entity, Some(RejectReason::Malformed)),
            (bad_id, Some(RejectReason::Malformed)),
            (upper_id, Some(RejectReason::Malformed)),
            (braced_id, Some(RejectReason::Malformed)),
            (bad_hlc, Some(RejectReason::Malformed)),
            (other_node, Some(RejectReason::Malformed)),
            (
                change_json("customer", json!({"name": "A"}), "S1/T2", 5),
                Some(RejectReason::Forbidden),
            ),
            (
                change_json("customer", json!({"name": " A "}), "S1/T1", 5),
                Some(RejectReason::Validation),
            ),
        ];
        for (value, expected) in table {
            assert_eq!(rejected(check(&me, value.clone())), expected, "{value}");
        }
        let (id, _) = check(&me, json!({"change_id": "abc"})).expect_err("malformed");
        assert_eq!(id, "abc");
    }

    #[test]
    fn bills_stay_in_their_store() {
        let me = scope("S1", "T1");
        let bill = |store: &str, device: &str| {
            let v = change_json(
                "bill",
                json!({"store_id": store, "device_id": device, "status": "open"}),
                "S1/T1",
                5,
            );
            check(&me, v).expect("checks")
        };
        let reason = |c: &Change, current: Option<Current>| {
            resolve(&me, c, current, &mut Clamp::new(10, None))
                .err()
                .map(|r| r.reason)
        };
        assert_eq!(reason(&bill("S1", "T1"), None), None);
        assert_eq!(
            reason(&bill("S2", "T1"), None),
            Some(RejectReason::Forbidden)
        );
        assert_eq!(
            reason(&bill("S1", "T9"), None),
            Some(RejectReason::Forbidden)
        );
        let elsewhere = Current {
            state: RecordState::default(),
            store: Some("S2".into()),
        };
        assert_eq!(
            reason(&bill("S1", "T1"), Some(elsewhere)),
            Some(RejectReason::Forbidden)
        );
        let update =
            check(&me, change_json("bill", json!({"total": 5}), "S1/T1", 5)).expect("checks");
        assert_eq!(reason(&update, None), Some(RejectReason::UnknownRecord));
    }

    #[test]
    fn resolve_clamps_stamps_from_the_future() {
        let me = scope("S1", "T1");
        let now = 1_000_000_000;
        let ahead = check(
            &me,
            change_json("customer", json!({"name": "A"}), "S1/T1", now + 3_600_000),
        )
        .expect("checks");
        let r = resolve(&me, &ahead, None, &mut Clamp::new(now, None)).expect("accepted");
        assert!(r.clamped);
        assert!(r.effective.hlc.starts_with(&format!("{now:015}-")));
        let fine = check(
            &me,
            change_json("customer", json!({"name": "A"}), "S1/T1", now),
        )
        .expect("checks");
        assert!(
            !resolve(&me, &fine, None, &mut Clamp::new(now, None))
                .expect("accepted")
                .clamped
        );
    }
}
