//! Bills: open, ring up lines, discount, pay with split tenders, void,
//! refund against the original lines, and a customer's bill history.
//!
//! Rules kept here:
//! - numbers come from a gapless per-device sequence advanced in the
//!   transaction that opens the bill, so a number is never lost or reused,
//!   and a voided bill keeps its number;
//! - a bill is paid only when tenders cover its total; only cash may exceed
//!   it, and the excess is change;
//! - once paid, a bill's lines and money never change: status only moves
//!   forward (paid -> partly refunded -> refunded, or paid -> voided), and
//!   refunds are new bills pointing at it;
//! - every change writes the bill, the customer's metrics and a change record
//!   in one transaction.

pub mod chain;
mod model;
pub mod receipt;
pub mod totals;

use rusqlite::{named_params, params, Connection, OptionalExtension};
use uuid::Uuid;

pub use chain::{ChainProblem, ChainReport};
pub use model::{
    Bill, BillKind, BillLine, BillStatus, BillSummary, NewBill, NewLine, Payment, PriceMode,
    RefundLine, Tender, TenderMethod,
};
pub(crate) use model::{COLUMNS, LINE_COLUMNS, PAYMENT_COLUMNS, SUMMARY_COLUMNS};
pub use receipt::ReceiptWidth;

use crate::error::{Entity, Error, Result};
use crate::metrics;
use crate::page::{self, Page};
use crate::store::{Store, Writer};

/// The `entity` of bill changes in the change log.
pub(crate) const ENTITY: &str = "bill";
/// Fields the change log leaves out: the id is the entity id, the rest is bookkeeping.
const DERIVED: &[&str] = &["id", "version"];
/// The gapless sequence behind bill numbers.
pub(crate) const SEQUENCE: &str = "bill_number";

/// Loads the lines and payments of the bill with rowid `rid`.
pub(crate) fn load_children(conn: &Connection, rid: i64, bill: &mut Bill) -> Result<()> {
    bill.lines = conn
        .prepare_cached(&format!(
            "SELECT {LINE_COLUMNS} FROM bill_lines WHERE bill_rid = ?1 ORDER BY line_no"
        ))?
        .query_map([rid], BillLine::from_row)?
        .collect::<rusqlite::Result<_>>()?;
    bill.payments = conn
        .prepare_cached(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM bill_payments WHERE bill_rid = ?1 ORDER BY seq"
        ))?
        .query_map([rid], Payment::from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

/// Loads a whole bill by id or by number. A number is found through the
/// sequence it ends in (`bills_by_seq`): a store has one bill per device
/// with that sequence, the number picks it.
pub(crate) fn load(conn: &Connection, key: &str, by_number: bool) -> Result<(i64, Bill)> {
    let found = if by_number {
        conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM bills WHERE seq = ?1 AND number = ?2"
        ))?
        .query_row(params![sequence_of(key), key], Bill::from_row)
    } else {
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM bills WHERE id = ?1"))?
            .query_row([key], Bill::from_row)
    };
    let (rid, mut bill) = found
        .optional()?
        .ok_or_else(|| Error::not_found(Entity::Bill, key))?;
    load_children(conn, rid, &mut bill)?;
    Ok((rid, bill))
}

/// Whether the bill `id` is here, without reading it.
pub(crate) fn exists(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM bills WHERE id = ?1)")?
        .query_row([id], |r| r.get(0))?)
}

/// The fields of a bill as the change log records them.
pub(crate) fn change_fields(bill: &Bill) -> Result<serde_json::Value> {
    crate::changes::fields_of(bill, DERIVED)
}

/// Writes `after` (new when `rid` is `None`) with its lines and payments, and
/// a change record of what differs from `before`.
fn put(
    w: &mut Writer<'_>,
    rid: Option<i64>,
    before: Option<&Bill>,
    after: &Bill,
    op: &str,
) -> Result<i64> {
    let rid = write_row(w, rid, before, after)?;
    crate::changes::record_diff(w, ENTITY, &after.id.to_string(), op, before, after, DERIVED)?;
    Ok(rid)
}

