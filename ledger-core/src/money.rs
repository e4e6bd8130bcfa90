//! Exact money at the edges: decimal strings in major units (`"12.34"`) to integer
//! minor units and back, through `rust_decimal`. Inside the ledger money is always an
//! `i64` of minor units.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::currency::Currency;

/// Why a decimal amount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// Not a plain decimal number (`-?digits[.digits]`).
    #[error("not a decimal amount")]
    Syntax,
    /// More fractional digits than the currency has (`"1.234"` USD).
    #[error("more fractional digits than the currency has ({0})")]
    TooPrecise(u32),
    /// Outside the range of a 64-bit count of minor units.
    #[error("amount out of range")]
    OutOfRange,
}

/// Parses a decimal string in major units into minor units of `currency`.
///
/// Accepts `-?[0-9]+(\.[0-9]+)?` only: no exponent, no sign `+`, no spaces, no
/// thousands separators. Trailing fractional zeroes beyond the currency's digits are
/// refused too (`"1.230"` USD): an amount says exactly what it means.
pub fn parse_minor(text: &str, currency: Currency) -> Result<i64, AmountError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(AmountError::Syntax);
    }
    let exponent = currency.exponent();
    if frac.map_or(0, str::len) > exponent as usize {
        return Err(AmountError::TooPrecise(exponent));
    }
    let value = Decimal::from_str(text).map_err(|_| AmountError::OutOfRange)?;
    let minor = value.checked_mul(Decimal::from(10i64.pow(exponent))).ok_or(AmountError::OutOfRange)?;
    i64::try_from(minor).map_err(|_| AmountError::OutOfRange)
}

/// Formats minor units of `currency` as a decimal string in major units with exactly
/// the currency's digits: `1000` USD is `"10.00"`, `100` JPY is `"100"`.
pub fn format_minor(minor: i64, currency: Currency) -> String {
    let mut value = Decimal::from(minor);
    // Cannot fail: an i64 has at most 19 digits and the scale is at most 3.
    let _ = value.set_scale(currency.exponent());
    format!("{value:.prec$}", prec = currency.exponent() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::from_code("USD").expect("USD")
    }

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_minor("12.34", usd()), Ok(1234));
        assert_eq!(parse_minor("12.3", usd()), Ok(1230));
        assert_eq!(parse_minor("12", usd()), Ok(1200));
        assert_eq!(parse_minor("-0.01", usd()), Ok(-1));
        assert_eq!(parse_minor("1.234", usd()), Err(AmountError::TooPrecise(2)));
        assert_eq!(parse_minor("1.230", usd()), Err(AmountError::TooPrecise(2)));
        assert_eq!(parse_minor("100", Currency::from_code("JPY").expect("JPY")), Ok(100));
        assert_eq!(parse_minor("1.5", Currency::from_code("JPY").expect("JPY")), Err(AmountError::TooPrecise(0)));
        for bad in ["", "-", "+1", "1e3", " 1", "1.", ".5", "1,000", "0x10", "NaN", "1.2.3"] {
            assert_eq!(parse_minor(bad, usd()), Err(AmountError::Syntax), "{bad:?}");
        }
        assert_eq!(parse_minor("92233720368547758.07", usd()), Ok(i64::MAX));
        assert_eq!(parse_minor("92233720368547758.08", usd()), Err(AmountError::OutOfRange));
        assert_eq!(parse_minor("99999999999999999999999999999999", usd()), Err(AmountError::OutOfRange));
    }

    #[test]
    fn formats_with_the_currency_digits() {
        assert_eq!(format_minor(1000, usd()), "10.00");
        assert_eq!(format_minor(-5, usd()), "-0.05");
        assert_eq!(format_minor(100, Currency::from_code("JPY").expect("JPY")), "100");
        assert_eq!(format_minor(1, Currency::from_code("KWD").expect("KWD")), "0.001");
        assert_eq!(format_minor(i64::MIN, usd()), "-92233720368547758.08");
        for minor in [0i64, 1, 99, 100, 12345, -12345, i64::MAX] {
            assert_eq!(parse_minor(&format_minor(minor, usd()), usd()), Ok(minor));
        }
    }
}
