//! Exchange rates end to end, against the replay server's `/fx/` API, the
//! local-file raw lake and a real PostgreSQL (a database per test): replies
//! kept byte for byte, re-runs that write nothing, weekend and holiday fill,
//! a failed backfill healed by a re-run, and conversions checked against a
//! computation of the test's own, with an unknown currency left visible.

mod support;

use std::{collections::BTreeMap, time::Duration};

use chrono::{Days, NaiveDate, Utc};
use support::succeeds;
use tributary_lake::{Lake, Log, ManifestLog};
use tributary_markets::{
    fx::Frankfurter,
    fx_replay::FxReplay,
    http::RetryPolicy,
    replay::{Failure, ReplayServer, ReplayState},
};
use tributary_pipeline::fx::{FxState, apply_fx, ingest_fx};
use tributary_testkit::{TestDb, pipeline::text_rows, temp_lake};

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// The replay (publishing through `today`), a client and an empty raw lake.
struct Fx {
    server: ReplayServer,
    client: Frankfurter,
    raw: Lake,
    _dir: tempfile::TempDir,
    today: NaiveDate,
}

impl Fx {
    async fn start(today: NaiveDate) -> Fx {
        let mut state = ReplayState::default();
        state.fx.published_through = Some(today);
        let server = ReplayServer::start(state).await.unwrap();
        let policy = RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            min_interval: Duration::ZERO,
            ..RetryPolicy::default()
        };
        let (dir, url) = temp_lake();
        Fx {
            client: Frankfurter::new(&server.fx_base(), policy),
            server,
            raw: Lake::from_url(&url).unwrap(),
            _dir: dir,
            today,
        }
    }

    async fn ingest(&self, from: &str, to: &str) -> tributary_pipeline::fx::FxIngestReport {
        ingest_fx(&self.client, &self.raw, day(from), day(to), self.today)
            .await
            .unwrap()
    }

    async fn state(&self) -> FxState {
        ManifestLog::new(self.raw.clone(), Log::Fx)
            .latest::<FxState>()
            .await
            .unwrap()
            .map(|m| m.state)
            .unwrap_or_default()
    }

    fn replay(&self) -> FxReplay {
        self.server.with_state(|s| s.fx.clone())
    }
}

/// `text` as an integer of `scale` fractional digits, exactly.
fn scaled(text: &str, scale: usize) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= scale, "{text} has more than {scale} places");
    format!("{int}{frac:0<scale$}").parse().unwrap()
}

/// Checks, independently of the pipeline, that `rate` (text) is the euro
/// rate of `reporting` over that of `currency` on `published`, to 12
/// places: |rate − A/B| ≤ ½·10⁻¹² in integers.
fn assert_cross_rate(
    replay: &FxReplay,
    rate: &str,
    reporting: &str,
    currency: &str,
    published: NaiveDate,
) {
    let euro = |code: &str| {
        if code == "EUR" {
            1_000_000
        } else {
            scaled(&replay.rate_text(code, published).unwrap(), 6)
        }
    };
    let (a, b, s) = (euro(reporting), euro(currency), scaled(rate, 12));
    assert!(
        2 * (s * b - a * 1_000_000_000_000).abs() <= b,
        "{currency}→{reporting} on {published}: {rate} is not {a}/{b} to 12 places"
    );
}

#[tokio::test]
async fn raw_replies_are_kept_byte_for_byte_and_a_rerun_writes_nothing() {
    let fx = Fx::start(day("2026-12-31")).await;
    let report = fx.ingest("2026-10-05", "2026-12-31").await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    // The lookback reaches into September: four months.
    assert_eq!(
        (report.fetched, report.written, report.manifest),
        (4, 4, Some(1))
    );
    let state = fx.state().await;
    assert_eq!(
        state.months.keys().collect::<Vec<_>>(),
        ["2026-09", "2026-10", "2026-11", "2026-12"]
    );
    let http = reqwest::Client::new();
    for month in state.months.values() {
        let served = http
            .get(format!("{}/{}", fx.server.fx_base(), month.path))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let kept = fx.raw.get(&month.key).await.unwrap();
        assert_eq!(kept, served, "{} kept as served", month.key);
        assert!(month.key.starts_with("fx/frankfurter/base=EUR/month="));
    }
    let manifest = ManifestLog::new(fx.raw.clone(), Log::Fx)
        .read::<FxState>(1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manifest.files.len(), 4);
    assert!(manifest.files.iter().all(|f| f.table == "fx_rates"));

    let keys_before = fx.raw.list("").await.unwrap();
    let asked_before = fx.server.requests("/fx/").len();
    let again = fx.ingest("2026-10-05", "2026-12-31").await;
    assert!(again.failure.is_none());
    assert_eq!(
        (again.written, again.manifest, again.skipped, again.fetched),
        (0, None, 3, 1),
        "complete months are not asked again; December's same reply writes nothing"
    );
    assert_eq!(
        fx.raw.list("").await.unwrap(),
        keys_before,
        "nothing new in the lake"
    );
    assert_eq!(fx.server.requests("/fx/").len(), asked_before + 1);
}