/// Writes `after` (new when `rid` is `None`) with its lines and payments,
/// recording no change: [`put`] for local edits, sync for pulled ones.
pub(crate) fn write_row(
    w: &Writer<'_>,
    rid: Option<i64>,
    before: Option<&Bill>,
    after: &Bill,
) -> Result<i64> {
    let inserted = rid.is_none();
    if let Some(past) = before.and_then(|b| b.customer_id) {
        if after.customer_id != Some(past) {
            // Its change records keep that customer's phone (see v11.sql).
            w.tx.prepare_cached(
                "INSERT OR IGNORE INTO bill_past_customers (customer_id, bill_id) VALUES (?1, ?2)",
            )?
            .execute([past.to_string(), after.id.to_string()])?;
        }
    }
    let rid = match rid {
        None => {
            // Parameters by position, in the order of the columns: a named
            // one costs a map lookup in rusqlite. Binding this insert, the
            // lines, the payments and the change record by position took a
            // sale from 460,000 to 427,000 instructions (callgrind,
            // `Store::sell` of a 3-line bill).
            w.tx.prepare_cached(
                "INSERT INTO bills (id, number, seq, store_id, device_id, staff_id, customer_id,
                     customer_phone, currency, price_mode, kind, refund_of, status, bill_discount,
                     subtotal, discount_total, tax_total, total, paid_total, change_due,
                     refunded_total, opened_at, closed_at, voided_at, chain_pos, prev_hash, hash,
                     version, last_line_no, void_seal)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30)",
            )?
            .execute(params![
                after.id.to_string(),
                after.number,
                sequence_of(&after.number),
                after.store_id,
                after.device_id,
                after.staff_id,
                after.customer_id.map(|c| c.to_string()),
                after.customer_phone,
                after.currency,
                after.price_mode.as_str(),
                after.kind.as_str(),
                after.refund_of.map(|r| r.to_string()),
                after.status.as_str(),
                after.bill_discount,
                after.subtotal,
                after.discount_total,
                after.tax_total,
                after.total,
                after.paid_total,
                after.change_due,
                after.refunded_total,
                after.opened_at_ms,
                after.closed_at_ms,
                after.voided_at_ms,
                after.chain_pos,
                after.prev_hash,
                after.hash,
                after.version,
                after.last_line_no,
                after.void_seal,
            ])?;
            w.tx.last_insert_rowid()
        }
        Some(rid) => {
            // What may change after a bill opens; the rest is its identity.
            w.tx.prepare_cached(
                "UPDATE bills SET customer_id = :customer_id, customer_phone = :customer_phone,
                     status = :status, bill_discount = :bill_discount, subtotal = :subtotal,
                     discount_total = :discount_total, tax_total = :tax_total, total = :total,
                     paid_total = :paid_total, change_due = :change_due,
                     refunded_total = :refunded_total, closed_at = :closed_at,
                     voided_at = :voided_at, chain_pos = :chain_pos, prev_hash = :prev_hash,
                     hash = :hash, version = :version, last_line_no = :last_line_no,
                     void_seal = :void_seal
                 WHERE rid = :rid",
            )?
            .execute(named_params! {
                ":rid": rid,
                ":customer_id": after.customer_id.map(|c| c.to_string()),
                ":customer_phone": after.customer_phone,
                ":status": after.status.as_str(),
                ":bill_discount": after.bill_discount,
                ":subtotal": after.subtotal,
                ":discount_total": after.discount_total,
                ":tax_total": after.tax_total,
                ":total": after.total,
                ":paid_total": after.paid_total,
                ":change_due": after.change_due,
                ":refunded_total": after.refunded_total,
                ":closed_at": after.closed_at_ms,
                ":voided_at": after.voided_at_ms,
                ":chain_pos": after.chain_pos,
                ":prev_hash": after.prev_hash,
                ":hash": after.hash,
                ":version": after.version,
                ":last_line_no": after.last_line_no,
                ":void_seal": after.void_seal,
            })?;
            rid
        }
    };
    if before.map(|b| &b.lines) != Some(&after.lines) {
        // A row inserted above has no lines yet: every sale, and every bill
        // a pull or bootstrap brings, skips the delete.
        if !inserted {
            w.tx.prepare_cached("DELETE FROM bill_lines WHERE bill_rid = ?1")?
                .execute([rid])?;
        }
        // By position, in the order of `LINE_COLUMNS` (see the bill above).
        let mut insert = w.tx.prepare_cached(&format!(
            "INSERT INTO bill_lines (bill_rid, {LINE_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ))?;
        for l in &after.lines {
            insert.execute(params![
                rid,
                l.line_no,
                l.product_code,
                l.name,
                l.qty_milli,
                l.unit_price,
                l.discount,
                l.tax_category,
                l.tax_rate_bp,
                l.bill_discount,
                l.net,
                l.tax,
                l.gross,
                l.refund_of_line,
                l.refunded_qty_milli,
                l.refunded_gross,
                l.refunded_tax,
            ])?;
        }
    }
    // Payments only ever append.
    let known = before.map_or(0, |b| b.payments.len());
    if after.payments.len() > known {
        // By position, in the order of `PAYMENT_COLUMNS`.
        let mut insert = w.tx.prepare_cached(&format!(
            "INSERT INTO bill_payments (bill_rid, {PAYMENT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        ))?;
        for p in &after.payments[known..] {
            insert.execute(params![
                rid,
                p.seq,
                p.method.as_str(),
                p.amount,
                p.tendered,
                p.reference,
            ])?;
        }
    }
    Ok(rid)
}

/// The device sequence number at the end of a bill number.
pub(crate) fn sequence_of(number: &str) -> i64 {
    number
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

/// Loads a bill for writing and checks it is an open sale of this till.
fn load_open(w: &Writer<'_>, id: Uuid, action: &'static str) -> Result<(i64, Bill)> {
    let (rid, bill) = load(&w.tx, &id.to_string(), false)?;
    if bill.status != BillStatus::Open {
        return Err(invalid_state(&bill, action));
    }
    own_open_bill(w, &bill, action)?;
    Ok((rid, bill))
}

/// Refuses another till's open bill (pulled from the server): that till
/// finishes it, for the bill has its number and joins its hash chain.
fn own_open_bill(w: &Writer<'_>, bill: &Bill, action: &'static str) -> Result<()> {
    let identity = &w.settings.identity;
    if bill.store_id == identity.store && bill.device_id == identity.device {
        return Ok(());
    }
    Err(Error::InvalidState {
        entity: Entity::Bill,
        id: bill.id.to_string(),
        state: format!("open at till {}-{}", bill.store_id, bill.device_id),
        action,
    })
}

fn invalid_state(bill: &Bill, action: &'static str) -> Error {
    Error::InvalidState {
        entity: Entity::Bill,
        id: bill.id.to_string(),
        state: bill.status.to_string(),
        action,
    }
}

/// Turns validated new lines into bill lines numbered from `first_no`;
/// errors name the line as `{field}[i]`.
fn to_lines(new: &[NewLine], first_no: u32, field: &str) -> Result<Vec<BillLine>> {
    new.iter()
        .enumerate()
        .map(|(i, l)| to_line(l, first_no + i as u32, &format!("{field}[{i}]")))
        .collect()
}

/// Turns a validated new line into bill line `line_no`; errors name it `field`.
fn to_line(l: &NewLine, line_no: u32, field: &str) -> Result<BillLine> {
    totals::validate_line(l, field)?;
    Ok(BillLine::unpriced(line_no, l))
}

/// Recomputes the amounts of an open sale after its lines or discount changed.
fn retotal(bill: &mut Bill) -> Result<()> {
    if bill.lines.len() > totals::MAX_LINES {
        return Err(Error::invalid(
            "lines",
            format!("more than {} lines", totals::MAX_LINES),
        ));
    }
    let t = totals::compute(&mut bill.lines, bill.bill_discount, bill.price_mode)?;
    bill.subtotal = t.subtotal;
    bill.discount_total = t.discount;
    bill.tax_total = t.tax;
    bill.total = t.total;
    Ok(())
}

/// Applies tenders to a bill of `total`: `(payments, change)`. Non-cash
/// tenders never exceed what is due; cash may, and the excess is change.
fn settle(tenders: &[Tender], total: i64, first_seq: u32) -> Result<(Vec<Payment>, i64)> {
    if tenders.len() > 20 {
        return Err(Error::invalid("tenders", "more than 20 tenders"));
    }
    let mut offered: i64 = 0;
    let mut non_cash: i64 = 0;
    for (i, t) in tenders.iter().enumerate() {
        if t.amount <= 0 {
            return Err(Error::invalid(
                format!("tenders[{i}].amount"),
                "must be more than zero",
            ));
        }
        if t.reference.chars().count() > 64 {
            return Err(Error::invalid(
                format!("tenders[{i}].reference"),
                "longer than 64 characters",
            ));
        }
        offered = offered.saturating_add(t.amount);
        if t.method != TenderMethod::Cash {
            non_cash = non_cash.saturating_add(t.amount);
        }
    }
    if offered < total {
        return Err(Error::invalid(
            "tenders",
            format!("short of the total by {} minor units", total - offered),
        ));
    }
    if non_cash > total {
        return Err(Error::invalid(
            "tenders",
            "card and other tenders exceed the total; only cash gives change",
        ));
    }
    let change = offered - total;
    // The change comes out of the cash, last tender first.
    let mut to_return = change;
    let mut payments: Vec<Payment> = tenders
        .iter()
        .enumerate()
        .map(|(i, t)| Payment {
            seq: first_seq + i as u32,
            method: t.method,
            amount: t.amount,
            tendered: t.amount,
            reference: t.reference.trim().to_owned(),
        })
        .collect();
    for p in payments
        .iter_mut()
        .rev()
        .filter(|p| p.method == TenderMethod::Cash)
    {
        let back = to_return.min(p.amount);
        p.amount -= back;
        to_return -= back;
    }
    Ok((payments, change))
}

/// Card refunds go back only as far as `sale` took by card: what its card
/// tenders paid less what earlier refunds, from any till, returned to
/// cards. Money never leaves for a card it did not come from; cash and
/// other tenders (store credit) are the shop's own call.
fn check_card_refund(conn: &Connection, sale: &Bill, tenders: &[Tender]) -> Result<()> {
    let taken: i64 = sale
        .payments
        .iter()
        .filter(|p| p.method == TenderMethod::Card)
        .map(|p| p.amount)
        .sum();
    let returned: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(p.amount), 0) FROM bills b
             JOIN bill_payments p ON p.bill_rid = b.rid
             WHERE b.refund_of = ?1 AND p.method = ?2",
        )?
        .query_row(
            params![sale.id.to_string(), TenderMethod::Card.as_str()],
            |r| r.get(0),
        )?;
    let mut room = taken - returned;
    for (i, t) in tenders.iter().enumerate() {
        if t.method != TenderMethod::Card {
            continue;
        }
        if t.amount > room {
            return Err(Error::invalid(
                format!("tenders[{i}].method"),
                format!(
                    "a card may take back {} more minor units: what the sale took by card, \
                     less earlier card refunds",
                    room.max(0)
                ),
            ));
        }
        room -= t.amount;
    }
    Ok(())
}

/// What refunding `lines` of `sale` does (all that remains when `lines` is
/// empty): the sale with its refunded quantities moved on, and the refund's
/// lines. Pure, so a quote and the refund itself compute the same amounts.
fn plan_refund(sale: &Bill, lines: &[RefundLine]) -> Result<(Bill, Vec<BillLine>)> {
    if sale.kind != BillKind::Sale
        || !matches!(sale.status, BillStatus::Paid | BillStatus::PartlyRefunded)
    {
        return Err(invalid_state(sale, "be refunded"));
    }
    let requested: Vec<RefundLine> = if lines.is_empty() {
        sale.lines
            .iter()
            .filter(|l| l.refunded_qty_milli < l.qty_milli)
            .map(|l| RefundLine {
                line_no: l.line_no,
                qty_milli: l.qty_milli - l.refunded_qty_milli,
            })
            .collect()
    } else {
        lines.to_vec()
    };
    if requested.is_empty() {
        return Err(invalid_state(sale, "be refunded again"));
    }
    let mut original = sale.clone();
    let mut refund_lines = Vec::with_capacity(requested.len());
    for (i, r) in requested.iter().enumerate() {
        let field = |name: &str| format!("lines[{i}].{name}");
        if requested[..i].iter().any(|o| o.line_no == r.line_no) {
            return Err(Error::invalid(field("line_no"), "appears twice"));
        }
        let sold = original
            .lines
            .iter_mut()
            .find(|l| l.line_no == r.line_no)
            .ok_or_else(|| Error::invalid(field("line_no"), "no such line on the bill"))?;
        if r.qty_milli <= 0 {
            return Err(Error::invalid(field("quantity"), "must be more than zero"));
        }
        // Compared against what remains, not as a sum: a quantity near
        // i64::MAX must be refused, not wrap past the check.
        if r.qty_milli > sold.qty_milli - sold.refunded_qty_milli {
            return Err(Error::invalid(
                field("quantity"),
                "is more than remains to refund",
            ));
        }
        let (gross, tax) = totals::refund_share(sold, r.qty_milli);
        sold.refunded_qty_milli += r.qty_milli;
        sold.refunded_gross += gross;
        sold.refunded_tax += tax;
        refund_lines.push(BillLine {
            line_no: i as u32 + 1,
            qty_milli: r.qty_milli,
            discount: 0,
            bill_discount: 0,
            net: gross - tax,
            tax,
            gross,
            refund_of_line: Some(sold.line_no),
            refunded_qty_milli: 0,
            refunded_gross: 0,
            refunded_tax: 0,
            ..sold.clone()
        });
    }
    Ok((original, refund_lines))
}

/// The live customer behind `id` (a merged-away id yields its survivor)
/// and the phone a bill keeps for lookups. Two columns, not the whole
/// customer: reading and parsing every column was 23,000 of a sale's
/// 471,000 instructions (callgrind, `Store::sell` of a 3-line bill).
fn bill_customer(w: &Writer<'_>, id: Uuid) -> Result<(Option<Uuid>, Option<String>)> {
    let live = crate::customers::resolve_live(&w.tx, id)?;
    // As `Customer::from_row`: a phone needs both of its columns.
    let phone = w
        .tx
        .prepare_cached("SELECT phone_e164 FROM customers WHERE id = ?1 AND phone_raw IS NOT NULL")?
        .query_row([live.to_string()], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten();
    Ok((Some(live), phone))
}

/// A new open sale from `new`, numbered from the device's sequence.
fn new_sale(w: &Writer<'_>, new: &NewBill) -> Result<Bill> {
    let lines = to_lines(&new.lines, 1, "lines")?;
    let (customer_id, customer_phone) = match new.customer_id {
        Some(id) => bill_customer(w, id)?,
        None => (None, None),
    };
    let mut bill = Bill {
        id: Uuid::now_v7(),
        number: String::new(),
        store_id: w.settings.identity.store.clone(),
        device_id: w.settings.identity.device.clone(),
        staff_id: w.staff.clone(),
        customer_id,
        customer_phone,
        currency: w.settings.currency.code().to_owned(),
        price_mode: new.price_mode.unwrap_or(PriceMode::Inclusive),
        kind: BillKind::Sale,
        refund_of: None,
        status: BillStatus::Open,
        bill_discount: new.bill_discount,
        subtotal: 0,
        discount_total: 0,
        tax_total: 0,
        total: 0,
        paid_total: 0,
        change_due: 0,
        refunded_total: 0,
        opened_at_ms: w.now_ms,
        closed_at_ms: None,
        voided_at_ms: None,
        chain_pos: None,
        prev_hash: None,
        hash: None,
        version: 1,
        last_line_no: lines.len() as u32,
        void_seal: None,
        lines,
        payments: Vec::new(),
    };
    retotal(&mut bill)?;
    // Numbered last, so invalid input never advances the sequence.
    bill.number = next_number(w)?;
    Ok(bill)
}

/// The next bill number of this device: `S01-T03-000042`.
fn next_number(w: &Writer<'_>) -> Result<String> {
    let seq = w.next_in_sequence(SEQUENCE)?;
    let identity = &w.settings.identity;
    Ok(format!("{}-{}-{seq:06}", identity.store, identity.device))
}

/// Pays an open sale with `tenders`: the bill becomes final, joins the hash
/// chain and moves its customer's metrics.
fn finish(w: &Writer<'_>, bill: &mut Bill, tenders: &[Tender]) -> Result<()> {
    if bill.lines.is_empty() {
        return Err(Error::invalid(
            "lines",
            "a bill needs at least one line to be paid",
        ));
    }
    let (payments, change) = settle(tenders, bill.total, 1)?;
    bill.paid_total = payments.iter().map(|p| p.amount).sum();
    bill.change_due = change;
    bill.payments = payments;
    bill.status = BillStatus::Paid;
    bill.closed_at_ms = Some(w.now_ms);
    chain::link(w, bill)?;
    if let Some(customer) = bill.customer_id {
        metrics::add_sale(w, &customer.to_string(), bill.total, w.now_ms)?;
    }
    Ok(())
}

impl Store {
    /// Opens a bill, with any lines already scanned; it takes the next bill number.
    pub fn open_bill(&self, new: NewBill) -> Result<Bill> {
        self.write(|w| {
            let bill = new_sale(w, &new)?;
            put(w, None, None, &bill, "open")?;
            Ok(bill)
        })
    }

    /// Rings up and pays a whole bill in one transaction: what a till does
    /// at checkout when the cart was kept on screen. Same rules as
    /// [`Store::open_bill`] followed by [`Store::pay`].
    pub fn sell(&self, new: NewBill, tenders: &[Tender]) -> Result<Bill> {
        self.write(|w| {
            let mut bill = new_sale(w, &new)?;
            finish(w, &mut bill, tenders)?;
            put(w, None, None, &bill, "sell")?;
            Ok(bill)
        })
    }

    /// Adds a line to an open bill; it is numbered after every line the
    /// bill ever had, removed ones included.
    pub fn add_line(&self, bill_id: Uuid, line: NewLine) -> Result<Bill> {
        self.change_open(bill_id, "add_line", "add a line", |bill| {
            // Bills written before `last_line_no` existed read 0 there.
            let highest = bill.lines.iter().map(|l| l.line_no).max().unwrap_or(0);
            let next_no = bill.last_line_no.max(highest) + 1;
            bill.lines.push(to_line(&line, next_no, "line")?);
            bill.last_line_no = next_no;
            Ok(())
        })
    }

    /// Removes line `line_no` from an open bill; other lines keep their numbers.
    pub fn remove_line(&self, bill_id: Uuid, line_no: u32) -> Result<Bill> {
        self.change_open(bill_id, "remove_line", "remove a line", |bill| {
            let before = bill.lines.len();
            bill.lines.retain(|l| l.line_no != line_no);
            if bill.lines.len() == before {
                return Err(Error::not_found(Entity::BillLine, line_no));
            }
            Ok(())
        })
    }

    /// Sets the discount on the whole of an open bill.
    pub fn set_bill_discount(&self, bill_id: Uuid, discount: i64) -> Result<Bill> {
        self.change_open(bill_id, "discount", "change the discount", |bill| {
            bill.bill_discount = discount;
            Ok(())
        })
    }

    /// Attaches an open bill to a customer, or makes it a walk-in (`None`).
    pub fn set_bill_customer(&self, bill_id: Uuid, customer_id: Option<Uuid>) -> Result<Bill> {
        self.write(|w| {
            let (rid, before) = load_open(w, bill_id, "change the customer")?;
            let mut after = before.clone();
            (after.customer_id, after.customer_phone) = match customer_id {
                Some(id) => bill_customer(w, id)?,
                None => (None, None),
            };
            after.version += 1;
            put(w, Some(rid), Some(&before), &after, "set_customer")?;
            Ok(after)
        })
    }

    /// Runs `change` on an open bill, recomputes its totals and records it.
    fn change_open(
        &self,
        bill_id: Uuid,
        op: &str,
        action: &'static str,
        change: impl FnOnce(&mut Bill) -> Result<()>,
    ) -> Result<Bill> {
        self.write(|w| {
            let (rid, before) = load_open(w, bill_id, action)?;
            let mut after = before.clone();
            change(&mut after)?;
            retotal(&mut after)?;
            after.version += 1;
            put(w, Some(rid), Some(&before), &after, op)?;
            Ok(after)
        })
    }

    /// Pays an open bill with one or more tenders covering its total; the bill
    /// becomes final: it joins the hash chain and moves the customer's metrics.
    pub fn pay(&self, bill_id: Uuid, tenders: &[Tender]) -> Result<Bill> {
        self.write(|w| {
            let (rid, before) = load_open(w, bill_id, "be paid")?;
            let mut after = before.clone();
            after.version += 1;
            finish(w, &mut after, tenders)?;
            put(w, Some(rid), Some(&before), &after, "pay")?;
            Ok(after)
        })
    }

    /// Voids an open bill, or a paid one nothing was refunded from. The bill
    /// keeps its number; a paid bill's effect on the customer's metrics is undone.
    pub fn void_bill(&self, bill_id: Uuid) -> Result<Bill> {
        self.write(|w| {
            let (rid, before) = load(&w.tx, &bill_id.to_string(), false)?;
            let mut after = before.clone();
            after.status = BillStatus::Voided;
            after.voided_at_ms = Some(w.now_ms);
            after.version += 1;
            match (before.kind, before.status) {
                (BillKind::Sale, BillStatus::Open) => {
                    own_open_bill(w, &before, "be voided")?;
                    after.closed_at_ms = Some(w.now_ms);
                    chain::link(w, &mut after)?;
                    put(w, Some(rid), Some(&before), &after, "void")?;
                }
                (BillKind::Sale, BillStatus::Paid) => {
                    after.void_seal = Some(chain::void_seal(&after)?);
                    put(w, Some(rid), Some(&before), &after, "void")?;
                    if let Some(customer) = after.customer_id {
                        metrics::recompute(w, &customer.to_string())?;
                    }
                }
                _ => return Err(invalid_state(&before, "be voided")),
            }
            Ok(after)
        })
    }

    /// Refunds quantities of a paid sale's lines (all that remains when
    /// `lines` is empty), paid back with `tenders` that add up to the refund
    /// exactly. Returns the refund bill; the sale moves to partly refunded or
    /// refunded. Never refunds more than was sold, nor more to cards than
    /// the sale took by card, across all refunds.
    pub fn refund(&self, bill_id: Uuid, lines: &[RefundLine], tenders: &[Tender]) -> Result<Bill> {
        self.write(|w| {
            let (rid, before) = load(&w.tx, &bill_id.to_string(), false)?;
            let (mut original, refund_lines) = plan_refund(&before, lines)?;
            let amount: i64 = refund_lines.iter().map(|l| l.gross).sum();
            // Each tender is checked first, so a bad one is named.
            let (payments, change) = settle(tenders, amount, 1)?;
            if change != 0 {
                return Err(Error::invalid(
                    "tenders",
                    format!("must add up to the refund of {amount} minor units exactly"),
                ));
            }
            check_card_refund(&w.tx, &before, tenders)?;

            let identity = &w.settings.identity;
            // A line's refunded share is rounded from the whole line, so it
            // can come out a minor unit above the quantity at list price;
            // the share is then that line's list price, and a refund never
            // shows a negative discount (a surcharge).
            let subtotal = refund_lines
                .iter()
                .map(|l| {
                    let share = match before.price_mode {
                        PriceMode::Inclusive => l.gross,
                        PriceMode::Exclusive => l.net,
                    };
                    totals::line_base(l.qty_milli, l.unit_price).max(share)
                })
                .sum::<i64>();
            let tax_total: i64 = refund_lines.iter().map(|l| l.tax).sum();
            let mut refund = Bill {
                id: Uuid::now_v7(),
                number: next_number(w)?,
                store_id: identity.store.clone(),
                device_id: identity.device.clone(),
                staff_id: w.staff.clone(),
                kind: BillKind::Refund,
                refund_of: Some(before.id),
                status: BillStatus::Paid,
                bill_discount: 0,
                subtotal,
                discount_total: match before.price_mode {
                    PriceMode::Inclusive => subtotal - amount,
                    PriceMode::Exclusive => subtotal - (amount - tax_total),
                },
                tax_total,
                total: amount,
                paid_total: amount,
                change_due: 0,
                refunded_total: 0,
                opened_at_ms: w.now_ms,
                closed_at_ms: Some(w.now_ms),
                voided_at_ms: None,
                chain_pos: None,
                prev_hash: None,
                hash: None,
                version: 1,
                last_line_no: refund_lines.len() as u32,
                void_seal: None,
                lines: refund_lines,
                payments,
                ..before.clone()
            };
            chain::link(w, &mut refund)?;
            put(w, None, None, &refund, "refund")?;

            original.refunded_total += amount;
            original.status = if original
                .lines
                .iter()
                .all(|l| l.refunded_qty_milli == l.qty_milli)
            {
                BillStatus::Refunded
            } else {
                BillStatus::PartlyRefunded
            };
            original.version += 1;
            put(w, Some(rid), Some(&before), &original, "refunded")?;
            if let Some(customer) = original.customer_id {
                metrics::add_refund(w, &customer.to_string(), amount)?;
            }
            Ok(refund)
        })
    }

    /// How much refunding `lines` of a sale would pay back (all that remains
    /// when `lines` is empty), without writing anything.
    pub fn refund_quote(&self, bill_id: Uuid, lines: &[RefundLine]) -> Result<i64> {
        let sale = self.bill(bill_id)?;
        let (_, refund_lines) = plan_refund(&sale, lines)?;
        Ok(refund_lines.iter().map(|l| l.gross).sum())
    }

    /// The bill with `id`, with its lines and payments.
    pub fn bill(&self, id: Uuid) -> Result<Bill> {
        self.read(|conn| load(conn, &id.to_string(), false).map(|(_, b)| b))
    }

    /// The bill with number `number`.
    pub fn bill_by_number(&self, number: &str) -> Result<Bill> {
        self.read(|conn| load(conn, number.trim(), true).map(|(_, b)| b))
    }

    /// A customer's bills, newest first, a page at a time; one index seek per page.
    pub fn customer_bills(
        &self,
        customer_id: Uuid,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<BillSummary>> {
        let limit = page::limit(limit)?;
        let start: Option<(i64, i64)> = cursor.map(page::decode_cursor).transpose()?;
        let rows = self.read(|conn| {
            let customer = crate::customers::resolve_live(conn, customer_id)?.to_string();
            let rows = match start {
                None => conn
                    .prepare_cached(&history_sql(false))?
                    .query_map(
                        named_params! { ":customer": customer, ":n": limit + 1 },
                        BillSummary::from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
                Some((k_time, k_rid)) => conn
                    .prepare_cached(&history_sql(true))?
                    .query_map(
                        named_params! {
                            ":customer": customer, ":k_time": k_time, ":k_rid": k_rid, ":n": limit + 1,
                        },
                        BillSummary::from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            };
            Ok(rows)
        })?;
        let page = page::assemble(rows, limit, |(rid, b)| (b.opened_at_ms, *rid));
        Ok(Page {
            items: page.items.into_iter().map(|(_, b)| b).collect(),
            next: page.next,
        })
    }

    /// Checks this device's bill chain and number sequence.
    pub fn verify_chain(&self) -> Result<ChainReport> {
        let identity = &self.settings.identity;
        self.read(|conn| chain::verify(conn, &identity.store, &identity.device))
    }
}

/// A page of a customer's history (`:customer`, `:n` rows), newest first;
/// `after_cursor` adds the keyset (`:k_time`, `:k_rid`). It reads the
/// covering index `bills_by_customer` alone (schema v10).
///
/// Two statements rather than `:cursor IS NULL OR ...`, which stops SQLite
/// from seeking to the cursor: a page 280 bills deep took 50.9 us that way
/// and 23.9 us with its own statement, and the gap grows with depth
/// (`cargo bench -p till-core --bench store`).
fn history_sql(after_cursor: bool) -> String {
    let keyset = if after_cursor {
        "AND (opened_at, rid) < (:k_time, :k_rid)"
    } else {
        ""
    };
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM bills
         WHERE customer_id = :customer {keyset}
         ORDER BY opened_at DESC, rid DESC LIMIT :n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history page, at the top and past a cursor, reads the covering index
    /// alone and in its order: a column added to `SUMMARY_COLUMNS` and not to
    /// the index would send every page back to 20 bill rows scattered over
    /// the file.
    #[test]
    fn a_history_page_reads_only_the_customer_index() {
        let (_dir, store) = crate::store::scratch();
        for after_cursor in [false, true] {
            let plan = store
                .read(|conn| {
                    let sql = format!("EXPLAIN QUERY PLAN {}", history_sql(after_cursor));
                    let mut stmt = conn.prepare(&sql)?;
                    // Unbound parameters plan as NULLs.
                    let mut rows = stmt.raw_query();
                    let mut steps = Vec::new();
                    while let Some(row) = rows.next()? {
                        steps.push(row.get::<_, String>(3)?);
                    }
                    Ok(steps)
                })
                .expect("plan");
            assert_eq!(plan.len(), 1, "one step, no sort: {plan:?}");
            assert!(
                plan[0].starts_with("SEARCH bills USING COVERING INDEX bills_by_customer"),
                "{plan:?}"
            );
        }
    }
}
