//! `Store::verify`: a full consistency check of a store file, for support
//! staff and for tests that kill the process mid-write. It reads everything
//! once and reports every problem it finds instead of stopping at the first.

use serde::Serialize;

use crate::bills::{chain, ChainProblem};
use crate::customers::{Customer, COLUMNS};
use crate::error::Result;
use crate::metrics::{self, Metrics};
use crate::search::fts;
use crate::store::{read_snapshot, Store};
use crate::sync::deferred;

/// One inconsistency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// SQLite's own check of the file failed.
    Integrity {
        /// What `PRAGMA quick_check` said.
        detail: String,
    },
    /// A customer's stored metrics differ from what their bills say.
    Metrics {
        /// The customer.
        customer_id: String,
        /// As stored.
        stored: Metrics,
        /// As the bills say.
        from_bills: Metrics,
    },
    /// The bill chain or number sequence is broken.
    Chain(ChainProblem),
    /// Lines of a bill that does not exist.
    OrphanLines {
        /// The missing bill's rowid.
        bill_rid: i64,
    },
    /// Payments of a bill that does not exist.
    OrphanPayments {
        /// The missing bill's rowid.
        bill_rid: i64,
    },
    /// A live customer's search row is missing or differs from the customer.
    SearchRowStale {
        /// The customer's number.
        number: String,
    },
    /// A search row without a live customer behind it.
    SearchRowOrphan {
        /// The row's id.
        rowid: i64,
    },
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Customers checked.
    pub customers_checked: u64,
    /// Bills in the hash chain checked.
    pub bills_checked: u64,
    /// Every problem found; empty when the store is consistent.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Checks the whole store: SQLite integrity, metrics against bills, the
    /// bill chain and numbers, orphan lines and payments, search rows.
    pub fn verify(&self) -> Result<VerifyReport> {
        // A fresh connection: FTS5's integrity check in `quick_check` can
        // misreport on a pooled reader whose cached index structure predates
        // the last writes. Every check reads the same commit, so a write
        // landing meanwhile (a pull, a sale) cannot look like a mismatch.
        read_snapshot(&mut self.open_reader()?, |conn| {
            let mut report = VerifyReport::default();
            let identity = &self.settings.identity;
            let chain = chain::verify(conn, &identity.store, &identity.device)?;
            report.bills_checked = chain.bills_checked;
            let mut quick = conn.prepare("PRAGMA quick_check")?;
            for detail in quick.query_map([], |r| r.get::<_, String>(0))? {
                let detail = detail?;
                if detail != "ok" {
                    report.problems.push(Problem::Integrity { detail });
                }
            }

            for (customer_id, stored, from_bills) in metrics::mismatches(conn)? {
                report.problems.push(Problem::Metrics {
                    customer_id,
                    stored,
                    from_bills,
                });
            }
            report
                .problems
                .extend(chain.problems.into_iter().map(Problem::Chain));

            for (table, orphan) in [
                (
                    "bill_lines",
                    (|bill_rid| Problem::OrphanLines { bill_rid }) as fn(i64) -> Problem,
                ),
                ("bill_payments", |bill_rid| Problem::OrphanPayments {
                    bill_rid,
                }),
            ] {
                let mut stmt = conn.prepare(&format!(
                    "SELECT DISTINCT bill_rid FROM {table} WHERE bill_rid NOT IN (SELECT rid FROM bills)"
                ))?;
                for rid in stmt.query_map([], |r| r.get(0))? {
                    report.problems.push(orphan(rid?));
                }
            }

            let mut customers = conn.prepare(&format!(
                "SELECT {COLUMNS}, f_name, f_number, f_phone, f_email
                 FROM customers LEFT JOIN (
                     SELECT rowid AS f_rid, name AS f_name, number AS f_number,
                            phone AS f_phone, email AS f_email
                     FROM customers_fts) ON f_rid = customers.rid"
            ))?;
            let mut rows = customers.query([])?;
            while let Some(row) = rows.next()? {
                let (_, customer): (i64, Customer) = Customer::from_row(row)?;
                let indexed: Option<(String, String, String, String)> =
                    match row.get::<_, Option<String>>(26)? {
                        Some(name) => Some((name, row.get(27)?, row.get(28)?, row.get(29)?)),
                        None => None,
                    };
                let expected = customer.is_live().then(|| fts::row_of(&customer));
                if indexed != expected {
                    report.problems.push(Problem::SearchRowStale {
                        number: customer.number,
                    });
                }
                report.customers_checked += 1;
            }
            let mut extra = conn.prepare(
                "SELECT rowid FROM customers_fts WHERE rowid NOT IN
                 (SELECT rid FROM customers WHERE deleted_at IS NULL AND merged_into IS NULL)",
            )?;
            for rowid in extra.query_map([], |r| r.get(0))? {
                report
                    .problems
                    .push(Problem::SearchRowOrphan { rowid: rowid? });
            }
            // The digit keys (phones, numbers) of live customers, and no
            // others; none yet while a first bootstrap defers them.
            let (stale, orphans) = if deferred::digits_deferred(conn)? {
                (Vec::new(), Vec::new())
            } else {
                fts::check_digits(conn)?
            };
            for number in stale {
                let problem = Problem::SearchRowStale { number };
                if !report.problems.contains(&problem) {
                    report.problems.push(problem);
                }
            }
            for rowid in orphans {
                let problem = Problem::SearchRowOrphan { rowid };
                if !report.problems.contains(&problem) {
                    report.problems.push(problem);
                }
            }
            Ok(report)
        })
    }
}
