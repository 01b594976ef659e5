//! The raw baseline Till's sales are measured against: a bill and its lines
//! in plain SQLite (WAL, `synchronous=NORMAL`, SQLite's defaults otherwise,
//! 4,096-byte pages like Till's), written with prepared statements, one
//! transaction each. No metrics, no change log, no chain, no validation.
//! Shared by the store bench and `examples/sale_profile.rs`.

use std::path::Path;

use rusqlite::{params, Connection, TransactionBehavior};
use till_core::NewLine;
use uuid::Uuid;

/// What lines come to before tax rounding: near enough to hand over cash for.
pub fn gross(lines: &[NewLine]) -> i64 {
    lines
        .iter()
        .map(|l| l.qty_milli * l.unit_price / 1_000 - l.discount)
        .sum()
}

/// A plain bills + lines file.
pub struct RawStore {
    pub conn: Connection,
    next_number: u64,
}

impl RawStore {
    /// Opens the file at `path`, creating its tables when new.
    pub fn open(path: &Path) -> rusqlite::Result<RawStore> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS bills (
                 rid         INTEGER PRIMARY KEY,
                 id          TEXT NOT NULL UNIQUE,
                 number      TEXT NOT NULL,
                 customer_id TEXT,
                 total       INTEGER NOT NULL,
                 tender      TEXT NOT NULL,
                 opened_at   INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS lines (
                 bill_rid     INTEGER NOT NULL,
                 line_no      INTEGER NOT NULL,
                 product_code TEXT NOT NULL,
                 name         TEXT NOT NULL,
                 qty_milli    INTEGER NOT NULL,
                 unit_price   INTEGER NOT NULL,
                 discount     INTEGER NOT NULL,
                 tax_rate_bp  INTEGER NOT NULL,
                 PRIMARY KEY (bill_rid, line_no)
             ) WITHOUT ROWID;",
        )?;
        let next_number = conn.query_row("SELECT count(*) FROM bills", [], |r| r.get(0))?;
        Ok(RawStore { conn, next_number })
    }

    /// Writes one bill with its lines in one transaction.
    pub fn write(&mut self, customer: Option<&str>, lines: &[NewLine]) -> rusqlite::Result<()> {
        self.next_number += 1;
        let opened_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            tx.prepare_cached(
                "INSERT INTO bills (id, number, customer_id, total, tender, opened_at)
                 VALUES (?1, ?2, ?3, ?4, 'cash', ?5)",
            )?
            .execute(params![
                Uuid::now_v7().to_string(),
                format!("S01-T01-{:06}", self.next_number),
                customer,
                gross(lines),
                opened_at
            ])?;
            let rid = tx.last_insert_rowid();
            let mut insert = tx.prepare_cached(
                "INSERT INTO lines (bill_rid, line_no, product_code, name, qty_milli,
                     unit_price, discount, tax_rate_bp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (i, l) in lines.iter().enumerate() {
                insert.execute(params![
                    rid,
                    i + 1,
                    l.product_code,
                    l.name,
                    l.qty_milli,
                    l.unit_price,
                    l.discount,
                    l.tax_rate_bp
                ])?;
            }
        }
        tx.commit()
    }
}
