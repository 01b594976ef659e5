//! Bills across the boundary: the records of a sale, its lines, payments
//! and refunds, and the bill verbs of [`TillStore`].
//!
//! Money is `i64` minor units of the store's currency (paise, cents);
//! quantities are milli-units (1 item = 1000, 0.750 kg = 750). No floats.

use till_core as core;

use crate::convert::{mirror_enum, page};
use crate::error::{parse_id, Result};
use crate::store::TillStore;

mirror_enum!(
    /// Whether unit prices include tax or have it added.
    PriceMode = core::PriceMode {
        /// Prices are net; tax is added on top.
        Exclusive,
        /// Prices include tax.
        Inclusive,
    }
);

mirror_enum!(
    /// A sale, or a refund against an earlier sale.
    BillKind = core::BillKind {
        /// Goods sold.
        Sale,
        /// Money given back against a sale; amounts are positive.
        Refund,
    }
);

mirror_enum!(
    /// Where a bill stands; status only moves forward.
    BillStatus = core::BillStatus {
        /// Being rung up: lines may change.
        Open,
        /// Settled; immutable but for refunds and voiding.
        Paid,
        /// Cancelled; keeps its number.
        Voided,
        /// Some lines were refunded.
        PartlyRefunded,
        /// Everything was refunded.
        Refunded,
    }
);

mirror_enum!(
    /// How a tender was paid.
    TenderMethod = core::TenderMethod {
        /// Cash: may exceed what is due; the rest is change.
        Cash,
        /// Card: keeps a reference (approval code).
        Card,
        /// Anything else (voucher, wallet, ...).
        Other,
    }
);

mirror_enum!(
    /// Receipt printer paper widths.
    ReceiptWidth = core::ReceiptWidth {
        /// 58 mm paper: 32 columns.
        Cols32,
        /// 76 mm paper: 42 columns.
        Cols42,
        /// 80 mm paper: 48 columns.
        Cols48,
    }
);

/// A line to add to a bill.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewLine {
    /// SKU or barcode.
    pub product_code: String,
    /// Name printed on the receipt.
    pub name: String,
    /// Quantity in milli-units: 1 item = 1000.
    pub qty_milli: i64,
    /// Price of one unit in minor units.
    pub unit_price: i64,
    /// Discount on this line, in minor units.
    #[uniffi(default)]
    pub discount: i64,
    /// Tax category printed on the receipt, e.g. `GST18`.
    #[uniffi(default)]
    pub tax_category: String,
    /// Tax rate in basis points: 1800 = 18%.
    #[uniffi(default)]
    pub tax_rate_bp: u32,
}

/// What a new bill starts with.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewBill {
    /// The customer, or absent for a walk-in.
    #[uniffi(default)]
    pub customer_id: Option<String>,
    /// Price mode; tax-inclusive when absent.
    #[uniffi(default)]
    pub price_mode: Option<PriceMode>,
    /// Lines already scanned.
    #[uniffi(default)]
    pub lines: Vec<NewLine>,
    /// Discount on the whole bill, in minor units.
    #[uniffi(default)]
    pub bill_discount: i64,
}

/// Money handed over.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Tender {
    /// Cash, card or other.
    pub method: TenderMethod,
    /// Amount in minor units.
    pub amount: i64,
    /// Card approval code, voucher number, ...
    #[uniffi(default)]
    pub reference: String,
}

/// A quantity of one line of a sale to refund.
#[derive(Debug, Clone, uniffi::Record)]
pub struct RefundLine {
    /// The line of the original bill.
    pub line_no: u32,
    /// How much to refund, in milli-units.
    pub qty_milli: i64,
}

