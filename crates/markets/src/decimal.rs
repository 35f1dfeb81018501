//! Exact decimals from JSON strings or numbers, never through f64.
//!
//! Market APIs send decimals as strings ("0.00392858") and, in places, as
//! numbers (0.00392858). Both are read from their text, so the same value in
//! either encoding gives the same [`Decimal18`].

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::value::RawValue;

/// Digits after the point kept exactly (CoinCap sends 16, Mercado Bitcoin 8).
pub const SCALE: u32 = 18;
const ONE: i128 = 1_000_000_000_000_000_000;

/// A decimal with 18 fractional digits, stored as a scaled `i128`
/// (Arrow `Decimal128(38, 18)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal18(pub i128);

/// Why a text is not a decimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an exact decimal: {reason}")]
pub struct DecimalError {
    /// The text as received (cut to 40 characters).
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Decimal18 {
    /// The scaled integer.
    pub fn raw(self) -> i128 {
        self.0
    }

    /// `self × other`, rounded toward zero to 18 digits; `None` on overflow.
    pub fn checked_mul(self, other: Decimal18) -> Option<Decimal18> {
        // a·b/10^18 with a = aᵢ·10^18 + a_f and b likewise; every partial
        // product stays inside i128 (a_f·b_f < 10^36).
        let (a, b) = (self.0, other.0);
        let (a_int, a_frac) = (a / ONE, a % ONE);
        let (b_int, b_frac) = (b / ONE, b % ONE);
        let whole = a_int.checked_mul(b)?;
        let part = a_frac.checked_mul(b_int)?;
        let tiny = a_frac.checked_mul(b_frac)? / ONE;
        whole.checked_add(part)?.checked_add(tiny).map(Decimal18)
    }

    /// `self ÷ other`, rounded half away from zero to `places` fractional
    /// digits (at most 18); `None` when `other` is zero or on overflow.
    /// Exact integer arithmetic: the quotient of two published rates is the
    /// same on every machine.
    pub fn checked_div_rounded(self, other: Decimal18, places: u32) -> Option<Decimal18> {
        if other.0 == 0 || places > SCALE {
            return None;
        }
        // (a / 10^18) / (b / 10^18) = a / b; at `places` digits: a·10^places / b.
        let numerator = self.0.checked_mul(10i128.checked_pow(places)?)?;
        let (quotient, remainder) = (numerator / other.0, numerator % other.0);
        let rounded = if remainder.unsigned_abs().checked_mul(2)? >= other.0.unsigned_abs() {
            if (numerator < 0) != (other.0 < 0) {
                quotient - 1
            } else {
                quotient + 1
            }
        } else {
            quotient
        };
        rounded
            .checked_mul(10i128.checked_pow(SCALE - places)?)
            .map(Decimal18)
    }

    /// Whether the value is above zero.
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

impl FromStr for Decimal18 {
    type Err = DecimalError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DecimalError {
            text: text.chars().take(40).collect(),
            reason,
        };
        let trimmed = text.trim();
        let (negative, body) = match trimmed.as_bytes().first() {
            Some(b'-') => (true, &trimmed[1..]),
            Some(b'+') => (false, &trimmed[1..]),
            Some(_) => (false, trimmed),
            None => return Err(fail("empty")),
        };
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(at) => {
                let exponent: i32 = body[at + 1..].parse().map_err(|_| fail("bad exponent"))?;
                (&body[..at], exponent)
            }
            None => (body, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(fail("no digits"));
        }
        if !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(fail("not a number"));
        }
        // digits × 10^(exponent − frac_len), scaled by 10^18.
        let digits = format!("{int_part}{frac_part}");
        let shift = exponent - frac_part.len() as i32 + SCALE as i32;
        let digits = digits.trim_start_matches('0');
        let mut value: i128 = 0;
        let kept = if shift >= 0 {
            digits
        } else {
            let drop = (-shift) as usize;
            if digits.len() < drop {
                if digits.bytes().any(|b| b != b'0') {
                    return Err(fail("more than 18 decimal places"));
                }
                ""
            } else {
                let (kept, dropped) = digits.split_at(digits.len() - drop);
                if dropped.bytes().any(|b| b != b'0') {
                    return Err(fail("more than 18 decimal places"));
                }
                kept
            }
        };
        for b in kept.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i128::from(b - b'0')))
                .ok_or_else(|| fail("too large"))?;
        }
        if shift > 0 {
            value = 10i128
                .checked_pow(shift as u32)
                .and_then(|p| value.checked_mul(p))
                .ok_or_else(|| fail("too large"))?;
        }
        Ok(Decimal18(if negative { -value } else { value }))
    }
}

