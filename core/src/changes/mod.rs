//! The append-only change log: one record per mutation, written in the same
//! transaction as the mutation. It is both the audit trail (who changed what,
//! when, from which device, with before and after values) and the outbox that
//! sync ships: each record holds the new value of every field that changed,
//! enough to replay the state.
//!
//! Append-only is enforced by triggers in the schema, not by convention.

use rusqlite::{named_params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::clock::Hlc;
use crate::error::{Error, Result};
use crate::page::{self, Page};
use crate::store::{Store, Writer};

/// Field name -> value, as recorded in a change.
pub type Fields = Map<String, Value>;

/// One recorded mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Unique id of the change (UUIDv7); sync deduplicates on it.
    pub change_id: Uuid,
    /// `customer` or `bill`.
    pub entity: String,
    /// The id of the record changed.
    pub entity_id: String,
    /// What was done: `create`, `update`, `delete`, `pay`, `refund`, ...
    pub op: String,
    /// New values of the fields that changed.
    pub fields: Fields,
    /// Previous values of those fields (empty for a create).
    pub before: Fields,
    /// Hybrid logical clock stamp, in its sortable text form.
    pub hlc: String,
    /// The device that made the change, as `store/device`.
    pub device: String,
    /// The staff member signed in when it was made.
    pub staff: String,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

pub(crate) const CHANGE_COLUMNS: &str =
    "seq, change_id, entity, entity_id, op, fields, before, hlc, device_id, staff_id, at";

impl Change {
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<(i64, Change)> {
        let json = |i: usize| -> rusqlite::Result<Fields> {
            let text: Option<String> = row.get(i)?;
            text.map(|t| serde_json::from_str(&t))
                .transpose()
                .map(Option::unwrap_or_default)
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        i,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })
        };
        let change_id: String = row.get(1)?;
        Ok((
            row.get(0)?,
            Change {
                change_id: change_id.parse().map_err(|e: uuid::Error| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })?,
                entity: row.get(2)?,
                entity_id: row.get(3)?,
                op: row.get(4)?,
                fields: json(5)?,
                before: json(6)?,
                hlc: row.get(7)?,
                device: row.get(8)?,
                staff: row.get(9)?,
                at_ms: row.get(10)?,
            },
        ))
    }
}

/// Appends a change of `entity` `entity_id` in the writer's transaction.
pub(crate) fn record(
    w: &mut Writer<'_>,
    entity: &str,
    entity_id: &str,
    op: &str,
    fields: &Fields,
    before: &Fields,
) -> Result<()> {
    let stamp = w.stamp();
    let mut stmt = w.tx.prepare_cached(
        "INSERT INTO changes (change_id, entity, entity_id, op, fields, before, hlc,
                                  device_id, staff_id, at)
             VALUES (:change_id, :entity, :entity_id, :op, :fields, :before, :hlc,
                     :device, :staff, :at)",
    )?;
    stmt.execute(named_params! {
        ":change_id": Uuid::now_v7().to_string(),
        ":entity": entity,
        ":entity_id": entity_id,
        ":op": op,
        ":fields": serde_json::to_string(fields)?,
        ":before": if before.is_empty() { None } else { Some(serde_json::to_string(before)?) },
        ":hlc": stamp.to_string(),
        ":device": w.settings.node,
        ":staff": w.staff,
        ":at": w.now_ms,
    })?;
    Ok(())
}

/// A record as the change log holds it: its fields as JSON, less the
/// `derived` ones that replaying the others recreates.
pub(crate) fn fields_of<T: Serialize>(record: &T, derived: &[&str]) -> Result<Value> {
    let mut value = serde_json::to_value(record)?;
    if let Some(map) = value.as_object_mut() {
        for field in derived {
            map.remove(*field);
        }
    }
    Ok(value)
}

