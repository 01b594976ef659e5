//! A customer's data export (GDPR access request).
//!
//! The document has a stable top-level shape, versioned by
//! [`EXPORT_VERSION`]: `format`, `version`, `exported_at_ms`, `customer`,
//! `other_fields` (version 2: fields of the customer a newer app wrote,
//! which this build keeps without knowing them), `metrics`, `bills` (each
//! with its lines and payments, oldest first) and `history` (the customer's
//! change log, oldest first). Later versions only add fields.
//!
//! Everything is read in one read transaction, so the sections agree with
//! each other even while the till keeps selling. Deleted, merged and erased
//! customers are exported as stored: a person may ask after deletion. A
//! merged-away customer's bills have moved to the survivor; export the
//! survivor too.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bills::{self, Bill};
use crate::changes::{self, Change};
use crate::customers::{self, Customer};
use crate::error::{Entity, Error, Result};
use crate::metrics::{self, CustomerSummary};
use crate::store::{now_ms, Store};

/// The `format` of a customer export.
pub const EXPORT_FORMAT: &str = "till.customer-export";
/// The `version` of the export format this build writes.
pub const EXPORT_VERSION: u32 = 2;

/// Everything the store holds about one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerExport {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// [`EXPORT_VERSION`] when written by this build.
    pub version: u32,
    /// When the export was made, ms since the Unix epoch.
    pub exported_at_ms: i64,
    /// The customer record as stored (deleted, merged or erased included).
    pub customer: Customer,
    /// Fields of the customer a newer app wrote: kept, not understood, and
    /// the person's data all the same.
    #[serde(default)]
    pub other_fields: serde_json::Map<String, serde_json::Value>,
    /// Visits, spend and visit dates.
    pub metrics: CustomerSummary,
    /// Every bill of the customer, oldest first, with lines and payments.
    pub bills: Vec<Bill>,
    /// The customer's change history, oldest first.
    pub history: Vec<Change>,
}

/// Reads the export of `id` on `conn`, which holds a read transaction open.
fn collect(conn: &Connection, id: Uuid, currency: &str) -> Result<CustomerExport> {
    let key = id.to_string();
    let (_, customer) = conn
        .prepare_cached(&format!(
            "SELECT {} FROM customers WHERE id = ?1",
            customers::COLUMNS
        ))?
        .query_row([&key], Customer::from_row)
        .optional()?
        .ok_or_else(|| Error::not_found(Entity::Customer, id))?;
    let stored = metrics::stored(conn, &key)?;
    let extra: String = conn
        .prepare_cached("SELECT extra FROM customers WHERE id = ?1")?
        .query_row([&key], |r| r.get(0))?;

    let mut bills = Vec::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM bills WHERE customer_id = ?1 ORDER BY opened_at, rid",
        bills::COLUMNS
    ))?;
    for row in stmt.query_map([&key], Bill::from_row)? {
        let (rid, mut bill) = row?;
        bills::load_children(conn, rid, &mut bill)?;
        bills.push(bill);
    }

    Ok(CustomerExport {
        format: EXPORT_FORMAT.to_owned(),
        version: EXPORT_VERSION,
        exported_at_ms: now_ms(),
        metrics: metrics::summary(customer.id, &stored, currency),
        customer,
        other_fields: serde_json::from_str(&extra)?,
        bills,
        history: changes::all_of(conn, &key)?,
    })
}

impl Store {
    /// Everything the store holds about customer `id` (deleted and erased
    /// ones included), as pretty-printed JSON in the shape of
    /// [`CustomerExport`]. Unknown ids are [`Error::NotFound`].
    pub fn export_customer(&self, id: Uuid) -> Result<String> {
        let currency = self.currency().code();
        // A read is one snapshot: every section comes from the same commit.
        let export = self.read(|conn| collect(conn, id, currency))?;
        Ok(serde_json::to_string_pretty(&export)?)
    }
}