#[tokio::test]
async fn weekends_and_holidays_take_the_last_published_rate() {
    let Some(db) = TestDb::create("fx_fill").await else {
        return;
    };
    let mut client = db.connect().await;
    let fx = Fx::start(day("2026-12-31")).await;
    fx.ingest("2026-12-20", "2026-12-31").await;
    let applied = apply_fx(
        &mut client,
        &fx.raw,
        day("2026-12-20"),
        day("2026-12-31"),
        "GBP",
    )
    .await
    .unwrap();
    // 12 days × (EUR + the 6 quoted currencies).
    assert_eq!((applied.rows, applied.applied.inserted), (84, 84));
    assert!(applied.uncovered.is_empty());
    let rows = text_rows(
        &client,
        "SELECT date::text, currency_code, rate_to_reporting::text, published_date::text
         FROM fact_exchange_rate ORDER BY date, currency_code",
    )
    .await;
    let replay = fx.replay();
    let mut published_of: BTreeMap<String, String> = BTreeMap::new();
    for row in &rows {
        let [date, code, rate, published] = [0, 1, 2, 3].map(|i| row[i].clone().unwrap());
        assert_cross_rate(&replay, &rate, "GBP", &code, day(&published));
        if code == "GBP" {
            assert_eq!(rate, "1", "the reporting currency converts at 1");
        }
        published_of.insert(date, published);
    }
    // Sunday the 20th takes Friday the 18th (before the range: the lookback);
    // Christmas, Boxing Day (a Saturday) and Sunday the 27th take the 24th.
    for (date, published) in [
        ("2026-12-20", "2026-12-18"),
        ("2026-12-21", "2026-12-21"),
        ("2026-12-24", "2026-12-24"),
        ("2026-12-25", "2026-12-24"),
        ("2026-12-26", "2026-12-24"),
        ("2026-12-27", "2026-12-24"),
        ("2026-12-28", "2026-12-28"),
        ("2026-12-31", "2026-12-31"),
    ] {
        assert_eq!(published_of[date], published, "{date}");
    }
    let same = text_rows(
        &client,
        "SELECT count(*)::text FROM fact_exchange_rate a JOIN fact_exchange_rate b
             ON a.currency_code = b.currency_code AND b.date = '2026-12-24'
         WHERE a.date BETWEEN '2026-12-25' AND '2026-12-27'
           AND a.rate_to_reporting = b.rate_to_reporting",
    )
    .await;
    assert_eq!(same[0][0].as_deref(), Some("21"), "3 days × 7 currencies");

    // Applying again changes nothing; another reporting currency replaces all.
    let again = apply_fx(
        &mut client,
        &fx.raw,
        day("2026-12-20"),
        day("2026-12-31"),
        "GBP",
    )
    .await
    .unwrap();
    assert_eq!((again.applied.inserted, again.applied.updated), (0, 0));
    let usd = apply_fx(
        &mut client,
        &fx.raw,
        day("2026-12-24"),
        day("2026-12-24"),
        "USD",
    )
    .await
    .unwrap();
    assert_eq!((usd.applied.cleared, usd.applied.inserted), (84, 7));
    let gbp_in_usd = text_rows(
        &client,
        "SELECT rate_to_reporting::text FROM fact_exchange_rate WHERE currency_code = 'GBP'",
    )
    .await;
    assert_cross_rate(
        &replay,
        gbp_in_usd[0][0].as_deref().unwrap(),
        "USD",
        "GBP",
        day("2026-12-24"),
    );
}

