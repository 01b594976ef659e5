//! Per-customer metrics: visits, total spent net of refunds, average bill,
//! first and last visit. They are moved by the same transaction as the bill
//! that changes them and read with one primary-key lookup; nothing scans
//! bills on read. [`from_bills`] recomputes them from the bills, for the rare
//! writes that cannot move them incrementally (voiding a paid bill, merging)
//! and for `verify`.

use rusqlite::{named_params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bills::{Bill, BillKind, BillStatus};
use crate::error::Result;
use crate::money::div_round;
use crate::store::{Store, Writer};

/// The stored metrics of one customer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Paid sales (refunded ones included: the customer came).
    pub visits: i64,
    /// Paid sales minus refunds, in minor units.
    pub total_spent: i64,
    /// First paid sale, ms since the Unix epoch.
    pub first_visit_ms: Option<i64>,
    /// Last paid sale.
    pub last_visit_ms: Option<i64>,
}

/// A customer's metrics as the app shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSummary {
    /// The customer (the survivor, if the id asked for was merged away).
    pub customer_id: Uuid,
    /// Paid sales.
    pub visits: i64,
    /// Paid sales minus refunds, in minor units.
    pub total_spent: i64,
    /// `total_spent / visits`, rounded half away from zero; 0 without visits.
    pub average_bill: i64,
    /// First paid sale.
    pub first_visit_ms: Option<i64>,
    /// Last paid sale.
    pub last_visit_ms: Option<i64>,
    /// ISO 4217 code of the amounts.
    pub currency: String,
}

/// Reads the stored metrics of `customer_id` (zero when none).
pub(crate) fn stored(conn: &Connection, customer_id: &str) -> Result<Metrics> {
    Ok(conn
        .prepare_cached(
            "SELECT visits, total_spent, first_visit, last_visit FROM customer_metrics
             WHERE customer_id = ?1",
        )?
        .query_row([customer_id], |r| metrics_at(r, 0))
        .optional()?
        .unwrap_or_default())
}

/// The metrics of a customer's bills, as SQL aggregates over `bills`
/// (named parameters `:sale` and `:refund` bind the bill kinds).
const AGGREGATES: &str = "
    COALESCE(SUM(CASE WHEN kind = :sale AND status IN ('paid', 'partly_refunded', 'refunded')
                      THEN 1 END), 0),
    COALESCE(SUM(CASE WHEN kind = :sale AND status IN ('paid', 'partly_refunded', 'refunded')
                      THEN total
                      WHEN kind = :refund AND status = 'paid' THEN -total END), 0),
    MIN(CASE WHEN kind = :sale AND status IN ('paid', 'partly_refunded', 'refunded')
             THEN closed_at END),
    MAX(CASE WHEN kind = :sale AND status IN ('paid', 'partly_refunded', 'refunded')
             THEN closed_at END)";

fn metrics_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Metrics> {
    Ok(Metrics {
        visits: r.get(first)?,
        total_spent: r.get(first + 1)?,
        first_visit_ms: r.get(first + 2)?,
        last_visit_ms: r.get(first + 3)?,
    })
}

/// What the bills of `customer_id` say the metrics are.
pub(crate) fn from_bills(conn: &Connection, customer_id: &str) -> Result<Metrics> {
    let sql = format!("SELECT {AGGREGATES} FROM bills WHERE customer_id = :customer");
    Ok(conn.prepare_cached(&sql)?.query_row(
        named_params! {
            ":sale": BillKind::Sale.as_str(),
            ":refund": BillKind::Refund.as_str(),
            ":customer": customer_id,
        },
        |r| metrics_at(r, 0),
    )?)
}

/// Every customer whose stored metrics differ from what their bills say:
/// `(customer_id, stored, from_bills)`.
pub(crate) fn mismatches(conn: &Connection) -> Result<Vec<(String, Metrics, Metrics)>> {
    let sql = format!(
        "WITH computed AS (
             SELECT customer_id, {AGGREGATES} FROM bills
             WHERE customer_id IS NOT NULL GROUP BY customer_id),
         ids AS (SELECT customer_id FROM computed UNION SELECT customer_id FROM customer_metrics)
         SELECT ids.customer_id,
                m.visits, m.total_spent, m.first_visit, m.last_visit,
                c.*
         FROM ids
         LEFT JOIN customer_metrics m ON m.customer_id = ids.customer_id
         LEFT JOIN computed c ON c.customer_id = ids.customer_id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        named_params! { ":sale": BillKind::Sale.as_str(), ":refund": BillKind::Refund.as_str() },
        |r| {
            let stored = Metrics {
                visits: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                total_spent: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                first_visit_ms: r.get(3)?,
                last_visit_ms: r.get(4)?,
            };
            let computed = Metrics {
                visits: r.get::<_, Option<i64>>(6)?.unwrap_or(0),
                total_spent: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
                first_visit_ms: r.get(8)?,
                last_visit_ms: r.get(9)?,
            };
            Ok((r.get::<_, String>(0)?, stored, computed))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (id, stored, computed) = row?;
        if stored != computed {
            out.push((id, stored, computed));
        }
    }
    Ok(out)
}