/// A line of a bill with its computed amounts.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct BillLine {
    /// Position on the bill; stable when other lines are removed.
    pub line_no: u32,
    /// SKU or barcode.
    pub product_code: String,
    /// Name printed on the receipt.
    pub name: String,
    /// Quantity in milli-units.
    pub qty_milli: i64,
    /// Price of one unit.
    pub unit_price: i64,
    /// Line discount.
    pub discount: i64,
    /// Tax category.
    pub tax_category: String,
    /// Tax rate in basis points.
    pub tax_rate_bp: u32,
    /// This line's share of the bill discount.
    pub bill_discount: i64,
    /// Amount without tax.
    pub net: i64,
    /// Tax on the line.
    pub tax: i64,
    /// Amount with tax.
    pub gross: i64,
    /// On a refund bill: the line of the original bill it refunds.
    pub refund_of_line: Option<u32>,
    /// On a sale: quantity refunded so far.
    pub refunded_qty_milli: i64,
    /// On a sale: gross amount refunded so far.
    pub refunded_gross: i64,
    /// On a sale: tax refunded so far.
    pub refunded_tax: i64,
}

/// A tender as recorded on a bill.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Payment {
    /// Order on the bill.
    pub seq: u32,
    /// Cash, card or other.
    pub method: TenderMethod,
    /// Amount applied to the bill.
    pub amount: i64,
    /// Amount handed over (cash beyond `amount` was change).
    pub tendered: i64,
    /// Card approval code, voucher number, ...
    pub reference: String,
}

/// A bill as stored.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Bill {
    /// UUIDv7 made on the device.
    pub id: String,
    /// Bill number, e.g. `S01-T03-000042`: gapless per device.
    pub number: String,
    /// Store code.
    pub store_id: String,
    /// Device code.
    pub device_id: String,
    /// Staff who opened it.
    pub staff_id: String,
    /// The customer, or absent for a walk-in.
    pub customer_id: Option<String>,
    /// ISO 4217 code.
    pub currency: String,
    /// Whether prices include tax.
    pub price_mode: PriceMode,
    /// Sale or refund.
    pub kind: BillKind,
    /// On a refund: the sale it refunds.
    pub refund_of: Option<String>,
    /// Where the bill stands.
    pub status: BillStatus,
    /// Discount on the whole bill.
    pub bill_discount: i64,
    /// Sum of quantity x unit price, before discounts.
    pub subtotal: i64,
    /// Line discounts plus the bill discount.
    pub discount_total: i64,
    /// Sum of line taxes.
    pub tax_total: i64,
    /// What the customer pays (or, on a refund, gets back).
    pub total: i64,
    /// Sum of payments applied.
    pub paid_total: i64,
    /// Cash change handed back.
    pub change_due: i64,
    /// On a sale: gross amount refunded so far.
    pub refunded_total: i64,
    /// When opened, ms since the Unix epoch.
    pub opened_at_ms: i64,
    /// When paid or voided.
    pub closed_at_ms: Option<i64>,
    /// When voided.
    pub voided_at_ms: Option<i64>,
    /// Incremented by every change.
    pub version: i64,
    /// The lines, by line number.
    pub lines: Vec<BillLine>,
    /// The payments, in order.
    pub payments: Vec<Payment>,
}

/// A bill without its lines, for lists.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct BillSummary {
    /// Bill id.
    pub id: String,
    /// Bill number.
    pub number: String,
    /// Sale or refund.
    pub kind: BillKind,
    /// Status.
    pub status: BillStatus,
    /// Total in minor units.
    pub total: i64,
    /// Refunded so far.
    pub refunded_total: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// When opened.
    pub opened_at_ms: i64,
    /// When paid or voided.
    pub closed_at_ms: Option<i64>,
}

/// A page of bills, newest first.
#[derive(Debug, Clone, uniffi::Record)]
pub struct BillPage {
    /// The bills.
    pub items: Vec<BillSummary>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next: Option<String>,
}

impl From<NewLine> for core::NewLine {
    fn from(l: NewLine) -> Self {
        core::NewLine {
            product_code: l.product_code,
            name: l.name,
            qty_milli: l.qty_milli,
            unit_price: l.unit_price,
            discount: l.discount,
            tax_category: l.tax_category,
            tax_rate_bp: l.tax_rate_bp,
        }
    }
}

