//! Exchange rates: a client of a Frankfurter-style JSON API of the European
//! Central Bank's daily reference rates (wire shapes in `docs/fx-api.md`).
//!
//! Every reply is parsed into exact [`Decimal18`] rates (read from the JSON
//! number's text, never through `f64`) and checked before use: a base, date
//! or rate that is not what the API promises is a [`Error::Shape`] naming
//! what is wrong, never a panic. Requests go through [`JsonClient`], with its
//! timeouts and its backoff on 429, 5xx and non-JSON bodies, and the body is
//! returned byte for byte beside its parsed value, to be kept as received.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::{
    Decimal18, Error, Result,
    http::{JsonClient, RetryPolicy},
};

/// The first day the ECB published euro reference rates; the API knows no
/// earlier date (404).
pub const FIRST_PUBLICATION: NaiveDate = match NaiveDate::from_ymd_opt(1999, 1, 4) {
    Some(day) => day,
    None => panic!("1999-01-04 is a date"),
};

/// The base of the ECB's rates: every other base is derived from it.
pub const ECB_BASE: &str = "EUR";

/// Units of each currency for one unit of the base, by ISO 4217 code.
pub type Rates = BTreeMap<String, Decimal18>;

/// One day's rates: `GET /latest` or `GET /YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRates {
    /// The base currency.
    pub base: String,
    /// The publication day the rates are of (on or before the day asked).
    pub date: NaiveDate,
    /// The rates.
    pub rates: Rates,
}

/// The rates of every publication day in a range: `GET /start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSeries {
    /// The base currency.
    pub base: String,
    /// First day of the reply, as the reply says.
    pub start_date: NaiveDate,
    /// Last day of the reply, as the reply says.
    pub end_date: NaiveDate,
    /// The rates of each publication day (weekends and holidays are absent).
    pub days: BTreeMap<NaiveDate, Rates>,
}

/// A reply kept with the request that got it.
#[derive(Debug, Clone)]
pub struct Fetched<T> {
    /// The path and query asked, relative to the API's base URL.
    pub path: String,
    /// The body, byte for byte as received.
    pub body: Vec<u8>,
    /// What it says.
    pub value: T,
}

#[derive(Deserialize)]
struct WireDay {
    amount: Decimal18,
    base: String,
    date: String,
    rates: BTreeMap<String, Decimal18>,
}

#[derive(Deserialize)]
struct WireSeries {
    amount: Decimal18,
    base: String,
    start_date: String,
    end_date: String,
    rates: BTreeMap<String, BTreeMap<String, Decimal18>>,
}

/// Whether `code` looks like an ISO 4217 code (three upper-case letters).
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn day(text: &str, field: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{field} {text:?} is not a YYYY-MM-DD date"))
}

fn check_header(amount: Decimal18, base: &str) -> Result<(), String> {
    if amount != Decimal18(1_000_000_000_000_000_000) {
        return Err(format!("amount is {amount}, not 1"));
    }
    if !is_currency_code(base) {
        return Err(format!("base {base:?} is not a currency code"));
    }
    Ok(())
}

fn check_rates(rates: BTreeMap<String, Decimal18>, base: &str, on: &str) -> Result<Rates, String> {
    for (code, rate) in &rates {
        if !is_currency_code(code) {
            return Err(format!("{on}: {code:?} is not a currency code"));
        }
        if code == base {
            return Err(format!("{on}: the base {base} is quoted against itself"));
        }
        if !rate.is_positive() {
            return Err(format!("{on}: {code} rate {rate} is not above zero"));
        }
    }
    Ok(rates)
}

fn shape(endpoint: &str, detail: String) -> Error {
    Error::Shape {
        endpoint: endpoint.to_string(),
        detail,
    }
}

/// Parses and checks a `GET /latest` or `GET /YYYY-MM-DD` body.
pub fn parse_day(body: &[u8]) -> Result<DayRates> {
    let wire: WireDay = serde_json::from_slice(body).map_err(|e| shape("fx day", e.to_string()))?;
    day_from_wire(wire).map_err(|e| shape("fx day", e))
}

