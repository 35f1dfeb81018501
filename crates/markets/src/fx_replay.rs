//! The exchange-rate API as the replay server serves it under `/fx/`
//! (`ReplayServer::fx_base`), in the wire shapes of `docs/fx-api.md`.
//!
//! Rates are generated, not recorded: each currency's rate on a day is a
//! fixed level moved by at most ±2 % by a hash of the day, so any date range
//! gives the same bytes on every run and tests can compute the expected
//! rate of any day themselves ([`FxReplay::rate_text`]). Weekends, 1 January,
//! 25 and 26 December and [`FxReplay::holidays`] have no publication; nothing
//! is published after [`FxReplay::published_through`] (today by default, as
//! if it were past the 16:00 CET publication).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate, Utc, Weekday};

use crate::{Decimal18, fx::FIRST_PUBLICATION};

/// One quoted currency: its code, its level in units of `10^-decimals`
/// per euro, and the decimals it is published with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FxCurrency {
    /// ISO 4217 code.
    pub code: String,
    /// Typical rate per euro, in units of `10^-decimals`.
    pub level: i64,
    /// Decimals published (trailing zeros are dropped on the wire).
    pub decimals: u32,
}

/// What the replayed exchange-rate API knows.
#[derive(Debug, Clone)]
pub struct FxReplay {
    /// The last day whose rates are out; `None`: today's UTC date.
    pub published_through: Option<NaiveDate>,
    /// The currencies quoted against the euro.
    pub currencies: Vec<FxCurrency>,
    /// Days without publication besides weekends, 1 Jan, 25 and 26 Dec.
    pub holidays: BTreeSet<NaiveDate>,
}

impl Default for FxReplay {
    fn default() -> Self {
        let currency = |code: &str, level, decimals| FxCurrency {
            code: code.to_string(),
            level,
            decimals,
        };
        Self {
            published_through: None,
            currencies: vec![
                currency("AUD", 16_500, 4),
                currency("CHF", 93_800, 5),
                currency("GBP", 85_120, 5),
                currency("JPY", 16_123, 2),
                currency("SEK", 114_500, 4),
                currency("USD", 108_340, 5),
            ],
            holidays: BTreeSet::new(),
        }
    }
}

/// The euro's own code: the base of every published rate.
const EUR: &str = "EUR";

impl FxReplay {
    /// The last day whose rates are out.
    pub fn published_through(&self) -> NaiveDate {
        self.published_through
            .unwrap_or_else(|| Utc::now().date_naive())
    }

    /// Whether rates are published on `day` (ignoring `published_through`).
    pub fn is_publication_day(&self, day: NaiveDate) -> bool {
        let fixed = matches!((day.month(), day.day()), (1, 1) | (12, 25) | (12, 26));
        day >= FIRST_PUBLICATION
            && !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
            && !fixed
            && !self.holidays.contains(&day)
    }

    /// The last publication day on or before `day` that is out.
    pub fn last_publication(&self, day: NaiveDate) -> Option<NaiveDate> {
        let mut day = day.min(self.published_through());
        while day >= FIRST_PUBLICATION {
            if self.is_publication_day(day) {
                return Some(day);
            }
            day = day.pred_opt()?;
        }
        None
    }

    /// The text of `code`'s euro rate as served for `day` (any day: the
    /// caller decides whether it is a publication day); `None` for a
    /// currency the replay does not quote.
    pub fn rate_text(&self, code: &str, day: NaiveDate) -> Option<String> {
        let currency = self.currencies.iter().find(|c| c.code == code)?;
        let days = i64::from(day.num_days_from_ce());
        let seed = code.bytes().fold(0i64, |acc, b| acc * 31 + i64::from(b));
        let factor = 9_800 + (days * 7_919 + seed * 104_729).rem_euclid(401);
        let units = currency.level * factor / 10_000;
        let scale = 10i64.pow(currency.decimals);
        let text = format!(
            "{}.{:0width$}",
            units / scale,
            units % scale,
            width = currency.decimals as usize
        );
        Some(text.trim_end_matches('0').trim_end_matches('.').to_string())
    }

    fn known(&self, code: &str) -> bool {
        code == EUR || self.currencies.iter().any(|c| c.code == code)
    }

