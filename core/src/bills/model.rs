//! The bill record, its lines and payments, and the inputs that build them.

use std::str::FromStr;

use rusqlite::Row;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// The stored and wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                match s { $($text => Ok($name::$variant),)+ _ => Err(Error::invalid($field, "unknown value")) }
            }
        }
    };
}

text_enum!(
    /// Whether unit prices include tax (most of retail) or have it added.
    PriceMode, "price_mode" {
        /// Prices are net; tax is added on top.
        Exclusive = "exclusive",
        /// Prices include tax; tax is the part of the price it makes up.
        Inclusive = "inclusive",
    }
);

text_enum!(
    /// A sale, or a refund against an earlier sale.
    BillKind, "kind" {
        /// Goods sold.
        Sale = "sale",
        /// Money given back against a sale; amounts are positive.
        Refund = "refund",
    }
);

text_enum!(
    /// Where a bill stands. Status only moves forward.
    BillStatus, "status" {
        /// Being rung up: lines may change.
        Open = "open",
        /// Settled; immutable from now on but for refunds and voiding.
        Paid = "paid",
        /// Cancelled; keeps its number.
        Voided = "voided",
        /// Some lines were refunded.
        PartlyRefunded = "partly_refunded",
        /// Everything was refunded.
        Refunded = "refunded",
    }
);

text_enum!(
    /// How a tender was paid.
    TenderMethod, "method" {
        /// Cash: may exceed what is due; the rest is change.
        Cash = "cash",
        /// Card: a reference (approval code) is kept.
        Card = "card",
        /// Anything else (voucher, wallet, ...).
        Other = "other",
    }
);

/// A line to add to a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLine {
    /// SKU or barcode.
    pub product_code: String,
    /// Name printed on the receipt.
    pub name: String,
    /// Quantity in milli-units: 1 item = 1000, 0.750 kg = 750.
    pub qty_milli: i64,
    /// Price of one unit in minor units (tax-inclusive or not, by the bill's price mode).
    pub unit_price: i64,
    /// Discount on this line, in minor units.
    pub discount: i64,
    /// Tax category printed on the receipt, e.g. `GST18`.
    pub tax_category: String,
    /// Tax rate in basis points: 1800 = 18%.
    pub tax_rate_bp: u32,
}

impl NewLine {
    /// `qty` whole units of a product, no discount, no tax.
    pub fn item(product_code: &str, name: &str, qty: i64, unit_price: i64) -> Self {
        NewLine {
            product_code: product_code.into(),
            name: name.into(),
            qty_milli: qty.saturating_mul(1000),
            unit_price,
            discount: 0,
            tax_category: String::new(),
            tax_rate_bp: 0,
        }
    }

    /// The same line taxed at `rate_bp` under `category`.
    pub fn taxed(mut self, category: &str, rate_bp: u32) -> Self {
        self.tax_category = category.into();
        self.tax_rate_bp = rate_bp;
        self
    }

    /// The same line with a discount.
    pub fn discounted(mut self, discount: i64) -> Self {
        self.discount = discount;
        self
    }
}

/// A line of a bill with its computed amounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillLine {
    /// Position on the bill; stable when other lines are removed.
    pub line_no: u32,
    /// SKU or barcode.
    pub product_code: String,
    /// Name printed on the receipt.
    pub name: String,
    /// Quantity in milli-units.
    pub qty_milli: i64,
    /// Price of one unit in minor units.
    pub unit_price: i64,
    /// Line discount in minor units.
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
    /// Amount with tax: what the customer pays for the line.
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

/// Money handed over for a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tender {
    /// Cash, card or other.
    pub method: TenderMethod,
    /// Amount handed over, in minor units.
    pub amount: i64,
    /// Card approval code, voucher number, ...
    pub reference: String,
}

impl Tender {
    /// Cash handed over.
    pub fn cash(amount: i64) -> Self {
        Tender {
            method: TenderMethod::Cash,
            amount,
            reference: String::new(),
        }
    }

    /// A card payment with its approval reference.
    pub fn card(amount: i64, reference: &str) -> Self {
        Tender {
            method: TenderMethod::Card,
            amount,
            reference: reference.into(),
        }
    }
}

