//! Prices as integer minor units of an ISO 4217 currency: parsed from what sellers type ("12.50",
//! "12,50", "12.50 USD"), printed back exactly, and read from a price list. No floating point
//! anywhere, so a sum of sales is exact.

use std::collections::HashMap;
use std::path::Path;

use crate::claims::MAX_QUANTITY;

/// A price: `minor` units (cents; yen for JPY) of `currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub minor: i64,
    pub currency: String,
}

/// The number of decimals of an ISO 4217 currency (the ones that differ from 2).
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// The ISO 4217 codes of money: the current ones (with the few fund codes ISO lists beside their
/// currency, such as CLF), and a few withdrawn recently that old price lists may still name (ANG, CUC,
/// HRK, SLL, ZWL). Not the codes of metals, of units of account (XDR) or of tests (XTS, XXX).
const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HRK", "HTG", "HUF", "IDR",
    "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW",
    "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA",
    "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD",
    "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG",
    "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE",
    "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP",
    "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
    "ZWL",
];

/// Checks and normalises a currency code: an ISO 4217 code of money (see [`CURRENCIES`]), in any case,
/// returned upper case.
pub fn parse_currency(text: &str) -> Result<String, String> {
    let code = text.trim().to_ascii_uppercase();
    if CURRENCIES.binary_search(&code.as_str()).is_ok() {
        Ok(code)
    } else {
        Err(format!(
            "invalid currency {text:?}: use an ISO 4217 code such as EUR, USD or GBP"
        ))
    }
}

/// Parses `12.50`, `12,50`, `12`, `1 234,50`, `12.50 USD`, `USD 12.50`, `12,50 €` or `£3`; the
/// currency is `default_currency` unless the text names one. More decimals than the currency has, a
/// negative amount or anything else is an error that says what is accepted.
pub fn parse_price(text: &str, default_currency: &str) -> Result<Price, String> {
    let invalid = |why: &str| {
        format!("invalid price {text:?}: {why} (examples: 12.50, 12,50, \"12.50 USD\")")
    };
    // € and £ name one currency each; $ (and ¥) several, so they take a code instead.
    let trimmed = text.trim();
    let (trimmed, symbol) = [('€', "EUR"), ('£', "GBP")]
        .into_iter()
        .find_map(|(sign, code)| {
            let rest = trimmed.strip_prefix(sign).or(trimmed.strip_suffix(sign))?;
            Some((rest.trim(), Some(code)))
        })
        .unwrap_or((trimmed, None));
    if trimmed.contains(['$', '¥', '€', '£']) {
        return Err(invalid(
            "write the currency as a code (USD, CAD, AUD, JPY, CNY…), not a symbol",
        ));
    }
    // A currency code may stand before or after the amount: "USD 12.50", "12.50 usd".
    let is_code = |code: &str| code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic());
    let (amount, code) = match (trimmed.get(..3), trimmed.len().checked_sub(3)) {
        (Some(code), _) if is_code(code) => (trimmed[3..].trim(), Some(code)),
        (_, Some(at)) if trimmed.get(at..).is_some_and(is_code) => {
            (trimmed[..at].trim(), Some(&trimmed[at..]))
        }
        _ => (trimmed, None),
    };
    let currency = match (symbol, code) {
        (Some(_), Some(_)) => return Err(invalid("a symbol and a code: give one")),
        (Some(symbol), None) => symbol.to_owned(),
        (None, Some(code)) => {
            parse_currency(code).map_err(|e| format!("invalid price {text:?}: {e}"))?
        }
        (None, None) => parse_currency(default_currency)?,
    };
    let digits = minor_digits(&currency);
    if amount.starts_with('-') {
        return Err(invalid("a price cannot be negative"));
    }
    let (whole, fraction) = match amount.find(['.', ',']) {
        Some(at) => (&amount[..at], &amount[at + 1..]),
        None => (amount, ""),
    };
    // Spaces (also the no-break ones of French formatting) or underscores group the thousands of the
    // whole part: "1 234 567", not "1 2 3".
    let groups: Vec<&str> = whole.split([' ', '\u{a0}', '\u{202f}', '_']).collect();
    let grouped = groups.len() == 1
        || (matches!(groups[0].len(), 1..=3) && groups[1..].iter().all(|g| g.len() == 3));
    if !grouped {
        return Err(invalid("spaces may only group thousands"));
    }
    let whole = groups.concat();
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(&whole) || !all_digits(fraction) {
        return Err(invalid("not a number"));
    }
    if fraction.len() > digits as usize {
        return Err(invalid(&format!(
            "{currency} has {digits} decimal{}",
            if digits == 1 { "" } else { "s" }
        )));
    }
    let scale = 10i64.pow(digits);
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid("too large"))?
    };
    let fraction: i64 = if fraction.is_empty() {
        0
    } else {
        fraction
            .parse::<i64>()
            .map_err(|_| invalid("not a number"))?
            * 10i64.pow(digits - fraction.len() as u32)
    };
    let minor = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(|| invalid("too large"))?;
    Ok(Price { minor, currency })
}

