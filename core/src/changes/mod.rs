//! The append-only change log: one record per mutation, written in the same
//! transaction as the mutation. It is both the audit trail (who changed what,
//! when, from which device, with before and after values) and the outbox that
//! sync ships: each record holds the new value of every field that changed,
//! enough to replay the state.
//!
//! Append-only is enforced by triggers in the schema, not by convention.

mod texts;

use rusqlite::{named_params, params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use texts::FieldTexts;

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

/// Appends a change of `entity` `entity_id` in the writer's transaction:
/// `fields` and `before` are JSON objects (`before` absent for a new record).
pub(crate) fn record(
    w: &mut Writer<'_>,
    entity: &str,
    entity_id: &str,
    op: &str,
    fields: &str,
    before: Option<&str>,
) -> Result<()> {
    let stamp = w.stamp();
    // By position, in the order of the columns, as the bill's insert does
    // (see `bills::write_row`).
    let mut stmt = w.tx.prepare_cached(
        "INSERT INTO changes (change_id, entity, entity_id, op, fields, before, hlc,
                              device_id, staff_id, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    stmt.execute(params![
        Uuid::now_v7().to_string(),
        entity,
        entity_id,
        op,
        fields,
        before,
        stamp.to_string(),
        w.settings.node,
        w.staff,
        w.now_ms,
    ])?;
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
    let after = FieldTexts::of(after, derived)?;
    let before = before.map(|b| FieldTexts::of(b, derived)).transpose()?;
    let (fields, previous) = diff(before.as_ref(), &after);
    record(w, entity, entity_id, op, &fields, previous.as_deref())
}

/// The fields that differ between two records, as JSON objects: `(new
/// values, old values)`. A field present on one side only counts as changed
/// (the other side is `null`). A new record (`before` is `None`) has every
/// field with a value and no before-image; so has an update that changed
/// nothing.
fn diff(before: Option<&FieldTexts>, after: &FieldTexts) -> (String, Option<String>) {
    let Some(before) = before else {
        return (
            texts::object(after.iter().filter(|(_, text)| *text != texts::NULL)),
            None,
        );
    };
    let mut changed: Vec<(&str, &[u8], &[u8])> = after
        .iter()
        .filter_map(|(name, text)| {
            let was = before.get(name).unwrap_or(texts::NULL);
            (was != text).then_some((name, text, was))
        })
        .collect();
    changed.extend(
        before
            .iter()
            .filter(|(name, _)| after.get(name).is_none())
            .map(|(name, was)| (name, texts::NULL, was)),
    );
    if changed.is_empty() {
        return ("{}".to_owned(), None);
    }
    let fields = texts::object(changed.iter().map(|&(name, now, _)| (name, now)));
    let previous = texts::object(changed.iter().map(|&(name, _, was)| (name, was)));
    (fields, Some(previous))
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

    #[derive(Serialize)]
    struct Record {
        id: u32,
        name: &'static str,
        tags: Vec<&'static str>,
        phone: Option<&'static str>,
        same: bool,
    }

    fn texts(r: &Record) -> FieldTexts {
        FieldTexts::of(r, &["id"]).expect("texts")
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("JSON")
    }

    #[test]
    fn diff_reports_changed_set_and_cleared_fields_only() {
        let before = Record {
            id: 1,
            name: "A",
            tags: vec!["x"],
            phone: Some("1"),
            same: true,
        };
        let after = Record {
            id: 2,
            name: "B",
            tags: vec!["x", "y"],
            phone: None,
            same: true,
        };
        let (changed, previous) = diff(Some(&texts(&before)), &texts(&after));
        assert_eq!(
            parse(&changed),
            json!({"name": "B", "tags": ["x", "y"], "phone": null})
        );
        assert_eq!(
            parse(&previous.expect("before-image")),
            json!({"name": "A", "tags": ["x"], "phone": "1"})
        );
    }

    #[test]
    fn diff_of_a_create_has_every_value_and_no_before_image() {
        let new = Record {
            id: 1,
            name: "A \"quoted\"",
            tags: vec![],
            phone: None,
            same: false,
        };
        let (changed, previous) = diff(None, &texts(&new));
        assert_eq!(
            parse(&changed),
            json!({"name": "A \"quoted\"", "tags": [], "same": false})
        );
        assert!(previous.is_none());
    }

    #[test]
    fn diff_of_equal_records_is_empty() {
        let r = Record {
            id: 1,
            name: "A",
            tags: vec!["x"],
            phone: Some("1"),
            same: true,
        };
        let (changed, previous) = diff(Some(&texts(&r)), &texts(&r));
        assert_eq!(parse(&changed), json!({}));
        assert!(previous.is_none());
    }

    #[test]
    fn a_record_built_from_texts_equals_the_value_of_its_fields() {
        let r = Record {
            id: 7,
            name: "Ünïcode\n",
            tags: vec!["a", "b"],
            phone: Some("+91"),
            same: true,
        };
        let (changed, _) = diff(None, &texts(&r));
        assert_eq!(parse(&changed), fields_of(&r, &["id"]).expect("value"));
    }
}
