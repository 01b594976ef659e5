//! The store's schema as code: `VERSION`, one upgrade step per version, and
//! the guarantee that a file upgraded from any earlier version has exactly the
//! schema of a freshly created one (tested below).
//!
//! The version lives in SQLite's `user_version`. Each step runs in the same
//! transaction as the version bump, so a crash mid-upgrade leaves the old
//! version intact and the upgrade reruns on the next open.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// The schema version this build writes.
pub const VERSION: i64 = 12;

/// Brings the database at `conn` to [`VERSION`], creating it when empty.
/// Foreign keys are off while it runs: an upgrade that rebuilds a table
/// (v5) drops it while other tables point at it, and copies every row with
/// its rowid, so the references hold again when it commits.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    let foreign_keys: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let upgraded = upgrade(conn, found);
    conn.pragma_update(None, "foreign_keys", foreign_keys)?;
    upgraded
}

/// Runs the upgrade steps from version `found`, one transaction each.
fn upgrade(conn: &mut Connection, found: i64) -> Result<()> {
    for version in found..VERSION {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        // Another process may have upgraded while we waited for the lock.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now == version {
            upgrade_from(&tx, version)?;
            tx.pragma_update(None, "user_version", version + 1)?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// Applies the step that takes the schema from `version` to `version + 1`.
fn upgrade_from(conn: &Connection, version: i64) -> Result<()> {
    match version {
        0 => conn.execute_batch(include_str!("v1.sql"))?,
        1 => {
            conn.execute_batch(include_str!("v2.sql"))?;
            // The new index rows of the customers already stored, so an
            // upgraded file finds them exactly as a fresh one would.
            crate::search::fts::reindex_digits(conn)?;
        }
        2 => conn.execute_batch(include_str!("v3.sql"))?,
        3 => conn.execute_batch(include_str!("v4.sql"))?,
        4 => conn.execute_batch(include_str!("v5.sql"))?,
        5 => conn.execute_batch(include_str!("v6.sql"))?,
        6 => conn.execute_batch(include_str!("v7.sql"))?,
        7 => {
            conn.execute_batch(include_str!("v8.sql"))?;
            crate::search::fts::reindex_digits(conn)?;
        }
        8 => {
            conn.execute_batch(include_str!("v9.sql"))?;
            crate::bills::chain::seal_past_voids(conn)?;
        }
        9 => crate::sync::deferred::replace_index(
            conn,
            "bills_by_customer",
            include_str!("v10.sql"),
        )?,
        10 => conn.execute_batch(include_str!("v11.sql"))?,
        // Version 12 only re-keys names: accented ones sorted after `z`.
        11 => crate::customers::rekey_names(conn)?,
        _ => unreachable!("no upgrade step from version {version}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;

    /// Every schema object, normalised, so two databases can be compared.
    fn schema_of(conn: &Connection) -> Vec<(String, String, String)> {
        let mut stmt = conn
            .prepare("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[test]
    fn upgrading_from_every_version_equals_a_fresh_database() {
        let mut fresh = Connection::open_in_memory().expect("open");
        migrate(&mut fresh).expect("fresh");
        for start in 0..VERSION {
            let mut old = Connection::open_in_memory().expect("open");
            for v in 0..start {
                upgrade_from(&old, v).expect("old step");
            }
            old.pragma_update(None, "user_version", start)
                .expect("version");
            migrate(&mut old).expect("upgrade");
            assert_eq!(schema_of(&old), schema_of(&fresh), "upgrade from v{start}");
            let v: i64 = old
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .expect("version");
            assert_eq!(v, VERSION);
        }
    }

    /// A file upgraded to version 10 while a bootstrap defers the history
    /// index keeps it deferred, and the bootstrap's last page builds the
    /// version 10 index, not the one deferred before the upgrade.
    #[test]
    fn an_upgrade_during_a_bootstrap_leaves_the_history_index_to_its_end() {
        let mut fresh = Connection::open_in_memory().expect("open");
        migrate(&mut fresh).expect("fresh");
        let mut conn = Connection::open_in_memory().expect("open");
        for v in 0..9 {
            upgrade_from(&conn, v).expect("old step");
        }
        conn.pragma_update(None, "user_version", 9)
            .expect("version");
        let key = format!("{}bills_by_customer", crate::sync::deferred::INDEX_KEY);
        // As `deferred::begin_if_empty` leaves it.
        conn.execute(
            "INSERT INTO meta (key, value)
             SELECT ?1, sql FROM sqlite_schema WHERE name = 'bills_by_customer'",
            [&key],
        )
        .expect("defer");
        conn.execute_batch("DROP INDEX bills_by_customer")
            .expect("drop");
        migrate(&mut conn).expect("upgrade");
        let built: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'bills_by_customer')",
                [],
                |r| r.get(0),
            )
            .expect("index");
        assert!(!built, "still deferred");
        // What `deferred::finish` runs.
        let sql: String = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                r.get(0)
            })
            .expect("definition");
        conn.execute_batch(&sql).expect("build");
        assert_eq!(schema_of(&conn), schema_of(&fresh));
    }

    /// The upgrade to version 11 finds in the change log the bills moved
    /// off a customer before it: to another customer, or to none.
    #[test]
    fn bills_moved_before_v11_are_found_in_the_change_log() {
        let mut conn = Connection::open_in_memory().expect("open");
        for v in 0..10 {
            upgrade_from(&conn, v).expect("old step");
        }
        conn.pragma_update(None, "user_version", 10)
            .expect("version");
        conn.execute_batch(
            r#"INSERT INTO changes (change_id, entity, entity_id, op, fields, before, hlc,
                                    device_id, staff_id, at)
               VALUES ('c1', 'bill', 'b1', 'open', '{"customer_id":"x","customer_phone":"+91"}',
                       NULL, 'h1', 'S1/T1', 's', 1),
                      ('c2', 'bill', 'b1', 'set_customer', '{"customer_id":"y"}',
                       '{"customer_id":"x"}', 'h2', 'S1/T1', 's', 2),
                      ('c3', 'bill', 'b2', 'pay', '{"status":"paid"}', '{"status":"open"}',
                       'h3', 'S1/T1', 's', 3),
                      ('c4', 'bill', 'b3', 'set_customer', '{"customer_id":null}',
                       '{"customer_id":"z"}', 'h4', 'S1/T1', 's', 4),
                      ('c5', 'customer', 'x', 'update', '{"name":"X"}',
                       '{"customer_id":"q"}', 'h5', 'S1/T1', 's', 5);"#,
        )
        .expect("v10 log");
        migrate(&mut conn).expect("upgrade");
        let moved: Vec<(String, String)> = conn
            .prepare("SELECT customer_id, bill_id FROM bill_past_customers ORDER BY 1, 2")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(
            moved,
            vec![("x".into(), "b1".into()), ("z".into(), "b3".into())]
        );
    }

    #[test]
    fn names_of_a_v11_file_sort_by_their_folded_key_after_upgrade() {
        let mut conn = Connection::open_in_memory().expect("open");
        for v in 0..11 {
            upgrade_from(&conn, v).expect("old step");
        }
        conn.pragma_update(None, "user_version", 11)
            .expect("version");
        conn.execute(
            "INSERT INTO customers (rid, id, number, name, name_key, stage, created_at,
                 updated_at, version)
             VALUES (1, 'c1', 'N1', 'Zoya', 'zoya', 'new', 1, 1, 1),
                    (2, 'c2', 'N2', 'Élodie', 'élodie', 'new', 1, 1, 1)",
            [],
        )
        .expect("customers");
        migrate(&mut conn).expect("upgrade");
        let names: Vec<String> = conn
            .prepare("SELECT name FROM customers ORDER BY name_key, rid")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(names, ["Élodie", "Zoya"]);
    }

    #[test]
    fn customers_of_a_v1_file_are_found_by_digits_after_upgrade() {
        let mut conn = Connection::open_in_memory().expect("open");
        upgrade_from(&conn, 0).expect("v1");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        conn.execute(
            "INSERT INTO customers (rid, id, number, name, name_key, phone_raw, phone_e164,
                 stage, created_at, updated_at, version)
             VALUES (7, '0190a0b2-0000-7000-8000-000000000001', 'S01-T01-C000007', 'Asha Rao',
                 'asha rao', '98765 43210', '+919876543210', 'new', 1, 1, 1),
                    (8, '0190a0b2-0000-7000-8000-000000000002', 'S01-T01-C000008', 'Gone',
                 'gone', '91234 56789', '+919123456789', 'new', 1, 1, 1)",
            [],
        )
        .expect("customers");
        conn.execute("UPDATE customers SET deleted_at = 2 WHERE rid = 8", [])
            .expect("delete");
        migrate(&mut conn).expect("upgrade");
        let found = |column: &str, text: &str| -> Vec<i64> {
            let mut stmt = conn
                .prepare("SELECT rid FROM customers_digits WHERE key = ?1")
                .expect("prepare");
            let kind = if column == "phone" { "p" } else { "n" };
            stmt.query_map([format!("{kind}{text}")], |r| r.get(0))
                .expect("query")
                .collect::<rusqlite::Result<_>>()
                .expect("rows")
        };
        assert_eq!(found("phone", "43210"), vec![7]);
        assert_eq!(found("number", "000007"), vec![7]);
        assert!(
            found("phone", "56789").is_empty(),
            "deleted customers are not indexed"
        );
    }

    #[test]
    fn phone_keys_of_a_v7_file_mark_where_numbers_start_after_upgrade() {
        let mut conn = Connection::open_in_memory().expect("open");
        for v in 0..7 {
            upgrade_from(&conn, v).expect("old step");
        }
        conn.pragma_update(None, "user_version", 7)
            .expect("version");
        // As v7 wrote them: every suffix under 'p', the whole number too.
        conn.execute_batch(
            "INSERT INTO customers (rid, id, number, name, name_key, phone_raw, phone_e164,
                 stage, created_at, updated_at, version)
             VALUES (7, '0190a0b2-0000-7000-8000-000000000001', 'S01-T01-C000007', 'Asha Rao',
                 'asha rao', '98765 43210', '+919876543210', 'new', 1, 1, 1);
             INSERT INTO customers_digits (key, rid)
             VALUES ('p919876543210', 7), ('p9876543210', 7), ('p43210', 7);",
        )
        .expect("v7 rows");
        migrate(&mut conn).expect("upgrade");
        let keys: Vec<String> = conn
            .prepare("SELECT key FROM customers_digits WHERE rid = 7 AND key LIKE 'p%'")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        // LIKE folds case: both letters come back, told apart here.
        assert!(keys.iter().any(|k| k == "P919876543210"), "{keys:?}");
        assert!(keys.iter().any(|k| k == "P9876543210"), "{keys:?}");
        assert!(
            keys.iter().any(|k| k == "p9876543210"),
            "a suffix of +91..."
        );
        assert!(!keys.iter().any(|k| k == "p919876543210"), "{keys:?}");
    }

    #[test]
    fn bills_of_a_v4_file_keep_their_chain_head_and_line_numbers() {
        let mut conn = Connection::open_in_memory().expect("open");
        for v in 0..4 {
            upgrade_from(&conn, v).expect("old step");
        }
        conn.pragma_update(None, "user_version", 4)
            .expect("version");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             INSERT INTO sequences (name, last) VALUES ('bill_number', 2), ('bill_chain', 2);
             INSERT INTO bills (rid, id, number, seq, store_id, device_id, staff_id, currency,
                 price_mode, kind, status, opened_at, chain_pos, prev_hash, hash, version)
             VALUES (1, 'b1', 'S01-T01-000001', 1, 'S01', 'T01', 's', 'INR', 'inclusive',
                     'sale', 'paid', 1, 1, 'g', 'h1', 2),
                    (2, 'b2', 'S01-T01-000002', 2, 'S01', 'T01', 's', 'INR', 'inclusive',
                     'sale', 'paid', 2, 2, 'h1', 'h2', 2);
             INSERT INTO bill_lines (bill_rid, line_no, product_code, name, qty_milli,
                 unit_price, discount, tax_category, tax_rate_bp, bill_discount, net, tax, gross)
             VALUES (1, 1, 'A', 'A', 1000, 1, 0, '', 0, 0, 1, 0, 1),
                    (1, 3, 'C', 'C', 1000, 1, 0, '', 0, 0, 1, 0, 1),
                    (2, 2, 'B', 'B', 1000, 1, 0, '', 0, 0, 1, 0, 1);",
        )
        .expect("v4 rows");
        migrate(&mut conn).expect("upgrade");
        let head: (i64, String) = conn
            .query_row(
                "SELECT last, head FROM sequences WHERE name = 'bill_chain'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("head");
        assert_eq!(head, (2, "h2".to_owned()));
        let last_line: Vec<(i64, i64)> = conn
            .prepare("SELECT rid, last_line_no FROM bills ORDER BY rid")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(last_line, vec![(1, 3), (2, 2)]);
        let lines: i64 = conn
            .query_row("SELECT count(*) FROM bill_lines", [], |r| r.get(0))
            .expect("lines");
        assert_eq!(
            lines, 3,
            "the lines survive the rebuild of their table's parent"
        );
        let fk_on: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .expect("pragma");
        assert!(fk_on, "foreign keys are on again after the upgrade");
        let broken: Option<String> = conn
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .expect("check");
        assert_eq!(broken, None);
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "user_version", VERSION + 1)
            .expect("version");
        let err = migrate(&mut conn).expect_err("must refuse");
        assert!(matches!(err, Error::SchemaTooNew { found, .. } if found == VERSION + 1));
        assert!(schema_of(&conn).is_empty(), "nothing was created");
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("first");
        let before = schema_of(&conn);
        migrate(&mut conn).expect("second");
        assert_eq!(schema_of(&conn), before);
    }
}