/// Writes `minor` units of `currency` as a plain decimal (`12.50`, `1500` for JPY), with `separator`
/// as the decimal mark (`,` for French spreadsheets).
pub fn format_minor(minor: i64, currency: &str, separator: char) -> String {
    let digits = minor_digits(currency);
    if digits == 0 {
        return minor.to_string();
    }
    let scale = 10i64.pow(digits);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!(
        "{sign}{}{separator}{:0width$}",
        abs / scale as u64,
        abs % scale as u64,
        width = digits as usize
    )
}

/// Item code → unit price, from a CSV file of `item,price` rows (a header row is recognised and
/// skipped; a third column may name the currency). Item codes match case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceList {
    prices: HashMap<String, Price>,
}

impl PriceList {
    pub fn load(path: &Path, default_currency: &str) -> Result<PriceList, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the price list {}: {e}", path.display()))?;
        Self::parse(&text, default_currency)
            .map_err(|e| format!("price list {}: {e}", path.display()))
    }

    pub fn parse(text: &str, default_currency: &str) -> Result<PriceList, String> {
        let delimiter = if text.lines().next().is_some_and(|l| l.contains(';')) {
            b';'
        } else {
            b','
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .delimiter(delimiter)
            .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
        let mut prices = HashMap::new();
        for (index, record) in reader.records().enumerate() {
            let line = index + 1;
            let record = record.map_err(|e| format!("line {line}: {e}"))?;
            let item = record.get(0).unwrap_or_default();
            if item.is_empty() || item.starts_with('#') {
                continue;
            }
            let price = record.get(1).unwrap_or_default();
            let currency = record
                .get(2)
                .filter(|c| !c.is_empty())
                .unwrap_or(default_currency);
            match parse_price(price, currency) {
                // An automatic sale is priced × the claim's quantity: its total must fit.
                Ok(p) if p.minor.checked_mul(i64::from(MAX_QUANTITY)).is_none() => {
                    return Err(format!(
                        "line {line}: the price {price} is too large (a claim of {MAX_QUANTITY} would overflow the total)"
                    ));
                }
                Ok(price) => {
                    prices.insert(item.to_lowercase(), price);
                }
                // A header row: its price column has no digit ("price", "prix"). A first row with a
                // number that does not parse is an error like any other, not skipped.
                Err(_) if line == 1 && !price.bytes().any(|b| b.is_ascii_digit()) => continue,
                Err(e) => return Err(format!("line {line}: {e}")),
            }
        }
        Ok(PriceList { prices })
    }

    pub fn get(&self, item: &str) -> Option<&Price> {
        self.prices.get(&item.to_lowercase())
    }

    pub fn len(&self) -> usize {
        self.prices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(minor: i64, currency: &str) -> Result<Price, String> {
        Ok(Price {
            minor,
            currency: currency.into(),
        })
    }

    #[test]
    fn prices_in_the_forms_sellers_type() {
        let p = |s: &str| parse_price(s, "EUR");
        assert_eq!(p("12.50"), price(1250, "EUR"));
        assert_eq!(p("12,5"), price(1250, "EUR"));
        assert_eq!(p("12"), price(1200, "EUR"));
        assert_eq!(p(".5"), price(50, "EUR"));
        assert_eq!(p("0"), price(0, "EUR"));
        assert_eq!(p("1 234,56"), price(123_456, "EUR"));
        assert_eq!(p("12.50 usd"), price(1250, "USD"));
        assert_eq!(p("GBP 3"), price(300, "GBP"));
        assert_eq!(p("1500 JPY"), price(1500, "JPY"));
        assert_eq!(p("1.234 KWD"), price(1234, "KWD"));
        assert_eq!(p("12,50 €"), price(1250, "EUR"));
        assert_eq!(p("£3.99"), price(399, "GBP"));
        assert_eq!(p("1\u{202f}234\u{a0}567,50"), price(123_456_750, "EUR"));
        assert_eq!(p("10_000"), price(1_000_000, "EUR"));
        assert_eq!(p("12.50 chf"), price(1250, "CHF"));
        for bad in [
            "1 2 3",
            "12 ,50",
            "1 2345",
            "12,5 0",
            "$12.50",
            "12.50 ZZZ",
            "12 € EUR",
            "1 234 5",
            "",
            "abc",
            "-3",
            "12.505",
            "1.5 JPY",
            "12.50.1",
            "1e3",
            "12 EURO",
            "99999999999999999999",
        ] {
            let err = p(bad).unwrap_err();
            assert!(err.contains(bad), "{bad:?}: {err}");
        }
        assert!(parse_price("1", "EURO").is_err());
        assert!(parse_price("1", "ABC").is_err());
        assert!(
            parse_currency("XAU").is_err(),
            "gold is not a currency sellers price in"
        );
        assert_eq!(parse_currency(" gbp "), Ok("GBP".into()));
        assert!(
            CURRENCIES.windows(2).all(|w| w[0] < w[1]),
            "sorted, for the search"
        );
    }

    #[test]
    fn minor_units_print_back_exactly() {
        assert_eq!(format_minor(1250, "EUR", '.'), "12.50");
        assert_eq!(format_minor(5, "EUR", ','), "0,05");
        assert_eq!(format_minor(1500, "JPY", '.'), "1500");
        assert_eq!(format_minor(1234, "KWD", '.'), "1.234");
        assert_eq!(format_minor(-1250, "EUR", '.'), "-12.50");
        for minor in [0, 1, 99, 100, 123_456_789] {
            let text = format_minor(minor, "EUR", ',');
            assert_eq!(parse_price(&text, "EUR"), price(minor, "EUR"));
        }
    }

    #[test]
    fn price_lists_with_or_without_header_and_currency() {
        let list = PriceList::parse(
            "\u{feff}item,price\nA12,12.50\n# comment\n\nb7, 8 ,USD\n",
            "EUR",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.get("a12"), Some(&price(1250, "EUR").unwrap()));
        assert_eq!(list.get("B7"), Some(&price(800, "USD").unwrap()));
        let french = PriceList::parse("A1;12,50\n", "EUR").unwrap();
        assert_eq!(french.get("A1"), Some(&price(1250, "EUR").unwrap()));
        let err = PriceList::parse("A1,12\nA2,douze\n", "EUR").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        // A first row with a number is data, even when it is wrong: an error, not a header.
        let err = PriceList::parse("A1,12.50,RMB\nA2,3\n", "EUR").unwrap_err();
        assert!(err.starts_with("line 1:") && err.contains("RMB"), "{err}");
        let prix = PriceList::parse("article;prix;devise\nA1;12,50;EUR\n", "EUR").unwrap();
        assert_eq!(prix.len(), 1);
        // The largest price whose total for the largest claim still fits, and one cent more.
        let most = i64::MAX / i64::from(MAX_QUANTITY);
        let fits = format!("A1,{}.{:02}\n", most / 100, most % 100);
        assert_eq!(
            PriceList::parse(&fits, "EUR")
                .unwrap()
                .get("A1")
                .unwrap()
                .minor,
            most
        );
        let over = format!("A1,{}.{:02}\n", (most + 1) / 100, (most + 1) % 100);
        let err = PriceList::parse(&over, "EUR").unwrap_err();
        assert!(
            err.starts_with("line 1: the price") && err.contains("too large"),
            "{err}"
        );
    }
}
