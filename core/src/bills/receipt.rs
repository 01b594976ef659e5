//! Plain-text receipts for 32, 42 and 48 column printers.
//!
//! A receipt is what the customer takes home and what a reprint must match,
//! so it is rendered from the stored bill alone: every amount printed is a
//! figure the bill already holds (or a sum of its lines' figures), formatted
//! by [`Currency::format`] from integer minor units, never recomputed in
//! floating point.
//!
//! Guarantees of [`render`]:
//! - no line is wider than [`ReceiptWidth::columns`] columns (see
//!   [`columns`]: a double-width character, as CJK scripts have, takes two,
//!   every other `char` one), and no line ends in a space;
//! - text (store, item and staff names, numbers, references) wraps at spaces,
//!   or inside a word too long for a line, but never between a letter and the
//!   combining mark or virama joined to it, so "Café" or a Devanagari name is
//!   not torn into a stray accent or vowel sign on the next line; control
//!   characters become spaces;
//! - amounts are right-aligned; when a label leaves no room for its amount,
//!   the amount moves to a line of its own rather than overflowing.
//!
//! Counting a combining mark (an accent, a Devanagari vowel sign) as a
//! column errs on the safe side: it takes no column of its own on paper, so
//! such a line prints no wider than it counts. A double-width character
//! counted as one would overflow the paper, so it counts as two.
//!
//! [`Store::receipt`] adds the reads: it refuses bills that are not final
//! (open or voided) and finds the customer and original-sale numbers.

use std::collections::BTreeMap;

use chrono::DateTime;
use unicode_normalization::char::{canonical_combining_class, is_combining_mark};
use unicode_width::UnicodeWidthChar;
use uuid::Uuid;

use super::model::{Bill, BillKind, BillStatus, PriceMode, TenderMethod};
use super::totals::line_base;
use crate::error::{Error, Result};
use crate::money::Currency;
use crate::store::Store;

/// Paper widths of the receipt printers we support, in columns per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptWidth {
    /// 58 mm paper: 32 columns.
    Cols32,
    /// 76 mm paper (impact printers): 42 columns.
    Cols42,
    /// 80 mm paper: 48 columns.
    Cols48,
}

impl ReceiptWidth {
    /// Every supported width, narrowest first.
    pub const ALL: [ReceiptWidth; 3] = [
        ReceiptWidth::Cols32,
        ReceiptWidth::Cols42,
        ReceiptWidth::Cols48,
    ];

    /// Characters per printed line.
    pub fn columns(self) -> usize {
        match self {
            ReceiptWidth::Cols32 => 32,
            ReceiptWidth::Cols42 => 42,
            ReceiptWidth::Cols48 => 48,
        }
    }
}

