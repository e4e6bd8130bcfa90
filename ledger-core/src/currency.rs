//! Currencies: upper-case ISO 4217 alphabetic codes known to the ledger, each with its
//! minor-unit exponent (2 for USD: amounts are cents; 0 for JPY; 3 for KWD).

use std::fmt;

/// A currency known to the ledger. Construct it with [`Currency::from_code`] or
/// [`Currency::from_c_bytes`]; both refuse codes that are not in the table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// ISO 4217 active codes and their minor units (the ISO list's "Minor unit" column).
/// Funds codes and precious metals (XAU, XDR, ...) are left out: not payment currencies.
const TABLE: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// Exponent by code, indexed by the three letters (26^3 slots); `NOT_A_CURRENCY`
/// where the code is not in the table. Built at compile time from `TABLE`, so a lookup
/// is one load instead of a search.
const NOT_A_CURRENCY: u8 = u8::MAX;
const SLOTS: usize = 26 * 26 * 26;
static EXPONENTS: [u8; SLOTS] = {
    let mut slots = [NOT_A_CURRENCY; SLOTS];
    let mut i = 0;
    while i < TABLE.len() {
        let code = TABLE[i].0.as_bytes();
        slots[slot([code[0], code[1], code[2]])] = TABLE[i].1;
        i += 1;
    }
    slots
};

/// Slot of an upper-case code (callers check the letters first).
const fn slot(code: [u8; 3]) -> usize {
    ((code[0] - b'A') as usize * 26 + (code[1] - b'A') as usize) * 26 + (code[2] - b'A') as usize
}

impl Currency {
    /// The currency with this upper-case ISO 4217 code, if the ledger knows it.
    pub fn from_code(code: &str) -> Option<Currency> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        Self::from_bytes(bytes)
    }

    /// From the C ABI's `char currency[4]`: three upper-case letters and a NUL.
    pub fn from_c_bytes(bytes: [u8; 4]) -> Option<Currency> {
        if bytes[3] != 0 {
            return None;
        }
        Self::from_bytes([bytes[0], bytes[1], bytes[2]])
    }

    fn from_bytes(bytes: [u8; 3]) -> Option<Currency> {
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return None;
        }
        (EXPONENTS[slot(bytes)] != NOT_A_CURRENCY).then_some(Currency(bytes))
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // The bytes came from the table, which is ASCII.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// The C ABI's form: the code and a NUL.
    pub fn c_bytes(&self) -> [u8; 4] {
        [self.0[0], self.0[1], self.0[2], 0]
    }

    /// Digits after the decimal point in the major unit (2 for USD).
    pub fn exponent(&self) -> u32 {
        u32::from(EXPONENTS[slot(self.0)])
    }

    /// Every currency the ledger knows.
    pub fn all() -> impl Iterator<Item = Currency> {
        TABLE.iter().filter_map(|(c, _)| Currency::from_code(c))
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_upper_case() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0), "sorted, so duplicates would be adjacent");
        assert_eq!(EXPONENTS.iter().filter(|&&e| e != NOT_A_CURRENCY).count(), TABLE.len());
        assert!(TABLE.iter().all(|(c, e)| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) && *e <= 3));
        assert_eq!(Currency::all().count(), TABLE.len());
    }

    #[test]
    fn codes_and_exponents() {
        assert_eq!(Currency::from_code("USD").map(|c| c.exponent()), Some(2));
        assert_eq!(Currency::from_code("JPY").map(|c| c.exponent()), Some(0));
        assert_eq!(Currency::from_code("KWD").map(|c| c.exponent()), Some(3));
        assert_eq!(Currency::from_code("usd"), None);
        assert_eq!(Currency::from_code("XYZ"), None);
        assert_eq!(Currency::from_code("US"), None);
        assert_eq!(Currency::from_c_bytes(*b"EUR\0").map(|c| c.code().to_string()), Some("EUR".into()));
        assert_eq!(Currency::from_c_bytes(*b"EURO"), None);
    }
}
