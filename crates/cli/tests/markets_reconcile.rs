//! `tributary reconcile` on the crypto path, against the local stack: every
//! layer agrees after the documented operations (passes, a redelivered or
//! re-put sink batch, a candle backfill, a crash and its heal), and a real
//! difference is reported with what clears it.

mod support;

use std::{process::Output, sync::Arc, time::Duration};

use support::tributary;

use chrono::{Days, NaiveDate, Utc};
use tributary_lake::{Lake, Log, Manifest, ManifestLog, RunId, keys};
use tributary_markets::{
    Trade,
    http::RetryPolicy,
    mercado::MercadoBitcoin,
    replay::{ReplayServer, ReplayState},
    rollup::trades_batch,
};
use tributary_pipeline::{
    markets::{
        history::{HistoryRequest, backfill_history},
        load::load_markets,
        local::LocalMarkets,
        reconcile::reconcile_markets,
        sink::sink_batch,
        stream::{StreamRecord, TradeStream},
        transform::{MarketsState, transform_markets},
    },
    reconcile::Comparison,
};
use tributary_testkit::{
    faults::{Fault, FaultyStore, Trigger},
    pipeline::Stack,
};

const SYMBOLS: [&str; 2] = ["BTC-BRL", "ETH-BRL"];

/// The replay server and the local crypto path.
struct Markets {
    server: ReplayServer,
    mercado: MercadoBitcoin,
    local: LocalMarkets,
}

impl Markets {
    /// A market with `SYMBOLS` and, per symbol, trades on a closed day (six
    /// days ago, compacted by the first pass), two days ago and today.
    async fn start(candles: Vec<(i64, [String; 5])>) -> Markets {
        let mut state = ReplayState::default();
        for symbol in SYMBOLS {
            state.symbols.push((
                symbol.into(),
                "CRYPTO".into(),
                symbol[..3].into(),
                "BRL".into(),
            ));
        }
        state.candles.insert("BTC-BRL".into(), candles);
        let server = ReplayServer::start(state).await.unwrap();
        for (days_ago, count) in [(6, 3), (2, 2), (0, 4)] {
            for i in 0..count {
                let at = trade_time(days_ago, i);
                server.publish_trade("BTC-BRL", at, &format!("4889{i}0.5"), "0.01", "buy");
                server.publish_trade("ETH-BRL", at, "12000.25", &format!("0.{i}5"), "sell");
            }
        }
        let policy = RetryPolicy {
            min_interval: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        Markets {
            mercado: MercadoBitcoin::new(&server.mercado_base(), policy),
            server,
            local: LocalMarkets::new(None),
        }
    }

    /// poll → stream → sink → transform → load, on the stack's lakes.
    async fn pass(&mut self, stack: &mut Stack) {
        let (raw, processed) = (stack.raw.clone(), stack.processed.clone());
        self.pass_on(stack, &raw, &processed)
            .await
            .expect("markets pass");
    }

    /// A pass on other lakes (a faulty wrapper of the stack's).
    async fn pass_on(
        &mut self,
        stack: &mut Stack,
        raw: &Lake,
        processed: &Lake,
    ) -> tributary_pipeline::Result<()> {
        self.local
            .cycle(
                &self.mercado,
                raw,
                processed,
                &mut stack.warehouse,
                &stack.alerts,
            )
            .await
            .map(|_| ())
    }
}

/// Unix seconds of the `i`-th trade of a day `days_ago` days before today
/// (UTC): a minute apart from a minute after midnight, so on that day.
fn trade_time(days_ago: u64, i: i64) -> i64 {
    let day = Utc::now().date_naive() - Days::new(days_ago);
    day.and_hms_opt(0, 1, 0).unwrap().and_utc().timestamp() + i * 60
}

async fn reconcile(stack: &Stack) -> Vec<Comparison> {
    reconcile_markets(
        &stack.raw,
        &stack.processed,
        &stack.warehouse,
        &stack.alerts,
    )
    .await
    .expect("markets reconcile")
}

/// The comparison of `table` across `layers`.
fn row<'a>(comparisons: &'a [Comparison], table: &str, layers: &str) -> &'a Comparison {
    comparisons
        .iter()
        .find(|c| c.table == table && c.layers == layers)
        .unwrap_or_else(|| panic!("no {table} {layers} in {comparisons:#?}"))
}