/// A tender as recorded on a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Order on the bill.
    pub seq: u32,
    /// Cash, card or other.
    pub method: TenderMethod,
    /// Amount applied to the bill.
    pub amount: i64,
    /// Amount handed over (cash may exceed `amount`; the rest was change).
    pub tendered: i64,
    /// Card approval code, voucher number, ...
    pub reference: String,
}

/// A bill as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    /// UUIDv7 made on the device.
    pub id: Uuid,
    /// Bill number, e.g. `S01-T03-000042`: gapless per device.
    pub number: String,
    /// Store code.
    pub store_id: String,
    /// Device code.
    pub device_id: String,
    /// Staff who opened it.
    pub staff_id: String,
    /// The customer, or `None` for a walk-in.
    pub customer_id: Option<Uuid>,
    /// The customer's phone when the bill was opened: for lookup only.
    pub customer_phone: Option<String>,
    /// ISO 4217 code.
    pub currency: String,
    /// Whether prices include tax.
    pub price_mode: PriceMode,
    /// Sale or refund.
    pub kind: BillKind,
    /// On a refund: the sale it refunds.
    pub refund_of: Option<Uuid>,
    /// Where the bill stands.
    pub status: BillStatus,
    /// Discount on the whole bill, spread over the lines.
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
    /// Position in the device's hash chain, once final.
    pub chain_pos: Option<i64>,
    /// Hash of the previous bill in the chain.
    pub prev_hash: Option<String>,
    /// Hash of this bill's content and `prev_hash`.
    pub hash: Option<String>,
    /// On a sale voided after it was paid: the hash of `hash` and
    /// `voided_at_ms`, written by the void (see `chain`). Absent from
    /// records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub void_seal: Option<String>,
    /// Incremented by every change.
    pub version: i64,
    /// The highest line number this bill ever had: a removed line's number
    /// is never given to another line. Absent from records written before
    /// it existed, where it reads 0.
    #[serde(default)]
    pub last_line_no: u32,
    /// The lines, by line number.
    pub lines: Vec<BillLine>,
    /// The payments, in order.
    pub payments: Vec<Payment>,
}

/// A bill without its lines, for lists and histories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillSummary {
    /// Bill id.
    pub id: Uuid,
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

/// What a new bill starts with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewBill {
    /// The customer, or `None` for a walk-in.
    pub customer_id: Option<Uuid>,
    /// Price mode; tax-inclusive when absent.
    pub price_mode: Option<PriceMode>,
    /// Lines already scanned.
    pub lines: Vec<NewLine>,
    /// Discount on the whole bill.
    pub bill_discount: i64,
}

/// A quantity of one line of a sale to refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundLine {
    /// The line of the original bill.
    pub line_no: u32,
    /// How much to refund, in milli-units.
    pub qty_milli: i64,
}

