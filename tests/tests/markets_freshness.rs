//! End to end, locally: a trade published by the replay server is queryable
//! in the warehouse (and in processed Parquet) within a minute; duplicates
//! put into the stream never reach the warehouse twice.

use std::time::{Duration, Instant};

use tributary_e2e::pipeline::Stack;
use tributary_lake::{Log, Manifest, ManifestLog, parquet::decode};
use tributary_markets::{
    http::RetryPolicy,
    mercado::MercadoBitcoin,
    replay::{ReplayServer, ReplayState},
};
use tributary_pipeline::{
    markets::local::LocalMarkets, markets::stream::TradeStream, markets::transform::MarketsState,
};

struct Markets {
    server: ReplayServer,
    mercado: MercadoBitcoin,
    local: LocalMarkets,
}

impl Markets {
    /// poll → stream → sink → transform → load, as the scheduled functions do.
    async fn cycle(&mut self, stack: &mut Stack) -> (u64, u64) {
        let pass = self
            .local
            .cycle(
                &self.mercado,
                &stack.raw,
                &stack.processed,
                &mut stack.warehouse,
                &stack.alerts,
            )
            .await
            .unwrap();
        (pass.loaded.trades, pass.loaded.bars)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_trade_is_queryable_within_a_minute_and_only_once() {
    let Some(mut stack) = Stack::new("freshness").await else {
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
    state.assets.push(
        serde_json::json!({"id": "bitcoin", "rank": 1, "symbol": "BTC", "name": "Bitcoin",
        "priceUsd": "57435.2862859343831301", "marketCapUsd": "1134508584478.0989721079862315"}),
    );
    let server = ReplayServer::start(state).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    for i in 0..5 {
        server.publish_trade("BTC-BRL", now - 60 + i, "488900.5", "0.01", "buy");
        server.publish_trade("ETH-BRL", now - 60 + i, "12000", "0.5", "sell");
    }
    let policy = RetryPolicy {
        min_interval: Duration::from_millis(50),
        ..RetryPolicy::default()
    };
    let coincap = tributary_markets::coincap::CoinCap::new(
        &server.coincap_base(),
        "test-key",
        policy.clone(),
    )
    .unwrap();
    let mut markets = Markets {
        mercado: MercadoBitcoin::new(&server.mercado_base(), policy),
        server,
        local: LocalMarkets::new(Some(coincap)),
    };
    let (first, _) = markets.cycle(&mut stack).await;
    assert_eq!(first, 10);
    let assets = stack
        .warehouse_rows(
            "SELECT symbol, name, price_usd::text, rank::text FROM dim_asset ORDER BY symbol",
        )
        .await;
    assert_eq!(
        assets,
        vec![
            vec![
                Some("BTC".into()),
                Some("Bitcoin".into()),
                Some("57435.286285934383130100".into()),
                Some("1".into())
            ],
            vec![Some("ETH".into()), None, None, None],
        ],
        "every traded coin, with CoinCap's facts where it has them"
    );

    let published = Instant::now();
    let tid = markets
        .server
        .publish_trade("BTC-BRL", now, "489123.45678901", "0.00392858", "sell");
    markets.cycle(&mut stack).await;
    let row = stack
        .warehouse
        .query_opt(
            "SELECT price::text, amount::text, side FROM fact_trade WHERE symbol = 'BTC-BRL' AND tid = $1",
            &[&tid],
        )
        .await
        .unwrap()
        .expect("the trade is in the warehouse");
    let freshness = published.elapsed();
    println!(
        "trade-to-warehouse freshness: {:.3} s",
        freshness.as_secs_f64()
    );
    assert!(freshness < Duration::from_secs(60));
    assert_eq!(
        row.get::<_, String>(0),
        "489123.456789010000000000",
        "exact decimal"
    );
    assert_eq!(row.get::<_, String>(1), "0.003928580000000000");

    // And in processed Parquet.
    let manifest: Manifest<MarketsState> =
        ManifestLog::new(stack.processed.clone(), Log::MarketsTransform)
            .latest()
            .await
            .unwrap()
            .unwrap();
    let trades_file = manifest.files.iter().find(|f| f.table == "trades").unwrap();
    let (_, batches) = decode(stack.processed.get(&trades_file.key).await.unwrap()).unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);

    // The same records put again (a poll that died before its checkpoint):
    // a new batch in the raw lake, nothing new in the warehouse.
    let again: Vec<_> = markets.local.stream.read(0, usize::MAX);
    let replays: Vec<_> = again
        .iter()
        .map(|r| tributary_pipeline::markets::stream::StreamRecord {
            partition_key: r.partition_key.clone(),
            data: r.data.clone(),
        })
        .collect();
    markets.local.stream.put_records(&replays).await.unwrap();
    let (duplicates_loaded, _) = markets.cycle(&mut stack).await;
    assert_eq!(duplicates_loaded, 0);
    let count: i64 = stack
        .warehouse
        .query_one("SELECT count(*) FROM fact_trade", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 11);
    let bars: i64 = stack
        .warehouse
        .query_one("SELECT sum(trades)::bigint FROM ohlcv_daily", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(bars, 11, "every trade counted once in the daily bars");

    // The crypto dashboards run and agree with what was published.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/dashboard");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("markets"))
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 3);
    for path in &names {
        let sql = std::fs::read_to_string(path).unwrap();
        let rows = stack
            .warehouse
            .query(sql.trim().trim_end_matches(';'), &[])
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{} returned nothing", path.display());
    }
    let latest = std::fs::read_to_string(&names[0]).unwrap();
    let rows = stack
        .warehouse
        .query(latest.trim().trim_end_matches(';'), &[])
        .await
        .unwrap();
    let btc = rows
        .iter()
        .find(|r| r.get::<_, String>(0) == "BTC-BRL")
        .expect("BTC-BRL has a latest price");
    let last: String = stack
        .warehouse
        .query_one(
            &format!(
                "SELECT last_price::text FROM ({}) q WHERE symbol = 'BTC-BRL'",
                latest.trim().trim_end_matches(';')
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        last, "489123.456789010000000000",
        "the latest BTC price is the published one"
    );
    assert_eq!(btc.len(), 3);

    // History: a trade older than a year is kept in fact_trade and its day
    // in ohlcv_daily, but leaves the default view `trades` (the last year).
    let old_day = now - 400 * 86_400;
    markets
        .server
        .publish_trade("BTC-BRL", old_day, "90000", "0.5", "buy");
    let (loaded, _) = markets.cycle(&mut stack).await;
    assert_eq!(loaded, 1);
    let counts = stack
        .warehouse_rows(
            "SELECT (SELECT count(*) FROM fact_trade)::text, (SELECT count(*) FROM trades)::text, \
             (SELECT count(*) FROM ohlcv_daily WHERE day = (to_timestamp($$OLD$$) AT TIME ZONE 'UTC')::date)::text"
                .replace("$$OLD$$", &old_day.to_string())
                .as_str(),
        )
        .await;
    assert_eq!(
        counts,
        vec![vec![Some("12".into()), Some("11".into()), Some("1".into())]],
        "fact_trade keeps it, the default view drops it, its day keeps a bar"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_candles_fill_the_history_before_polling_and_trades_win_where_both_exist() {
    let Some(mut stack) = Stack::new("candles").await else {
        return;
    };
    let mut state = ReplayState::default();
    state.symbols.push((
        "BTC-BRL".into(),
        "CRYPTO".into(),
        "BTC".into(),
        "BRL".into(),
    ));
    let day = |d: &str| {
        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    };
    let candle = |o: &str, h: &str, l: &str, c: &str, v: &str| {
        [
            o.to_string(),
            h.to_string(),
            l.to_string(),
            c.to_string(),
            v.to_string(),
        ]
    };
    let today = chrono::Utc::now().date_naive();
    let yesterday = (today - chrono::Days::new(1))
        .format("%Y-%m-%d")
        .to_string();
    state.candles.insert(
        "BTC-BRL".into(),
        vec![
            (day("2019-12-31"), candle("1", "1", "1", "1", "1")),
            (
                day("2020-01-01"),
                candle("29000.5", "29500", "28800.25", "29300", "12.00000001"),
            ),
            (
                day("2020-01-02"),
                candle("29300", "30100", "29100", "30000.1", "8.5"),
            ),
            (day(&yesterday), candle("9", "9", "9", "9", "9")),
        ],
    );
    let server = ReplayServer::start(state).await.unwrap();
    // A trade yesterday: that day's bar comes from trades, not the candle.
    let yesterday_noon = day(&yesterday) + 12 * 3600;
    server.publish_trade("BTC-BRL", yesterday_noon, "488900.5", "0.01", "buy");
    let policy = RetryPolicy {
        min_interval: Duration::from_millis(50),
        ..RetryPolicy::default()
    };
    let mercado = MercadoBitcoin::new(&server.mercado_base(), policy);
    let kept = tributary_pipeline::markets::history::backfill_history(
        &mercado,
        &stack.raw,
        &tributary_pipeline::markets::history::HistoryRequest {
            since: chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap(),
            until: None,
            symbols: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        kept.candles.get("BTC-BRL"),
        Some(&3),
        "2019-12-31 is before since"
    );
    // Each reply is kept as received: the API's parallel arrays, its
    // decimal strings untouched, the symbol named by the key.
    let kept_files = stack
        .raw
        .list(tributary_lake::keys::RAW_CANDLES)
        .await
        .unwrap();
    let btc: Vec<&String> = kept_files
        .iter()
        .filter(|k| k.ends_with("-BTC-BRL.json.gz"))
        .collect();
    assert_eq!(btc.len(), 1, "{kept_files:?}");
    let reply: serde_json::Value = serde_json::from_str(
        &tributary_pipeline::gz::read_text(&stack.raw, btc[0])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(reply["t"].as_array().map(Vec::len), Some(3), "{reply}");
    assert!(reply["o"][0].is_string(), "{reply}");
    let mut markets = Markets {
        mercado,
        server,
        local: LocalMarkets::new(None),
    };
    markets.cycle(&mut stack).await;
    let rows = stack
        .warehouse_rows(
            "SELECT day::text, open::text, low::text, close::text, base_volume::text, \
                    coalesce(trades::text, '-'), source \
             FROM ohlcv_daily_all WHERE symbol = 'BTC-BRL' ORDER BY day",
        )
        .await;
    let row = |d: &str, o: &str, l: &str, c: &str, v: &str, t: &str, s: &str| {
        [d, o, l, c, v, t, s].map(|x| Some(x.to_string())).to_vec()
    };
    assert_eq!(
        rows,
        vec![
            row(
                "2020-01-01",
                "29000.500000000000000000",
                "28800.250000000000000000",
                "29300.000000000000000000",
                "12.000000010000000000",
                "-",
                "candles"
            ),
            row(
                "2020-01-02",
                "29300.000000000000000000",
                "29100.000000000000000000",
                "30000.100000000000000000",
                "8.500000000000000000",
                "-",
                "candles"
            ),
            row(
                &yesterday,
                "488900.500000000000000000",
                "488900.500000000000000000",
                "488900.500000000000000000",
                "0.010000000000000000",
                "1",
                "trades"
            ),
        ],
        "exact history from candles; the traded day from its trades"
    );
    // Backfilling again changes nothing.
    tributary_pipeline::markets::history::backfill_history(
        &markets.mercado,
        &stack.raw,
        &tributary_pipeline::markets::history::HistoryRequest {
            since: chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap(),
            until: None,
            symbols: Some(vec!["BTC-BRL".into()]),
        },
    )
    .await
    .unwrap();
    markets.cycle(&mut stack).await;
    let again = stack
        .warehouse_rows(
            "SELECT day::text, open::text, low::text, close::text, base_volume::text, \
                    coalesce(trades::text, '-'), source \
             FROM ohlcv_daily_all WHERE symbol = 'BTC-BRL' ORDER BY day",
        )
        .await;
    assert_eq!(again, rows);
}
