//! The hash chain of a device's bills. A bill joins the chain when it
//! becomes final (paid, voided while open, or written as a refund); its hash
//! covers its money, numbers, lines and tenders plus the previous bill's
//! hash. Together with the gapless numbers this makes a missing, inserted or
//! altered bill detectable on the device and, later, on the server.
//!
//! A final sale's status still moves on, and `verify` holds it to what the
//! chain says: a refund is a bill of its own, chained, so a sale's refunded
//! total must be what its refund bills add up to; a void of a paid sale
//! seals it (`void_seal`: the hash of its hash and when it was voided, on
//! the bill, so it travels with it), so a paid sale turned `voided` in the
//! file, its takings gone from the day, is reported; and a voided open
//! bill turned `paid` has no tenders in its hash.
//!
//! Not covered: the customer link and phone (a merge moves bills to the
//! surviving customer and erasure removes the phone; neither touches money)
//! and what later refunds record on the original's lines.

use std::collections::HashMap;

use rusqlite::{named_params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::model::{Bill, BillKind, BillStatus, Payment, COLUMNS};
use super::{load_children, SEQUENCE};
use crate::error::Result;
use crate::store::Writer;

/// `prev_hash` of the first bill in a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The gapless sequence behind chain positions.
pub(crate) const CHAIN_SEQUENCE: &str = "bill_chain";

#[derive(Serialize)]
struct Content<'a> {
    prev_hash: &'a str,
    id: String,
    number: &'a str,
    store_id: &'a str,
    device_id: &'a str,
    staff_id: &'a str,
    currency: &'a str,
    price_mode: &'a str,
    kind: &'a str,
    refund_of: Option<String>,
    bill_discount: i64,
    subtotal: i64,
    discount_total: i64,
    tax_total: i64,
    total: i64,
    paid_total: i64,
    change_due: i64,
    opened_at_ms: i64,
    closed_at_ms: Option<i64>,
    lines: Vec<LineContent<'a>>,
    payments: &'a [Payment],
}

/// The hashed part of a line: everything but what later refunds record on it.
#[derive(Serialize)]
struct LineContent<'a> {
    line_no: u32,
    product_code: &'a str,
    name: &'a str,
    qty_milli: i64,
    unit_price: i64,
    discount: i64,
    tax_category: &'a str,
    tax_rate_bp: u32,
    bill_discount: i64,
    net: i64,
    tax: i64,
    gross: i64,
    refund_of_line: Option<u32>,
}

/// The hash of `bill` chained after `prev_hash`: SHA-256 of its canonical JSON.
pub(crate) fn hash_of(bill: &Bill, prev_hash: &str) -> Result<String> {
    let content = Content {
        prev_hash,
        id: bill.id.to_string(),
        number: &bill.number,
        store_id: &bill.store_id,
        device_id: &bill.device_id,
        staff_id: &bill.staff_id,
        currency: &bill.currency,
        price_mode: bill.price_mode.as_str(),
        kind: bill.kind.as_str(),
        refund_of: bill.refund_of.map(|r| r.to_string()),
        bill_discount: bill.bill_discount,
        subtotal: bill.subtotal,
        discount_total: bill.discount_total,
        tax_total: bill.tax_total,
        total: bill.total,
        paid_total: bill.paid_total,
        change_due: bill.change_due,
        opened_at_ms: bill.opened_at_ms,
        closed_at_ms: bill.closed_at_ms,
        lines: bill
            .lines
            .iter()
            .map(|l| LineContent {
                line_no: l.line_no,
                product_code: &l.product_code,
                name: &l.name,
                qty_milli: l.qty_milli,
                unit_price: l.unit_price,
                discount: l.discount,
                tax_category: &l.tax_category,
                tax_rate_bp: l.tax_rate_bp,
                bill_discount: l.bill_discount,
                net: l.net,
                tax: l.tax,
                gross: l.gross,
                refund_of_line: l.refund_of_line,
            })
            .collect(),
        payments: &bill.payments,
    };
    digest(&content)
}

/// SHA-256 of `content`'s JSON, in hex: what the chain's hashes are.
fn digest(content: &impl Serialize) -> Result<String> {
    Ok(hex::encode(Sha256::digest(serde_json::to_vec(content)?)))
}

/// The seal of a paid sale's void: the hash of its own hash and the time
/// it was voided.
pub(crate) fn void_seal(bill: &Bill) -> Result<String> {
    #[derive(Serialize)]
    struct Void<'a> {
        void_of: &'a str,
        voided_at_ms: Option<i64>,
    }
    let content = Void {
        void_of: bill.hash.as_deref().unwrap_or_default(),
        voided_at_ms: bill.voided_at_ms,
    };
    digest(&content)
}

/// Whether `bill` reads as a sale voided after it was paid.
pub(crate) fn voided_after_payment(bill: &Bill) -> bool {
    bill.kind == BillKind::Sale && bill.status == BillStatus::Voided && bill.paid_total > 0
}