pub(crate) fn conversion(
    i: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

/// Header columns read by [`Bill::from_row`], in order.
pub(crate) const COLUMNS: &str = "rid, id, number, store_id, device_id, staff_id, customer_id, \
     customer_phone, currency, price_mode, kind, refund_of, status, bill_discount, subtotal, \
     discount_total, tax_total, total, paid_total, change_due, refunded_total, opened_at, \
     closed_at, voided_at, chain_pos, prev_hash, hash, version, last_line_no, void_seal";

/// Columns read by [`BillSummary::from_row`], in order.
pub(crate) const SUMMARY_COLUMNS: &str =
    "rid, id, number, kind, status, total, refunded_total, currency, opened_at, closed_at";

/// Line columns read by [`BillLine::from_row`].
pub(crate) const LINE_COLUMNS: &str = "line_no, product_code, name, qty_milli, unit_price, \
     discount, tax_category, tax_rate_bp, bill_discount, net, tax, gross, refund_of_line, \
     refunded_qty, refunded_gross, refunded_tax";

/// Payment columns read by [`Payment::from_row`].
pub(crate) const PAYMENT_COLUMNS: &str = "seq, method, amount, tendered, reference";

fn parse<T: FromStr>(row: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(i)?;
    text.parse().map_err(|e| conversion(i, e))
}

fn parse_opt<T: FromStr>(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: Option<String> = row.get(i)?;
    text.map(|t| t.parse().map_err(|e| conversion(i, e)))
        .transpose()
}

impl Bill {
    /// Reads a header selected with [`COLUMNS`]; lines and payments are empty.
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<(i64, Bill)> {
        Ok((
            row.get(0)?,
            Bill {
                id: parse(row, 1)?,
                number: row.get(2)?,
                store_id: row.get(3)?,
                device_id: row.get(4)?,
                staff_id: row.get(5)?,
                customer_id: parse_opt(row, 6)?,
                customer_phone: row.get(7)?,
                currency: row.get(8)?,
                price_mode: parse(row, 9)?,
                kind: parse(row, 10)?,
                refund_of: parse_opt(row, 11)?,
                status: parse(row, 12)?,
                bill_discount: row.get(13)?,
                subtotal: row.get(14)?,
                discount_total: row.get(15)?,
                tax_total: row.get(16)?,
                total: row.get(17)?,
                paid_total: row.get(18)?,
                change_due: row.get(19)?,
                refunded_total: row.get(20)?,
                opened_at_ms: row.get(21)?,
                closed_at_ms: row.get(22)?,
                voided_at_ms: row.get(23)?,
                chain_pos: row.get(24)?,
                prev_hash: row.get(25)?,
                hash: row.get(26)?,
                version: row.get(27)?,
                last_line_no: row.get(28)?,
                void_seal: row.get(29)?,
                lines: Vec::new(),
                payments: Vec::new(),
            },
        ))
    }

    /// The summary of this bill.
    pub fn summary(&self) -> BillSummary {
        BillSummary {
            id: self.id,
            number: self.number.clone(),
            kind: self.kind,
            status: self.status,
            total: self.total,
            refunded_total: self.refunded_total,
            currency: self.currency.clone(),
            opened_at_ms: self.opened_at_ms,
            closed_at_ms: self.closed_at_ms,
        }
    }
}

impl BillSummary {
    /// Reads a row selected with [`SUMMARY_COLUMNS`]; returns it with its rowid.
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<(i64, BillSummary)> {
        Ok((
            row.get(0)?,
            BillSummary {
                id: parse(row, 1)?,
                number: row.get(2)?,
                kind: parse(row, 3)?,
                status: parse(row, 4)?,
                total: row.get(5)?,
                refunded_total: row.get(6)?,
                currency: row.get(7)?,
                opened_at_ms: row.get(8)?,
                closed_at_ms: row.get(9)?,
            },
        ))
    }
}

impl BillLine {
    /// Line `line_no` made of `l` (texts trimmed), before
    /// [`super::totals::compute`] fills in its discount share, net, tax and gross.
    pub fn unpriced(line_no: u32, l: &NewLine) -> BillLine {
        BillLine {
            line_no,
            product_code: l.product_code.trim().to_owned(),
            name: l.name.trim().to_owned(),
            qty_milli: l.qty_milli,
            unit_price: l.unit_price,
            discount: l.discount,
            tax_category: l.tax_category.trim().to_owned(),
            tax_rate_bp: l.tax_rate_bp,
            bill_discount: 0,
            net: 0,
            tax: 0,
            gross: 0,
            refund_of_line: None,
            refunded_qty_milli: 0,
            refunded_gross: 0,
            refunded_tax: 0,
        }
    }

    /// Reads a line selected with [`LINE_COLUMNS`].
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<BillLine> {
        Ok(BillLine {
            line_no: row.get(0)?,
            product_code: row.get(1)?,
            name: row.get(2)?,
            qty_milli: row.get(3)?,
            unit_price: row.get(4)?,
            discount: row.get(5)?,
            tax_category: row.get(6)?,
            tax_rate_bp: row.get(7)?,
            bill_discount: row.get(8)?,
            net: row.get(9)?,
            tax: row.get(10)?,
            gross: row.get(11)?,
            refund_of_line: row.get(12)?,
            refunded_qty_milli: row.get(13)?,
            refunded_gross: row.get(14)?,
            refunded_tax: row.get(15)?,
        })
    }
}

impl Payment {
    /// Reads a payment selected with [`PAYMENT_COLUMNS`].
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<Payment> {
        Ok(Payment {
            seq: row.get(0)?,
            method: parse(row, 1)?,
            amount: row.get(2)?,
            tendered: row.get(3)?,
            reference: row.get(4)?,
        })
    }
}