/// Every markets comparison is there and clean; returns them.
async fn assert_clean(stack: &Stack) -> Vec<Comparison> {
    let comparisons = reconcile(stack).await;
    assert_eq!(comparisons.len(), 6, "{comparisons:#?}");
    let differing: Vec<_> = comparisons.iter().filter(|c| !c.is_clean()).collect();
    assert!(
        differing.is_empty(),
        "markets reconcile differs: {differing:#?}"
    );
    for c in &comparisons {
        assert_eq!(c.checksums.0, c.checksums.1, "{c:?}");
        assert_eq!(c.expected, c.actual, "{c:?}");
        assert!(c.advice.is_none(), "{c:?}");
    }
    comparisons
}

async fn count(stack: &Stack, sql: &str) -> i64 {
    stack.warehouse.query_one(sql, &[]).await.unwrap().get(0)
}

fn faulty(lake: &Lake, fragment: &str) -> (Lake, Arc<FaultyStore>) {
    let store = FaultyStore::new(
        Arc::clone(lake.store()),
        Trigger {
            on_put: true,
            fragment: fragment.to_string(),
            nth: 1,
        },
        Fault::Fail,
    );
    let wrapped = Lake::with_store(store.clone(), "", lake.url()).unwrap();
    (wrapped, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_markets_data_the_markets_reconcile_reports_nothing() {
    let Some(stack) = Stack::new("mrec_none").await else {
        return;
    };
    assert!(
        reconcile(&stack).await.is_empty(),
        "a warehouse without the schema"
    );
    tributary_pipeline::totesys::load::init_warehouse(&stack.warehouse)
        .await
        .unwrap();
    assert!(reconcile(&stack).await.is_empty(), "an empty schema");
    assert!(stack.alerts.sent().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_and_redelivered_or_re_put_batches_reconcile_clean() {
    let Some(mut stack) = Stack::new("mrec_redeliver").await else {
        return;
    };
    let mut markets = Markets::start(Vec::new()).await;
    markets.pass(&mut stack).await;
    let first = assert_clean(&stack).await;
    assert_eq!(row(&first, "fact_trade", "raw → processed").expected, 18);
    assert_eq!(row(&first, "ohlcv_daily", "trades → bars").expected, 6);
    assert_eq!(
        row(&first, "ohlcv_daily_history", "raw → processed").expected,
        0
    );
    let state: MarketsState = ManifestLog::new(stack.processed.clone(), Log::MarketsTransform)
        .latest::<MarketsState>()
        .await
        .unwrap()
        .unwrap()
        .state;
    assert_eq!(state.compacted.len(), 1, "the closed day was compacted");

    // The stream redelivers a batch the sink already kept: same object, no
    // new manifest; transform and load find nothing new.
    let batch = markets.local.stream.read(0, usize::MAX);
    assert!(!batch.is_empty());
    let again = sink_batch(&stack.raw, &batch, &stack.alerts).await;
    assert!(again.already_written && again.batch_item_failures.is_empty());
    transform_markets(&stack.raw, &stack.processed, &stack.alerts)
        .await
        .unwrap();
    load_markets(&mut stack.warehouse, &stack.processed, &stack.alerts)
        .await
        .unwrap();
    assert_clean(&stack).await;

    // The same records put again (a poll that died before its checkpoint):
    // a second raw batch with the same trades, nothing new downstream.
    let replays: Vec<StreamRecord> = batch
        .iter()
        .map(|r| StreamRecord {
            partition_key: r.partition_key.clone(),
            data: r.data.clone(),
        })
        .collect();
    markets.local.stream.put_records(&replays).await.unwrap();
    markets.pass(&mut stack).await;
    let sink_batches = ManifestLog::new(stack.raw.clone(), Log::MarketsTrades)
        .latest_seq()
        .await
        .unwrap();
    assert_eq!(sink_batches, 2, "the re-put records are a second batch");
    let after = assert_clean(&stack).await;
    assert_eq!(
        row(&after, "fact_trade", "processed → warehouse").actual,
        18
    );

    // New trades today: still clean, and counted once.
    let now = Utc::now().timestamp();
    markets
        .server
        .publish_trade("BTC-BRL", now - 10, "489999.5", "0.02", "sell");
    markets.pass(&mut stack).await;
    let last = assert_clean(&stack).await;
    assert_eq!(row(&last, "fact_trade", "raw → processed").expected, 19);
    assert_eq!(count(&stack, "SELECT count(*) FROM fact_trade").await, 19);
    assert!(stack.alerts.sent().is_empty(), "{:?}", stack.alerts.sent());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candle_backfill_reconciles_clean_and_so_does_a_second_one() {
    let Some(mut stack) = Stack::new("mrec_candles").await else {
        return;
    };
    let day = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    let candle =
        |o: &str, h: &str, l: &str, c: &str, v: &str| [o, h, l, c, v].map(|x| x.to_string());
    let since = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    let yesterday = Utc::now().date_naive() - Days::new(1);
    let mut markets = Markets::start(vec![
        (
            day(since),
            candle("29000.5", "29500", "28800.25", "29300", "12.00000001"),
        ),
        (
            day(since + Days::new(1)),
            candle("29300", "30100", "29100", "30000.1", "8.5"),
        ),
        (day(yesterday), candle("9", "9", "9", "9", "9")),
    ])
    .await;
    let request = HistoryRequest {
        since,
        until: None,
        symbols: Some(vec!["BTC-BRL".into()]),
    };
    let kept = backfill_history(&markets.mercado, &stack.raw, &request)
        .await
        .unwrap();
    assert_eq!(kept.candles.get("BTC-BRL"), Some(&3));
    markets.pass(&mut stack).await;
    let first = assert_clean(&stack).await;
    assert_eq!(
        row(&first, "ohlcv_daily_history", "raw → processed").expected,
        3
    );
    assert_eq!(
        row(&first, "ohlcv_daily_history", "processed → warehouse").actual,
        3
    );

    // Backfilling the same days again, then a pass: the same bars.
    backfill_history(&markets.mercado, &stack.raw, &request)
        .await
        .unwrap();
    markets.pass(&mut stack).await;
    let again = assert_clean(&stack).await;
    assert_eq!(
        row(&again, "ohlcv_daily_history", "raw → processed").expected,
        3
    );
}

/// The warehouse's bar of `symbol` `days_ago` days before today:
/// (open, high, low, close, trades).
async fn warehouse_bar(
    stack: &Stack,
    symbol: &str,
    days_ago: u64,
) -> (String, String, String, String, i64) {
    let day = Utc::now().date_naive() - Days::new(days_ago);
    let row = stack
        .warehouse
        .query_one(
            "SELECT open::text, high::text, low::text, close::text, trades FROM ohlcv_daily \
             WHERE symbol = $1 AND day = $2::text::date",
            &[&symbol, &day.to_string()],
        )
        .await
        .unwrap();
    // As the lake writes decimals: no trailing zeros.
    let text = |i: usize| {
        let value: tributary_markets::Decimal18 = row.get::<_, &str>(i).parse().unwrap();
        value.to_string()
    };
    (text(0), text(1), text(2), text(3), row.get(4))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_trade_for_a_closed_day_rebuilds_that_days_bar_from_all_its_trades() {
    let Some(mut stack) = Stack::new("mrec_late").await else {
        return;
    };
    let mut markets = Markets::start(Vec::new()).await;
    markets.pass(&mut stack).await;
    assert_clean(&stack).await;
    assert_eq!(
        warehouse_bar(&stack, "BTC-BRL", 6).await,
        (
            "488900.5".into(),
            "488920.5".into(),
            "488900.5".into(),
            "488920.5".into(),
            3
        )
    );

    // A trade of six days ago (a closed day, compacted by the first pass)
    // reaches the exchange late, with the next tid.
    markets
        .server
        .publish_trade("BTC-BRL", trade_time(6, 10), "200", "0.5", "sell");
    markets.pass(&mut stack).await;
    let after = assert_clean(&stack).await;
    assert_eq!(row(&after, "ohlcv_daily", "trades → bars").expected, 6);
    assert_eq!(
        warehouse_bar(&stack, "BTC-BRL", 6).await,
        (
            "488900.5".into(),
            "488920.5".into(),
            "200".into(),
            "200".into(),
            4
        ),
        "the day's bar holds its three trades and the late one"
    );

    // Another late trade for that day: rebuilt from the day's new compacted
    // generation (which holds the first late trade) and the new one.
    markets
        .server
        .publish_trade("BTC-BRL", trade_time(6, 11), "500000", "0.25", "buy");
    markets.pass(&mut stack).await;
    assert_clean(&stack).await;
    assert_eq!(
        warehouse_bar(&stack, "BTC-BRL", 6).await,
        (
            "488900.5".into(),
            "500000".into(),
            "200".into(),
            "500000".into(),
            5
        )
    );
    assert_eq!(
        warehouse_bar(&stack, "ETH-BRL", 6).await.4,
        3,
        "the other symbol's bar of that day is untouched"
    );
    assert!(stack.alerts.sent().is_empty(), "{:?}", stack.alerts.sent());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_candle_backfills_before_one_transform_load_the_newest_candle_of_each_day() {
    let Some(mut stack) = Stack::new("mrec_backfills").await else {
        return;
    };
    let day = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    let candle =
        |o: &str, h: &str, l: &str, c: &str, v: &str| [o, h, l, c, v].map(|x| x.to_string());
    let since = NaiveDate::from_ymd_opt(2021, 3, 1).unwrap();
    let mut markets = Markets::start(vec![
        (day(since), candle("100", "110", "90", "105", "1")),
        (
            day(since + Days::new(1)),
            candle("105", "120", "100", "115", "2"),
        ),
    ])
    .await;
    let request = HistoryRequest {
        since,
        until: Some(since + Days::new(1)),
        symbols: Some(vec!["BTC-BRL".into()]),
    };
    backfill_history(&markets.mercado, &stack.raw, &request)
        .await
        .unwrap();
    // The exchange revises the second day; a second backfill of the same
    // days is taken before the transform runs.
    markets.server.with_state(|state| {
        state.candles.get_mut("BTC-BRL").unwrap()[1].1 = candle("105", "125", "100", "121", "2.5");
    });
    backfill_history(&markets.mercado, &stack.raw, &request)
        .await
        .unwrap();

    markets.pass(&mut stack).await;
    let comparisons = assert_clean(&stack).await;
    assert_eq!(
        row(&comparisons, "ohlcv_daily_history", "processed → warehouse").actual,
        2
    );
    let close: String = stack
        .warehouse
        .query_one(
            "SELECT close::text FROM ohlcv_daily_history WHERE symbol = 'BTC-BRL' AND day = $1::text::date",
            &[&(since + Days::new(1)).to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        close.parse::<f64>().unwrap(),
        121.0,
        "the newer backfill wins"
    );
    assert!(stack.alerts.sent().is_empty(), "{:?}", stack.alerts.sent());

    // Later manifests are not blocked.
    markets.server.publish_trade(
        "BTC-BRL",
        Utc::now().timestamp() - 10,
        "489999.5",
        "0.02",
        "sell",
    );
    markets.pass(&mut stack).await;
    assert_clean(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_holding_a_candle_twice_loads_the_last_one() {
    let Some(mut stack) = Stack::new("mrec_twice").await else {
        return;
    };
    let mut markets = Markets::start(Vec::new()).await;
    markets.pass(&mut stack).await;
    let since = NaiveDate::from_ymd_opt(2021, 3, 1).unwrap();
    let day = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    let values = ["100", "110", "90", "105", "1"].map(str::to_string);
    let revised = ["100", "115", "90", "112", "1.5"].map(str::to_string);
    let request = HistoryRequest {
        since,
        until: Some(since),
        symbols: Some(vec!["BTC-BRL".into()]),
    };
    for candle in [&values, &revised] {
        markets.server.with_state(|state| {
            state
                .candles
                .insert("BTC-BRL".into(), vec![(day(since), candle.clone())]);
        });
        backfill_history(&markets.mercado, &stack.raw, &request)
            .await
            .unwrap();
    }

    // A manifest as a transform before the fix wrote it for both backfills
    // at once: the day's candle twice in one file, the newer one last.
    let log = ManifestLog::new(stack.processed.clone(), Log::MarketsTransform);
    let latest: Manifest<MarketsState> = log.latest().await.unwrap().unwrap();
    let candle = |v: &[String; 5]| tributary_markets::Candle {
        symbol: "BTC-BRL".into(),
        day: since,
        open: v[0].parse().unwrap(),
        high: v[1].parse().unwrap(),
        low: v[2].parse().unwrap(),
        close: v[3].parse().unwrap(),
        volume: v[4].parse().unwrap(),
    };
    let run = RunId::now();
    let batch =
        tributary_markets::rollup::history_batch(&[candle(&values), candle(&revised)]).unwrap();
    let file = stack
        .processed
        .put_batch(
            &keys::processed_ohlcv_history(2021, &run),
            "ohlcv_history",
            &batch,
        )
        .await
        .unwrap();
    let mut state = latest.state.clone();
    state.candles_seq = 2;
    log.commit(latest.seq, &run, Utc::now(), vec![file], state)
        .await
        .unwrap();

    let loaded = load_markets(&mut stack.warehouse, &stack.processed, &stack.alerts)
        .await
        .expect("a candle twice in one file does not block the load");
    assert_eq!(loaded.manifests, 1);
    assert_clean(&stack).await;
    let close: String = stack
        .warehouse
        .query_one(
            "SELECT close::text FROM ohlcv_daily_history WHERE symbol = 'BTC-BRL'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(close.parse::<f64>().unwrap(), 112.0, "the last one wins");
    assert!(stack.alerts.sent().is_empty(), "{:?}", stack.alerts.sent());
}

/// A trade line of `symbol` traded a few seconds ago, with `price` as given.
fn trade_line(symbol: &str, tid: i64, price: &str) -> String {
    let at = (Utc::now().timestamp() - 5) * 1_000;
    format!(
        r#"{{"symbol":"{symbol}","tid":{tid},"traded_at_ms":{at},"price":"{price}","amount":"0.01","side":"buy"}}"#
    )
}

/// The lines of every markets trade quarantine file of the raw lake.
async fn quarantined(stack: &Stack) -> Vec<String> {
    let mut lines = Vec::new();
    for key in stack.raw.list("_quarantine/markets/trades").await.unwrap() {
        let bytes = stack.raw.get(&key).await.unwrap();
        lines.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_string));
    }
    lines
}

/// `line` as a JSON string value (how a quarantine record quotes it).
fn quoted(line: &str) -> String {
    format!("\"{}\"", line.replace('"', "\\\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_whose_price_is_not_a_number_is_quarantined_by_the_sink_and_blocks_nothing() {
    let Some(mut stack) = Stack::new("mrec_badprice").await else {
        return;
    };
    let mut markets = Markets::start(Vec::new()).await;
    markets.pass(&mut stack).await;
    let lines = [
        trade_line("BTC-BRL", 100, "489000.5"),
        trade_line("BTC-BRL", 101, "twelve"),
    ];
    markets
        .local
        .stream
        .put_records(&[StreamRecord {
            partition_key: "BTC-BRL".into(),
            data: lines.join("\n").into(),
        }])
        .await
        .unwrap();
    markets.pass(&mut stack).await;
    let comparisons = assert_clean(&stack).await;
    assert_eq!(
        row(&comparisons, "fact_trade", "processed → warehouse").actual,
        19
    );
    let refused = quarantined(&stack).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains(r#""reason":"#)
            && refused[0].contains(r#"price \"twelve\" is not an exact decimal"#),
        "{refused:?}"
    );
    assert!(refused[0].contains(&quoted(&lines[1])), "{refused:?}");

    // Later trades still flow.
    markets
        .local
        .stream
        .put_records(&[StreamRecord {
            partition_key: "BTC-BRL".into(),
            data: trade_line("BTC-BRL", 102, "489001").into(),
        }])
        .await
        .unwrap();
    markets.pass(&mut stack).await;
    assert_eq!(
        row(&assert_clean(&stack).await, "fact_trade", "raw → processed").expected,
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_batch_already_holding_a_price_that_is_not_a_number_is_skipped_with_quarantine() {
    let Some(mut stack) = Stack::new("mrec_badraw").await else {
        return;
    };
    let mut markets = Markets::start(Vec::new()).await;
    markets.pass(&mut stack).await;

    // A batch a sink before the check kept: one good trade, one bad.
    let lines = [
        trade_line("ETH-BRL", 100, "12001"),
        trade_line("ETH-BRL", 101, "NaN"),
    ];
    let first = Trade {
        symbol: "ETH-BRL".into(),
        tid: 100,
        traded_at_ms: (Utc::now().timestamp() - 5) * 1_000,
        price: "12001".into(),
        amount: "0.01".into(),
        side: tributary_markets::Side::Buy,
    };
    let key = tributary_pipeline::markets::sink::batch_key(&first, "shard-old", "42");
    let body = tributary_pipeline::gz::gzip(format!("{}\n", lines.join("\n")).as_bytes()).unwrap();
    let entry = stack.raw.put_file(&key, "trades", 2, body).await.unwrap();
    let log = ManifestLog::new(stack.raw.clone(), Log::MarketsTrades);
    let latest = log.latest_seq().await.unwrap();
    log.commit(
        latest,
        &RunId::now(),
        Utc::now(),
        vec![entry],
        tributary_pipeline::markets::sink::SinkState::default(),
    )
    .await
    .unwrap();

    markets.pass(&mut stack).await;
    let comparisons = assert_clean(&stack).await;
    assert_eq!(
        row(&comparisons, "fact_trade", "processed → warehouse").actual,
        19
    );
    let refused = quarantined(&stack).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains(r#""reason":"#)
            && refused[0].contains(r#"price \"NaN\" is not an exact decimal"#),
        "{refused:?}"
    );
    assert!(refused[0].contains(&quoted(&key)), "{refused:?}");
    assert!(refused[0].contains(&quoted(&lines[1])), "{refused:?}");

    // The next run does not quarantine it again, nor fail.
    transform_markets(&stack.raw, &stack.processed, &stack.alerts)
        .await
        .unwrap();
    assert_eq!(quarantined(&stack).await.len(), 1);
}

/// A log line sink shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }
}

// One thread, so that the test's log subscriber sees the transform's events.
#[tokio::test(flavor = "current_thread")]
async fn a_trade_out_of_tid_order_is_counted_apart_from_a_repeat() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let Some(mut stack) = Stack::new("mrec_order").await else {
        return;
    };
    let mut markets = Markets::start(Vec::new()).await;
    markets.pass(&mut stack).await;
    let put = |lines: &[String]| StreamRecord {
        partition_key: "BTC-BRL".into(),
        data: lines.join("\n").into(),
    };
    let first = trade_line("BTC-BRL", 100, "489000");
    markets
        .local
        .stream
        .put_records(&[put(std::slice::from_ref(&first))])
        .await
        .unwrap();
    markets.pass(&mut stack).await;
    assert_clean(&stack).await;

    // tid 100 again (a repeat: kept already, the same line as delivered
    // again; one made now could carry another second on a busy machine),
    // then tid 50, below the highest tid kept yet never kept (out of tid
    // order).
    let (repeat, late) = (first, trade_line("BTC-BRL", 50, "489100"));
    markets
        .local
        .stream
        .put_records(&[put(&[repeat, late])])
        .await
        .unwrap();
    let batch = markets.local.stream.read(markets.local.stream.len() - 1, 1);
    sink_batch(&stack.raw, &batch, &stack.alerts).await;
    let report = transform_markets(&stack.raw, &stack.processed, &stack.alerts)
        .await
        .unwrap();
    assert_eq!(
        (report.trades, report.duplicates, report.out_of_order),
        (0, 1, 1),
        "{report:?}"
    );
    let warned: Vec<String> = logs
        .text()
        .lines()
        .filter(|l| l.contains("out of tid order"))
        .map(str::to_string)
        .collect();
    assert_eq!(warned.len(), 1, "{}", logs.text());
    assert!(
        warned[0].contains("WARN")
            && warned[0].contains("symbol=\"BTC-BRL\"")
            && warned[0].contains("tids=[50]"),
        "{}",
        warned[0]
    );
    load_markets(&mut stack.warehouse, &stack.processed, &stack.alerts)
        .await
        .unwrap();
    let comparisons = reconcile(&stack).await;
    let trades = row(&comparisons, "fact_trade", "raw → processed");
    assert_eq!((trades.missing, trades.extra), (1, 0), "{trades:?}");
    assert!(
        trades
            .example
            .as_deref()
            .is_some_and(|e| e.starts_with("missing BTC-BRL tid 50")),
        "{trades:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_a_manifest_heals_and_reconciles_clean() {
    let Some(mut stack) = Stack::new("mrec_crash").await else {
        return;
    };
    let mut markets = Markets::start(Vec::new()).await;

    // The sink dies between its batch object and its manifest: the pass
    // leaves the batch in the stream; nothing downstream has it yet.
    let (raw, fault) = faulty(&stack.raw, "_manifests/markets/0");
    let processed = stack.processed.clone();
    markets
        .pass_on(&mut stack, &raw, &processed)
        .await
        .expect("a failed batch is left for redelivery, not an error");
    assert_eq!(fault.fired(), 1);
    assert!(
        reconcile(&stack).await.iter().all(Comparison::is_clean),
        "nothing committed, nothing to differ"
    );

    // The transform dies between its files and its manifest.
    let (processed, fault) = faulty(&stack.processed, "_manifests/markets_transform/");
    let raw = stack.raw.clone();
    markets
        .pass_on(&mut stack, &raw, &processed)
        .await
        .expect_err("the transform's manifest put fails");
    assert_eq!(fault.fired(), 1);
    let behind = reconcile(&stack).await;
    let trades = row(&behind, "fact_trade", "raw → processed");
    assert_eq!((trades.missing, trades.extra), (18, 0), "{trades:?}");
    let advice = trades.advice.as_deref().unwrap();
    assert!(
        advice.contains("consumed sink manifests through 0 of 1")
            && advice.contains("`tributary markets`"),
        "{advice}"
    );
    assert!(
        stack
            .alerts
            .sent()
            .iter()
            .any(|a| a.stage == "reconcile" && a.action == advice),
        "{:?}",
        stack.alerts.sent()
    );

    // The next pass heals both.
    markets.pass(&mut stack).await;
    let healed = assert_clean(&stack).await;
    assert_eq!(
        row(&healed, "fact_trade", "processed → warehouse").actual,
        18
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_warehouse_trade_is_reported_missing_until_the_manifests_are_re_applied() {
    let Some(mut stack) = Stack::new("mrec_deleted").await else {
        return;
    };
    let mut markets = Markets::start(Vec::new()).await;
    markets.pass(&mut stack).await;
    assert_clean(&stack).await;
    stack
        .warehouse
        .execute(
            "DELETE FROM fact_trade WHERE (symbol, tid) = (SELECT symbol, tid FROM fact_trade ORDER BY symbol, tid LIMIT 1)",
            &[],
        )
        .await
        .unwrap();

    let comparisons = reconcile(&stack).await;
    let differing: Vec<_> = comparisons.iter().filter(|c| !c.is_clean()).collect();
    assert_eq!(differing.len(), 1, "{differing:#?}");
    let trades = differing[0];
    assert_eq!(
        (trades.table, trades.layers, trades.missing, trades.extra),
        ("fact_trade", "processed → warehouse", 1, 0)
    );
    assert_ne!(trades.checksums.0, trades.checksums.1);
    assert!(
        trades
            .example
            .as_deref()
            .unwrap()
            .starts_with("missing BTC-BRL tid 1 ("),
        "{trades:?}"
    );
    let advice = trades.advice.as_deref().unwrap();
    assert!(
        advice.contains("DELETE FROM tributary.market_load_log"),
        "{advice}"
    );
    let alerts = stack.alerts.sent();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].message.contains("missing 1"), "{}", alerts[0]);

    // Doing what the advice says clears it.
    stack
        .warehouse
        .execute("DELETE FROM tributary.market_load_log", &[])
        .await
        .unwrap();
    load_markets(&mut stack.warehouse, &stack.processed, &stack.alerts)
        .await
        .unwrap();
    assert_clean(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_two_current_files_hold_is_reported_with_both_files() {
    let Some(mut stack) = Stack::new("mrec_repeat").await else {
        return;
    };
    let mut markets = Markets::start(Vec::new()).await;
    markets.pass(&mut stack).await;
    assert_clean(&stack).await;

    // A manifest whose state names a second file for today holding a trade
    // already in today's first file (what a faulty transform would commit).
    let log = ManifestLog::new(stack.processed.clone(), Log::MarketsTransform);
    let latest: Manifest<MarketsState> = log.latest().await.unwrap().unwrap();
    let today = Utc::now().date_naive();
    let current = latest.state.uncompacted[&today][0].clone();
    let repeated = Trade {
        symbol: "ETH-BRL".into(),
        tid: 9,
        traded_at_ms: trade_time(0, 3) * 1_000,
        price: "12000.25".into(),
        amount: "0.35".into(),
        side: tributary_markets::Side::Sell,
    };
    let run = RunId::now();
    let key = keys::processed_trades(today, &run);
    stack
        .processed
        .put_batch(&key, "trades", &trades_batch(&[repeated]).unwrap())
        .await
        .unwrap();
    let mut state = latest.state.clone();
    state.uncompacted.get_mut(&today).unwrap().push(key.clone());
    log.commit(latest.seq, &run, Utc::now(), Vec::new(), state)
        .await
        .unwrap();

    let comparisons = reconcile(&stack).await;
    let trades = row(&comparisons, "fact_trade", "raw → processed");
    assert_eq!((trades.missing, trades.extra), (0, 1), "{trades:?}");
    let example = trades.example.as_deref().unwrap();
    assert!(
        example.contains("ETH-BRL tid 9") && example.contains(&key) && example.contains(&current),
        "{example}"
    );
    let advice = trades.advice.as_deref().unwrap();
    assert!(
        advice.contains("named twice") && advice.contains(&key) && advice.contains(&current),
        "{advice}"
    );
    let differing = comparisons.iter().filter(|c| !c.is_clean()).count();
    assert_eq!(
        differing, 1,
        "the bars and the warehouse count the trade once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tributary_reconcile_prints_the_markets_rows_and_fails_on_a_markets_difference() {
    let Some(mut stack) = Stack::generated("mrec_cli", 2).await else {
        return;
    };
    stack.cycle().await;
    let env = [
        ("TOTESYS_DATABASE_URL", stack.source_db.url.clone()),
        ("WAREHOUSE_DATABASE_URL", stack.warehouse_db.url.clone()),
        ("TRIBUTARY_RAW_URL", stack.raw.url().to_string()),
        ("TRIBUTARY_PROCESSED_URL", stack.processed.url().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stdout = |output: &Output| String::from_utf8_lossy(&output.stdout).to_string();

    let totesys_only = tributary(&["reconcile"], &env);
    assert!(totesys_only.status.success(), "{totesys_only:?}");
    assert!(
        !stdout(&totesys_only).contains("fact_trade"),
        "no markets rows without markets data:\n{}",
        stdout(&totesys_only)
    );

    let mut markets = Markets::start(Vec::new()).await;
    markets.pass(&mut stack).await;
    let clean = tributary(&["reconcile"], &env);
    let text = stdout(&clean);
    assert!(clean.status.success(), "{clean:?}");
    for line in [
        "fact_trade           raw → processed",
        "fact_trade           processed → warehouse",
        "ohlcv_daily          trades → bars",
        "ohlcv_daily          processed → warehouse",
        "ohlcv_daily_history  raw → processed",
        "ohlcv_daily_history  processed → warehouse",
    ] {
        let found = text.lines().find(|l| l.starts_with(line));
        assert!(
            found.is_some_and(|l| l.ends_with("ok")),
            "{line} in\n{text}"
        );
    }

    stack
        .warehouse
        .execute("DELETE FROM ohlcv_daily WHERE symbol = 'ETH-BRL'", &[])
        .await
        .unwrap();
    let differs = tributary(&["reconcile"], &env);
    let text = stdout(&differs);
    assert_eq!(differs.status.code(), Some(1), "{differs:?}");
    let bars = text
        .lines()
        .find(|l| l.starts_with("ohlcv_daily          processed → warehouse"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(bars.contains("DIFFERS (missing ETH-BRL"), "{bars}");
    assert!(
        text.contains("ohlcv_daily processed → warehouse: every markets manifest is loaded"),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&differs.stderr);
    assert!(
        stderr.contains("reconcile found 1 difference(s)"),
        "{stderr}"
    );
}
