//! Market trades from the replay server through the stream into the raw lake:
//! checkpoints never pass unsaved trades, and redelivery or overlapping
//! polls duplicate nothing.

use std::{
    collections::BTreeMap,
    future::Future,
    io::Read,
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use tributary_e2e::temp_lake;
use tributary_lake::{Lake, Log, ManifestLog};
use tributary_markets::{
    Trade,
    http::RetryPolicy,
    mercado::MercadoBitcoin,
    replay::{Failure, ReplayServer, ReplayState},
};
use tributary_pipeline::{
    Result,
    alerts::RecordedAlerts,
    markets::poll::{PollOptions, PollState, poll_markets},
    markets::sink::sink_batch,
    markets::stream::{MemoryStream, StreamRecord, TradeStream},
};

fn quick() -> RetryPolicy {
    RetryPolicy {
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        min_interval: Duration::ZERO,
        ..RetryPolicy::default()
    }
}

async fn market(symbols: &[&str], trades_each: i64) -> ReplayServer {
    let mut state = ReplayState::default();
    for symbol in symbols {
        let base = symbol.split('-').next().unwrap_or("X").to_string();
        state
            .symbols
            .push((symbol.to_string(), "CRYPTO".into(), base, "BRL".into()));
    }
    state.symbols.push((
        "FAN-BRL".into(),
        "FAN_TOKEN".into(),
        "FAN".into(),
        "BRL".into(),
    ));
    let server = ReplayServer::start(state).await.unwrap();
    for symbol in symbols {
        for i in 0..trades_each {
            server.publish_trade(
                symbol,
                1_763_561_000 + i,
                &format!("{}.5", 100 + i),
                "0.01000000",
                "buy",
            );
        }
    }
    server
}

/// Fails every put for one partition key while `broken` is set.
struct BrokenFor {
    inner: MemoryStream,
    key: String,
    broken: AtomicBool,
}

impl TradeStream for BrokenFor {
    fn put_records<'a>(
        &'a self,
        records: &'a [StreamRecord],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<usize>>> + Send + 'a>> {
        Box::pin(async move {
            let broken = self.broken.load(Ordering::SeqCst);
            let failed: Vec<usize> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| broken && r.partition_key == self.key)
                .map(|(i, _)| i)
                .collect();
            let ok: Vec<StreamRecord> = records
                .iter()
                .enumerate()
                .filter(|(i, _)| !failed.contains(i))
                .map(|(_, r)| r.clone())
                .collect();
            self.inner.put_records(&ok).await?;
            Ok(failed)
        })
    }
}

/// Every (symbol, tid) in the stream, with how often it appears.
fn stream_trades(stream: &MemoryStream) -> BTreeMap<(String, i64), usize> {
    let mut seen = BTreeMap::new();
    for record in stream.read(0, usize::MAX) {
        for line in record.data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let trade: Trade = serde_json::from_slice(line).unwrap();
            *seen.entry((trade.symbol, trade.tid)).or_insert(0) += 1;
        }
    }
    seen
}

