//! End to end, locally: a trade published by the replay server is queryable
//! in the warehouse (and in processed Parquet) within a minute; duplicates
//! put into the stream never reach the warehouse twice.

use std::time::{Duration, Instant};

use tributary_e2e::pipeline::Stack;
use tributary_lake::{Manifest, ManifestLog, parquet::decode};
use tributary_markets::{
    http::RetryPolicy,
    mercado::MercadoBitcoin,
    replay::{ReplayServer, ReplayState},
};
use tributary_pipeline::{
    markets_run::LocalMarkets,
    markets_transform::{MarketsState, SOURCE},
    stream::TradeStream,
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
        pass.loaded
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
    let manifest: Manifest<MarketsState> = ManifestLog::new(stack.processed.clone(), SOURCE)
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
        .map(|r| tributary_pipeline::stream::StreamRecord {
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