    /// Every rate of `day` against `base`, limited to `symbols` when given.
    fn rates(
        &self,
        day: NaiveDate,
        base: &str,
        symbols: &Option<Vec<&str>>,
    ) -> BTreeMap<String, String> {
        let euro = |code: &str| -> Option<Decimal18> {
            if code == EUR {
                return Some(Decimal18(1_000_000_000_000_000_000));
            }
            self.rate_text(code, day)?.parse().ok()
        };
        let mut rates = BTreeMap::new();
        let codes = std::iter::once(EUR).chain(self.currencies.iter().map(|c| c.code.as_str()));
        for code in codes {
            if code == base || symbols.as_ref().is_some_and(|s| !s.contains(&code)) {
                continue;
            }
            let text = if base == EUR {
                self.rate_text(code, day)
            } else {
                // Cross rates, as the API derives them from the euro rates;
                // the replay keeps six decimals (an assumption: see the doc).
                euro(code)
                    .zip(euro(base))
                    .and_then(|(c, b)| c.checked_div_rounded(b, 6))
                    .map(|r| r.to_string())
            };
            if let Some(text) = text {
                rates.insert(code.to_string(), text);
            }
        }
        rates
    }

    /// Answers a path under `/fx/` with its query parameters: (status, JSON body).
    pub fn route(&self, rest: &str, params: &BTreeMap<&str, &str>) -> (u16, String) {
        let message = |status: u16, text: &str| (status, format!(r#"{{"message":"{text}"}}"#));
        let base = params.get("base").copied().unwrap_or(EUR);
        let symbols: Option<Vec<&str>> = params
            .get("symbols")
            .map(|s| s.split(',').filter(|c| !c.is_empty()).collect());
        let unknown = std::iter::once(base)
            .chain(symbols.iter().flatten().copied())
            .find(|c| !self.known(c));
        if let Some(code) = unknown {
            // Only letters and digits are echoed into the body.
            let code: String = code.chars().filter(char::is_ascii_alphanumeric).collect();
            return message(422, &format!("invalid currency: {code}"));
        }
        let date = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
        let head = |extra: String| format!(r#"{{"amount":1.0,"base":"{base}",{extra}"#);
        if rest == "latest" || date(rest).is_some() {
            let asked = date(rest).unwrap_or_else(|| self.published_through());
            let Some(day) = (asked >= FIRST_PUBLICATION)
                .then(|| self.last_publication(asked))
                .flatten()
            else {
                return message(404, "not found");
            };
            let rates = rates_json(&self.rates(day, base, &symbols));
            return (200, head(format!(r#""date":"{day}","rates":{rates}}}"#)));
        }
        let Some((from, to)) = rest.split_once("..") else {
            return message(404, "not found");
        };
        let (Some(from), to) = (date(from), if to.is_empty() { None } else { date(to) }) else {
            return message(400, "invalid date");
        };
        if to.is_none() && !rest.ends_with("..") {
            return message(400, "invalid date");
        }
        let to = to.unwrap_or_else(|| self.published_through());
        if to < from {
            return message(400, "start date after end date");
        }
        let (start, end) = (
            from.max(FIRST_PUBLICATION),
            to.min(self.published_through()),
        );
        if to < FIRST_PUBLICATION || start > end {
            return message(404, "not found");
        }
        let days: Vec<NaiveDate> = start
            .iter_days()
            .take_while(|d| *d <= end)
            .filter(|d| self.is_publication_day(*d))
            .collect();
        let body: Vec<String> = days
            .iter()
            .map(|d| format!(r#""{d}":{}"#, rates_json(&self.rates(*d, base, &symbols))))
            .collect();
        let (first, last) = (
            days.first().copied().unwrap_or(start),
            days.last().copied().unwrap_or(end),
        );
        (
            200,
            head(format!(
                r#""start_date":"{first}","end_date":"{last}","rates":{{{}}}}}"#,
                body.join(",")
            )),
        )
    }
}

/// `{"AUD":1.6,"GBP":0.8512}`: rates as JSON numbers, written from their text.
fn rates_json(rates: &BTreeMap<String, String>) -> String {
    let fields: Vec<String> = rates.iter().map(|(c, r)| format!(r#""{c}":{r}"#)).collect();
    format!("{{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fx::{parse_day, parse_series};

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn replay() -> FxReplay {
        FxReplay {
            published_through: Some(day("2026-12-31")),
            ..FxReplay::default()
        }
    }

    fn get(replay: &FxReplay, path: &str) -> (u16, String) {
        let (rest, query) = path.split_once('?').unwrap_or((path, ""));
        let params: BTreeMap<&str, &str> =
            query.split('&').filter_map(|p| p.split_once('=')).collect();
        replay.route(rest, &params)
    }

    #[test]
    fn a_series_skips_weekends_and_holidays_and_parses() {
        let replay = replay();
        let (status, body) = get(&replay, "2026-12-18..2026-12-31?base=EUR&symbols=GBP,USD");
        assert_eq!(status, 200, "{body}");
        let series = parse_series(body.as_bytes()).unwrap();
        let days: Vec<String> = series.days.keys().map(|d| d.to_string()).collect();
        // 19/20 and 26/27 Dec are weekends in 2026; 25 Dec a holiday (so is 26).
        assert_eq!(
            days,
            [
                "2026-12-18",
                "2026-12-21",
                "2026-12-22",
                "2026-12-23",
                "2026-12-24",
                "2026-12-28",
                "2026-12-29",
                "2026-12-30",
                "2026-12-31"
            ]
        );
        assert_eq!(series.start_date, day("2026-12-18"));
        let rates = &series.days[&day("2026-12-21")];
        assert_eq!(rates.keys().collect::<Vec<_>>(), ["GBP", "USD"]);
        assert_eq!(
            rates["GBP"].to_string(),
            replay.rate_text("GBP", day("2026-12-21")).unwrap()
        );
        // The same request gives the same bytes.
        assert_eq!(
            get(&replay, "2026-12-18..2026-12-31?base=EUR&symbols=GBP,USD").1,
            body
        );
    }

    #[test]
    fn a_day_gives_the_last_publication_on_or_before_it() {
        let replay = replay();
        let (_, body) = get(&replay, "2026-12-27?base=EUR");
        let rates = parse_day(body.as_bytes()).unwrap();
        assert_eq!(rates.date, day("2026-12-24"));
        assert_eq!(rates.rates.len(), 6);
        let (_, latest) = get(&replay, "latest");
        assert_eq!(
            parse_day(latest.as_bytes()).unwrap().date,
            day("2026-12-31")
        );
        let (_, later) = get(&replay, "2027-03-01");
        assert_eq!(parse_day(later.as_bytes()).unwrap().date, day("2026-12-31"));
        let (_, gbp) = get(&replay, "2026-12-21?base=GBP&symbols=EUR,USD");
        let gbp = parse_day(gbp.as_bytes()).unwrap();
        assert_eq!(gbp.base, "GBP");
        assert!(gbp.rates["EUR"] > "1".parse().unwrap());
    }

    #[test]
    fn failures_are_the_documented_ones() {
        let replay = replay();
        assert_eq!(get(&replay, "1998-12-31").0, 404);
        assert_eq!(get(&replay, "1998-01-01..1998-12-31").0, 404);
        assert_eq!(get(&replay, "2026-01-01?base=XXX").0, 422);
        let (status, body) = get(&replay, "2026-01-01?symbols=GBP,ZWG");
        assert_eq!(
            (status, body.as_str()),
            (422, r#"{"message":"invalid currency: ZWG"}"#)
        );
        assert_eq!(get(&replay, "2026-02-01..2026-01-01").0, 400);
        assert_eq!(get(&replay, "2026-02-01..soon").0, 400);
        assert_eq!(get(&replay, "nothing").0, 404);
        // Open-ended and a range that starts before the first publication.
        let (status, body) = get(&replay, "1998-12-30..1999-01-05");
        assert_eq!(status, 200);
        let series = parse_series(body.as_bytes()).unwrap();
        assert_eq!(series.days.keys().next(), Some(&day("1999-01-04")));
        assert_eq!(get(&replay, "2026-12-30..").0, 200);
    }

    #[test]
    fn rates_have_few_significant_digits_and_stay_near_their_level() {
        let replay = replay();
        for d in day("2026-01-01").iter_days().take(400) {
            let gbp: f64 = replay.rate_text("GBP", d).unwrap().parse().unwrap();
            assert!((0.83..0.87).contains(&gbp), "{gbp}");
            assert!(replay.rate_text("JPY", d).unwrap().len() <= 6);
        }
        assert_eq!(replay.rate_text("ZWG", day("2026-01-02")), None);
    }
}
