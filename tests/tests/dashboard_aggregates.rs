//! The dashboard aggregates the loads keep equal the same figures computed
//! independently by DuckDB over the processed Parquet, after a first load
//! and after a later load that recomputed only the days it touched.

use std::path::Path;
use std::process::Command;

use tributary_e2e::pipeline::Stack;

/// (aggregate table, its columns as the DuckDB script prints them).
const AGGREGATES: [(&str, &str); 4] = [
    (
        "agg_sales_daily",
        "day::text, country, design_id::text, currency_code, orders::text, units::text, \
         value_sum::text, value_mean::text, value_p90::text",
    ),
    (
        "agg_sales_hourly",
        "day::text, hour::text, orders::text, units::text",
    ),
    (
        "agg_delivery_lead_time_daily",
        "day::text, orders::text, days_sum::text, days_mean::text, days_p90::text",
    ),
    (
        "agg_payment_delay_daily",
        "day::text, currency_code, payments::text, paid::text, amount_sum::text, \
         delay_days_sum::text, delay_days_mean::text, delay_days_p90::text",
    ),
];

type Rows = Vec<Vec<Option<String>>>;

/// DuckDB's figures over the processed lake at `root` (`--trades`: the
/// trade aggregates).
fn independent(root: &Path, args: &[&str]) -> serde_json::Map<String, serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/aggregates_duckdb.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(root)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "the DuckDB check failed (make test-deps installs duckdb): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the DuckDB check")
}

/// Values equal as text, or as numbers within a relative 1e-9 (means and
/// percentiles are computed in different arithmetic).
fn same(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) if a == b => true,
        (Some(a), Some(b)) => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => false,
        },
        (None, None) => true,
        _ => false,
    }
}

async fn compare(stack: &Stack) {
    let want = independent(stack.dirs.1.path(), &[]);
    for (table, columns) in AGGREGATES {
        let got = stack
            .warehouse_rows(&format!("SELECT {columns} FROM {table}"))
            .await;
        assert_same_rows(table, got, rows_of(&want[table]));
    }
}