impl fmt::Display for Decimal18 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        let (int, frac) = (magnitude / ONE as u128, magnitude % ONE as u128);
        let frac = format!("{frac:018}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            write!(f, "{sign}{int}")
        } else {
            write!(f, "{sign}{int}.{frac}")
        }
    }
}

impl serde::Serialize for Decimal18 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The text of a JSON string or number token.
pub(crate) fn token_text(raw: &RawValue) -> Result<String, serde_json::Error> {
    let text = raw.get().trim();
    if text.starts_with('"') {
        serde_json::from_str::<String>(text)
    } else {
        Ok(text.to_string())
    }
}

impl<'de> Deserialize<'de> for Decimal18 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = token_text(&raw).map_err(D::Error::custom)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// Deserializes an optional decimal: null or absent → `None`.
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal18>, D::Error> {
    let raw = Option::<Box<RawValue>>::deserialize(deserializer)?;
    match raw {
        None => Ok(None),
        Some(raw) if raw.get().trim() == "null" => Ok(None),
        Some(raw) => {
            let text = token_text(&raw).map_err(D::Error::custom)?;
            text.parse().map(Some).map_err(D::Error::custom)
        }
    }
}

/// Deserializes an integer sent as a number or a string (`"rank": "1"` or `1`).
pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    let text = token_text(&raw).map_err(D::Error::custom)?;
    text.trim()
        .parse()
        .map_err(|_| D::Error::custom(format!("{text:?} is not an integer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal18 {
        text.parse().unwrap()
    }

    #[test]
    fn strings_and_numbers_of_the_same_value_are_identical() {
        #[derive(Deserialize)]
        struct Row {
            price: Decimal18,
        }
        let from_string: Row = serde_json::from_str(r#"{"price": "488903.00000000"}"#).unwrap();
        let from_number: Row = serde_json::from_str(r#"{"price": 488903.00000000}"#).unwrap();
        let from_exponent: Row = serde_json::from_str(r#"{"price": 4.88903e5}"#).unwrap();
        assert_eq!(from_string.price, from_number.price);
        assert_eq!(from_string.price, from_exponent.price);
        assert_eq!(from_string.price.to_string(), "488903");
        // A value f64 cannot hold exactly stays exact.
        let precise: Row = serde_json::from_str(r#"{"price": 57435.2862859343831301}"#).unwrap();
        assert_eq!(precise.price.to_string(), "57435.2862859343831301");
    }

    #[test]
    fn parsing_is_exact_and_refuses_what_it_cannot_hold() {
        assert_eq!(d("0.00392858").0, 3_928_580_000_000_000);
        assert_eq!(d("-1.5").to_string(), "-1.5");
        assert_eq!(d("1e-8"), d("0.00000001"));
        assert_eq!(d(".5"), d("0.5"));
        assert_eq!(d("0"), Decimal18(0));
        for bad in [
            "",
            "abc",
            "1.2.3",
            "NaN",
            "1e",
            "--1",
            "0.0000000000000000001",
            "1e40",
        ] {
            assert!(bad.parse::<Decimal18>().is_err(), "{bad}");
        }
        assert_eq!(
            d("0.10000000000000000000"),
            d("0.1"),
            "trailing zeros beyond 18 places are fine"
        );
    }

    #[test]
    fn products_are_exact_to_18_places() {
        assert_eq!(
            d("0.00392858").checked_mul(d("488903")).unwrap(),
            d("1920.69454774")
        );
        assert_eq!(d("2.5").checked_mul(d("-4")).unwrap(), d("-10"));
        assert_eq!(
            d("0.12345678").checked_mul(d("0.87654321")).unwrap(),
            d("0.1082152022374638")
        );
        assert_eq!(d("-0.5").checked_mul(d("-0.5")).unwrap(), d("0.25"));
    }

    #[test]
    fn quotients_round_half_away_from_zero_at_the_places_asked() {
        assert_eq!(d("1").checked_div_rounded(d("3"), 4).unwrap(), d("0.3333"));
        assert_eq!(d("2").checked_div_rounded(d("3"), 4).unwrap(), d("0.6667"));
        assert_eq!(
            d("-2").checked_div_rounded(d("3"), 4).unwrap(),
            d("-0.6667")
        );
        assert_eq!(d("1").checked_div_rounded(d("8"), 2).unwrap(), d("0.13"));
        assert_eq!(d("-1").checked_div_rounded(d("8"), 2).unwrap(), d("-0.13"));
        assert_eq!(
            d("0.8512").checked_div_rounded(d("161.23"), 12).unwrap(),
            d("0.005279414501")
        );
        assert_eq!(
            d("161.23").checked_div_rounded(d("0.8512"), 12).unwrap(),
            d("189.414943609023")
        );
        assert!(d("1").checked_div_rounded(d("0"), 4).is_none());
        assert!(d("1").checked_div_rounded(d("3"), 19).is_none());
    }
}