/// Seals the voids of paid sales made before voids were sealed (schema
/// version 9), so a store upgraded with them verifies.
pub(crate) fn seal_past_voids(conn: &Connection) -> Result<()> {
    let mut voided = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM bills WHERE status = 'voided' AND void_seal IS NULL"
    ))?;
    let mut seal = conn.prepare("UPDATE bills SET void_seal = ?2 WHERE rid = ?1")?;
    for row in voided.query_map([], Bill::from_row)? {
        let (rid, bill) = row?;
        if voided_after_payment(&bill) {
            seal.execute(rusqlite::params![rid, void_seal(&bill)?])?;
        }
    }
    Ok(())
}

/// Appends a final `bill` to the device's chain: sets its position and
/// hashes, and makes it the chain's head. The head (position and hash) is
/// kept in the chain's row of `sequences`, on the page the bill number's
/// counter already dirties: looking the previous bill up by position took
/// a unique index on `chain_pos`, one more page in the WAL of every sale.
pub(crate) fn link(w: &Writer<'_>, bill: &mut Bill) -> Result<()> {
    let (last, head) = chain_head(&w.tx)?;
    let pos = last + 1;
    // A missing head past the start is a broken chain, which verify()
    // reports; the till keeps selling.
    let prev_hash = head.unwrap_or_else(|| GENESIS.to_owned());
    let hash = hash_of(bill, &prev_hash)?;
    w.tx.prepare_cached(
        "INSERT INTO sequences (name, last, head) VALUES (:name, :pos, :hash)
         ON CONFLICT (name) DO UPDATE SET last = excluded.last, head = excluded.head",
    )?
    .execute(named_params! { ":name": CHAIN_SEQUENCE, ":pos": pos, ":hash": hash })?;
    bill.hash = Some(hash);
    bill.prev_hash = Some(prev_hash);
    bill.chain_pos = Some(pos);
    Ok(())
}

/// The chain's last position (0 when empty) and the hash of the bill there.
fn chain_head(conn: &Connection) -> Result<(i64, Option<String>)> {
    Ok(conn
        .prepare_cached("SELECT last, head FROM sequences WHERE name = ?1")?
        .query_row([CHAIN_SEQUENCE], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, None)))
}

/// What is wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChainProblem {
    /// No bill holds this number of the device's sequence: a bill was removed.
    MissingNumber {
        /// The sequence number with no bill.
        seq: i64,
    },
    /// No bill holds this chain position: a final bill was removed.
    MissingLink {
        /// The empty position.
        pos: i64,
    },
    /// The bill's content no longer matches its hash.
    Altered {
        /// The bill's number.
        number: String,
    },
    /// The bill's `prev_hash` is not the hash of the bill before it.
    BrokenLink {
        /// The bill's number.
        number: String,
    },
    /// A final bill that never joined the chain.
    Unchained {
        /// The bill's number.
        number: String,
    },
    /// A paid sale reads voided, but no void sealed it: its status was
    /// changed in the file.
    UnsealedVoid {
        /// The bill's number.
        number: String,
    },
    /// A sale's status or refunded total disagrees with its chained
    /// content: paid without tenders that cover it, or refunded other than
    /// its refund bills say.
    StatusAltered {
        /// The bill's number.
        number: String,
    },
    /// The head the next bill will link to (kept beside the chain's
    /// position) is not the hash of the bill at that position.
    WrongHead {
        /// The position the head claims.
        pos: i64,
    },
}

/// The result of [`crate::Store::verify_chain`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Bills whose hash was checked.
    pub bills_checked: u64,
    /// Everything found wrong; empty when the chain is intact.
    pub problems: Vec<ChainProblem>,
}