#[tokio::test]
async fn a_failure_mid_backfill_then_a_rerun_leaves_no_gap() {
    let Some(db) = TestDb::create("fx_heal").await else {
        return;
    };
    let mut client = db.connect().await;
    let fx = Fx::start(day("2026-12-31")).await;
    // October's reply arrives cut short (not retried: a shape error), and
    // November's first attempt of the re-run meets a 503 (retried).
    fx.server.fail_next(
        "/fx/2026-10-01",
        Failure::Body(
            200,
            r#"{"amount":1.0,"base":"EUR","start_date":"2026-10-01","rat"#.into(),
        ),
    );
    let (from, to) = (day("2026-08-01"), day("2026-12-31"));
    let failed = ingest_fx(&fx.client, &fx.raw, from, to, fx.today)
        .await
        .unwrap();
    let failure = failed.failure.expect("October fails").to_string();
    assert!(failure.contains("unexpected reply shape"), "{failure}");
    assert_eq!(
        (failed.fetched, failed.manifest),
        (3, Some(1)),
        "July (lookback) to September kept"
    );
    let partial = apply_fx(&mut client, &fx.raw, from, to, "GBP")
        .await
        .unwrap();
    assert_eq!(partial.uncovered.first(), Some(&day("2026-10-01")));
    assert_eq!(
        partial.uncovered.len(),
        92,
        "October to December have no rates"
    );
    let last = text_rows(
        &client,
        "SELECT max(date)::text, count(DISTINCT date)::text FROM fact_exchange_rate",
    )
    .await;
    assert_eq!(
        (last[0][0].as_deref(), last[0][1].as_deref()),
        (Some("2026-09-30"), Some("61")),
        "no day after the failure is filled with September's rates"
    );

    fx.server
        .fail_next("/fx/2026-11-01", Failure::Status(503, "UNAVAILABLE"));
    let healed = ingest_fx(&fx.client, &fx.raw, from, to, fx.today)
        .await
        .unwrap();
    assert!(healed.failure.is_none(), "{:?}", healed.failure);
    assert_eq!((healed.skipped, healed.fetched), (3, 3));
    let full = apply_fx(&mut client, &fx.raw, from, to, "GBP")
        .await
        .unwrap();
    assert!(full.uncovered.is_empty(), "{:?}", full.uncovered);
    let days = text_rows(
        &client,
        "SELECT count(DISTINCT date)::text, count(*)::text, min(date)::text, max(date)::text
         FROM fact_exchange_rate",
    )
    .await;
    assert_eq!(
        days[0]
            .iter()
            .map(|v| v.as_deref().unwrap())
            .collect::<Vec<_>>(),
        ["153", "1071", "2026-08-01", "2026-12-31"],
        "every day of August to December, 7 currencies each"
    );
}

