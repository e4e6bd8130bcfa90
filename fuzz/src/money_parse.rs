//! The `money_parse` target: `ledger_core::money::parse_minor` and `format_minor`
//! (the decimal strings of every amount the portal accepts and answers) against an
//! exact reference written here with integer arithmetic only, no `rust_decimal`.
//!
//! The reference implements the documented grammar `-?[0-9]+(\.[0-9]+)?`: anything
//! else is `Syntax`; more fractional digits than the currency has (trailing zeroes
//! included) is `TooPrecise(exponent)`; a value whose minor units leave `i64` is
//! `OutOfRange`; otherwise the exact number of minor units. For every `Ok(v)` the
//! formatted string must be the reference's and must parse back to `v`; a raw `i64`
//! from the input must format as the reference formats it and round-trip too.
//!
//! # Input layout
//!
//! Byte 0 picks the currency (an index into `Currency::all()`); byte 1 bit 0 also
//! formats the next 8 bytes read as an `i64`; the rest is the text (invalid UTF-8 is
//! replaced, as a JSON string the portal received would have been).

use ledger_core::Currency;
use ledger_core::money::{AmountError, format_minor, parse_minor};

use crate::input::Reader;

/// Whole-part digits (after leading zeroes) beyond which no exponent can make a
/// value fit in i64 minor units: i64::MAX has 19 digits.
const SIGNIFICANT_DIGITS_MAX: usize = 20;

/// The reference parser.
pub fn reference_parse(text: &str, exponent: u32) -> Result<i64, AmountError> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, f),
        None => (digits, ""),
    };
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !is_digits(whole) || (digits.contains('.') && !is_digits(frac)) {
        return Err(AmountError::Syntax);
    }
    if frac.len() > exponent as usize {
        return Err(AmountError::TooPrecise(exponent));
    }
    let significant = whole.trim_start_matches('0');
    if significant.len() > SIGNIFICANT_DIGITS_MAX {
        return Err(AmountError::OutOfRange);
    }
    let mut minor: i128 = 0;
    for b in significant.bytes().chain(frac.bytes()) {
        minor = minor * 10 + i128::from(b - b'0');
    }
    for _ in frac.len()..exponent as usize {
        minor *= 10;
    }
    let signed = if negative { -minor } else { minor };
    i64::try_from(signed).map_err(|_| AmountError::OutOfRange)
}

/// The reference formatter: exactly `exponent` fractional digits.
pub fn reference_format(minor: i64, exponent: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let digits = minor.unsigned_abs().to_string();
    let e = exponent as usize;
    if e == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = e + 1);
    let (whole, frac) = padded.split_at(padded.len() - e);
    format!("{sign}{whole}.{frac}")
}

/// The whole target.
pub fn money_parse(data: &[u8]) {
    let mut r = Reader::new(data);
    let currencies: Vec<Currency> = Currency::all().collect();
    let currency = currencies[usize::from(r.u8()) % currencies.len()];
    let e = currency.exponent();
    if r.u8() & 1 != 0 {
        let raw = r.i64();
        let text = format_minor(raw, currency);
        assert_eq!(text, reference_format(raw, e), "format_minor({raw}, {currency})");
        assert_eq!(parse_minor(&text, currency), Ok(raw), "{text:?} does not parse back");
    }
    let text = String::from_utf8_lossy(r.rest());
    let theirs = parse_minor(&text, currency);
    let ours = reference_parse(&text, e);
    assert_eq!(theirs, ours, "parse_minor({text:?}, {currency})");
    if let Ok(v) = theirs {
        let formatted = format_minor(v, currency);
        assert_eq!(formatted, reference_format(v, e), "format_minor({v}, {currency})");
        assert_eq!(parse_minor(&formatted, currency), Ok(v), "{formatted:?} does not parse back");
    }
}

// ---------------------------------------------------------------------------------------
// Seeds.
// ---------------------------------------------------------------------------------------

fn index_of(code: &str) -> u8 {
    let i = Currency::all().position(|c| c.code() == code).expect("a known currency");
    u8::try_from(i).expect("fewer than 256 currencies")
}

/// Seed inputs, by file name.
pub fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let text = |code: &str, s: &str| [vec![index_of(code), 0], s.as_bytes().to_vec()].concat();
    let mut raw_min = vec![index_of("USD"), 1];
    raw_min.extend(i64::MIN.to_le_bytes());
    raw_min.extend(b"-0.01");
    vec![
        ("usd-cents", text("USD", "12.34")),
        ("usd-max", text("USD", "92233720368547758.07")),
        ("usd-min", text("USD", "-92233720368547758.08")),
        ("usd-one-past-max", text("USD", "92233720368547758.08")),
        ("usd-too-precise", text("USD", "1.230")),
        ("jpy-whole", text("JPY", "100")),
        ("jpy-fraction", text("JPY", "1.5")),
        ("kwd-mils", text("KWD", "-0.001")),
        ("leading-zeros", text("USD", "0000000000000000000000000000000000001.5")),
        ("exponent-syntax", text("USD", "1e3")),
        ("plus-sign", text("USD", "+1")),
        ("bare-dot", text("USD", "1.")),
        ("raw-min-formatted", raw_min),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_agrees_with_the_documented_examples() {
        assert_eq!(reference_parse("12.34", 2), Ok(1234));
        assert_eq!(reference_parse("12.3", 2), Ok(1230));
        assert_eq!(reference_parse("-0.01", 2), Ok(-1));
        assert_eq!(reference_parse("1.230", 2), Err(AmountError::TooPrecise(2)));
        assert_eq!(reference_parse("92233720368547758.07", 2), Ok(i64::MAX));
        assert_eq!(reference_parse("-92233720368547758.08", 2), Ok(i64::MIN));
        assert_eq!(reference_parse("92233720368547758.08", 2), Err(AmountError::OutOfRange));
        for bad in ["", "-", "+1", "1e3", " 1", "1.", ".5", "1,000", "0x10", "NaN", "1.2.3", "--1", "-.5"] {
            assert_eq!(reference_parse(bad, 2), Err(AmountError::Syntax), "{bad:?}");
        }
        assert_eq!(reference_format(i64::MIN, 2), "-92233720368547758.08");
        assert_eq!(reference_format(-5, 2), "-0.05");
        assert_eq!(reference_format(1, 3), "0.001");
        assert_eq!(reference_format(100, 0), "100");
    }
}