impl From<Tender> for core::Tender {
    fn from(t: Tender) -> Self {
        core::Tender {
            method: t.method.into(),
            amount: t.amount,
            reference: t.reference,
        }
    }
}

impl From<RefundLine> for core::RefundLine {
    fn from(r: RefundLine) -> Self {
        core::RefundLine {
            line_no: r.line_no,
            qty_milli: r.qty_milli,
        }
    }
}

impl From<core::BillLine> for BillLine {
    fn from(l: core::BillLine) -> Self {
        BillLine {
            line_no: l.line_no,
            product_code: l.product_code,
            name: l.name,
            qty_milli: l.qty_milli,
            unit_price: l.unit_price,
            discount: l.discount,
            tax_category: l.tax_category,
            tax_rate_bp: l.tax_rate_bp,
            bill_discount: l.bill_discount,
            net: l.net,
            tax: l.tax,
            gross: l.gross,
            refund_of_line: l.refund_of_line,
            refunded_qty_milli: l.refunded_qty_milli,
            refunded_gross: l.refunded_gross,
            refunded_tax: l.refunded_tax,
        }
    }
}

impl From<core::Payment> for Payment {
    fn from(p: core::Payment) -> Self {
        Payment {
            seq: p.seq,
            method: p.method.into(),
            amount: p.amount,
            tendered: p.tendered,
            reference: p.reference,
        }
    }
}