fn save(w: &Writer<'_>, customer_id: &str, m: &Metrics) -> Result<()> {
    w.tx.prepare_cached(
        "INSERT INTO customer_metrics (customer_id, visits, total_spent, first_visit, last_visit)
         VALUES (:id, :visits, :spent, :first, :last)
         ON CONFLICT (customer_id) DO UPDATE SET visits = excluded.visits,
             total_spent = excluded.total_spent, first_visit = excluded.first_visit,
             last_visit = excluded.last_visit",
    )?
    .execute(named_params! {
        ":id": customer_id,
        ":visits": m.visits,
        ":spent": m.total_spent,
        ":first": m.first_visit_ms,
        ":last": m.last_visit_ms,
    })?;
    Ok(())
}

/// A paid sale of `total` at `at_ms`.
pub(crate) fn add_sale(w: &Writer<'_>, customer_id: &str, total: i64, at_ms: i64) -> Result<()> {
    w.tx.prepare_cached(
        "INSERT INTO customer_metrics (customer_id, visits, total_spent, first_visit, last_visit)
         VALUES (:id, 1, :total, :at, :at)
         ON CONFLICT (customer_id) DO UPDATE SET visits = visits + 1,
             total_spent = total_spent + excluded.total_spent,
             first_visit = MIN(COALESCE(first_visit, excluded.first_visit), excluded.first_visit),
             last_visit = MAX(COALESCE(last_visit, excluded.last_visit), excluded.last_visit)",
    )?
    .execute(named_params! { ":id": customer_id, ":total": total, ":at": at_ms })?;
    Ok(())
}

/// A refund of `amount` to the customer.
pub(crate) fn add_refund(w: &Writer<'_>, customer_id: &str, amount: i64) -> Result<()> {
    w.tx.prepare_cached(
        "INSERT INTO customer_metrics (customer_id, visits, total_spent) VALUES (:id, 0, -:amount)
         ON CONFLICT (customer_id) DO UPDATE SET total_spent = total_spent - :amount",
    )?
    .execute(named_params! { ":id": customer_id, ":amount": amount })?;
    Ok(())
}

/// Adds `bill`, new to this store, to its customer's metrics: what
/// [`AGGREGATES`] say of that one bill (a paid sale, refunded since or not,
/// is a visit at its close; a paid refund takes its total back), merged into
/// the stored ones without reading the customer's other bills.
pub(crate) fn add_bill(w: &Writer<'_>, bill: &Bill) -> Result<()> {
    let Some(customer) = bill.customer_id.map(|c| c.to_string()) else {
        return Ok(());
    };
    let counted = matches!(
        bill.status,
        BillStatus::Paid | BillStatus::PartlyRefunded | BillStatus::Refunded
    );
    match (bill.kind, bill.closed_at_ms) {
        (BillKind::Sale, Some(at)) if counted => add_sale(w, &customer, bill.total, at),
        // A paid sale without a close time has no visit time: the aggregates
        // over its bills say what the metrics are.
        (BillKind::Sale, None) if counted => recompute(w, &customer),
        (BillKind::Refund, _) if bill.status == BillStatus::Paid => {
            add_refund(w, &customer, bill.total)
        }
        _ => Ok(()),
    }
}

/// Recomputes every customer's metrics from the bills, in one pass: after a
/// bootstrap wrote bills without moving metrics one by one.
pub(crate) fn recompute_all(w: &Writer<'_>) -> Result<()> {
    w.tx.execute("DELETE FROM customer_metrics", [])?;
    let sql = format!(
        "INSERT INTO customer_metrics (customer_id, visits, total_spent, first_visit, last_visit)
         SELECT customer_id, {AGGREGATES} FROM bills
         WHERE customer_id IS NOT NULL GROUP BY customer_id"
    );
    w.tx.prepare(&sql)?.execute(named_params! {
        ":sale": BillKind::Sale.as_str(),
        ":refund": BillKind::Refund.as_str(),
    })?;
    Ok(())
}

/// Recomputes the metrics of `customer_id` from its bills.
pub(crate) fn recompute(w: &Writer<'_>, customer_id: &str) -> Result<()> {
    let m = from_bills(&w.tx, customer_id)?;
    save(w, customer_id, &m)
}

/// The summary the app shows for stored metrics `m` of `customer_id`.
pub(crate) fn summary(customer_id: Uuid, m: &Metrics, currency: &str) -> CustomerSummary {
    CustomerSummary {
        customer_id,
        visits: m.visits,
        total_spent: m.total_spent,
        average_bill: if m.visits > 0 {
            div_round(i128::from(m.total_spent), i128::from(m.visits))
        } else {
            0
        },
        first_visit_ms: m.first_visit_ms,
        last_visit_ms: m.last_visit_ms,
        currency: currency.to_owned(),
    }
}

impl Store {
    /// Visits, spend and visit dates of a customer; one indexed read.
    pub fn customer_summary(&self, customer_id: Uuid) -> Result<CustomerSummary> {
        let (id, m) = self.read(|conn| {
            let id = crate::customers::resolve_live(conn, customer_id)?;
            Ok((id, stored(conn, &id.to_string())?))
        })?;
        Ok(summary(id, &m, self.currency().code()))
    }
}