/// Appends the change that turns `before` (nothing, for a new record) into
/// `after`: the fields that differ, with their old values. `derived` names
/// fields the log leaves out because replaying the others recreates them.
pub(crate) fn record_diff<T: Serialize>(
    w: &mut Writer<'_>,
    entity: &str,
    entity_id: &str,
    op: &str,
    before: Option<&T>,
    after: &T,
    derived: &[&str],
) -> Result<()> {
    let (fields, previous) = match before {
        Some(before) => diff(&fields_of(before, derived)?, &fields_of(after, derived)?),
        // A new record: every field that has a value is new, and there is
        // no before-image.
        None => match fields_of(after, derived)? {
            Value::Object(mut map) => {
                map.retain(|_, v| !v.is_null());
                (map, Fields::new())
            }
            _ => (Fields::new(), Fields::new()),
        },
    };
    record(w, entity, entity_id, op, &fields, &previous)
}

/// The newest stamp this device wrote, to keep its clock monotonic across restarts.
pub(crate) fn last_local_stamp(conn: &Connection) -> Result<Option<Hlc>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT hlc FROM changes WHERE origin = 'local' ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    text.map(|t| {
        t.parse()
            .map_err(|_| Error::invalid("changes.hlc", "malformed stamp in the change log"))
    })
    .transpose()
}

/// Every change of one record, oldest first, read on `conn` (one snapshot
/// when the caller holds a transaction open): for exports, not for screens.
pub(crate) fn all_of(conn: &Connection, entity_id: &str) -> Result<Vec<Change>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CHANGE_COLUMNS} FROM changes WHERE entity_id = ?1 ORDER BY seq"
    ))?;
    let changes = stmt
        .query_map([entity_id], |r| Change::from_row(r).map(|(_, c)| c))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(changes)
}

/// The fields whose values differ between two JSON objects: `(after, before)`.
/// A field present on one side only counts as changed (the other side is `null`).
/// A record that did not exist (`before` is not an object) has no before-image.
pub(crate) fn diff(before: &Value, after: &Value) -> (Fields, Fields) {
    let empty = Map::new();
    let old = before.as_object().unwrap_or(&empty);
    let new = after.as_object().unwrap_or(&empty);
    let mut changed = Fields::new();
    let mut previous = Fields::new();
    for (key, value) in new {
        let was = old.get(key).unwrap_or(&Value::Null);
        if was != value {
            changed.insert(key.clone(), value.clone());
            previous.insert(key.clone(), was.clone());
        }
    }
    for (key, was) in old {
        if !new.contains_key(key) {
            changed.insert(key.clone(), Value::Null);
            previous.insert(key.clone(), was.clone());
        }
    }
    if !before.is_object() {
        previous.clear();
    }
    (changed, previous)
}

impl Store {
    /// The changes of one record, oldest first, a page at a time: who changed
    /// what, when, and from which device.
    pub fn history(
        &self,
        entity_id: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Change>> {
        let limit = page::limit(limit)?;
        let after: i64 = cursor.map(page::decode_cursor).transpose()?.unwrap_or(0);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {CHANGE_COLUMNS} FROM changes
                 WHERE entity_id = :id AND seq > :after ORDER BY seq LIMIT :n"
            ))?;
            let rows = stmt
                .query_map(
                    named_params! { ":id": entity_id, ":after": after, ":n": limit + 1 },
                    Change::from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let page = page::assemble(rows, limit, |(seq, _)| *seq);
            Ok(Page {
                items: page.items.into_iter().map(|(_, c)| c).collect(),
                next: page.next,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_reports_changed_added_and_removed_fields_only() {
        let before = json!({"name": "A", "tags": ["x"], "gone": 1, "same": true});
        let after = json!({"name": "B", "tags": ["x"], "new": 2, "same": true});
        let (changed, previous) = diff(&before, &after);
        assert_eq!(
            Value::Object(changed),
            json!({"name": "B", "new": 2, "gone": null})
        );
        assert_eq!(
            Value::Object(previous),
            json!({"name": "A", "new": null, "gone": 1})
        );
    }

    #[test]
    fn diff_of_a_create_has_no_before_image() {
        let (changed, previous) = diff(&Value::Null, &json!({"name": "A", "phone": null}));
        assert_eq!(Value::Object(changed), json!({"name": "A"}));
        assert!(previous.is_empty());
    }

    #[test]
    fn diff_of_equal_values_is_empty() {
        let v = json!({"a": 1});
        let (changed, previous) = diff(&v, &v);
        assert!(changed.is_empty() && previous.is_empty());
    }
}
