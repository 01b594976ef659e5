//! Bill arithmetic: the one place amounts are computed, in integer minor
//! units. The rounding rule, applied per line in this order:
//!
//! 1. line base = quantity x unit price, rounded half away from zero to a
//!    minor unit (quantities are milli-units, so this divides by 1000);
//! 2. the line discount is taken off the base;
//! 3. the bill discount is spread over the lines in proportion to what is
//!    left of each, by largest remainder, so the shares add up exactly;
//! 4. tax per line, rounded half away from zero:
//!    - tax-exclusive prices: tax = net x rate, gross = net + tax;
//!    - tax-inclusive prices: tax = gross x rate / (1 + rate), net = gross - tax;
//! 5. bill totals are sums of the line figures, so lines always add up to the bill.
//!
//! Refunds take the same share of each original line's gross and tax as of
//! its quantity, counted over all refunds of the line together: once `q` of
//! its `Q` units are refunded, the line has given back exactly
//! `round(gross x q / Q)` and `round(tax x q / Q)`, and each refund takes what
//! that adds to the refunds before it. Rounding each refund on its own would
//! let small amounts that round up (0.5 minor units of tax per unit, say)
//! give back more than the line holds before its last unit, and a negative
//! amount on that last refund. The refund that empties a line takes exactly
//! what remains, so refunds add up to what was paid, never more.

use super::model::{BillLine, NewLine, PriceMode};
use crate::error::{Error, Result};
use crate::money::div_round;

/// Largest quantity on one line: one million units.
pub const MAX_QTY_MILLI: i64 = 1_000_000_000;
/// Largest unit price in minor units.
pub const MAX_UNIT_PRICE: i64 = 1_000_000_000_000;
/// Largest bill subtotal or total in minor units (10^13: a hundred billion
/// in a two-decimal currency), leaving customers' lifetime sums far from overflow.
pub const MAX_BILL_TOTAL: i64 = 10_000_000_000_000;
/// Most lines on one bill.
pub const MAX_LINES: usize = 500;
/// Highest tax rate in basis points (100%).
pub const MAX_TAX_RATE_BP: u32 = 10_000;

/// The totals of a bill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Sum of line bases (before discounts).
    pub subtotal: i64,
    /// Line discounts plus the bill discount.
    pub discount: i64,
    /// Sum of line taxes.
    pub tax: i64,
    /// Sum of line grosses.
    pub total: i64,
}

/// Quantity x unit price, rounded to a minor unit.
pub fn line_base(qty_milli: i64, unit_price: i64) -> i64 {
    div_round(i128::from(qty_milli) * i128::from(unit_price), 1000)
}

/// Checks a line to be added; `field` prefixes the error's field name.
pub fn validate_line(line: &NewLine, field: &str) -> Result<()> {
    let err = |name: &str, reason: &str| Error::invalid(format!("{field}.{name}"), reason);
    let code = line.product_code.trim();
    if code.is_empty() || code.chars().count() > 64 {
        return Err(err("product_code", "must be 1 to 64 characters"));
    }
    let name = line.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(err("name", "must be 1 to 100 characters"));
    }
    if line.qty_milli <= 0 {
        return Err(err("quantity", "must be more than zero"));
    }
    if line.qty_milli > MAX_QTY_MILLI {
        return Err(err("quantity", "is larger than one million units"));
    }
    if !(0..=MAX_UNIT_PRICE).contains(&line.unit_price) {
        return Err(err(
            "unit_price",
            "must be between zero and 10^12 minor units",
        ));
    }
    if line.discount < 0 {
        return Err(err("discount", "must not be negative"));
    }
    if line.discount > line_base(line.qty_milli, line.unit_price) {
        return Err(err("discount", "is larger than the line amount"));
    }
    if line.tax_rate_bp > MAX_TAX_RATE_BP {
        return Err(err("tax_rate", "is above 100%"));
    }
    if line.tax_category.chars().count() > 32 {
        return Err(err("tax_category", "is longer than 32 characters"));
    }
    Ok(())
}