async fn checkpoints(raw: &Lake) -> BTreeMap<String, i64> {
    let state: PollState = ManifestLog::new(raw.clone(), Log::MarketsPoll)
        .latest()
        .await
        .unwrap()
        .unwrap()
        .state;
    state.checkpoints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_never_moves_past_trades_that_were_not_saved() {
    let server = market(&["BTC-BRL", "ETH-BRL"], 30).await;
    let mercado = MercadoBitcoin::new(&server.mercado_base(), quick());
    let (_dir, url) = temp_lake();
    let raw = Lake::from_url(&url).unwrap();
    let alerts = RecordedAlerts::default();
    let stream = BrokenFor {
        inner: MemoryStream::default(),
        key: "ETH-BRL".into(),
        broken: AtomicBool::new(true),
    };
    let options = PollOptions {
        put_attempts: 2,
        ..PollOptions::default()
    };

    let first = poll_markets(&mercado, None, &stream, &raw, &options, &alerts)
        .await
        .unwrap();
    assert_eq!(
        first.polled,
        vec!["BTC-BRL".to_string()],
        "only crypto symbols, and ETH failed"
    );
    assert_eq!(first.failed.len(), 1);
    let saved = checkpoints(&raw).await;
    assert_eq!(saved.get("BTC-BRL"), Some(&30));
    assert_eq!(
        saved.get("ETH-BRL"),
        None,
        "no checkpoint past unsaved trades"
    );
    let sent = alerts.sent();
    assert_eq!(sent.len(), 1, "one alert for the tick: {sent:?}");
    assert_eq!(sent[0].table.as_deref(), Some("trades"));
    assert!(
        sent[0].message.contains("for 1 symbol(s)")
            && sent[0].message.contains("(symbols: ETH-BRL)"),
        "{}",
        sent[0].message
    );

    // A 429 and Cloudflare's HTML page on the way are retried by the client.
    stream.broken.store(false, Ordering::SeqCst);
    server.fail_next(
        "/api/v4/ETH-BRL/trades",
        Failure::Status(429, "API|REQUEST_RATE_EXCEEDED"),
    );
    server.fail_next("/api/v4/ETH-BRL/trades", Failure::CloudflareHtml);
    server.publish_trade("BTC-BRL", 1_763_562_000, "131.5", "0.5", "sell");
    let second = poll_markets(&mercado, None, &stream, &raw, &options, &alerts)
        .await
        .unwrap();
    assert!(second.failed.is_empty(), "{:?}", second.failed);
    assert_eq!(checkpoints(&raw).await.get("ETH-BRL"), Some(&30));

    let seen = stream_trades(&stream.inner);
    assert_eq!(seen.len(), 61, "30 + 30 + 1 new trade");
    assert!(
        seen.values().all(|n| *n == 1),
        "overlapping polls put nothing twice"
    );

    // A third tick with nothing new reads no trades.
    let third = poll_markets(&mercado, None, &stream, &raw, &options, &alerts)
        .await
        .unwrap();
    assert_eq!(third.trades, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_writes_nothing_new_and_bad_lines_are_quarantined() {
    let server = market(&["BTC-BRL"], 1_200).await;
    let mercado = MercadoBitcoin::new(&server.mercado_base(), quick());
    let stream = MemoryStream::default();
    let (dir, url) = temp_lake();
    let raw = Lake::from_url(&url).unwrap();
    let alerts = RecordedAlerts::default();
    poll_markets(
        &mercado,
        None,
        &stream,
        &raw,
        &PollOptions::default(),
        &alerts,
    )
    .await
    .unwrap();
    let mut batch = stream.read(0, 100);
    assert!(!batch.is_empty());
    batch[0].data = [batch[0].data.to_vec(), b"{\"not\": \"a trade\"}\n".to_vec()]
        .concat()
        .into();

    let first = sink_batch(&raw, &batch, &alerts).await;
    assert!(first.batch_item_failures.is_empty());
    // First contact with a symbol starts at its newest page (1000 trades);
    // older history comes from daily candles, not from paging back.
    assert_eq!(
        (first.trades, first.quarantined, first.already_written),
        (1_000, 1, false)
    );
    let again = sink_batch(&raw, &batch, &alerts).await;
    assert!(again.already_written);
    assert_eq!(again.key, first.key);
    assert_eq!(
        ManifestLog::new(raw.clone(), Log::MarketsTrades)
            .latest_seq()
            .await
            .unwrap(),
        1,
        "one manifest"
    );
    let objects = raw.list("markets/mercado_bitcoin/trades").await.unwrap();
    assert_eq!(objects.len(), 1);
    assert!(
        objects[0]
            .starts_with("markets/mercado_bitcoin/trades/date=2025-11-19/shardId-000000000000-"),
        "{objects:?}"
    );

    // As received, one trade a line.
    let mut text = String::new();
    let file = std::fs::File::open(dir.path().join(&objects[0])).unwrap();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text.lines().count(), 1_000);
    let quarantine = raw.list("_quarantine/markets").await.unwrap();
    assert_eq!(quarantine.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_cannot_be_written_is_reported_for_redelivery() {
    let (_dir, url) = temp_lake();
    let raw = Lake::from_url(&url).unwrap();
    let alerts = RecordedAlerts::default();
    let trade = Trade {
        symbol: "BTC-BRL".into(),
        tid: 7,
        traded_at_ms: 1_763_561_763_000,
        price: "1".into(),
        amount: "2".into(),
        side: tributary_markets::Side::Buy,
    };
    let record = tributary_pipeline::markets::stream::ReceivedRecord {
        shard_id: "shardId-000000000001".into(),
        sequence_number: "495".into(),
        partition_key: "BTC-BRL".into(),
        data: format!("{}\n", serde_json::to_string(&trade).unwrap()).into(),
    };
    // Someone else's bytes already sit at the batch's key: the write is refused.
    let key = tributary_pipeline::markets::sink::batch_key(&trade, "shardId-000000000001", "495");
    raw.put_once(&key, bytes::Bytes::from_static(b"other"))
        .await
        .unwrap();
    let report = sink_batch(&raw, &[record], &alerts).await;
    assert_eq!(report.batch_item_failures, vec!["495".to_string()]);
    assert!(alerts.sent().iter().any(|a| a.stage == "stream-sink"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickers_and_coincap_assets_are_snapshotted_and_a_coincap_failure_spares_the_trades() {
    use tributary_markets::coincap::CoinCap;
    let server = market(&["BTC-BRL"], 3).await;
    server.with_state(|s| {
        s.assets.push(serde_json::json!({"id": "bitcoin", "rank": "1", "symbol": "BTC", "name": "Bitcoin",
            "supply": "19752815.0000000000000000", "maxSupply": null, "marketCapUsd": null,
            "volumeUsd24Hr": null, "priceUsd": "57435.2862859343831301", "changePercent24Hr": null}));
    });
    let mercado = MercadoBitcoin::new(&server.mercado_base(), quick());
    let coincap = CoinCap::new(&server.coincap_base(), "test-key", quick()).unwrap();
    let stream = MemoryStream::default();
    let (dir, url) = temp_lake();
    let raw = Lake::from_url(&url).unwrap();
    let alerts = RecordedAlerts::default();
    poll_markets(
        &mercado,
        Some(&coincap),
        &stream,
        &raw,
        &PollOptions::default(),
        &alerts,
    )
    .await
    .unwrap();
    let manifest: tributary_lake::Manifest<PollState> =
        ManifestLog::new(raw.clone(), Log::MarketsPoll)
            .latest()
            .await
            .unwrap()
            .unwrap();
    let tables: Vec<&str> = manifest.files.iter().map(|f| f.table.as_str()).collect();
    assert_eq!(tables, vec!["tickers", "assets"]);
    let assets = manifest.files.iter().find(|f| f.table == "assets").unwrap();
    assert!(
        assets.key.starts_with("markets/coincap/assets/date="),
        "{}",
        assets.key
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join(&assets.key)).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.contains("57435.2862859343831301"),
        "exact price kept: {text}"
    );

    // The retired v2 answer: an alert, and the trades still flow.
    server.fail_next("/v3/assets", Failure::CoinCapV2);
    server.publish_trade("BTC-BRL", 1_763_562_000, "1", "1", "buy");
    let report = poll_markets(
        &mercado,
        Some(&coincap),
        &stream,
        &raw,
        &PollOptions::default(),
        &alerts,
    )
    .await
    .unwrap();
    assert_eq!(report.trades, 1);
    assert!(
        alerts
            .sent()
            .iter()
            .any(|a| a.message.contains("CoinCap assets not read") && a.message.contains("v2"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invocation_keeps_polling_within_its_budget() {
    use tributary_pipeline::markets::poll::poll_during;
    let server = market(&["BTC-BRL"], 2).await;
    let mercado = MercadoBitcoin::new(&server.mercado_base(), quick());
    let stream = MemoryStream::default();
    let (_dir, url) = temp_lake();
    let raw = Lake::from_url(&url).unwrap();
    let alerts = RecordedAlerts::default();
    let ticks = poll_during(
        &mercado,
        None,
        &stream,
        &raw,
        &PollOptions::default(),
        &alerts,
        Duration::from_millis(1_300),
        Duration::from_millis(400),
    )
    .await
    .unwrap();
    assert_eq!(
        ticks.len(),
        3,
        "at 0, 400 and 800 ms; a tick at 1200 ms could not finish in time"
    );
    assert_eq!(
        ticks.iter().map(|t| t.trades).sum::<u64>(),
        2,
        "each trade once across the ticks"
    );
    assert_eq!(
        ManifestLog::new(raw.clone(), Log::MarketsPoll)
            .latest_seq()
            .await
            .unwrap(),
        3
    );
}

#[tokio::test]
async fn coincap_history_is_exact_and_an_unknown_asset_is_a_clear_error() {
    let server = market(&["BTC-BRL"], 0).await;
    server.with_state(|s| {
        s.asset_history.insert(
            "bitcoin".into(),
            vec![
                (1_725_840_000_000, "56000.1".into()),
                (1_725_926_400_000, "57006.4812345678901234".into()),
                (1_726_012_800_000, "58000".into()),
            ],
        );
    });
    let coincap =
        tributary_markets::coincap::CoinCap::new(&server.coincap_base(), "test-key", quick())
            .unwrap();
    let points = coincap
        .daily_history("bitcoin", 1_725_900_000_000, 1_726_100_000_000)
        .await
        .unwrap();
    assert_eq!(points.len(), 2, "only the asked window");
    assert_eq!(points[0].time, 1_725_926_400_000);
    assert_eq!(
        points[0].price_usd.unwrap().to_string(),
        "57006.4812345678901234",
        "18 places, never through f64"
    );
    let missing = coincap.daily_history("dogecoinz", 0, 1).await.unwrap_err();
    assert!(!missing.is_retryable(), "{missing}");
    assert!(missing.to_string().contains("not found"), "{missing}");
}
