//! The FTS5 rows of customers: one per live customer, keyed by the
//! customer's rowid, rewritten with every change of the customer so the
//! index commits (or rolls back) with the data.

use rusqlite::{params, Connection};

use crate::customers::Customer;
use crate::error::Result;

/// The text of the FTS row of `c`: (name, number, phone digits, email).
pub(crate) fn row_of(c: &Customer) -> (String, String, String, String) {
    let phone = c
        .phone
        .as_ref()
        .map(|p| {
            let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
            format!("{} {}", digits(&p.e164), digits(&p.raw))
        })
        .unwrap_or_default();
    let email = c
        .email
        .as_ref()
        .map(|e| e.canonical.clone())
        .unwrap_or_default();
    (c.name.clone(), c.number.clone(), phone, email)
}

/// Replaces the FTS row of customer `rid`; a customer no longer live has none.
pub(crate) fn index_customer(conn: &Connection, rid: i64, c: &Customer) -> Result<()> {
    conn.prepare_cached("DELETE FROM customers_fts WHERE rowid = ?1")?
        .execute([rid])?;
    if c.is_live() {
        let (name, number, phone, email) = row_of(c);
        conn.prepare_cached(
            "INSERT INTO customers_fts (rowid, name, number, phone, email) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![rid, name, number, phone, email])?;
    }
    Ok(())
}
