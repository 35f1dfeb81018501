//! The exchange-rate room: the ECB's daily reference rates (through a
//! Frankfurter-style API, `docs/fx-api.md`) kept as received in the raw
//! lake, then turned into `fact_exchange_rate` in the warehouse.
//!
//! **Raw.** [`ingest_fx`] asks for whole calendar months of euro rates
//! (`GET /YYYY-MM-01..YYYY-MM-DD?base=EUR`, the last month up to today) and
//! keeps each reply byte for byte at `fx/frankfurter/base=EUR/month=…/<sha256>.json`
//! (put-if-absent). The key is the body's hash, so the same reply fetched
//! again writes nothing; a manifest of the log `fx` is committed only when a
//! month's reply or extent changed, and its state names the current reply of
//! every month. A month is *complete* once it ended more than a day before
//! the fetch; complete months are never asked again, so a re-run of a
//! backfill asks only for what may have changed. The months fetched start
//! [`LOOKBACK_DAYS`] before the first day asked, so that a range starting on
//! a weekend or after a holiday finds the publication before it.
//!
//! **Warehouse.** [`rates_for`] reads the replies of the months around a
//! range back from the raw lake and gives a rate for every calendar day
//! *covered by a reply* and every currency: on days without publication the
//! last published rate (at most [`MAX_CARRY_DAYS`] old), with its
//! publication day. A day no reply covers (a failed month, a future day)
//! gets no rate, never a guess: the views give NULL and `exchange_rate_gaps`
//! lists it. [`apply_fx`] writes them with [`tributary_warehouse::fx::apply_rates`].
//!
//! Rates into the reporting currency R are cross rates of the euro rates:
//! `rate(c) = eur_rate(R) / eur_rate(c)` (the euro's own rate is 1),
//! computed exactly and rounded half away from zero to [`RATE_PLACES`].

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{Datelike, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use tributary_lake::{
    FileEntry, Lake, Log, Manifest, ManifestLog, PutOutcome, RunId, keys, sha256_hex,
};
use tributary_markets::{
    Decimal18,
    fx::{ECB_BASE, FIRST_PUBLICATION, Frankfurter, Rates, parse_series},
};
use tributary_warehouse::fx::{AppliedRates, RateRow, apply_rates};

use crate::{Error, Result};

/// The API's name in raw keys.
pub const API: &str = "frankfurter";
/// Months fetched start this many days before the first day asked.
pub const LOOKBACK_DAYS: u64 = 14;
/// The oldest publication a day's rate may come from, in days: longer than
/// any ECB closure (Good Friday to Easter Monday: Thursday's rates serve
/// until Tuesday, 5 days), short enough that a currency the ECB stopped
/// publishing turns into visible gaps rather than a frozen rate.
pub const MAX_CARRY_DAYS: i64 = 10;
/// Fractional digits of `rate_to_reporting`.
pub const RATE_PLACES: u32 = 12;
/// The dataset name of raw replies in manifests.
pub const TABLE: &str = "fx_rates";

/// What the log `fx` knows: the current reply of every month fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FxState {
    /// By month, `YYYY-MM`.
    pub months: BTreeMap<String, FxMonth>,
}

/// One month's current reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FxMonth {
    /// The raw object holding the reply.
    pub key: String,
    /// The request, relative to the API's base URL.
    pub path: String,
    /// First day asked.
    pub start: NaiveDate,
    /// Last day asked: the reply covers `start..=end`.
    pub end: NaiveDate,
    /// The day it was fetched (UTC).
    pub fetched_on: NaiveDate,
    /// Publication days in the reply.
    pub publications: u64,
    /// Whether the month had ended more than a day before the fetch (it is
    /// not asked again).
    pub complete: bool,
}

/// What [`ingest_fx`] did.
#[derive(Debug, Default)]
pub struct FxIngestReport {
    /// Months asked for.
    pub fetched: usize,
    /// Complete months already kept, not asked again.
    pub skipped: usize,
    /// New raw objects written.
    pub written: usize,
    /// The manifest committed, when anything changed.
    pub manifest: Option<u64>,
    /// The request that failed, if one did: the months before it were kept
    /// (and committed); a later run asks for the rest.
    pub failure: Option<tributary_markets::Error>,
}

fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

fn month_end(day: NaiveDate) -> NaiveDate {
    let start = month_start(day);
    start
        .checked_add_months(chrono::Months::new(1))
        .and_then(|next| next.pred_opt())
        .unwrap_or(day)
}

fn month_name(day: NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

/// The months to fetch for `from..=to` asked on `today`: from the month of
/// `from - LOOKBACK_DAYS` to the month of `min(to, today)`, each as the days
/// (start, end) to ask for. Empty when nothing asked can be published yet.
pub fn months_for(from: NaiveDate, to: NaiveDate, today: NaiveDate) -> Vec<(NaiveDate, NaiveDate)> {
    let first = from
        .checked_sub_days(Days::new(LOOKBACK_DAYS))
        .unwrap_or(from)
        .max(FIRST_PUBLICATION);
    let last = to.min(today);
    let mut months = Vec::new();
    if from > today {
        return months;
    }
    let mut month = month_start(first);
    while month <= last {
        months.push((month.max(FIRST_PUBLICATION), month_end(month).min(today)));
        match month.checked_add_months(chrono::Months::new(1)) {
            Some(next) => month = next,
            None => break,
        }
    }
    months
}

async fn latest_state(raw: &Lake) -> Result<(u64, FxState)> {
    let log = ManifestLog::new(raw.clone(), Log::Fx);
    let latest: Option<Manifest<FxState>> = log.latest().await?;
    Ok(latest.map_or((0, FxState::default()), |m| (m.seq, m.state)))
}

/// Keeps the euro rates of every month around `from..=to` in the raw lake,
/// as received (see the module documentation). A failed request stops the
/// run: what was kept before it is committed, and the failure is returned
/// in the report for the caller to surface after using what is there.
pub async fn ingest_fx(
    fx: &Frankfurter,
    raw: &Lake,
    from: NaiveDate,
    to: NaiveDate,
    today: NaiveDate,
) -> Result<FxIngestReport> {
    if to < from {
        return Err(Error::Setting {
            variable: "--backfill-to",
            problem: format!("{to} is before the first day {from}"),
            example: "2026-11-30",
        });
    }
    let run_id = RunId::now();
    let started = Utc::now();
    let (previous_seq, mut state) = latest_state(raw).await?;
    let mut report = FxIngestReport::default();
    let mut files: Vec<FileEntry> = Vec::new();
    let mut changed = false;
    for (start, end) in months_for(from, to, today) {
        let name = month_name(start);
        if state.months.get(&name).is_some_and(|m| m.complete) {
            report.skipped += 1;
            continue;
        }
        let fetched = match fx.series(start, end, ECB_BASE, &[]).await {
            Ok(fetched) => fetched,
            Err(error) => {
                tracing::warn!(month = %name, error = %error, "exchange rates: a month could not be fetched; the months before it are kept");
                report.failure = Some(error);
                break;
            }
        };
        report.fetched += 1;
        let sha256 = sha256_hex(&fetched.body);
        let key = keys::raw_fx_month(API, ECB_BASE, start, &sha256);
        let entry = FileEntry {
            key: key.clone(),
            table: TABLE.to_string(),
            rows: fetched.value.days.len() as u64,
            bytes: fetched.body.len() as u64,
            sha256,
        };
        if raw.put_once(&key, Bytes::from(fetched.body)).await? == PutOutcome::Created {
            report.written += 1;
        }
        let month = FxMonth {
            key: key.clone(),
            path: fetched.path,
            start,
            end,
            fetched_on: today,
            publications: entry.rows,
            complete: end == month_end(start)
                && end
                    .checked_add_days(Days::new(1))
                    .is_some_and(|d| d < today),
        };
        let previous = state.months.get(&name);
        if previous.is_none_or(|p| p.key != key) {
            files.push(entry);
        }
        if previous.is_none_or(|p| (&p.key, p.end, p.complete) != (&key, end, month.complete)) {
            changed = true;
            state.months.insert(name, month);
        }
    }
    if changed {
        let log = ManifestLog::new(raw.clone(), Log::Fx);
        let manifest = log
            .commit(previous_seq, &run_id, started, files, state)
            .await?;
        report.manifest = Some(manifest.seq);
    }
    tracing::info!(
        run_id = %run_id,
        fetched = report.fetched,
        skipped = report.skipped,
        written = report.written,
        manifest = ?report.manifest,
        "exchange rates kept"
    );
    Ok(report)
}

/// The rates of a range, ready for the warehouse.
#[derive(Debug, Default)]
pub struct RangeRates {
    /// One row per covered day and currency.
    pub rows: Vec<RateRow>,
    /// Days no kept reply covers (not fetched yet, a failed month, the
    /// future), or whose last publication is older than [`MAX_CARRY_DAYS`].
    pub uncovered: Vec<NaiveDate>,
    /// Days whose publication lacks the reporting currency.
    pub without_reporting: Vec<NaiveDate>,
}

/// Every day's rates of `from..=to` into `reporting`, from the replies kept
/// in the raw lake (see the module documentation).
pub async fn rates_for(
    raw: &Lake,
    from: NaiveDate,
    to: NaiveDate,
    reporting: &str,
) -> Result<RangeRates> {
    let (_, state) = latest_state(raw).await?;
    let first = from
        .checked_sub_days(Days::new(LOOKBACK_DAYS))
        .unwrap_or(from);
    let mut publications: BTreeMap<NaiveDate, Rates> = BTreeMap::new();
    let mut covered: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for month in state.months.values() {
        if month.end < first || month.start > to {
            continue;
        }
        let body = raw.get(&month.key).await?;
        let series = parse_series(&body).map_err(|e| tributary_markets::Error::Shape {
            endpoint: month.key.clone(),
            detail: format!("a kept reply no longer parses: {e}"),
        })?;
        if series.base != ECB_BASE {
            return Err(tributary_markets::Error::Shape {
                endpoint: month.key.clone(),
                detail: format!("base {} where {ECB_BASE} was asked", series.base),
            }
            .into());
        }
        publications.extend(series.days);
        covered.push((month.start, month.end));
    }
    day_rates(&publications, &covered, from, to, reporting)
}

/// [`rates_for`] once the replies are read: pure, for testing.
pub fn day_rates(
    publications: &BTreeMap<NaiveDate, Rates>,
    covered: &[(NaiveDate, NaiveDate)],
    from: NaiveDate,
    to: NaiveDate,
    reporting: &str,
) -> Result<RangeRates> {
    let one = Decimal18(1_000_000_000_000_000_000);
    let mut out = RangeRates::default();
    for day in from.iter_days().take_while(|d| *d <= to) {
        let last = publications
            .range(..=day)
            .next_back()
            .filter(|(published, _)| (day - **published).num_days() <= MAX_CARRY_DAYS);
        let is_covered = covered.iter().any(|(s, e)| (*s..=*e).contains(&day));
        let (Some((published, rates)), true) = (last, is_covered) else {
            out.uncovered.push(day);
            continue;
        };
        let euro = |code: &str| {
            if code == ECB_BASE {
                Some(one)
            } else {
                rates.get(code).copied()
            }
        };
        let Some(reporting_rate) = euro(reporting) else {
            out.without_reporting.push(day);
            continue;
        };
        let codes = std::iter::once(ECB_BASE).chain(rates.keys().map(String::as_str));
        for code in codes {
            let rate = euro(code)
                .and_then(|rate| reporting_rate.checked_div_rounded(rate, RATE_PLACES))
                .filter(|rate| rate.is_positive())
                .ok_or_else(|| tributary_markets::Error::Shape {
                    endpoint: "fx".to_string(),
                    detail: format!(
                        "{code} on {published}: {reporting} {reporting_rate} / {code} {:?} has no rate at {RATE_PLACES} places",
                        rates.get(code)
                    ),
                })?;
            out.rows.push(RateRow {
                date: day,
                currency_code: code.to_string(),
                rate_to_reporting: rate.to_string(),
                published_date: *published,
            });
        }
    }
    Ok(out)
}

/// The first and last day the warehouse facts convert at (their
/// `created_date`), creating the exchange-rate tables and views first;
/// `None` when the facts are empty.
pub async fn fact_date_range(client: &Client) -> Result<Option<(NaiveDate, NaiveDate)>> {
    tributary_warehouse::fx::init(client, false).await?;
    Ok(tributary_warehouse::fx::fact_date_range(client).await?)
}

/// What [`apply_fx`] did.
#[derive(Debug, Default)]
pub struct FxApplyReport {
    /// Rows written.
    pub applied: AppliedRates,
    /// Rows computed (written or already there).
    pub rows: usize,
    /// Days that got no rates (see [`RangeRates::uncovered`]).
    pub uncovered: Vec<NaiveDate>,
    /// Days whose publication lacks the reporting currency.
    pub without_reporting: Vec<NaiveDate>,
}

/// Writes the rates of `from..=to` into `reporting` from the raw lake to
/// the warehouse (tables and views created if absent).
pub async fn apply_fx(
    client: &mut Client,
    raw: &Lake,
    from: NaiveDate,
    to: NaiveDate,
    reporting: &str,
) -> Result<FxApplyReport> {
    tributary_warehouse::fx::init(client, false).await?;
    let rates = rates_for(raw, from, to, reporting).await?;
    if !rates.without_reporting.is_empty() {
        tracing::warn!(
            reporting,
            days = rates.without_reporting.len(),
            first = %rates.without_reporting[0],
            "the reporting currency is not among the published rates of some days: they have no rates"
        );
    }
    let applied = apply_rates(client, reporting, &rates.rows).await?;
    Ok(FxApplyReport {
        applied,
        rows: rates.rows.len(),
        uncovered: rates.uncovered,
        without_reporting: rates.without_reporting,
    })
}

/// Which days one exchange-rate run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FxDays {
    /// From the first to the last day the warehouse facts convert at.
    ForFacts,
    /// These days (the daily poll: today to today).
    Range(NaiveDate, NaiveDate),
}

