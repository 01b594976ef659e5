//! Money: integer minor units of an ISO 4217 currency. No floats anywhere.
//!
//! The one rounding rule of Till is [`div_round`]: divide, then round half
//! away from zero (commercial rounding), computed in `i128` so no product of
//! quantity, price and rate can overflow.

use std::fmt;

use crate::error::{Error, Result};

/// An ISO 4217 currency with its number of minor-unit digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    inner: iso_currency::Currency,
    exponent: u16,
}

impl Currency {
    /// Parses an ISO 4217 alphabetic code such as `INR`; unknown codes and
    /// codes without minor units (e.g. `XAU`) are a validation error.
    pub fn parse(code: &str) -> Result<Currency> {
        let inner = iso_currency::Currency::from_code(&code.trim().to_ascii_uppercase())
            .ok_or_else(|| Error::invalid("currency", "not an ISO 4217 currency code"))?;
        let exponent = inner
            .exponent()
            .ok_or_else(|| Error::invalid("currency", "has no minor unit"))?;
        Ok(Currency { inner, exponent })
    }

    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.inner.code()
    }

    /// Digits after the decimal point (2 for INR, 0 for JPY, 3 for KWD).
    pub fn exponent(&self) -> u16 {
        self.exponent
    }

    /// Formats `minor` units as a plain decimal, e.g. `-12.05`.
    pub fn format(&self, minor: i64) -> String {
        let exp = u32::from(self.exponent);
        if exp == 0 {
            return minor.to_string();
        }
        let scale = 10u64.pow(exp);
        let abs = minor.unsigned_abs();
        let sign = if minor < 0 { "-" } else { "" };
        format!(
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = exp as usize
        )
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// `num / den` rounded half away from zero. `den` must be positive.
pub fn div_round(num: i128, den: i128) -> i64 {
    debug_assert!(den > 0);
    let half = den / 2;
    let q = if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    };
    // Inputs are bounded by validation far below i64 after division.
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_away_from_zero() {
        for (num, den, want) in [
            (5, 2, 3),
            (-5, 2, -3),
            (4, 3, 1),
            (5, 3, 2),
            (-4, 3, -1),
            (1_500, 1_000, 2),
            (1_499, 1_000, 1),
            (0, 7, 0),
        ] {
            assert_eq!(div_round(num, den), want, "{num}/{den}");
        }
    }

    #[test]
    fn currencies_know_their_minor_units() {
        assert_eq!(Currency::parse("inr").expect("INR").exponent(), 2);
        assert_eq!(Currency::parse("JPY").expect("JPY").exponent(), 0);
        assert_eq!(Currency::parse("KWD").expect("KWD").exponent(), 3);
        for bad in ["", "XYZ", "rupees", "XAU"] {
            assert!(
                matches!(Currency::parse(bad), Err(Error::Validation { field, .. }) if field == "currency"),
                "{bad}"
            );
        }
    }

    #[test]
    fn formats_minor_units() {
        let inr = Currency::parse("INR").expect("INR");
        assert_eq!(inr.format(123_405), "1234.05");
        assert_eq!(inr.format(-5), "-0.05");
        assert_eq!(Currency::parse("JPY").expect("JPY").format(-1200), "-1200");
        assert_eq!(Currency::parse("KWD").expect("KWD").format(1), "0.001");
    }
}
