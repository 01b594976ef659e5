//! The transactional search rows of customers in SQLite FTS5: one row per
//! live customer in `customers_fts` (name, number, phone, email words) and
//! one in `customers_digits` (trigrams of phone digits and the customer
//! number), keyed by the customer's rowid and rewritten with every change of
//! the customer, so they commit (or roll back) with the data. A customer is
//! findable by phone digits, number and name prefix the instant its write
//! commits, whatever state the ranked index is in.
//!
//! Queries here are built from [`Query`] terms, which are plain ASCII
//! letters and digits: nothing a user typed reaches the FTS5 query syntax.

use rusqlite::{params, Connection};

use super::query::{Query, Term};
use crate::customers::{Customer, COLUMNS};
use crate::error::Result;

/// Most candidates one FTS query hands to the judge.
pub(crate) const CANDIDATES_MAX: usize = 200;
/// Shortest text the trigram tokenizer can find.
const TRIGRAM_MIN: usize = 3;

/// The text of the FTS row of `c`: (name, number, phone digits, email).
pub(crate) fn row_of(c: &Customer) -> (String, String, String, String) {
    let email = c
        .email
        .as_ref()
        .map(|e| e.canonical.clone())
        .unwrap_or_default();
    (c.name.clone(), c.number.clone(), phone_digits(c), email)
}

/// Digits of the canonical and the as-typed phone, space-separated.
fn phone_digits(c: &Customer) -> String {
    c.phone
        .as_ref()
        .map(|p| {
            format!(
                "{} {}",
                super::query::digits(&p.e164),
                super::query::digits(&p.raw)
            )
        })
        .unwrap_or_default()
}

/// The customer number as the digits table holds it: folded words.
fn number_text(c: &Customer) -> String {
    super::query::words(&c.number).collect::<Vec<_>>().join(" ")
}

/// Replaces the FTS rows of customer `rid`; a customer no longer live has none.
pub(crate) fn index_customer(conn: &Connection, rid: i64, c: &Customer) -> Result<()> {
    conn.prepare_cached("DELETE FROM customers_fts WHERE rowid = ?1")?
        .execute([rid])?;
    conn.prepare_cached("DELETE FROM customers_digits WHERE rowid = ?1")?
        .execute([rid])?;
    if c.is_live() {
        let (name, number, phone, email) = row_of(c);
        conn.prepare_cached(
            "INSERT INTO customers_fts (rowid, name, number, phone, email) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![rid, name, number, phone, email])?;
        insert_digits(conn, rid, c)?;
    }
    Ok(())
}

fn insert_digits(conn: &Connection, rid: i64, c: &Customer) -> Result<()> {
    conn.prepare_cached("INSERT INTO customers_digits (rowid, phone, number) VALUES (?1, ?2, ?3)")?
        .execute(params![rid, phone_digits(c), number_text(c)])?;
    Ok(())
}

/// Fills `customers_digits` from the live customers (the v1 -> v2 upgrade).
pub(crate) fn reindex_digits(conn: &Connection) -> Result<()> {
    conn.execute("DELETE FROM customers_digits", [])?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM customers WHERE deleted_at IS NULL AND merged_into IS NULL"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (rid, c) = Customer::from_row(row)?;
        insert_digits(conn, rid, &c)?;
    }
    Ok(())
}

fn rowids(conn: &Connection, sql: &str, fts_query: &str) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params![fts_query, CANDIDATES_MAX as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(rows)
}

/// Customers whose phone digits or number contain a digit term (or whose
/// number contains a word with digits, like `c000042`), newest rows first.
pub(crate) fn by_digits(conn: &Connection, query: &Query) -> Result<Vec<i64>> {
    let mut parts = Vec::new();
    for term in &query.terms {
        match term {
            Term::Digits { text, variants } => {
                for d in std::iter::once(text).chain(variants) {
                    if d.len() >= TRIGRAM_MIN {
                        parts.push(format!("phone : \"{d}\""));
                        parts.push(format!("number : \"{d}\""));
                    }
                }
            }
            Term::Word { text, .. } => {
                if text.len() >= TRIGRAM_MIN && text.bytes().any(|b| b.is_ascii_digit()) {
                    parts.push(format!("number : \"{text}\""));
                }
            }
        }
    }
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    rowids(
        conn,
        "SELECT rowid FROM customers_digits WHERE customers_digits MATCH ?1
         ORDER BY rowid DESC LIMIT ?2",
        &parts.join(" OR "),
    )
}

/// Customers with a word starting with every word term: the fallback when
/// the ranked index is not usable (missing, rebuilding, failed).
pub(crate) fn by_word_prefixes(conn: &Connection, query: &Query) -> Result<Vec<i64>> {
    let parts: Vec<String> = query
        .words()
        .map(|(text, _)| format!("\"{text}\"*"))
        .collect();
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    rowids(
        conn,
        "SELECT rowid FROM customers_fts WHERE customers_fts MATCH ?1
         ORDER BY rowid DESC LIMIT ?2",
        &parts.join(" AND "),
    )
}

/// The live customer with rowid `rid`, if any.
pub(crate) fn live_customer(conn: &Connection, rid: i64) -> Result<Option<Customer>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM customers
             WHERE rid = ?1 AND deleted_at IS NULL AND merged_into IS NULL"
        ))?
        .query_row([rid], Customer::from_row)
        .optional()?
        .map(|(_, c)| c))
}