fn day_from_wire(wire: WireDay) -> Result<DayRates, String> {
    check_header(wire.amount, &wire.base)?;
    let date = day(&wire.date, "date")?;
    let rates = check_rates(wire.rates, &wire.base, &wire.date)?;
    Ok(DayRates {
        base: wire.base,
        date,
        rates,
    })
}

/// Parses and checks a `GET /start..end` body: every day key a date between
/// the reply's `start_date` and `end_date`, every rate above zero.
pub fn parse_series(body: &[u8]) -> Result<RateSeries> {
    let wire: WireSeries =
        serde_json::from_slice(body).map_err(|e| shape("fx series", e.to_string()))?;
    series_from_wire(wire).map_err(|e| shape("fx series", e))
}

fn series_from_wire(wire: WireSeries) -> Result<RateSeries, String> {
    check_header(wire.amount, &wire.base)?;
    let start_date = day(&wire.start_date, "start_date")?;
    let end_date = day(&wire.end_date, "end_date")?;
    if end_date < start_date {
        return Err(format!(
            "end_date {end_date} is before start_date {start_date}"
        ));
    }
    let mut days = BTreeMap::new();
    for (text, rates) in wire.rates {
        let date = day(&text, "rates key")?;
        if date < start_date || date > end_date {
            return Err(format!(
                "rates of {date} lie outside {start_date}..{end_date}"
            ));
        }
        days.insert(date, check_rates(rates, &wire.base, &text)?);
    }
    Ok(RateSeries {
        base: wire.base,
        start_date,
        end_date,
        days,
    })
}

/// A client of one Frankfurter-style base URL (the public API, or a replay).
#[derive(Debug)]
pub struct Frankfurter {
    base_url: String,
    client: JsonClient,
}