/// What one exchange-rate run did: `None` parts when the warehouse had no
/// facts to cover.
#[derive(Debug, Default)]
pub struct FxRunReport {
    /// The days covered.
    pub days: Option<(NaiveDate, NaiveDate)>,
    /// The raw part.
    pub ingested: Option<FxIngestReport>,
    /// The warehouse part.
    pub applied: Option<FxApplyReport>,
}

/// One exchange-rate run, the stage's entry point: the replies for `days`
/// into the raw lake as received, then the rates of those days into the
/// warehouse in `reporting`. A failed request still applies what the raw
/// lake holds; the failure is left in [`FxIngestReport::failure`].
pub async fn run_fx(
    fx: &Frankfurter,
    raw: &Lake,
    warehouse: &mut Client,
    days: FxDays,
    reporting: &str,
    today: NaiveDate,
) -> Result<FxRunReport> {
    let (from, to) = match days {
        FxDays::Range(from, to) if to < from => {
            return Err(Error::Setting {
                variable: "the last day (--backfill-to, or \"to\" of an fx event)",
                problem: format!("({to}) is before the first day ({from})"),
                example: "2024-12-31",
            });
        }
        FxDays::Range(from, to) => (from, to),
        FxDays::ForFacts => match fact_date_range(warehouse).await? {
            Some(range) => range,
            None => return Ok(FxRunReport::default()),
        },
    };
    let ingested = ingest_fx(fx, raw, from, to, today).await?;
    let applied = apply_fx(warehouse, raw, from, to, reporting).await?;
    Ok(FxRunReport {
        days: Some((from, to)),
        ingested: Some(ingested),
        applied: Some(applied),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn rates(pairs: &[(&str, &str)]) -> Rates {
        pairs
            .iter()
            .map(|(c, r)| (c.to_string(), r.parse().unwrap()))
            .collect()
    }

    #[test]
    fn months_cover_the_lookback_and_stop_at_today() {
        assert_eq!(
            months_for(day("2026-11-05"), day("2026-12-31"), day("2026-12-01")),
            vec![
                (day("2026-10-01"), day("2026-10-31")),
                (day("2026-11-01"), day("2026-11-30")),
                (day("2026-12-01"), day("2026-12-01")),
            ]
        );
        assert_eq!(
            months_for(day("1999-01-01"), day("1999-01-10"), day("2026-12-01")),
            vec![(day("1999-01-04"), day("1999-01-31"))]
        );
        assert!(months_for(day("2027-01-01"), day("2027-01-02"), day("2026-12-01")).is_empty());
        assert_eq!(month_end(day("2028-02-10")), day("2028-02-29"));
    }

    #[test]
    fn gaps_take_the_last_publication_and_uncovered_days_get_nothing() {
        let publications = BTreeMap::from([
            (
                day("2026-12-24"),
                rates(&[("GBP", "0.85"), ("USD", "1.1"), ("JPY", "160")]),
            ),
            (day("2026-12-28"), rates(&[("GBP", "0.86"), ("USD", "1.2")])),
        ]);
        let covered = [(day("2026-12-01"), day("2026-12-28"))];
        let out = day_rates(
            &publications,
            &covered,
            day("2026-12-24"),
            day("2026-12-29"),
            "GBP",
        )
        .unwrap();
        assert_eq!(out.uncovered, vec![day("2026-12-29")]);
        let find = |d: &str, c: &str| {
            out.rows
                .iter()
                .find(|r| r.date == day(d) && r.currency_code == c)
                .map(|r| (r.rate_to_reporting.clone(), r.published_date.to_string()))
        };
        // 25, 26 (holidays) and 27 (Sunday) take the 24th's rates.
        for d in ["2026-12-25", "2026-12-26", "2026-12-27"] {
            assert_eq!(
                find(d, "USD"),
                Some(("0.772727272727".into(), "2026-12-24".into()))
            );
            assert_eq!(find(d, "GBP"), Some(("1".into(), "2026-12-24".into())));
            assert_eq!(find(d, "EUR"), Some(("0.85".into(), "2026-12-24".into())));
        }
        assert_eq!(
            find("2026-12-28", "USD"),
            Some(("0.716666666667".into(), "2026-12-28".into()))
        );
        assert_eq!(find("2026-12-28", "JPY"), None, "not published that day");
        assert_eq!(
            find("2026-12-26", "JPY"),
            Some(("0.0053125".into(), "2026-12-24".into()))
        );

        // A publication older than MAX_CARRY_DAYS is not carried.
        let stale = day_rates(
            &publications,
            &[(day("2026-12-01"), day("2027-01-31"))],
            day("2027-01-07"),
            day("2027-01-08"),
            "GBP",
        )
        .unwrap();
        assert_eq!(
            stale.rows.iter().map(|r| r.date).max(),
            Some(day("2027-01-07"))
        );
        assert_eq!(stale.uncovered, vec![day("2027-01-08")]);
        // A reporting currency the publication lacks gives no rates, said so.
        let chf = day_rates(
            &publications,
            &covered,
            day("2026-12-24"),
            day("2026-12-24"),
            "CHF",
        )
        .unwrap();
        assert!(chf.rows.is_empty());
        assert_eq!(chf.without_reporting, vec![day("2026-12-24")]);
        // EUR reporting: the euro rates themselves, inverted.
        let eur = day_rates(
            &publications,
            &covered,
            day("2026-12-24"),
            day("2026-12-24"),
            "EUR",
        )
        .unwrap();
        assert!(
            eur.rows
                .iter()
                .any(|r| r.currency_code == "GBP" && r.rate_to_reporting == "1.176470588235")
        );
    }
}