impl ChainReport {
    /// True when nothing is wrong.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What is wrong with the status of chained `bill`, given what its refund
/// bills give back (`None`: there are none).
fn status_problem(bill: &Bill, refunds: Option<&i64>) -> Result<Option<ChainProblem>> {
    if bill.kind != BillKind::Sale {
        return Ok(None);
    }
    let number = bill.number.clone();
    if voided_after_payment(bill) && bill.void_seal.as_deref() != Some(void_seal(bill)?.as_str()) {
        return Ok(Some(ChainProblem::UnsealedVoid { number }));
    }
    let refunded = refunds.copied().unwrap_or(0);
    let paid = !matches!(bill.status, BillStatus::Open | BillStatus::Voided);
    let says_refunded = matches!(
        bill.status,
        BillStatus::PartlyRefunded | BillStatus::Refunded
    );
    // A voided sale keeps the refunds another till made before the void
    // reached it (see `sync::conflict::status_may_move`).
    let altered = (paid && bill.paid_total < bill.total)
        || bill.refunded_total != refunded
        || (bill.status != BillStatus::Voided && says_refunded != (refunded > 0));
    Ok(altered.then_some(ChainProblem::StatusAltered { number }))
}

/// Walks this device's bills in number and chain order, recomputing every hash.
pub(crate) fn verify(conn: &Connection, store_id: &str, device_id: &str) -> Result<ChainReport> {
    let mut report = ChainReport::default();

    let last_seq: i64 = conn.query_row(
        "SELECT COALESCE(MAX(last), 0) FROM sequences WHERE name = ?1",
        [SEQUENCE],
        |r| r.get(0),
    )?;
    let mut seqs =
        conn.prepare("SELECT seq FROM bills WHERE store_id = ?1 AND device_id = ?2 ORDER BY seq")?;
    let mut expected = 1;
    for seq in seqs.query_map([store_id, device_id], |r| r.get::<_, i64>(0))? {
        let seq = seq?;
        report
            .problems
            .extend((expected..seq).map(|seq| ChainProblem::MissingNumber { seq }));
        expected = seq + 1;
    }
    report
        .problems
        .extend((expected..=last_seq).map(|seq| ChainProblem::MissingNumber { seq }));

    let mut unchained = conn.prepare(
        "SELECT number FROM bills WHERE store_id = ?1 AND device_id = ?2 AND chain_pos IS NULL
         AND status != ?3 ORDER BY seq",
    )?;
    for number in unchained.query_map([store_id, device_id, BillStatus::Open.as_str()], |r| {
        r.get(0)
    })? {
        report
            .problems
            .push(ChainProblem::Unchained { number: number? });
    }

    // No index orders bills by chain position (a sale would write one more
    // page for it): the positions are sorted here, then each bill is read
    // by its rowid.
    let mut chained = conn.prepare(
        "SELECT rid FROM bills WHERE store_id = :store AND device_id = :device
         AND chain_pos IS NOT NULL ORDER BY chain_pos",
    )?;
    let mut by_rid = conn.prepare(&format!("SELECT {COLUMNS} FROM bills WHERE rid = ?1"))?;
    // What the refund bills there are give back, by the sale they refund.
    let refunds: HashMap<String, i64> = conn
        .prepare(
            "SELECT refund_of, sum(total) FROM bills WHERE kind = 'refund'
             AND refund_of IS NOT NULL GROUP BY refund_of",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut rids = chained.query(named_params! { ":store": store_id, ":device": device_id })?;
    let mut expected_pos = 1;
    let mut prev_hash = GENESIS.to_owned();
    while let Some(row) = rids.next()? {
        let (rid, mut bill) = by_rid.query_row([row.get::<_, i64>(0)?], Bill::from_row)?;
        load_children(conn, rid, &mut bill)?;
        let pos = bill.chain_pos.unwrap_or_default();
        if pos != expected_pos {
            report
                .problems
                .extend((expected_pos..pos).map(|pos| ChainProblem::MissingLink { pos }));
        }
        expected_pos = pos + 1;
        let stored_prev = bill.prev_hash.clone().unwrap_or_default();
        if stored_prev != prev_hash {
            report.problems.push(ChainProblem::BrokenLink {
                number: bill.number.clone(),
            });
        }
        if bill.hash.as_deref() != Some(hash_of(&bill, &stored_prev)?.as_str()) {
            report.problems.push(ChainProblem::Altered {
                number: bill.number.clone(),
            });
        }
        if let Some(problem) = status_problem(&bill, refunds.get(&bill.id.to_string()))? {
            report.problems.push(problem);
        }
        prev_hash = bill.hash.clone().unwrap_or_default();
        report.bills_checked += 1;
    }
    let (last_pos, head) = chain_head(conn)?;
    report
        .problems
        .extend((expected_pos..=last_pos).map(|pos| ChainProblem::MissingLink { pos }));
    // The head must be the last bill walked, or the next sale links to
    // something else. (A chain with a missing last bill is reported above.)
    if last_pos > 0 && last_pos == expected_pos - 1 && head.as_deref() != Some(prev_hash.as_str()) {
        report
            .problems
            .push(ChainProblem::WrongHead { pos: last_pos });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewBill, NewLine, Tender};

    /// A store upgraded to version 9 seals the voids of paid sales made
    /// before: they verify, where an unsealed one is reported.
    #[test]
    fn voids_made_before_seals_existed_are_sealed_on_upgrade() {
        let (_dir, store) = crate::store::scratch();
        let new = NewBill {
            lines: vec![NewLine::item("TEA", "Tea", 1, 150)],
            ..NewBill::default()
        };
        let sold = store.sell(new, &[Tender::cash(150)]).expect("sell");
        let voided = store.void_bill(sold.id).expect("void");
        assert!(voided.void_seal.is_some());
        let conn = Connection::open(store.path()).expect("raw");
        conn.execute("UPDATE bills SET void_seal = NULL", [])
            .expect("as before version 9");
        let report = store.verify_chain().expect("verify");
        assert_eq!(
            report.problems,
            vec![ChainProblem::UnsealedVoid {
                number: voided.number.clone()
            }]
        );
        seal_past_voids(&conn).expect("seal");
        assert!(store.verify_chain().expect("verify").is_intact());
        assert_eq!(
            store.bill(sold.id).expect("bill").void_seal,
            voided.void_seal
        );
    }
}