impl Store {
    /// The receipt of a paid, partly refunded or refunded sale, or of a
    /// refund, as plain text lines of at most `width` columns.
    ///
    /// An open or voided bill has no receipt: [`Error::InvalidState`]. The
    /// customer's number is read including deleted and merged customers, so
    /// a reprint still works after a customer was removed or folded into
    /// another (a merged customer prints the survivor's number, the customer
    /// the bill now belongs to). A customer this device does not hold is left
    /// off, and a refunded sale it does not hold is named by id, rather than
    /// failing the print.
    pub fn receipt(&self, bill_id: Uuid, width: ReceiptWidth) -> Result<String> {
        let bill = self.bill(bill_id)?;
        if matches!(bill.status, BillStatus::Open | BillStatus::Voided) {
            return Err(super::invalid_state(&bill, "print a receipt"));
        }
        let customer_number = match bill.customer_id {
            Some(id) => self.receipt_customer_number(id)?,
            None => None,
        };
        let original_number = match bill.refund_of {
            Some(id) => match self.bill(id) {
                Ok(original) => Some(original.number),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let currency = Currency::parse(&bill.currency)?;
        Ok(render(
            &bill,
            customer_number.as_deref(),
            original_number.as_deref(),
            self.store_name(),
            currency,
            width,
        ))
    }

    /// The number to print for customer `id`: the live customer (the
    /// survivor, when merged), else the record as stored, else nothing.
    fn receipt_customer_number(&self, id: Uuid) -> Result<Option<String>> {
        let found = match self.customer(id) {
            Err(Error::NotFound { .. }) => self.customer_including_deleted(id),
            other => other,
        };
        match found {
            Ok(customer) => Ok(Some(customer.number)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Renders `bill` as a receipt `width` columns wide, ending in a newline.
///
/// `customer_number` is printed when given (pass `None` for a walk-in);
/// `original_number` is the number of the sale a refund bill refunds (when
/// `None`, a refund names the sale by id). Amounts are in `currency`, the
/// bill's own. Pure: the same arguments always give the same text.
pub fn render(
    bill: &Bill,
    customer_number: Option<&str>,
    original_number: Option<&str>,
    store_name: &str,
    currency: Currency,
    width: ReceiptWidth,
) -> String {
    let money = |minor: i64| currency.format(minor);
    let mut out = Sheet::new(width.columns());
    let refund = bill.kind == BillKind::Refund;

    out.centre(store_name);
    out.rule('=');
    if refund {
        let original = original_number.map_or_else(
            || bill.refund_of.map(|id| id.to_string()).unwrap_or_default(),
            str::to_owned,
        );
        out.text(0, &format!("REFUND of {original}"));
    }
    out.text(0, &format!("Bill: {}", bill.number));
    out.text(
        0,
        &format!(
            "Date: {}",
            timestamp(bill.closed_at_ms.unwrap_or(bill.opened_at_ms))
        ),
    );
    out.text(0, &format!("Staff: {}", bill.staff_id));
    if let Some(number) = customer_number {
        out.text(0, &format!("Customer: {number}"));
    }
    out.rule('-');

    for line in &bill.lines {
        out.text(0, &line.name);
        out.row(
            2,
            &format!("{} x {}", quantity(line.qty_milli), money(line.unit_price)),
            &money(line_base(line.qty_milli, line.unit_price)),
        );
        if line.discount != 0 {
            out.row(2, "Discount", &money(-line.discount));
        }
    }
    out.rule('-');

    let item_discounts: i64 = bill.lines.iter().map(|l| l.discount).sum();
    let other_discount = bill.discount_total - item_discounts;
    out.row(0, "Subtotal", &money(bill.subtotal));
    if item_discounts != 0 {
        out.row(0, "Item discounts", &money(-item_discounts));
    }
    if other_discount != 0 {
        // On a sale this is the bill discount; on a refund, the share of the
        // sale's discounts that the refunded quantities carried.
        let label = if refund { "Discount" } else { "Bill discount" };
        out.row(0, label, &money(-other_discount));
    }
    let taxes = tax_summary(bill);
    let total_label = format!("TOTAL {}", currency.code());
    match bill.price_mode {
        PriceMode::Exclusive => {
            tax_rows(&mut out, &taxes, bill.tax_total, "Tax added:", &money);
            out.row(0, &total_label, &money(bill.total));
        }
        PriceMode::Inclusive => {
            out.row(0, &total_label, &money(bill.total));
            tax_rows(&mut out, &taxes, bill.tax_total, "Tax included:", &money);
        }
    }
    out.rule('-');

    if refund {
        out.text(0, "Paid back:");
    }
    for p in &bill.payments {
        let (label, amount) = match p.method {
            TenderMethod::Cash if refund => ("Cash".to_owned(), p.amount),
            TenderMethod::Cash => ("Cash tendered".to_owned(), p.tendered),
            TenderMethod::Card => (with_reference("Card", &p.reference), p.amount),
            TenderMethod::Other => (with_reference("Other", &p.reference), p.amount),
        };
        out.row(0, &label, &money(amount));
    }
    if !refund && bill.payments.iter().any(|p| p.method == TenderMethod::Cash) {
        out.row(0, "Change due", &money(bill.change_due));
    }
    if !refund && bill.refunded_total != 0 {
        out.row(0, "Refunded:", &money(bill.refunded_total));
    }
    out.finish()
}

/// Tax and taxable amount of one category at one rate.
#[derive(Debug, Default, Clone, Copy)]
struct TaxGroup {
    net: i64,
    tax: i64,
}

/// The bill's lines grouped by tax category and rate, in category then rate
/// order; untaxed lines without a category are left out.
fn tax_summary(bill: &Bill) -> BTreeMap<(&str, u32), TaxGroup> {
    let mut groups: BTreeMap<(&str, u32), TaxGroup> = BTreeMap::new();
    for line in &bill.lines {
        if line.tax_rate_bp == 0 && line.tax_category.is_empty() {
            continue;
        }
        let group = groups
            .entry((line.tax_category.as_str(), line.tax_rate_bp))
            .or_default();
        group.net += line.net;
        group.tax += line.tax;
    }
    groups
}

/// The tax section: a heading, one row per group and the bill's tax total.
fn tax_rows(
    out: &mut Sheet,
    taxes: &BTreeMap<(&str, u32), TaxGroup>,
    tax_total: i64,
    heading: &str,
    money: &dyn Fn(i64) -> String,
) {
    if taxes.is_empty() && tax_total == 0 {
        return;
    }
    out.text(0, heading);
    for ((category, rate_bp), group) in taxes {
        let name = if category.is_empty() { "Tax" } else { category };
        out.row(
            2,
            &format!("{name} {} on {}", rate(*rate_bp), money(group.net)),
            &money(group.tax),
        );
    }
    out.row(2, "Tax total", &money(tax_total));
}

/// `Card 123456`, or just `Card` without a reference.
fn with_reference(method: &str, reference: &str) -> String {
    if reference.trim().is_empty() {
        method.to_owned()
    } else {
        format!("{method} {reference}")
    }
}

/// A tax rate in basis points as a percentage: `18%`, `12.5%`, `0.25%`.
fn rate(bp: u32) -> String {
    let (whole, frac) = (bp / 100, bp % 100);
    match frac {
        0 => format!("{whole}%"),
        f if f % 10 == 0 => format!("{whole}.{}%", f / 10),
        f => format!("{whole}.{f:02}%"),
    }
}

/// A milli-unit quantity: whole units plain (`2`), others with all three
/// decimals (`0.750`), so weighed goods read as weighed.
fn quantity(milli: i64) -> String {
    let sign = if milli < 0 { "-" } else { "" };
    let abs = milli.unsigned_abs();
    match abs % 1000 {
        0 => format!("{sign}{}", abs / 1000),
        frac => format!("{sign}{}.{frac:03}", abs / 1000),
    }
}

/// A UTC timestamp to the second; the raw milliseconds if out of range.
fn timestamp(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// Lines being laid out at a fixed width.
#[derive(Debug)]
struct Sheet {
    width: usize,
    lines: Vec<String>,
}

impl Sheet {
    fn new(width: usize) -> Self {
        Sheet {
            width,
            lines: Vec::new(),
        }
    }

    /// `text` wrapped and centred.
    fn centre(&mut self, text: &str) {
        for piece in wrap(text, self.width) {
            let pad = (self.width - columns(&piece)) / 2;
            self.lines.push(format!("{:pad$}{piece}", ""));
        }
    }

    /// A full-width rule of `ch`.
    fn rule(&mut self, ch: char) {
        self.lines
            .push(std::iter::repeat_n(ch, self.width).collect());
    }

    /// `text` wrapped, every line indented by `indent`.
    fn text(&mut self, indent: usize, text: &str) {
        for piece in wrap(text, self.width - indent) {
            self.lines.push(format!("{:indent$}{piece}", ""));
        }
    }

    /// `label` indented on the left, `amount` right-aligned on its last
    /// line; the amount takes a line of its own when they do not fit together.
    fn row(&mut self, indent: usize, label: &str, amount: &str) {
        let amount_len = columns(amount);
        if amount_len > self.width {
            // No amount an i64 can hold is this long; wrap rather than overflow.
            self.text(indent, &format!("{label} {amount}"));
            return;
        }
        let mut pieces = wrap(label, self.width - indent);
        let last = pieces.pop().unwrap_or_default();
        for piece in pieces {
            self.lines.push(format!("{:indent$}{piece}", ""));
        }
        let used = indent + columns(&last);
        if used + 1 + amount_len <= self.width {
            let pad = self.width - used - amount_len;
            self.lines
                .push(format!("{:indent$}{last}{:pad$}{amount}", "", ""));
        } else {
            if !last.is_empty() {
                self.lines.push(format!("{:indent$}{last}", ""));
            }
            let pad = self.width - amount_len;
            self.lines.push(format!("{:pad$}{amount}", ""));
        }
    }

    /// The receipt text: lines joined, ending in a newline.
    fn finish(self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }
}

/// Zero-width joiner and non-joiner: they bind the characters around them.
const ZWJ: char = '\u{200d}';
const ZWNJ: char = '\u{200c}';
/// Canonical combining class of viramas (e.g. Devanagari U+094D), which join
/// the next consonant into a conjunct.
const VIRAMA_CLASS: u8 = 9;

/// Whether a line may end between `before` and `after` inside a word.
fn may_break(before: char, after: char) -> bool {
    !(is_combining_mark(after)
        || after == ZWJ
        || after == ZWNJ
        || before == ZWJ
        || before == ZWNJ
        || canonical_combining_class(before) == VIRAMA_CLASS)
}

/// The printer columns `c` takes: two for a double-width (East Asian wide
/// or fullwidth) character, one for any other.
fn char_columns(c: char) -> usize {
    if c.width() == Some(2) {
        2
    } else {
        1
    }
}

/// The printer columns of `text` (see [`char_columns`]).
fn columns(text: &str) -> usize {
    text.chars().map(char_columns).sum()
}

/// Where to cut `word`, wider than `max` columns, to start a new line: the
/// last allowed break among the chars that fit in `max`, or all of those
/// when a single cluster is wider than a line. At least one char, so a
/// double-width character on a one-column line still moves on.
fn cut_point(word: &[char], max: usize) -> usize {
    let mut used = 0;
    let fit = word
        .iter()
        .take_while(|&&c| {
            used += char_columns(c);
            used <= max
        })
        .count()
        .max(1);
    (1..=fit.min(word.len() - 1))
        .rev()
        .find(|&i| may_break(word[i - 1], word[i]))
        .unwrap_or(fit)
}

/// `text` in lines of at most `width` columns: control characters become
/// spaces, runs of whitespace one space, lines break at spaces and words
/// wider than a line at cluster boundaries. Empty text gives no lines.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    for word in clean.split_whitespace() {
        let mut rest: Vec<char> = word.chars().collect();
        loop {
            let sep = usize::from(len > 0);
            let rest_len: usize = rest.iter().copied().map(char_columns).sum();
            if len + sep + rest_len <= width {
                if sep == 1 {
                    line.push(' ');
                }
                line.extend(rest.iter());
                len += sep + rest_len;
                break;
            }
            if len > 0 {
                lines.push(std::mem::take(&mut line));
                len = 0;
                continue;
            }
            let cut = cut_point(&rest, width);
            lines.push(rest[..cut].iter().collect());
            rest.drain(..cut);
        }
    }
    if len > 0 {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bills::model::{BillLine, Payment};
    use crate::bills::totals;
    use crate::bills::NewLine;

    fn inr() -> Currency {
        Currency::parse("INR").expect("INR")
    }

    fn line(no: u32, name: &str, qty_milli: i64, unit_price: i64) -> BillLine {
        // Names are kept as given, untrimmed: some tests feed tabs and newlines.
        BillLine {
            product_code: format!("SKU{no}"),
            name: name.into(),
            qty_milli,
            ..BillLine::unpriced(no, &NewLine::item("", "", 0, unit_price))
        }
    }

    fn taxed(mut l: BillLine, category: &str, rate_bp: u32) -> BillLine {
        l.tax_category = category.into();
        l.tax_rate_bp = rate_bp;
        l
    }

    fn payment(seq: u32, method: TenderMethod, amount: i64, tendered: i64, r: &str) -> Payment {
        Payment {
            seq,
            method,
            amount,
            tendered,
            reference: r.into(),
        }
    }

    /// A paid sale with fixed ids and times, totalled by the real arithmetic.
    fn sale(lines: Vec<BillLine>, bill_discount: i64, mode: PriceMode) -> Bill {
        let mut lines = lines;
        let t = totals::compute(&mut lines, bill_discount, mode).expect("totals");
        Bill {
            id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            number: "S01-T01-000042".into(),
            store_id: "S01".into(),
            device_id: "T01".into(),
            staff_id: "asha".into(),
            customer_id: None,
            customer_phone: None,
            currency: "INR".into(),
            price_mode: mode,
            kind: BillKind::Sale,
            refund_of: None,
            status: BillStatus::Paid,
            bill_discount,
            subtotal: t.subtotal,
            discount_total: t.discount,
            tax_total: t.tax,
            total: t.total,
            paid_total: t.total,
            change_due: 0,
            refunded_total: 0,
            // 2024-05-01 14:03:07.250 UTC
            opened_at_ms: 1_714_572_100_000,
            closed_at_ms: Some(1_714_572_187_250),
            voided_at_ms: None,
            chain_pos: Some(42),
            prev_hash: None,
            hash: None,
            version: 2,
            last_line_no: lines.len() as u32,
            void_seal: None,
            lines,
            payments: Vec::new(),
        }
    }

    /// Three lines (one weighed, one discounted, one Unicode), a bill
    /// discount, two tax rates, paid by card and cash with change.
    fn golden_bill() -> Bill {
        let mut lines = vec![
            taxed(line(1, "Café Latte", 2_000, 15_000), "GST", 500),
            taxed(line(2, "Basmati Rice", 750, 8_000), "GST", 500),
            taxed(line(3, "चाय मसाला", 1_000, 12_000), "GST", 1_800),
        ];
        lines[0].discount = 1_000;
        let mut bill = sale(lines, 2_000, PriceMode::Inclusive);
        bill.payments = vec![
            payment(1, TenderMethod::Card, 30_000, 30_000, "AUTH42"),
            payment(2, TenderMethod::Cash, bill.total - 30_000, 20_000, ""),
        ];
        bill.change_due = 20_000 - (bill.total - 30_000);
        bill
    }

    /// The 32-column receipt of [`golden_bill`], line by line.
    const GOLDEN_32: [&str; 28] = [
        "          Corner Café",
        "================================",
        "Bill: S01-T01-000042",
        "Date: 2024-05-01 14:03:07 UTC",
        "Staff: asha",
        "Customer: S01-T01-C000007",
        "--------------------------------",
        "Café Latte",
        "  2 x 150.00              300.00",
        "  Discount                -10.00",
        "Basmati Rice",
        "  0.750 x 80.00            60.00",
        "चाय मसाला",
        "  1 x 120.00              120.00",
        "--------------------------------",
        "Subtotal                  480.00",
        "Item discounts            -10.00",
        "Bill discount             -20.00",
        "TOTAL INR                 450.00",
        "Tax included:",
        "  GST 5% on 319.15         15.96",
        "  GST 18% on 97.36         17.53",
        "  Tax total                33.49",
        "--------------------------------",
        "Card AUTH42               300.00",
        "Cash tendered             200.00",
        "Change due                 50.00",
        "",
    ];

    #[test]
    fn golden_32_column_receipt() {
        let text = render(
            &golden_bill(),
            Some("S01-T01-C000007"),
            None,
            "Corner Café",
            inr(),
            ReceiptWidth::Cols32,
        );
        assert_eq!(text, GOLDEN_32.join("\n"), "got:\n{text}");
    }

    /// Pathological content: names, numbers, references and amounts as long
    /// as validation lets them be.
    fn long_bill() -> Bill {
        let long_name = "Extra long organic hand-picked Darjeeling first flush tea, \
                         tin of 250 g, limited edition with gift box and ribbon";
        let hindi = "हल्दीरामकीभुजियासेवनमकीनबड़ापैकेटपाँचसौग्रामवालाअसलीस्वादघरकाबनाहुआ";
        let mut lines = vec![
            taxed(
                line(1, long_name, 8_000, totals::MAX_UNIT_PRICE), // near MAX_BILL_TOTAL
                "A-VERY-LONG-TAX-CATEGORY-NAME-32",
                1_250,
            ),
            taxed(line(2, hindi, 1_500, 99_99), "", 25),
            line(3, "x", 1, 1),
            taxed(line(4, "Tab\tand\nnewline", 1_000, 100), "EXEMPT", 0),
        ];
        lines[0].discount = 123_456_789;
        let mut bill = sale(lines, 1_000_000, PriceMode::Exclusive);
        bill.number = "STORE-CODE-16CHR-DEVICE-CODE-16C-000001".into();
        bill.staff_id = "staff-member-with-a-sixty-four-byte-identifier-0123456789abcdefg".into();
        bill.payments = vec![
            payment(
                1,
                TenderMethod::Card,
                bill.total,
                bill.total,
                "REFERENCE-THAT-IS-SIXTY-FOUR-CHARACTERS-LONG-0123456789abcdefghij",
            ),
            payment(2, TenderMethod::Other, 1, 1, "VOUCHER 7"),
        ];
        bill.refunded_total = bill.total / 3;
        bill.status = BillStatus::PartlyRefunded;
        bill
    }

    #[test]
    fn every_line_fits_every_width() {
        let store = "The Very Long Name Of A Neighbourhood Supermarket And Pharmacy, \
                     Main Road Branch Number Seventeen";
        for width in ReceiptWidth::ALL {
            for bill in [golden_bill(), long_bill()] {
                let text = render(&bill, Some("S01-T01-C000001"), None, store, inr(), width);
                for l in text.lines() {
                    assert!(
                        columns(l) <= width.columns(),
                        "{width:?}: {l:?} is {} columns",
                        columns(l)
                    );
                    assert_eq!(l.trim_end(), l, "trailing space: {l:?}");
                    assert!(!l.chars().any(char::is_control), "control char: {l:?}");
                }
                // Amounts are whole: never split across lines.
                assert!(text.contains(&inr().format(bill.total)), "{text}");
            }
        }
    }

    #[test]
    fn a_refund_names_the_sale_it_refunds() {
        let mut refund = golden_bill();
        refund.kind = BillKind::Refund;
        refund.refund_of = Some(Uuid::from_u128(7));
        refund.payments = vec![payment(
            1,
            TenderMethod::Cash,
            refund.total,
            refund.total,
            "",
        )];
        let text = render(
            &refund,
            None,
            Some("S01-T01-000041"),
            "Shop",
            inr(),
            ReceiptWidth::Cols42,
        );
        assert!(text.contains("REFUND of S01-T01-000041\n"), "{text}");
        assert!(text.contains("Paid back:\n"), "{text}");
        assert!(!text.contains("Change due"), "{text}");
        assert!(!text.contains("Customer:"), "{text}");
        // Without the original's number it still says what it refunds.
        let text = render(&refund, None, None, "Shop", inr(), ReceiptWidth::Cols48);
        assert!(
            text.contains(&format!("REFUND of {}", Uuid::from_u128(7))),
            "{text}"
        );
    }

    #[test]
    fn tax_added_comes_before_the_total() {
        let bill = sale(
            vec![taxed(line(1, "Pen", 3_000, 1_000), "GST18", 1_800)],
            0,
            PriceMode::Exclusive,
        );
        let text = render(&bill, None, None, "Shop", inr(), ReceiptWidth::Cols32);
        let tax = text.find("Tax added:").expect("tax section");
        let total = text.find("TOTAL INR").expect("total");
        assert!(tax < total, "{text}");
        assert!(
            text.contains("  GST18 18% on 30.00        5.40\n"),
            "{text}"
        );
        assert!(
            text.contains("TOTAL INR                  35.40\n"),
            "{text}"
        );
    }

    #[test]
    fn rates_and_quantities_read_as_decimals() {
        for (bp, want) in [
            (1_800, "18%"),
            (1_250, "12.5%"),
            (25, "0.25%"),
            (505, "5.05%"),
            (0, "0%"),
            (10_000, "100%"),
        ] {
            assert_eq!(rate(bp), want);
        }
        for (milli, want) in [
            (1_000, "1"),
            (750, "0.750"),
            (1_500, "1.500"),
            (1, "0.001"),
            (12_000, "12"),
        ] {
            assert_eq!(quantity(milli), want);
        }
    }

    #[test]
    fn wrapping_keeps_marks_with_their_letters() {
        // "Cafe" + combining acute: the accent never starts a line.
        let decomposed = "Cafe\u{301}";
        assert_eq!(wrap(decomposed, 4), vec!["Caf", "e\u{301}"]);
        // Devanagari: vowel signs and viramas stay with their consonant.
        // The longest cluster here, "स्ते", is four chars.
        for width in 4..=12 {
            for piece in wrap("नमस्ते दुनिया", width) {
                let first = piece.chars().next().expect("non-empty");
                assert!(!is_combining_mark(first), "{width}: {piece:?}");
                assert!(piece.chars().count() <= width, "{width}: {piece:?}");
            }
        }
        assert_eq!(wrap("a  b\n\tc", 10), vec!["a b c"]);
        assert_eq!(wrap("alpha beta gamma", 10), vec!["alpha beta", "gamma"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert!(wrap("   ", 10).is_empty());
    }

    /// Double-width characters count two columns: a CJK name fills a line
    /// to its width and no further, wherever it is cut, and an amount beside
    /// it stays on the paper. Measured with `unicode-width`'s own count.
    #[test]
    fn double_width_text_is_laid_out_by_the_columns_it_prints_in() {
        use unicode_width::UnicodeWidthStr;
        assert_eq!(wrap("烏龍茶葉", 4), vec!["烏龍", "茶葉"]);
        assert_eq!(wrap("烏龍茶葉", 5), vec!["烏龍", "茶葉"]);
        assert_eq!(wrap("お茶 500g", 8), vec!["お茶", "500g"]);
        let name = "特選ジャスミン茶 ティーバッグ 二十五袋入り 東京本店";
        for width in 2..=48 {
            for piece in wrap(name, width) {
                assert!(piece.width() <= width, "{width}: {piece:?}");
            }
        }
        let mut sheet = Sheet::new(16);
        sheet.centre("東京本店");
        sheet.row(2, "烏龍茶 x2", "1,200.00");
        sheet.row(2, "特選ジャスミン茶", "980.00");
        assert_eq!(
            sheet.lines,
            vec![
                "    東京本店",
                "  烏龍茶 x2",
                "        1,200.00",
                "  特選ジャスミン",
                "  茶      980.00",
            ]
        );
        for l in &sheet.lines {
            assert!(l.width() <= 16, "{l:?}");
        }
        let mut bill = golden_bill();
        bill.lines[0].name = name.repeat(2);
        for width in ReceiptWidth::ALL {
            let text = render(&bill, None, None, "東京本店", inr(), width);
            for l in text.lines() {
                assert!(l.width() <= width.columns(), "{width:?}: {l:?}");
            }
        }
    }

    #[test]
    fn an_amount_that_does_not_fit_beside_its_label_gets_its_own_line() {
        let mut sheet = Sheet::new(12);
        sheet.row(2, "Card 1234", "100.00");
        sheet.row(0, "Cash", "5.00");
        assert_eq!(
            sheet.lines,
            vec!["  Card 1234", "      100.00", "Cash    5.00"]
        );
    }
}