/// Spreads `discount` over `weights` in proportion, by largest remainder;
/// ties go to the earlier weight. The shares add up to `discount` exactly.
pub fn allocate(discount: i64, weights: &[i64]) -> Vec<i64> {
    let total: i128 = weights.iter().map(|w| i128::from(*w)).sum();
    if total <= 0 || discount == 0 {
        return vec![0; weights.len()];
    }
    let d = i128::from(discount);
    let mut shares: Vec<i64> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(weights.len());
    for (i, w) in weights.iter().enumerate() {
        let exact = d * i128::from(*w);
        // Bounded: each share is at most `discount`.
        shares.push(i64::try_from(exact / total).unwrap_or(0));
        remainders.push((exact % total, i));
    }
    let mut left = discount - shares.iter().sum::<i64>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        shares[i] += 1;
        left -= 1;
    }
    shares
}

/// Tax and net of a taxable `amount` at `rate_bp`: `(net, tax, gross)`.
pub fn tax_split(amount: i64, rate_bp: u32, mode: PriceMode) -> (i64, i64, i64) {
    let rate = i128::from(rate_bp);
    match mode {
        PriceMode::Exclusive => {
            let tax = div_round(i128::from(amount) * rate, 10_000);
            (amount, tax, amount + tax)
        }
        PriceMode::Inclusive => {
            let tax = div_round(i128::from(amount) * rate, 10_000 + rate);
            (amount - tax, tax, amount)
        }
    }
}

/// Recomputes every line's discount share, net, tax and gross, and the bill
/// totals, for a sale. Fails when the bill discount exceeds what the lines
/// come to, or when the totals do not fit in 64-bit minor units (each line
/// is bounded by validation, a sum of many such lines is not).
pub fn compute(lines: &mut [BillLine], bill_discount: i64, mode: PriceMode) -> Result<Totals> {
    if bill_discount < 0 {
        return Err(Error::invalid("bill_discount", "must not be negative"));
    }
    let amounts: Vec<i64> = lines
        .iter()
        .map(|l| line_base(l.qty_milli, l.unit_price) - l.discount)
        .collect();
    let too_large = || Error::invalid("lines", "the bill comes to more than 10^13 minor units");
    let sum = |acc: i64, x: i64| acc.checked_add(x).ok_or_else(too_large);
    if bill_discount > amounts.iter().try_fold(0, |acc, a| sum(acc, *a))? {
        return Err(Error::invalid("bill_discount", "is larger than the bill"));
    }
    let shares = allocate(bill_discount, &amounts);
    let mut totals = Totals::default();
    for ((line, amount), share) in lines.iter_mut().zip(amounts).zip(shares) {
        let (net, tax, gross) = tax_split(amount - share, line.tax_rate_bp, mode);
        line.bill_discount = share;
        line.net = net;
        line.tax = tax;
        line.gross = gross;
        totals.subtotal = sum(totals.subtotal, line_base(line.qty_milli, line.unit_price))?;
        totals.discount = sum(totals.discount, line.discount + share)?;
        totals.tax = sum(totals.tax, tax)?;
        totals.total = sum(totals.total, gross)?;
    }
    if totals.subtotal > MAX_BILL_TOTAL || totals.total > MAX_BILL_TOTAL {
        return Err(too_large());
    }
    Ok(totals)
}

