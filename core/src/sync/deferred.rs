//! Lookup structures a fresh device's bootstrap builds once, after its last
//! page, instead of record by record.
//!
//! A bootstrap writes every record of the device's scope (a million bills)
//! in pages of thousands. Most indexes grow at their end as it does (bills
//! and customers come in id order), but a bill's customer, a customer's
//! name and the digit keys of phone search are random: each page touched
//! most of those structures' pages, and its commit wrote them all to the WAL
//! again. Built once from the finished tables, each of their pages is
//! written once: a new till bootstrapping 100,000 customers and 1,000,000
//! bills took 35.6-42.2 s with them maintained page by page, 24.4-24.6 s
//! with them built at the end (`TILL_SYNC_BENCH_ONLY=bootstrap cargo bench
//! -p till-sync-server --bench sync`). Building the index sorts in memory:
//! the till's peak during the sync went from 129-132 MB to 191-206 MB.
//!
//! Only a store holding no customer and no bill defers them: nothing local
//! needs them while the bootstrap runs. They are dropped in the transaction
//! of the bootstrap's first page, each index's definition kept in `meta`,
//! and built in the transaction of its last page, so a bootstrap cut short
//! and resumed, or started again on a new snapshot, still builds them. Until
//! then the store is not caught up anyway: reads that would use the indexes
//! scan instead, and phone search by a part of the number finds nobody.

use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;
use crate::search::fts;
use crate::store::Writer;

/// The indexes deferred, keyed by something random in bootstrap order.
const INDEXES: [&str; 2] = ["bills_by_customer", "customers_by_name"];

/// The `meta` key prefix of a deferred index's definition.
pub(crate) const INDEX_KEY: &str = "deferred_index:";

/// The `meta` key marking phone-search digit keys as deferred.
const DIGITS_KEY: &str = "deferred_digits";

/// Defers the structures when the store holds no customer and no bill.
pub(crate) fn begin_if_empty(w: &Writer<'_>) -> Result<()> {
    let empty: bool = w.tx.query_row(
        "SELECT NOT EXISTS (SELECT 1 FROM customers) AND NOT EXISTS (SELECT 1 FROM bills)",
        [],
        |r| r.get(0),
    )?;
    if !empty {
        return Ok(());
    }
    for name in INDEXES {
        let sql: Option<String> =
            w.tx.query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(sql) = sql {
            w.tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                [format!("{INDEX_KEY}{name}"), sql],
            )?;
            w.tx.execute_batch(&format!("DROP INDEX {name}"))?;
        }
    }
    w.tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, '1') ON CONFLICT (key) DO NOTHING",
        [DIGITS_KEY],
    )?;
    Ok(())
}

/// Whether phone-search digit keys are deferred: customer writes then
/// leave them to [`finish`], and `verify` does not hold their absence
/// against the store.
pub(crate) fn digits_deferred(conn: &Connection) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM meta WHERE key = ?1",
            [DIGITS_KEY],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Replaces index `name` with the one `sql` creates: at once, or, while a
/// bootstrap defers it, as the definition its last page builds.
pub(crate) fn replace_index(conn: &Connection, name: &str, sql: &str) -> Result<()> {
    let deferred = conn.execute(
        "UPDATE meta SET value = ?2 WHERE key = ?1",
        [format!("{INDEX_KEY}{name}").as_str(), sql],
    )?;
    if deferred == 0 {
        conn.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))?;
        conn.execute_batch(sql)?;
    }
    Ok(())
}

/// Builds whatever is deferred.
pub(crate) fn finish(w: &Writer<'_>) -> Result<()> {
    let indexes =
        w.tx.prepare("SELECT key, value FROM meta WHERE key > ?1 AND key < ?2")?
            .query_map([INDEX_KEY, &format!("{INDEX_KEY}\u{7f}")], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
    for (key, sql) in indexes {
        w.tx.execute_batch(&sql)?;
        w.tx.execute("DELETE FROM meta WHERE key = ?1", [key])?;
    }
    if w.tx
        .execute("DELETE FROM meta WHERE key = ?1", [DIGITS_KEY])?
        > 0
    {
        fts::reindex_digits(&w.tx)?;
    }
    Ok(())
}