impl Frankfurter {
    /// A client of `base_url` (e.g. `https://api.frankfurter.dev/v1`).
    pub fn new(base_url: &str, policy: RetryPolicy) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            client: JsonClient::new(policy, Vec::new()),
        }
    }

    fn query(base: &str, symbols: &[&str]) -> Result<String> {
        if !is_currency_code(base) {
            return Err(Error::InvalidRequest(format!(
                "base {base:?} is not a currency code (three capital letters, e.g. EUR)"
            )));
        }
        if let Some(bad) = symbols.iter().find(|s| !is_currency_code(s)) {
            return Err(Error::InvalidRequest(format!(
                "symbol {bad:?} is not a currency code (three capital letters, e.g. GBP)"
            )));
        }
        let mut query = format!("base={base}");
        if !symbols.is_empty() {
            query.push_str("&symbols=");
            query.push_str(&symbols.join(","));
        }
        Ok(query)
    }

    async fn fetch_day(&self, path: String, base: &str) -> Result<Fetched<DayRates>> {
        let url = format!("{}/{path}", self.base_url);
        let crate::Received { body, value: wire } =
            self.client.get_received::<WireDay>("fx", &url).await?;
        let value = day_from_wire(wire).map_err(|e| shape("fx day", e))?;
        if value.base != base {
            return Err(shape(
                "fx day",
                format!("asked for base {base}, the reply's base is {}", value.base),
            ));
        }
        Ok(Fetched { path, body, value })
    }

    /// The latest published rates.
    pub async fn latest(&self, base: &str, symbols: &[&str]) -> Result<Fetched<DayRates>> {
        let path = format!("latest?{}", Self::query(base, symbols)?);
        self.fetch_day(path, base).await
    }

    /// The rates of the last publication on or before `date` (a weekend or a
    /// holiday gives the business day before, with its own date).
    pub async fn on(
        &self,
        date: NaiveDate,
        base: &str,
        symbols: &[&str],
    ) -> Result<Fetched<DayRates>> {
        let path = format!("{date}?{}", Self::query(base, symbols)?);
        let fetched = self.fetch_day(path, base).await?;
        if fetched.value.date > date {
            return Err(shape(
                "fx day",
                format!("asked for {date}, the reply is of {}", fetched.value.date),
            ));
        }
        Ok(fetched)
    }

    /// The rates of every publication day from `start` to `end`.
    pub async fn series(
        &self,
        start: NaiveDate,
        end: NaiveDate,
        base: &str,
        symbols: &[&str],
    ) -> Result<Fetched<RateSeries>> {
        if end < start {
            return Err(Error::InvalidRequest(format!(
                "the range {start}..{end} ends before it starts"
            )));
        }
        let path = format!("{start}..{end}?{}", Self::query(base, symbols)?);
        let url = format!("{}/{path}", self.base_url);
        let crate::Received { body, value: wire } =
            self.client.get_received::<WireSeries>("fx", &url).await?;
        let value = series_from_wire(wire).map_err(|e| shape("fx series", e))?;
        if value.base != base {
            return Err(shape(
                "fx series",
                format!("asked for base {base}, the reply's base is {}", value.base),
            ));
        }
        if let Some((late, _)) = value.days.last_key_value().filter(|(d, _)| **d > end) {
            return Err(shape(
                "fx series",
                format!("asked for {start}..{end}, the reply holds {late}"),
            ));
        }
        Ok(Fetched { path, body, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal18 {
        text.parse().unwrap()
    }

    #[test]
    fn a_day_and_a_series_parse_to_exact_rates() {
        let day = parse_day(
            br#"{"amount":1.0,"base":"EUR","date":"2026-11-27","rates":{"GBP":0.8512,"JPY":161.23,"USD":1.0834}}"#,
        )
        .unwrap();
        assert_eq!(day.date, NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
        assert_eq!(day.rates["GBP"], d("0.8512"));
        assert_eq!(day.rates["JPY"].to_string(), "161.23");
        let series = parse_series(
            br#"{"amount":1.0,"base":"EUR","start_date":"2026-11-02","end_date":"2026-11-03",
                "rates":{"2026-11-02":{"GBP":0.85},"2026-11-03":{"GBP":0.851234}}}"#,
        )
        .unwrap();
        assert_eq!(series.days.len(), 2);
        assert_eq!(
            series.days[&NaiveDate::from_ymd_opt(2026, 11, 3).unwrap()]["GBP"].to_string(),
            "0.851234"
        );
        let empty = parse_series(
            br#"{"amount":1,"base":"EUR","start_date":"2026-11-28","end_date":"2026-11-29","rates":{}}"#,
        )
        .unwrap();
        assert!(empty.days.is_empty());
    }

    #[test]
    fn bad_bodies_are_clear_errors_not_panics() {
        let cases: [(&[u8], &str); 12] = [
            (b"", "EOF"),
            (b"<html>", "expected value"),
            (
                br#"{"amount":1.0,"base":"EUR","date":"2026-11-27","rates":{"GBP":"#,
                "EOF",
            ),
            (
                br#"{"amount":2,"base":"EUR","date":"2026-11-27","rates":{}}"#,
                "not 1",
            ),
            (
                br#"{"amount":1,"base":"euro","date":"2026-11-27","rates":{}}"#,
                "base",
            ),
            (
                br#"{"amount":1,"base":"EUR","date":"27/11/2026","rates":{}}"#,
                "YYYY-MM-DD",
            ),
            (
                br#"{"amount":1,"base":"EUR","date":"2026-11-27","rates":{"GBP":-0.8}}"#,
                "above zero",
            ),
            (
                br#"{"amount":1,"base":"EUR","date":"2026-11-27","rates":{"GBP":0}}"#,
                "above zero",
            ),
            (
                br#"{"amount":1,"base":"EUR","date":"2026-11-27","rates":{"GBP":"x"}}"#,
                "not a number",
            ),
            (
                br#"{"amount":1,"base":"EUR","date":"2026-11-27","rates":{"gbp":0.8}}"#,
                "currency code",
            ),
            (
                br#"{"amount":1,"base":"EUR","date":"2026-11-27","rates":{"EUR":1}}"#,
                "against itself",
            ),
            (
                br#"{"amount":1,"base":"EUR","date":"2026-11-27","rates":{"GBP":1e400}}"#,
                "too large",
            ),
        ];
        for (body, needle) in cases {
            let err = parse_day(body).unwrap_err().to_string();
            assert!(
                err.contains(needle),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
        for (body, needle) in [
            (
                r#"{"amount":1,"base":"EUR","start_date":"2026-11-02","end_date":"2026-11-01","rates":{}}"#,
                "before start_date",
            ),
            (
                r#"{"amount":1,"base":"EUR","start_date":"2026-11-02","end_date":"2026-11-03","rates":{"2026-11-04":{"GBP":1}}}"#,
                "outside",
            ),
            (
                r#"{"amount":1,"base":"EUR","start_date":"2026-11-02","end_date":"2026-11-03","rates":{"2026-11-02":[1]}}"#,
                "expected a map",
            ),
        ] {
            let err = parse_series(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    #[tokio::test]
    async fn the_client_retries_what_may_heal_and_refuses_what_will_not() {
        use crate::replay::{Failure, ReplayServer, ReplayState};
        let mut state = ReplayState::default();
        state.fx.published_through = NaiveDate::from_ymd_opt(2026, 11, 30);
        let server = ReplayServer::start(state).await.unwrap();
        let policy = RetryPolicy {
            first_backoff: std::time::Duration::from_millis(10),
            min_interval: std::time::Duration::ZERO,
            ..RetryPolicy::default()
        };
        let fx = Frankfurter::new(&server.fx_base(), policy);
        let day = |text: &str| text.parse::<NaiveDate>().unwrap();
        server.fail_next("/fx/", Failure::Status(503, "UNAVAILABLE"));
        let series = fx
            .series(day("2026-11-01"), day("2026-11-30"), "EUR", &["GBP", "USD"])
            .await
            .unwrap();
        assert_eq!(series.value.days.len(), 21, "the 21 weekdays of November");
        assert_eq!(
            series.path,
            "2026-11-01..2026-11-30?base=EUR&symbols=GBP,USD"
        );
        assert_eq!(server.requests("/fx/").len(), 2, "one 503, one retry");
        let direct = reqwest::get(format!("{}/{}", server.fx_base(), series.path))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(series.body, direct.to_vec(), "the body as served");

        let saturday = fx.on(day("2026-11-28"), "EUR", &[]).await.unwrap();
        assert_eq!(saturday.value.date, day("2026-11-27"));
        assert_eq!(
            fx.latest("EUR", &["JPY"]).await.unwrap().value.date,
            day("2026-11-30")
        );

        server.fail_next(
            "/fx/",
            Failure::Body(200, r#"{"amount":1.0,"base":"EUR","rat"#.into()),
        );
        let err = fx.on(day("2026-11-27"), "EUR", &[]).await.unwrap_err();
        assert!(
            matches!(err, Error::Shape { .. }) && !err.is_retryable(),
            "{err}"
        );
        let err = fx.on(day("2026-11-27"), "EUR", &["ZWG"]).await.unwrap_err();
        assert!(matches!(err, Error::Rejected { status: 422, .. }), "{err}");
        let err = fx.on(day("1998-06-01"), "EUR", &[]).await.unwrap_err();
        assert!(matches!(err, Error::Rejected { status: 404, .. }), "{err}");
        let err = fx.latest("eur", &[]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
        server.fail_next(
            "/fx/",
            Failure::Body(
                200,
                r#"{"amount":1.0,"base":"USD","date":"2026-11-27","rates":{}}"#.into(),
            ),
        );
        let err = fx.on(day("2026-11-27"), "EUR", &[]).await.unwrap_err();
        assert!(err.to_string().contains("the reply's base is USD"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_day(&body);
            let _ = parse_series(&body);
        }

        #[test]
        fn any_rate_text_parses_or_fails_without_panicking(rate in "[-+0-9.eE]{0,30}") {
            let body = format!(r#"{{"amount":1,"base":"EUR","date":"2026-11-27","rates":{{"GBP":{rate}}}}}"#);
            let _ = parse_day(body.as_bytes());
        }
    }
}