/// The rows the load kept equal DuckDB's, in any order (see [`same`]).
fn assert_same_rows(table: &str, mut got: Rows, mut expected: Rows) {
    got.sort();
    expected.sort();
    assert!(!expected.is_empty(), "{table}: the facts give figures");
    assert_eq!(
        got.len(),
        expected.len(),
        "{table}: {got:?} vs {expected:?}"
    );
    for (g, e) in got.iter().zip(&expected) {
        assert!(
            g.len() == e.len() && g.iter().zip(e).all(|(a, b)| same(a, b)),
            "{table}: the load kept {g:?}, DuckDB computes {e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_equal_duckdb_over_the_processed_lake_after_each_load() {
    let Some(mut stack) = Stack::generated("aggregates", 20).await else {
        return;
    };
    let first = stack.cycle().await;
    let days = first
        .load
        .manifests
        .iter()
        .map(|m| m.aggregates.days)
        .sum::<u64>();
    assert!(days >= 20, "a first load computes every day: {days}");
    compare(&stack).await;

    // A minute of business: new orders today, payments falling due.
    tributary_totesys::simulate::simulate(
        &mut stack.source,
        &tributary_totesys::simulate::SimulateOptions {
            orders_per_minute: 1_200.0,
            duration: Some(std::time::Duration::from_millis(500)),
            seed: 9,
            churn_every: 0,
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    stack
        .source
        .batch_execute(
            "UPDATE payment SET paid = true, last_updated = now() AT TIME ZONE 'UTC' \
             WHERE payment_id IN (SELECT payment_id FROM payment WHERE NOT paid ORDER BY payment_id LIMIT 5)",
        )
        .await
        .unwrap();
    let second = stack.cycle().await;
    let touched: u64 = second
        .load
        .manifests
        .iter()
        .map(|m| m.aggregates.days)
        .sum();
    assert!(
        (1..20).contains(&touched),
        "a later load recomputes only the days it touched: {touched}"
    );
    compare(&stack).await;

    // A warehouse loaded before the aggregates existed: the next load
    // computes every day once.
    stack
        .warehouse
        .batch_execute(
            "TRUNCATE agg_sales_daily, agg_sales_hourly, agg_delivery_lead_time_daily, \
             agg_payment_delay_daily",
        )
        .await
        .unwrap();
    stack
        .source
        .batch_execute(
            "UPDATE payment SET paid = true, last_updated = now() AT TIME ZONE 'UTC' \
             WHERE payment_id = (SELECT min(payment_id) FROM payment WHERE NOT paid)",
        )
        .await
        .unwrap();
    let third = stack.cycle().await;
    let days: u64 = third.load.manifests.iter().map(|m| m.aggregates.days).sum();
    assert!(days >= 20, "every day again: {days}");
    compare(&stack).await;
    reporting_totals(&stack).await;
}

/// The sales aggregates in the reporting currency: one total per day,
/// country and design, each currency at its day's rate; a missing rate
/// gives NULL and names the currency.
async fn reporting_totals(stack: &Stack) {
    tributary_warehouse::fx::init(&stack.warehouse, false)
        .await
        .unwrap();
    let rate = |code: &str| match code {
        "GBP" => 1.0,
        "USD" => 0.8,
        "EUR" => 0.85,
        other => panic!("unexpected currency {other}"),
    };
    let gap_day = stack
        .warehouse_rows("SELECT min(day)::text FROM agg_sales_daily WHERE currency_code = 'EUR'")
        .await[0][0]
        .clone()
        .unwrap();
    stack
        .warehouse
        .batch_execute(&format!(
            "INSERT INTO tributary.fx_reporting (reporting_currency) VALUES ('GBP'); \
             INSERT INTO fact_exchange_rate (date, currency_code, rate_to_reporting, published_date) \
             SELECT d, c, CASE c WHEN 'GBP' THEN 1 WHEN 'USD' THEN 0.8 ELSE 0.85 END, d \
             FROM (SELECT DISTINCT day AS d FROM agg_sales_daily) days, \
                  unnest(ARRAY['GBP', 'USD', 'EUR']) c \
             WHERE NOT (d = '{gap_day}' AND c = 'EUR')"
        ))
        .await
        .unwrap();
    let want = independent(stack.dirs.1.path(), &[]);
    let mut expected: std::collections::BTreeMap<(String, String, String), (f64, Vec<String>)> =
        Default::default();
    for row in rows_of(&want["agg_sales_daily"]) {
        let text = |i: usize| row[i].clone().unwrap();
        let entry = expected
            .entry((text(0), text(1), text(2)))
            .or_insert((0.0, Vec::new()));
        if text(0) == gap_day && text(3) == "EUR" {
            entry.1.push(text(3));
        } else {
            entry.0 += text(6).parse::<f64>().unwrap() * rate(&text(3));
        }
    }
    let got = stack
        .warehouse_rows(
            "SELECT day::text, country, design_id::text, value_sum_reporting::text, \
                    currencies_without_rate, reporting_currency \
             FROM agg_sales_daily_reporting",
        )
        .await;
    assert_eq!(got.len(), expected.len());
    let mut gaps = 0;
    for row in got {
        let key = (
            row[0].clone().unwrap(),
            row[1].clone().unwrap(),
            row[2].clone().unwrap(),
        );
        let (total, missing) = &expected[&key];
        assert_eq!(row[5].as_deref(), Some("GBP"));
        if missing.is_empty() {
            assert!(row[4].is_none(), "{key:?}");
            assert!(
                same(&row[3], &Some(total.to_string())),
                "{key:?}: {row:?} vs {total}"
            );
        } else {
            gaps += 1;
            assert_eq!(
                row[3], None,
                "{key:?}: a missing rate is NULL, never a partial sum"
            );
            assert_eq!(row[4].as_deref(), Some("EUR"));
        }
    }
    assert!(gaps > 0, "the day without a EUR rate shows");
}

fn rows_of(value: &serde_json::Value) -> Rows {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trade_aggregates_equal_duckdb_per_coin_day_and_minute() {
    use std::time::Duration;

    use tributary_markets::{
        http::RetryPolicy,
        mercado::MercadoBitcoin,
        replay::{ReplayServer, ReplayState},
    };
    use tributary_pipeline::markets::local::LocalMarkets;

    let Some(mut stack) = Stack::new("trade_aggregates").await else {
        return;
    };
    let mut state = ReplayState::default();
    for symbol in ["BTC-BRL", "ETH-BRL"] {
        state.symbols.push((
            symbol.into(),
            "CRYPTO".into(),
            symbol[..3].into(),
            "BRL".into(),
        ));
    }
    let server = ReplayServer::start(state).await.unwrap();
    let mercado = MercadoBitcoin::new(
        &server.mercado_base(),
        RetryPolicy {
            min_interval: Duration::from_millis(50),
            ..RetryPolicy::default()
        },
    );
    let mut local = LocalMarkets::new(None);
    let now = chrono::Utc::now().timestamp();
    let amounts = ["0.01", "0.25", "0.003", "1.5", "0.07", "0.4", "2", "0.011"];
    for (i, amount) in amounts.iter().enumerate() {
        let i = i as i64;
        server.publish_trade("BTC-BRL", now - 1_800 + 97 * i, "488900.5", amount, "buy");
        server.publish_trade("ETH-BRL", now - 600 + 31 * i, "12000.25", amount, "sell");
    }
    let cycle = async |stack: &mut Stack, local: &mut LocalMarkets| {
        local
            .cycle(
                &mercado,
                &stack.raw,
                &stack.processed,
                &mut stack.warehouse,
                &stack.alerts,
            )
            .await
            .unwrap()
    };
    let first = cycle(&mut stack, &mut local).await;
    assert_eq!(first.loaded.trades, 16);
    // More trades of the same coin-days: the load recomputes them.
    for (i, amount) in amounts.iter().take(3).enumerate() {
        server.publish_trade("BTC-BRL", now - 30 + i as i64, "489000", amount, "sell");
    }
    let second = cycle(&mut stack, &mut local).await;
    assert_eq!(second.loaded.trades, 3);

    let want = independent(stack.dirs.1.path(), &["--trades"]);
    for (table, columns) in [
        (
            "agg_trades_daily",
            "symbol, day::text, trades::text, base_volume::text, quote_volume::text, \
             size_mean::text, size_p90::text",
        ),
        (
            "agg_trades_minute",
            "symbol, minute::text, trades::text, base_volume::text",
        ),
    ] {
        let got = stack
            .warehouse_rows(&format!("SELECT {columns} FROM {table}"))
            .await;
        assert_same_rows(table, got, rows_of(&want[table]));
    }
}