/// Dimensions and facts in GBP, USD, EUR, JPY and ZWG (which the API does
/// not publish), one of each fact per currency and day.
async fn seed_facts(client: &tokio_postgres::Client, first: NaiveDate, last: NaiveDate) {
    client
        .batch_execute(&format!(
            "INSERT INTO dim_date (date_id, year, month, day, day_of_week, day_name, month_name, quarter)
               SELECT d::date, extract(year FROM d), extract(month FROM d), extract(day FROM d),
                      extract(isodow FROM d), to_char(d, 'Day'), to_char(d, 'Month'), extract(quarter FROM d)
               FROM generate_series('{first}'::date - 60, '{last}'::date + 60, interval '1 day') d;
             INSERT INTO dim_staff VALUES (1, 'Ada', 'Lovelace', 'Sales', NULL, 'ada@example.com');
             INSERT INTO dim_location VALUES (1, '1 Road', NULL, NULL, 'Leeds', 'LS1', 'UK', '0113');
             INSERT INTO dim_currency VALUES (1, 'GBP', 'Pound Sterling'), (2, 'USD', 'US Dollar'),
               (3, 'EUR', 'Euro'), (4, 'JPY', 'Yen'), (5, 'ZWG', 'Zimbabwe Gold');
             INSERT INTO dim_design VALUES (1, 'Wooden', '/designs', 'wooden.json');
             INSERT INTO dim_counterparty VALUES (1, 'Acme', '2 Road', NULL, NULL, 'York', 'YO1', 'UK', '01904');
             INSERT INTO dim_payment_type VALUES (1, 'SALES_RECEIPT');
             INSERT INTO dim_transaction VALUES (1, 'SALE', 1, NULL);
             INSERT INTO fact_sales_order (sales_order_id, created_date, created_time, last_updated_date,
                 last_updated_time, sales_staff_id, counterparty_id, units_sold, unit_price, currency_id,
                 design_id, agreed_payment_date, agreed_delivery_date, agreed_delivery_location_id)
               SELECT row_number() OVER (), d::date, '10:00', d::date, '10:00', 1, 1, 3 + c,
                      (12.34 * c + extract(day FROM d))::numeric(10,2), c, 1, d::date + 30, d::date + 30, 1
               FROM generate_series('{first}'::date, '{last}'::date, interval '1 day') d, generate_series(1, 5) c;
             INSERT INTO fact_purchase_order (purchase_order_id, created_date, created_time, last_updated_date,
                 last_updated_time, staff_id, counterparty_id, item_code, item_quantity, item_unit_price,
                 currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id)
               SELECT row_number() OVER (), d::date, '11:00', d::date, '11:00', 1, 1, 'X1', 7, 1234.5678 / c, c,
                      d::date + 10, d::date + 10, 1
               FROM generate_series('{first}'::date, '{last}'::date, interval '1 day') d, generate_series(1, 5) c;
             INSERT INTO fact_payment (payment_id, created_date, created_time, last_updated_date,
                 last_updated_time, transaction_id, counterparty_id, payment_amount, currency_id,
                 payment_type_id, paid, payment_date)
               SELECT row_number() OVER (), d::date, '12:00', d::date, '12:00', 1, 1, 99999.99 * c, c, 1, false,
                      d::date + 40
               FROM generate_series('{first}'::date, '{last}'::date, interval '1 day') d, generate_series(1, 5) c;"
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversions_are_exact_and_an_unknown_currency_is_a_visible_gap_never_zero() {
    let Some(db) = TestDb::create("fx_views").await else {
        return;
    };
    let client = db.connect().await;
    // The CLI runs on the wall clock: facts of 40 to 20 days ago.
    let today = Utc::now().date_naive();
    let (first, last) = (today - Days::new(40), today - Days::new(20));
    tributary_warehouse_init(&client).await;
    seed_facts(&client, first, last).await;
    let fx = Fx::start(today).await;
    fx.server.with_state(|s| s.fx.published_through = None);
    let (_raw_dir, raw_url) = temp_lake();
    let env = [
        ("WAREHOUSE_DATABASE_URL", db.url.as_str()),
        ("TRIBUTARY_RAW_URL", raw_url.as_str()),
        ("TRIBUTARY_FX_URL", &fx.server.fx_base()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, &**v)).collect();
    // A backward range is refused before anything is asked or written.
    let backward = support::tributary(
        &[
            "fx",
            "--backfill-from",
            "2024-02-01",
            "--backfill-to",
            "2024-01-01",
        ],
        &env,
    );
    let said = String::from_utf8_lossy(&backward.stderr);
    assert!(
        !backward.status.success() && said.contains("is before the first day (2024-02-01)"),
        "{said}"
    );
    assert!(
        std::fs::read_dir(raw_url.trim_start_matches("file://"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "nothing was written"
    );

    let out = succeeds(&["fx", "--for-facts"], &env);
    assert!(
        out.contains(&format!("fx: {first}..{last} into GBP")),
        "{out}"
    );

    // ZWG is not published: every fact day of it is a gap, in all three facts.
    let gaps = text_rows(
        &client,
        "SELECT currency_code, count(*)::text, min(date)::text, max(date)::text,
                string_agg(DISTINCT facts, ';'), sum(fact_rows)::text
         FROM exchange_rate_gaps GROUP BY currency_code",
    )
    .await;
    let days = (last - first).num_days() + 1;
    assert_eq!(
        gaps,
        vec![vec![
            Some("ZWG".to_string()),
            Some(days.to_string()),
            Some(first.to_string()),
            Some(last.to_string()),
            Some("fact_payment,fact_purchase_order,fact_sales_order".to_string()),
            Some((3 * days).to_string()),
        ]]
    );
    for (view, amount) in [
        ("fact_sales_order_reporting", "unit_price_reporting"),
        ("fact_purchase_order_reporting", "item_unit_price_reporting"),
        ("fact_payment_reporting", "payment_amount_reporting"),
    ] {
        let counts = text_rows(
            &client,
            &format!(
                "SELECT count(*) FILTER (WHERE {amount} IS NULL)::text,
                        count(*) FILTER (WHERE {amount} IS NULL AND currency_code <> 'ZWG')::text,
                        count(*) FILTER (WHERE {amount} = 0)::text,
                        count(*) FILTER (WHERE reporting_currency = 'GBP')::text,
                        count(*)::text
                 FROM {view}"
            ),
        )
        .await;
        let expected = [days, 0, 0, 5 * days, 5 * days].map(|n| Some(n.to_string()));
        assert_eq!(counts[0], expected, "{view}: NULL for ZWG only, never 0");
    }

    // Every converted amount, checked against the test's own computation:
    // the rate from the replay's euro rates of the last publication on or
    // before the fact's day, and the amount as an exact product.
    let replay = fx.replay();
    let rows = text_rows(
        &client,
        "SELECT created_date::text, currency_code, unit_price::text, rate_to_reporting::text,
                rate_published_date::text, unit_price_reporting::text
         FROM fact_sales_order_reporting WHERE currency_code <> 'ZWG'
         UNION ALL
         SELECT created_date::text, currency_code, payment_amount::text, rate_to_reporting::text,
                rate_published_date::text, payment_amount_reporting::text
         FROM fact_payment_reporting WHERE currency_code <> 'ZWG'",
    )
    .await;
    assert_eq!(rows.len() as i64, 2 * 4 * days);
    for row in rows {
        let [date, code, amount, rate, published, converted] =
            [0, 1, 2, 3, 4, 5].map(|i| row[i].clone().unwrap());
        let expected_published = replay.last_publication(day(&date)).unwrap();
        assert_eq!(published, expected_published.to_string(), "{date}");
        assert_cross_rate(&replay, &rate, "GBP", &code, expected_published);
        assert_eq!(
            scaled(&converted, 14),
            scaled(&amount, 2) * scaled(&rate, 12),
            "{amount} {code} × {rate}"
        );
    }

    // A fact on a day not fetched yet is a gap too, until the day is fetched.
    client
        .batch_execute(&format!(
            "INSERT INTO fact_payment (payment_id, created_date, created_time, last_updated_date,
                 last_updated_time, transaction_id, counterparty_id, payment_amount, currency_id,
                 payment_type_id, paid, payment_date)
             VALUES (999999, '{today}', '09:00', '{today}', '09:00', 1, 1, 10, 2, 1, true, '{today}')"
        ))
        .await
        .unwrap();
    let gap = format!(
        "SELECT count(*)::text FROM exchange_rate_gaps WHERE date = '{today}' AND currency_code = 'USD'"
    );
    assert_eq!(text_rows(&client, &gap).await[0][0].as_deref(), Some("1"));
    let out = succeeds(&["fx"], &env);
    assert!(
        out.contains(&format!("fx: {today}..{today} into GBP")),
        "{out}"
    );
    assert_eq!(text_rows(&client, &gap).await[0][0].as_deref(), Some("0"));
    let again = succeeds(&["fx"], &env);
    assert!(
        again.contains("0 new raw reply(ies)") && again.contains("0 new, 0 changed"),
        "{again}"
    );
    // The same backfill again through the command: nothing new anywhere.
    let (first_text, last_text) = (first.to_string(), last.to_string());
    let backfill = [
        "fx",
        "--backfill-from",
        first_text.as_str(),
        "--backfill-to",
        last_text.as_str(),
    ];
    let rerun = succeeds(&backfill, &env);
    assert!(
        rerun.contains("0 new raw reply(ies)") && rerun.contains("0 new, 0 changed"),
        "{rerun}"
    );
    let refused = support::tributary(&["fx", "--backfill-to", first_text.as_str()], &env);
    assert!(
        !refused.status.success(),
        "--backfill-to needs --backfill-from"
    );
    let backwards = support::tributary(
        &[
            "fx",
            "--backfill-from",
            last_text.as_str(),
            "--backfill-to",
            first_text.as_str(),
        ],
        &env,
    );
    let stderr = String::from_utf8_lossy(&backwards.stderr);
    assert!(
        !backwards.status.success() && stderr.contains("is before"),
        "{stderr}"
    );
}

/// The star schema and the exchange-rate tables and views.
async fn tributary_warehouse_init(client: &tokio_postgres::Client) {
    tributary_pipeline::fx::fact_date_range(client)
        .await
        .unwrap();
}