impl From<core::Bill> for Bill {
    fn from(b: core::Bill) -> Self {
        Bill {
            id: b.id.to_string(),
            number: b.number,
            store_id: b.store_id,
            device_id: b.device_id,
            staff_id: b.staff_id,
            customer_id: b.customer_id.map(|id| id.to_string()),
            currency: b.currency,
            price_mode: b.price_mode.into(),
            kind: b.kind.into(),
            refund_of: b.refund_of.map(|id| id.to_string()),
            status: b.status.into(),
            bill_discount: b.bill_discount,
            subtotal: b.subtotal,
            discount_total: b.discount_total,
            tax_total: b.tax_total,
            total: b.total,
            paid_total: b.paid_total,
            change_due: b.change_due,
            refunded_total: b.refunded_total,
            opened_at_ms: b.opened_at_ms,
            closed_at_ms: b.closed_at_ms,
            voided_at_ms: b.voided_at_ms,
            version: b.version,
            lines: b.lines.into_iter().map(Into::into).collect(),
            payments: b.payments.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<core::BillSummary> for BillSummary {
    fn from(b: core::BillSummary) -> Self {
        BillSummary {
            id: b.id.to_string(),
            number: b.number,
            kind: b.kind.into(),
            status: b.status.into(),
            total: b.total,
            refunded_total: b.refunded_total,
            currency: b.currency,
            opened_at_ms: b.opened_at_ms,
            closed_at_ms: b.closed_at_ms,
        }
    }
}

impl TryFrom<NewBill> for core::NewBill {
    type Error = crate::error::TillError;

    fn try_from(n: NewBill) -> Result<Self> {
        Ok(core::NewBill {
            customer_id: n
                .customer_id
                .as_deref()
                .map(|id| parse_id("customer_id", id))
                .transpose()?,
            price_mode: n.price_mode.map(Into::into),
            lines: n.lines.into_iter().map(Into::into).collect(),
            bill_discount: n.bill_discount,
        })
    }
}

fn core_tenders(tenders: Vec<Tender>) -> Vec<core::Tender> {
    tenders.into_iter().map(Into::into).collect()
}

fn core_refund_lines(lines: Vec<RefundLine>) -> Vec<core::RefundLine> {
    lines.into_iter().map(Into::into).collect()
}

#[uniffi::export]
impl TillStore {
    /// Opens a bill, taking the next bill number of this device.
    pub fn open_bill(&self, bill: NewBill) -> Result<Bill> {
        Ok(self.store.open_bill(bill.try_into()?)?.into())
    }

    /// Opens and pays a bill in one transaction (a quick sale).
    pub fn sell(&self, bill: NewBill, tenders: Vec<Tender>) -> Result<Bill> {
        Ok(self
            .store
            .sell(bill.try_into()?, &core_tenders(tenders))?
            .into())
    }

    /// Adds a line to an open bill.
    pub fn add_line(&self, bill_id: String, line: NewLine) -> Result<Bill> {
        let id = parse_id("bill_id", &bill_id)?;
        Ok(self.store.add_line(id, line.into())?.into())
    }

    /// Removes a line from an open bill; the other lines keep their numbers.
    pub fn remove_line(&self, bill_id: String, line_no: u32) -> Result<Bill> {
        let id = parse_id("bill_id", &bill_id)?;
        Ok(self.store.remove_line(id, line_no)?.into())
    }

    /// Sets the discount on a whole open bill, spread over its lines.
    pub fn set_bill_discount(&self, bill_id: String, discount: i64) -> Result<Bill> {
        let id = parse_id("bill_id", &bill_id)?;
        Ok(self.store.set_bill_discount(id, discount)?.into())
    }

    /// Sets or clears the customer of an open bill.
    pub fn set_bill_customer(&self, bill_id: String, customer_id: Option<String>) -> Result<Bill> {
        let id = parse_id("bill_id", &bill_id)?;
        let customer = customer_id
            .as_deref()
            .map(|c| parse_id("customer_id", c))
            .transpose()?;
        Ok(self.store.set_bill_customer(id, customer)?.into())
    }

    /// Pays an open bill; the tenders must cover it, only cash gives change.
    pub fn pay(&self, bill_id: String, tenders: Vec<Tender>) -> Result<Bill> {
        let id = parse_id("bill_id", &bill_id)?;
        Ok(self.store.pay(id, &core_tenders(tenders))?.into())
    }

    /// Voids a bill; it keeps its number.
    pub fn void_bill(&self, bill_id: String) -> Result<Bill> {
        let id = parse_id("bill_id", &bill_id)?;
        Ok(self.store.void_bill(id)?.into())
    }

    /// Refunds quantities of a paid sale's lines as a new refund bill; card
    /// tenders take back no more than the sale took by card.
    pub fn refund(
        &self,
        bill_id: String,
        lines: Vec<RefundLine>,
        tenders: Vec<Tender>,
    ) -> Result<Bill> {
        let id = parse_id("bill_id", &bill_id)?;
        Ok(self
            .store
            .refund(id, &core_refund_lines(lines), &core_tenders(tenders))?
            .into())
    }

    /// What refunding `lines` would give back, in minor units, without writing.
    pub fn refund_quote(&self, bill_id: String, lines: Vec<RefundLine>) -> Result<i64> {
        let id = parse_id("bill_id", &bill_id)?;
        Ok(self.store.refund_quote(id, &core_refund_lines(lines))?)
    }

    /// The bill with `id`.
    pub fn bill(&self, id: String) -> Result<Bill> {
        Ok(self.store.bill(parse_id("id", &id)?)?.into())
    }

    /// The bill with number `number`.
    pub fn bill_by_number(&self, number: String) -> Result<Bill> {
        Ok(self.store.bill_by_number(&number)?.into())
    }

    /// The printable receipt of a bill, for a paper width.
    pub fn receipt(&self, bill_id: String, width: ReceiptWidth) -> Result<String> {
        let id = parse_id("bill_id", &bill_id)?;
        Ok(self.store.receipt(id, width.into())?)
    }

    /// A customer's bills, newest first, a page at a time.
    pub fn customer_bills(
        &self,
        customer_id: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<BillPage> {
        let id = parse_id("customer_id", &customer_id)?;
        let (items, next) = page(self.store.customer_bills(id, cursor.as_deref(), limit)?);
        Ok(BillPage { items, next })
    }
}