/// The gross and tax to refund for `qty_milli` more of `sold`, given what
/// was refunded of it already: the share of the line for everything
/// refunded so far, less what earlier refunds gave back. `qty_milli` is at
/// most what remains of the line (`plan_refund` checks it).
pub fn refund_share(sold: &BillLine, qty_milli: i64) -> (i64, i64) {
    let refunded_qty = sold.refunded_qty_milli + qty_milli;
    if refunded_qty >= sold.qty_milli {
        return (
            sold.gross - sold.refunded_gross,
            sold.tax - sold.refunded_tax,
        );
    }
    let share_so_far = |amount: i64| {
        div_round(
            i128::from(amount) * i128::from(refunded_qty),
            i128::from(sold.qty_milli),
        )
    };
    (
        share_so_far(sold.gross) - sold.refunded_gross,
        share_so_far(sold.tax) - sold.refunded_tax,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(qty_milli: i64, unit_price: i64, discount: i64, rate_bp: u32) -> BillLine {
        let new = NewLine {
            qty_milli,
            discount,
            tax_rate_bp: rate_bp,
            ..NewLine::item("P", "P", 1, unit_price)
        };
        BillLine::unpriced(1, &new)
    }

    #[test]
    fn line_bases_round_half_away_from_zero() {
        // (qty_milli, unit_price, base)
        for (q, p, want) in [
            (1_000, 999, 999),
            (750, 1_999, 1_499), // 1499.25
            (500, 3, 2),         // 1.5 rounds up
            (333, 100, 33),      // 33.3
            (1, 499, 0),         // 0.499
            (1, 500, 1),         // 0.5
        ] {
            assert_eq!(line_base(q, p), want, "{q} x {p}");
        }
    }

    #[test]
    fn allocation_is_exact_and_proportional() {
        for (discount, weights, want) in [
            (100, vec![100, 100, 100], vec![34, 33, 33]),
            (10, vec![1, 2, 7], vec![1, 2, 7]),
            (1, vec![500, 500], vec![1, 0]),
            (0, vec![5, 5], vec![0, 0]),
            (7, vec![0, 10], vec![0, 7]),
        ] {
            let got = allocate(discount, &weights);
            assert_eq!(got, want, "{discount} over {weights:?}");
            assert_eq!(got.iter().sum::<i64>(), discount);
        }
    }

    #[test]
    fn tax_exclusive_and_inclusive_table() {
        // (amount, rate_bp, mode, (net, tax, gross))
        for (amount, rate, mode, want) in [
            (10_000, 1_800, PriceMode::Exclusive, (10_000, 1_800, 11_800)),
            (999, 500, PriceMode::Exclusive, (999, 50, 1_049)), // 49.95 -> 50
            (11_800, 1_800, PriceMode::Inclusive, (10_000, 1_800, 11_800)),
            (100, 1_800, PriceMode::Inclusive, (85, 15, 100)), // 15.25 -> 15
            (105, 500, PriceMode::Inclusive, (100, 5, 105)),
            (0, 1_800, PriceMode::Exclusive, (0, 0, 0)),
            (1_234, 0, PriceMode::Inclusive, (1_234, 0, 1_234)),
        ] {
            assert_eq!(
                tax_split(amount, rate, mode),
                want,
                "{amount} at {rate} {mode}"
            );
        }
    }

    #[test]
    fn bill_totals_add_up_from_lines() {
        let mut lines = vec![
            line(2_000, 5_000, 500, 1_800), // base 10000, amount 9500
            line(750, 1_999, 0, 500),       // base 1499
            line(1_000, 1, 0, 0),           // base 1
        ];
        let totals = compute(&mut lines, 1_000, PriceMode::Exclusive).expect("totals");
        assert_eq!(totals.subtotal, 11_500);
        assert_eq!(totals.discount, 1_500);
        let shares: Vec<i64> = lines.iter().map(|l| l.bill_discount).collect();
        assert_eq!(shares.iter().sum::<i64>(), 1_000);
        assert_eq!(shares, vec![864, 136, 0]);
        assert_eq!(totals.tax, lines.iter().map(|l| l.tax).sum::<i64>());
        assert_eq!(totals.total, totals.subtotal - totals.discount + totals.tax);
        // 8636 net at 18% = 1554.48 -> 1554; 1363 at 5% = 68.15 -> 68
        assert_eq!((lines[0].tax, lines[1].tax, lines[2].tax), (1_554, 68, 0));

        let mut inclusive = lines.clone();
        let t = compute(&mut inclusive, 1_000, PriceMode::Inclusive).expect("inclusive");
        assert_eq!(t.total, t.subtotal - t.discount);
        assert!(inclusive.iter().all(|l| l.net + l.tax == l.gross));
    }

    #[test]
    fn bill_discount_cannot_exceed_the_bill() {
        let mut lines = vec![line(1_000, 100, 0, 0)];
        assert!(compute(&mut lines, 101, PriceMode::Exclusive).is_err());
        assert!(compute(&mut lines, -1, PriceMode::Exclusive).is_err());
        assert_eq!(
            compute(&mut lines, 100, PriceMode::Exclusive)
                .expect("all")
                .total,
            0
        );
    }

    #[test]
    fn partial_refunds_never_exceed_the_line() {
        let mut sold = line(3_000, 333, 0, 1_800);
        compute(std::slice::from_mut(&mut sold), 0, PriceMode::Exclusive).expect("line");
        let mut refunded = (0, 0);
        for _ in 0..3 {
            let (gross, tax) = refund_share(&sold, 1_000);
            sold.refunded_qty_milli += 1_000;
            sold.refunded_gross += gross;
            sold.refunded_tax += tax;
            refunded = (refunded.0 + gross, refunded.1 + tax);
        }
        assert_eq!(refunded, (sold.gross, sold.tax));
    }

    #[test]
    fn unit_refunds_take_the_cumulative_share() {
        // 4 x 10 at 5%: net 40, tax 2, gross 42 -- half a minor unit of tax per unit.
        let mut sold = line(4_000, 10, 0, 500);
        compute(std::slice::from_mut(&mut sold), 0, PriceMode::Exclusive).expect("line");
        assert_eq!((sold.gross, sold.tax), (42, 2));
        let mut shares = Vec::new();
        for _ in 0..4 {
            let (gross, tax) = refund_share(&sold, 1_000);
            sold.refunded_qty_milli += 1_000;
            sold.refunded_gross += gross;
            sold.refunded_tax += tax;
            assert!(sold.refunded_gross <= sold.gross && sold.refunded_tax <= sold.tax);
            shares.push((gross, tax));
        }
        assert_eq!(shares, vec![(11, 1), (10, 0), (11, 1), (10, 0)]);
    }

    #[test]
    fn lines_are_validated_field_by_field() {
        let ok = NewLine::item("SKU1", "Tea", 1, 100);
        assert!(validate_line(&ok, "lines[0]").is_ok());
        let cases: Vec<(NewLine, &str)> = vec![
            (
                NewLine {
                    qty_milli: 0,
                    ..ok.clone()
                },
                "lines[0].quantity",
            ),
            (
                NewLine {
                    qty_milli: -1_000,
                    ..ok.clone()
                },
                "lines[0].quantity",
            ),
            (
                NewLine {
                    unit_price: -1,
                    ..ok.clone()
                },
                "lines[0].unit_price",
            ),
            (
                NewLine {
                    discount: 101,
                    ..ok.clone()
                },
                "lines[0].discount",
            ),
            (
                NewLine {
                    discount: -1,
                    ..ok.clone()
                },
                "lines[0].discount",
            ),
            (
                NewLine {
                    tax_rate_bp: 10_001,
                    ..ok.clone()
                },
                "lines[0].tax_rate",
            ),
            (
                NewLine {
                    name: " ".into(),
                    ..ok.clone()
                },
                "lines[0].name",
            ),
            (
                NewLine {
                    product_code: String::new(),
                    ..ok.clone()
                },
                "lines[0].product_code",
            ),
        ];
        for (bad, field) in cases {
            match validate_line(&bad, "lines[0]") {
                Err(Error::Validation { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
