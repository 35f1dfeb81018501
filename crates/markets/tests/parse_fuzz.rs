//! Property tests of the market parsers: arbitrary bytes never panic, and a
//! decimal means the same as a JSON string or a JSON number.
//! `PROPTEST_CASES=100000` for a long run.

use proptest::prelude::*;
use tributary_markets::{AssetPage, Decimal18, Ticker, WireTrade};

proptest! {
    #[test]
    fn arbitrary_bodies_parse_or_fail_without_panicking(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = serde_json::from_slice::<Vec<WireTrade>>(&body);
        let _ = serde_json::from_slice::<Vec<Ticker>>(&body);
        let _ = serde_json::from_slice::<AssetPage>(&body);
        if let Ok(text) = std::str::from_utf8(&body) {
            let _ = text.parse::<Decimal18>();
        }
    }

    #[test]
    fn a_decimal_is_the_same_as_a_string_or_a_number(units in any::<i64>(), places in 0u32..=12) {
        let sign = if units < 0 { "-" } else { "" };
        let digits = format!("{:0>width$}", units.unsigned_abs(), width = places as usize + 1);
        let (int, frac) = digits.split_at(digits.len() - places as usize);
        let text = if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") };
        let from_number: WireTrade = serde_json::from_str(&format!(
            r#"{{"tid":1,"date":1,"price":{text},"amount":"1","type":"buy"}}"#
        )).unwrap();
        let from_string: WireTrade = serde_json::from_str(&format!(
            r#"{{"tid":1,"date":1,"price":"{text}","amount":"1","type":"buy"}}"#
        )).unwrap();
        prop_assert_eq!(from_number.price, from_string.price);
        let parsed: Decimal18 = text.parse().unwrap();
        prop_assert_eq!(parsed.to_string().parse::<Decimal18>().unwrap(), parsed);
        prop_assert_eq!(parsed.raw(), units as i128 * 10i128.pow(18 - places));
    }
}
