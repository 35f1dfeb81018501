//! The markets part of `tributary reconcile`: does every trade the stream
//! sink kept reach the processed lake and the warehouse once, and does every
//! daily bar agree with its trades and with the warehouse?
//!
//! Each layer is read as its reader sees it:
//!
//! - **raw**: the trades of every sink batch named by a manifest of the log
//!   `markets` (a trade the sink kept twice, from a redelivered or re-put
//!   batch, counts once: the raw lake keeps what it received; a line the
//!   transform quarantines, not a trade or without exact decimals, is not
//!   one);
//! - **processed**: for each day, the files the latest `markets_transform`
//!   manifest names as current: a closed day's compacted generation, an open
//!   day's per-run files (a trade in two of them is an extra: a reader of
//!   the day sees it twice); the daily bars and candle bars are the newest
//!   version of each (symbol, day) in manifest order, as the loader applies
//!   them;
//! - **warehouse**: `fact_trade` (not the one-year view `trades`),
//!   `ohlcv_daily` and `ohlcv_daily_history`.
//!
//! A trade is compared whole (symbol, tid, time, side, price, amount) and a
//! bar by all its values, so a changed value shows as one missing and one
//! extra. The bars built from trades are also recomputed from the processed
//! trades (open and close by tid, high, low, volumes, count), which finds a
//! trade counted twice or a day's bar built from only some of its trades.
//! Without any markets data (no markets manifest, no market rows in the
//! warehouse) there is nothing to compare and no row is reported.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    sync::Arc,
};

use arrow_array::{
    Array, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use chrono::NaiveDate;
use futures_util::{StreamExt, TryStreamExt, stream};
use tokio_postgres::Client;
use tributary_lake::{Lake, Log, ManifestLog, parquet::decode};
use tributary_markets::{
    Decimal18, Side, Trade,
    rollup::{RollupError, refusal},
};

use crate::{
    Result,
    alerts::{Alert, Alerts},
    markets::transform::MarketsState,
    reconcile::{Comparison, RowVersion, compare, finalize, fold_bytes},
};

/// Objects read at once from a lake (manifests, batches, Parquet files).
const CONCURRENT_READS: usize = 16;
/// `fact_trade` rows read per query (keyset pages over the primary key).
const WAREHOUSE_PAGE: i64 = 50_000;

const TRADES: &str = "fact_trade";
const BARS: &str = "ohlcv_daily";
const HISTORY: &str = "ohlcv_daily_history";

/// How a stage that is behind catches up, in the advice.
const CATCH_UP: &str = "`tributary markets` once locally (a pass polls, then transforms and loads \
everything pending), or on AWS let the transform and load functions consume what is pending (the \
next manifest or the load schedule starts them)";

/// Compares the markets layers; returns no comparison when there are no
/// markets data at all. Differences raise one alert, with the advice of the
/// first. Run it after a full pass: a stage that is merely behind shows as
/// missing, and its advice says so.
pub async fn reconcile_markets(
    raw: &Lake,
    processed: &Lake,
    warehouse: &Client,
    alerts: &dyn Alerts,
) -> Result<Vec<Comparison>> {
    let mut symbols = Symbols::default();
    let raw_layer = RawLayer::read(raw, &mut symbols).await?;
    let processed_layer = ProcessedLayer::read(processed, &mut symbols).await?;
    let warehouse_layer = WarehouseLayer::read(warehouse, &mut symbols).await?;
    if !raw_layer.any() && !processed_layer.any() && !warehouse_layer.any() {
        return Ok(Vec::new());
    }
    let state = &processed_layer.state;

    // Trades: raw → processed → warehouse.
    let mut raw_to_processed = compare(
        TRADES,
        "raw → processed",
        &raw_layer.trades,
        &processed_layer.trades,
        false,
    );
    if !raw_to_processed.is_clean() {
        let repeats = processed_layer.repeats();
        if let Some(repeat) = repeats.first().filter(|_| raw_to_processed.missing == 0) {
            raw_to_processed.example = Some(format!(
                "{} trade(s) in two current files; e.g. {}",
                repeats.len(),
                repeat.show()
            ));
        }
        raw_to_processed.advice = Some(trades_raw_advice(
            &raw_to_processed,
            &repeats,
            state.sink_seq,
            raw_layer.latest_sink,
            processed_layer.latest_seq,
        ));
    }
    let processed_trades: HashSet<TradeRow> = processed_layer.trades.iter().cloned().collect();
    let mut to_warehouse = compare(
        TRADES,
        "processed → warehouse",
        &processed_trades,
        &warehouse_layer.trades,
        false,
    );
    to_warehouse.advice = warehouse_advice(&to_warehouse, &processed_layer, &warehouse_layer);

    // Daily bars: the processed trades → processed bars → warehouse.
    let built = bars_from_trades(&processed_trades)?;
    let bars: Vec<BarRow> = processed_layer.bars.values().cloned().collect();
    let mut trades_to_bars = compare(BARS, "trades → bars", &built, &bars, false);
    if !trades_to_bars.is_clean() {
        trades_to_bars.advice = Some(format!(
            "the daily bars in processed `markets/ohlcv_daily` (newest version per symbol and day, \
             markets_transform manifests 1..={}) disagree with the day's trades: a trade counted \
             twice, or a bar built from only part of its day (a late trade for a day older than \
             the transform's open days, written by a transform that did not yet rebuild such a \
             day's bar from all its trades). Rerunning does not clear it: a bar is rewritten only \
             when a new trade of its day arrives (which now rebuilds it whole); report it with the \
             example",
            processed_layer.latest_seq
        ));
    }
    let processed_bars: HashSet<BarRow> = bars.into_iter().collect();
    let mut bars_to_warehouse = compare(
        BARS,
        "processed → warehouse",
        &processed_bars,
        &warehouse_layer.bars,
        false,
    );
    bars_to_warehouse.advice =
        warehouse_advice(&bars_to_warehouse, &processed_layer, &warehouse_layer);

    // Candles of the history: raw → processed → warehouse.
    let mut history_to_processed = compare(
        HISTORY,
        "raw → processed",
        &raw_layer.candles.values().cloned().collect(),
        &processed_layer
            .history
            .values()
            .cloned()
            .collect::<Vec<_>>(),
        false,
    );
    if !history_to_processed.is_clean() {
        history_to_processed.advice = Some(if state.candles_seq < raw_layer.latest_candles {
            format!(
                "the markets transform has consumed candle backfills through manifest {} of {} \
                 (`_manifests/markets_candles`): run {CATCH_UP}; then reconcile again",
                state.candles_seq, raw_layer.latest_candles
            )
        } else {
            "every candle backfill was consumed, yet processed `markets/ohlcv_history` differs \
             from the newest candle of each symbol and day in the raw lake: rerunning does not \
             clear it; report it with the example"
                .to_string()
        });
    }
    let processed_history: HashSet<BarRow> = processed_layer.history.values().cloned().collect();
    let mut history_to_warehouse = compare(
        HISTORY,
        "processed → warehouse",
        &processed_history,
        &warehouse_layer.history,
        false,
    );
    history_to_warehouse.advice =
        warehouse_advice(&history_to_warehouse, &processed_layer, &warehouse_layer);

    let comparisons = vec![
        raw_to_processed,
        to_warehouse,
        trades_to_bars,
        bars_to_warehouse,
        history_to_processed,
        history_to_warehouse,
    ];
    let differing: Vec<&Comparison> = comparisons.iter().filter(|c| !c.is_clean()).collect();
    if let Some(first) = differing.first() {
        alerts
            .send(&Alert {
                stage: "reconcile",
                run_id: "-".to_string(),
                table: Some(first.table.to_string()),
                message: format!(
                    "{} markets comparison(s) differ; first: {} {} missing {} extra {} (e.g. {})",
                    differing.len(),
                    first.table,
                    first.layers,
                    first.missing,
                    first.extra,
                    first.example.as_deref().unwrap_or("-")
                ),
                action: first
                    .advice
                    .clone()
                    .unwrap_or_else(|| "run `tributary reconcile` for the full table".to_string()),
            })
            .await;
    }
    Ok(comparisons)
}

/// What clears a difference between the raw and the processed trades.
fn trades_raw_advice(
    comparison: &Comparison,
    repeats: &[Repeat],
    consumed: u64,
    latest_sink: u64,
    latest_transform: u64,
) -> String {
    let mut advice = Vec::new();
    if comparison.missing > 0 {
        advice.push(if consumed < latest_sink {
            format!(
                "the markets transform has consumed sink manifests through {consumed} of \
                 {latest_sink} (`_manifests/markets`): run {CATCH_UP}; then reconcile again"
            )
        } else {
            "every sink manifest was consumed, yet processed trades are missing: the transform \
             drops a trade whose tid is not above the highest tid it has kept for the symbol \
             (a trade that reached the sink out of tid order; the transform counts it and logs \
             \"trades out of tid order dropped\" at WARN with the symbol and tids); rerunning \
             does not bring it back, report it with the example"
                .to_string()
        });
    }
    if let Some(repeat) = repeats.first() {
        advice.push(format!(
            "{} is named twice as current for {} by markets_transform manifest {latest_transform} \
             ({} and {}): readers of that day see it twice. Rerunning does not clear it (a new \
             compacted generation copies both files); report it",
            repeat.trade.identity(),
            repeat.trade.day(),
            repeat.files.0,
            repeat.files.1,
        ));
    }
    let repeated = repeats.len() as u64;
    if comparison.extra > repeated {
        advice.push(
            "the processed lake holds trades (or trade values) that no committed sink batch \
             holds: a raw batch object or `_manifests/markets` manifest was removed or rewritten \
             (the raw lake is write-once); rerunning does not clear it"
                .to_string(),
        );
    }
    advice.join("; also ")
}

/// What clears a difference between the processed lake and the warehouse.
fn warehouse_advice(
    comparison: &Comparison,
    processed: &ProcessedLayer,
    warehouse: &WarehouseLayer,
) -> Option<String> {
    if comparison.is_clean() {
        return None;
    }
    Some(if warehouse.loaded_through < processed.latest_seq {
        format!(
            "the warehouse has loaded markets manifests through {} of {}: run {CATCH_UP}; then \
             reconcile again (if the load still stops there, its failure alert names the error \
             that blocks manifest {})",
            warehouse.loaded_through,
            processed.latest_seq,
            warehouse.loaded_through + 1
        )
    } else {
        format!(
            "every markets manifest is loaded, yet `{}` differs from the processed lake (rows \
             changed or deleted by hand, or another lake's loads). Re-apply every markets \
             manifest in order, which inserts each trade once and upserts the bars: \
             `DELETE FROM tributary.market_load_log`, then run {CATCH_UP}; if rows are extra, \
             check that WAREHOUSE_DATABASE_URL and TRIBUTARY_PROCESSED_URL belong together",
            comparison.table
        )
    })
}

// ---- versions ---------------------------------------------------------------

/// Symbol names, shared by every row that holds one.
#[derive(Debug, Default)]
struct Symbols(HashMap<String, Arc<str>>);

impl Symbols {
    fn get(&mut self, symbol: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(symbol) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(symbol);
        self.0.insert(symbol.to_string(), Arc::clone(&shared));
        shared
    }
}

/// A trade as a layer holds it: who it is and every value it has.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TradeRow {
    symbol: Arc<str>,
    tid: i64,
    traded_at_ms: i64,
    sell: bool,
    price: i128,
    amount: i128,
}

impl TradeRow {
    fn identity(&self) -> String {
        format!("{} tid {}", self.symbol, self.tid)
    }

    fn day(&self) -> NaiveDate {
        chrono::DateTime::from_timestamp_millis(self.traded_at_ms)
            .unwrap_or_default()
            .date_naive()
    }
}

impl RowVersion for TradeRow {
    fn show(&self) -> String {
        let at = chrono::DateTime::from_timestamp_millis(self.traded_at_ms).map_or_else(
            || self.traded_at_ms.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        );
        format!(
            "{} ({at}, {} {} at {})",
            self.identity(),
            if self.sell { "sell" } else { "buy" },
            Decimal18(self.amount),
            Decimal18(self.price)
        )
    }

    fn mix(&self) -> u64 {
        mix_all(
            fold_bytes(0, self.symbol.as_bytes()),
            &[
                self.tid as u64,
                self.traded_at_ms as u64,
                u64::from(self.sell),
                self.price as u64,
                (self.price >> 64) as u64,
                self.amount as u64,
                (self.amount >> 64) as u64,
            ],
        )
    }
}

/// A daily bar, from trades (with quote volume and count) or from a candle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct BarRow {
    symbol: Arc<str>,
    day: NaiveDate,
    open: i128,
    high: i128,
    low: i128,
    close: i128,
    base_volume: i128,
    quote_volume: Option<i128>,
    trades: Option<i64>,
}

impl RowVersion for BarRow {
    fn show(&self) -> String {
        let mut text = format!(
            "{} {}: open {} high {} low {} close {} volume {}",
            self.symbol,
            self.day,
            Decimal18(self.open),
            Decimal18(self.high),
            Decimal18(self.low),
            Decimal18(self.close),
            Decimal18(self.base_volume)
        );
        if let Some(quote) = self.quote_volume {
            text.push_str(&format!(" quote volume {}", Decimal18(quote)));
        }
        if let Some(trades) = self.trades {
            text.push_str(&format!(" trades {trades}"));
        }
        text
    }

    fn mix(&self) -> u64 {
        let mut words = vec![i64::from(chrono::Datelike::num_days_from_ce(&self.day)) as u64];
        for value in [
            Some(self.open),
            Some(self.high),
            Some(self.low),
            Some(self.close),
            Some(self.base_volume),
            self.quote_volume,
        ] {
            let value = value.unwrap_or(i128::MIN);
            words.extend([value as u64, (value >> 64) as u64]);
        }
        words.push(self.trades.map_or(u64::MAX, |t| t as u64));
        mix_all(fold_bytes(0, self.symbol.as_bytes()), &words)
    }
}

fn mix_all(seed: u64, words: &[u64]) -> u64 {
    words.iter().fold(finalize(seed), |h, w| {
        finalize(h ^ w.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(0x632b_e59b_d9b4_e019)
    })
}

/// A trade named twice by the current files of its day.
#[derive(Debug, Clone)]
struct Repeat {
    trade: TradeRow,
    files: (String, String),
}

impl Repeat {
    fn show(&self) -> String {
        format!(
            "{} in {} and {}",
            self.trade.identity(),
            self.files.0,
            self.files.1
        )
    }
}

// ---- raw ----------------------------------------------------------------------

/// The raw lake's trades and candles.
struct RawLayer {
    latest_sink: u64,
    latest_candles: u64,
    latest_poll: u64,
    /// Every trade of every committed sink batch, once.
    trades: HashSet<TradeRow>,
    /// The newest candle of each (symbol, day), backfills in manifest order.
    candles: BTreeMap<(Arc<str>, NaiveDate), BarRow>,
}

impl RawLayer {
    async fn read(raw: &Lake, symbols: &mut Symbols) -> Result<Self> {
        let sink = ManifestLog::new(raw.clone(), Log::MarketsTrades);
        let candles_log = ManifestLog::new(raw.clone(), Log::MarketsCandles);
        let latest_sink = sink.latest_seq().await?;
        let latest_candles = candles_log.latest_seq().await?;
        let latest_poll = ManifestLog::new(raw.clone(), Log::MarketsPoll)
            .latest_seq()
            .await?;

        let mut trades = HashSet::new();
        let batches = committed_files(&sink, latest_sink, |_| true).await?;
        let read_text =
            |(_, key): (String, String)| async move { crate::gz::read_text(raw, &key).await };
        read_each(batches, read_text, |_, text| {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                // A line the transform quarantines (see `read_sink_trades`) is not a trade.
                let Ok(trade) = serde_json::from_str::<Trade>(line) else {
                    continue;
                };
                if refusal(&trade).is_some() {
                    continue;
                }
                trades.insert(TradeRow {
                    symbol: symbols.get(&trade.symbol),
                    tid: trade.tid,
                    traded_at_ms: trade.traded_at_ms,
                    sell: trade.side == Side::Sell,
                    price: decimal(&trade.price)?,
                    amount: decimal(&trade.amount)?,
                });
            }
            Ok(())
        })
        .await?;

        let mut candles = BTreeMap::new();
        let backfills = committed_files(&candles_log, latest_candles, |_| true).await?;
        let backfill_keys: Vec<String> = backfills.iter().map(|(_, key)| key.clone()).collect();
        read_each(backfills, read_text, |index, text| {
            let symbol = tributary_lake::keys::raw_candles_symbol(&backfill_keys[index]);
            for candle in tributary_markets::candles_from_raw(&text, symbol)? {
                let symbol = symbols.get(&candle.symbol);
                candles.insert(
                    (Arc::clone(&symbol), candle.day),
                    BarRow {
                        symbol,
                        day: candle.day,
                        open: candle.open.raw(),
                        high: candle.high.raw(),
                        low: candle.low.raw(),
                        close: candle.close.raw(),
                        base_volume: candle.volume.raw(),
                        quote_volume: None,
                        trades: None,
                    },
                );
            }
            Ok(())
        })
        .await?;
        Ok(Self {
            latest_sink,
            latest_candles,
            latest_poll,
            trades,
            candles,
        })
    }

    fn any(&self) -> bool {
        self.latest_sink + self.latest_candles + self.latest_poll > 0
    }
}

fn decimal(text: &str) -> Result<i128> {
    Ok(text.parse::<Decimal18>().map_err(RollupError::from)?.raw())
}

// ---- processed ----------------------------------------------------------------

/// The processed lake as its readers see it.
struct ProcessedLayer {
    latest_seq: u64,
    /// The latest markets_transform manifest's state.
    state: MarketsState,
    /// The trades of every current file, repeats kept.
    trades: Vec<TradeRow>,
    /// Which current file each trade came from (an index into `files`).
    origin: Vec<u32>,
    /// The current trade files.
    files: Vec<String>,
    /// The newest daily bar of each (symbol, day).
    bars: BTreeMap<(Arc<str>, NaiveDate), BarRow>,
    /// The newest candle bar of each (symbol, day).
    history: BTreeMap<(Arc<str>, NaiveDate), BarRow>,
}

impl ProcessedLayer {
    async fn read(processed: &Lake, symbols: &mut Symbols) -> Result<Self> {
        let log = ManifestLog::new(processed.clone(), Log::MarketsTransform);
        let latest_seq = log.latest_seq().await?;
        let state: MarketsState = match latest_seq {
            0 => MarketsState::default(),
            seq => log
                .read::<MarketsState>(seq)
                .await?
                .map(|m| m.state)
                .unwrap_or_default(),
        };
        let files: Vec<String> = state
            .compacted
            .values()
            .chain(state.uncompacted.values())
            .flatten()
            .cloned()
            .collect();
        let (mut trades, mut origin) = (Vec::new(), Vec::new());
        let read_parquet = |key: String| async move {
            Ok::<_, crate::Error>(decode(processed.get(&key).await?)?.1)
        };
        read_each(files.clone(), read_parquet, |index, batches| {
            for batch in &batches {
                let rows = trade_rows(batch, symbols)?;
                origin.extend(std::iter::repeat_n(index as u32, rows.len()));
                trades.extend(rows);
            }
            Ok(())
        })
        .await?;

        // Bars: every version in manifest order, the newest kept.
        let bar_files = committed_files(&log, latest_seq, |table| {
            table == "ohlcv_daily" || table == "ohlcv_history"
        })
        .await?;
        let (mut bars, mut history) = (BTreeMap::new(), BTreeMap::new());
        let read_bars = |(table, key): (String, String)| async move {
            Ok::<_, crate::Error>((table, decode(processed.get(&key).await?)?.1))
        };
        read_each(bar_files, read_bars, |_, (table, batches)| {
            let from_trades = table == "ohlcv_daily";
            let target = if from_trades { &mut bars } else { &mut history };
            for batch in &batches {
                for bar in bar_rows(batch, symbols, from_trades)? {
                    target.insert((Arc::clone(&bar.symbol), bar.day), bar);
                }
            }
            Ok(())
        })
        .await?;
        Ok(Self {
            latest_seq,
            state,
            trades,
            origin,
            files,
            bars,
            history,
        })
    }

    fn any(&self) -> bool {
        self.latest_seq > 0
    }

    /// Trades (by symbol and tid) that two current files hold, or one file twice.
    fn repeats(&self) -> Vec<Repeat> {
        let mut first: HashMap<(&str, i64), u32> = HashMap::new();
        let mut repeats = Vec::new();
        for (trade, origin) in self.trades.iter().zip(&self.origin) {
            match first.get(&(&*trade.symbol, trade.tid)) {
                None => {
                    first.insert((&*trade.symbol, trade.tid), *origin);
                }
                Some(earlier) => repeats.push(Repeat {
                    trade: trade.clone(),
                    files: (
                        self.files[*earlier as usize].clone(),
                        self.files[*origin as usize].clone(),
                    ),
                }),
            }
        }
        repeats.sort_by(|a, b| a.trade.cmp(&b.trade));
        repeats
    }
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    Ok(batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            RollupError::Arrow(arrow_schema::ArrowError::SchemaError(format!(
                "a processed markets file lacks column {name} of the expected type"
            )))
        })?)
}

fn trade_rows(batch: &RecordBatch, symbols: &mut Symbols) -> Result<Vec<TradeRow>> {
    let symbol: &StringArray = column(batch, "symbol")?;
    let tid: &Int64Array = column(batch, "tid")?;
    let at: &TimestampMillisecondArray = column(batch, "traded_at")?;
    let side: &StringArray = column(batch, "side")?;
    let price: &Decimal128Array = column(batch, "price")?;
    let amount: &Decimal128Array = column(batch, "amount")?;
    Ok((0..batch.num_rows())
        .map(|i| TradeRow {
            symbol: symbols.get(symbol.value(i)),
            tid: tid.value(i),
            traded_at_ms: at.value(i),
            sell: side.value(i) == "sell",
            price: price.value(i),
            amount: amount.value(i),
        })
        .collect())
}

fn bar_rows(batch: &RecordBatch, symbols: &mut Symbols, from_trades: bool) -> Result<Vec<BarRow>> {
    let symbol: &StringArray = column(batch, "symbol")?;
    let day: &Date32Array = column(batch, "day")?;
    let values = ["open", "high", "low", "close", "base_volume"]
        .into_iter()
        .map(|name| column::<Decimal128Array>(batch, name))
        .collect::<Result<Vec<_>>>()?;
    let quote: Option<&Decimal128Array> = from_trades
        .then(|| column(batch, "quote_volume"))
        .transpose()?;
    let trades: Option<&Int64Array> = from_trades.then(|| column(batch, "trades")).transpose()?;
    Ok((0..batch.num_rows())
        .map(|i| BarRow {
            symbol: symbols.get(symbol.value(i)),
            day: day.value_as_date(i).unwrap_or_default(),
            open: values[0].value(i),
            high: values[1].value(i),
            low: values[2].value(i),
            close: values[3].value(i),
            base_volume: values[4].value(i),
            quote_volume: quote.map(|q| q.value(i)),
            trades: trades.map(|t| t.value(i)),
        })
        .collect())
}

/// The daily bar of each (symbol, day) recomputed from `trades` (each once):
/// open and close at the lowest and highest tid, high, low, the sum of
/// amounts, the sum of price × amount (each product cut to 18 digits, as
/// the transform does), the count.
fn bars_from_trades(trades: &HashSet<TradeRow>) -> Result<HashSet<BarRow>> {
    let mut by_identity: BTreeMap<(&Arc<str>, i64), &TradeRow> = BTreeMap::new();
    for trade in trades {
        // A trade differing in value between two files counts once.
        by_identity
            .entry((&trade.symbol, trade.tid))
            .or_insert(trade);
    }
    let mut bars: BTreeMap<(Arc<str>, NaiveDate), BarRow> = BTreeMap::new();
    for trade in by_identity.into_values() {
        let overflow = || RollupError::Overflow(trade.symbol.to_string());
        let quote = Decimal18(trade.price)
            .checked_mul(Decimal18(trade.amount))
            .ok_or_else(overflow)?
            .raw();
        let key = (Arc::clone(&trade.symbol), trade.day());
        match bars.get_mut(&key) {
            None => {
                bars.insert(
                    key,
                    BarRow {
                        symbol: Arc::clone(&trade.symbol),
                        day: trade.day(),
                        open: trade.price,
                        high: trade.price,
                        low: trade.price,
                        close: trade.price,
                        base_volume: trade.amount,
                        quote_volume: Some(quote),
                        trades: Some(1),
                    },
                );
            }
            Some(bar) => {
                // Trades come in tid order: the last one closes the day.
                bar.close = trade.price;
                bar.high = bar.high.max(trade.price);
                bar.low = bar.low.min(trade.price);
                bar.base_volume = bar
                    .base_volume
                    .checked_add(trade.amount)
                    .ok_or_else(overflow)?;
                bar.quote_volume = Some(
                    bar.quote_volume
                        .unwrap_or_default()
                        .checked_add(quote)
                        .ok_or_else(overflow)?,
                );
                bar.trades = bar.trades.map(|n| n + 1);
            }
        }
    }
    Ok(bars.into_values().collect())
}

// ---- warehouse ----------------------------------------------------------------

/// The warehouse's market tables.
struct WarehouseLayer {
    loaded_through: u64,
    trades: Vec<TradeRow>,
    bars: Vec<BarRow>,
    history: Vec<BarRow>,
}

impl WarehouseLayer {
    async fn read(warehouse: &Client, symbols: &mut Symbols) -> Result<Self> {
        let present = warehouse
            .query_one(
                "SELECT to_regclass('fact_trade') IS NOT NULL, to_regclass('ohlcv_daily') IS NOT NULL, \
                 to_regclass('ohlcv_daily_history') IS NOT NULL, \
                 to_regclass('tributary.market_load_log') IS NOT NULL",
                &[],
            )
            .await?;
        let mut layer = Self {
            loaded_through: 0,
            trades: Vec::new(),
            bars: Vec::new(),
            history: Vec::new(),
        };
        if present.get::<_, bool>(3) {
            layer.loaded_through =
                tributary_warehouse::markets::markets_loaded_through(warehouse).await?;
        }
        if present.get::<_, bool>(0) {
            layer.trades = warehouse_trades(warehouse, symbols).await?;
        }
        if present.get::<_, bool>(1) {
            layer.bars = warehouse_bars(warehouse, symbols, BARS, true).await?;
        }
        if present.get::<_, bool>(2) {
            layer.history = warehouse_bars(warehouse, symbols, HISTORY, false).await?;
        }
        Ok(layer)
    }

    fn any(&self) -> bool {
        self.loaded_through > 0
            || !self.trades.is_empty()
            || !self.bars.is_empty()
            || !self.history.is_empty()
    }
}

/// Every row of `fact_trade`, in pages along its primary key.
async fn warehouse_trades(warehouse: &Client, symbols: &mut Symbols) -> Result<Vec<TradeRow>> {
    let statement = warehouse
        .prepare(
            "SELECT symbol::text, tid, (extract(epoch FROM traded_at) * 1000)::bigint, side::text, \
                    price::text, amount::text \
             FROM fact_trade WHERE (symbol, tid) > ($1::text, $2::bigint) \
             ORDER BY symbol, tid LIMIT $3::bigint",
        )
        .await?;
    let mut trades = Vec::new();
    let mut after = (String::new(), i64::MIN);
    loop {
        let rows = warehouse
            .query(&statement, &[&after.0, &after.1, &WAREHOUSE_PAGE])
            .await?;
        for row in &rows {
            trades.push(TradeRow {
                symbol: symbols.get(row.get::<_, &str>(0)),
                tid: row.get(1),
                traded_at_ms: row.get(2),
                sell: row.get::<_, &str>(3) == "sell",
                price: decimal(row.get(4))?,
                amount: decimal(row.get(5))?,
            });
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == WAREHOUSE_PAGE => {
                after = (last.get::<_, String>(0), last.get(1));
            }
            _ => break,
        }
    }
    Ok(trades)
}

/// Every row of `ohlcv_daily` (`from_trades`) or `ohlcv_daily_history`.
async fn warehouse_bars(
    warehouse: &Client,
    symbols: &mut Symbols,
    table: &str,
    from_trades: bool,
) -> Result<Vec<BarRow>> {
    let extra = if from_trades {
        ", quote_volume::text, trades"
    } else {
        ", NULL::text, NULL::bigint"
    };
    let rows = warehouse
        .query(
            &format!(
                "SELECT symbol::text, day::text, open::text, high::text, low::text, close::text, \
                        base_volume::text{extra} FROM {table}"
            ),
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let day: &str = row.get(1);
            Ok(BarRow {
                symbol: symbols.get(row.get::<_, &str>(0)),
                day: NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap_or_default(),
                open: decimal(row.get(2))?,
                high: decimal(row.get(3))?,
                low: decimal(row.get(4))?,
                close: decimal(row.get(5))?,
                base_volume: decimal(row.get(6))?,
                quote_volume: row.get::<_, Option<&str>>(7).map(decimal).transpose()?,
                trades: row.get(8),
            })
        })
        .collect()
}

// ---- reading ------------------------------------------------------------------

/// (table, key) of the files of manifests 1..=`latest` of `log` whose table
/// `keep` accepts, in manifest order.
async fn committed_files(
    log: &ManifestLog,
    latest: u64,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String)>> {
    Ok(log
        .committed_files(latest)
        .await?
        .into_iter()
        .filter(|f| keep(&f.table))
        .map(|f| (f.table, f.key))
        .collect())
}

/// `read` over every item, [`CONCURRENT_READS`] at a time, handing each
/// result with its item's index to `take` in item order.
async fn read_each<I, T, F, Fut>(
    items: Vec<I>,
    read: F,
    mut take: impl FnMut(usize, T) -> Result<()>,
) -> Result<()>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let results = stream::iter(items).map(read).buffered(CONCURRENT_READS);
    let mut results = std::pin::pin!(results);
    let mut index = 0;
    while let Some(result) = results.try_next().await? {
        take(index, result)?;
        index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(symbols: &mut Symbols, tid: i64, at_ms: i64, price: &str, amount: &str) -> TradeRow {
        TradeRow {
            symbol: symbols.get("BTC-BRL"),
            tid,
            traded_at_ms: at_ms,
            sell: false,
            price: decimal(price).unwrap(),
            amount: decimal(amount).unwrap(),
        }
    }

    #[test]
    fn bars_rebuilt_from_trades_equal_the_transforms_rollup() {
        let mut symbols = Symbols::default();
        let day_ms = 86_400_000;
        let trades: Vec<TradeRow> = vec![
            trade(&mut symbols, 12, 20_000 * day_ms + 3, "101.5", "0.2"),
            trade(&mut symbols, 10, 20_000 * day_ms + 1, "100", "1"),
            trade(&mut symbols, 11, 20_000 * day_ms + 2, "99.25", "0.5"),
            trade(&mut symbols, 13, 20_001 * day_ms, "102", "2"),
        ];
        let as_trades: Vec<Trade> = trades
            .iter()
            .map(|t| Trade {
                symbol: t.symbol.to_string(),
                tid: t.tid,
                traded_at_ms: t.traded_at_ms,
                price: Decimal18(t.price).to_string(),
                amount: Decimal18(t.amount).to_string(),
                side: Side::Buy,
            })
            .collect();
        let mut rolled = tributary_markets::rollup::Bars::new();
        tributary_markets::rollup::roll_up(&mut rolled, &as_trades).unwrap();
        let expected: HashSet<BarRow> = rolled
            .values()
            .map(|b| BarRow {
                symbol: symbols.get(&b.symbol),
                day: b.day,
                open: b.open.raw(),
                high: b.high.raw(),
                low: b.low.raw(),
                close: b.close.raw(),
                base_volume: b.base_volume.raw(),
                quote_volume: Some(b.quote_volume.raw()),
                trades: Some(b.trades),
            })
            .collect();
        let rebuilt = bars_from_trades(&trades.into_iter().collect()).unwrap();
        assert_eq!(rebuilt, expected);
        let checksum = |bars: &HashSet<BarRow>| crate::reconcile::checksum(bars.iter());
        assert_eq!(checksum(&rebuilt), checksum(&expected));
    }

    #[test]
    fn a_changed_value_is_one_missing_and_one_extra_and_a_repeat_is_extra() {
        let mut symbols = Symbols::default();
        let a = trade(&mut symbols, 1, 0, "1", "1");
        let b = trade(&mut symbols, 2, 0, "2", "1");
        let mut b_changed = b.clone();
        b_changed.price = decimal("2.5").unwrap();
        let expected: HashSet<TradeRow> = [a.clone(), b].into_iter().collect();
        let changed = compare(TRADES, "x", &expected, &[a.clone(), b_changed], false);
        assert_eq!((changed.missing, changed.extra), (1, 1));
        assert!(
            changed
                .example
                .as_deref()
                .unwrap()
                .starts_with("missing BTC-BRL tid 2"),
            "{changed:?}"
        );
        let repeated = compare(
            TRADES,
            "x",
            &expected,
            &[a.clone(), a, expected.iter().max().unwrap().clone()],
            false,
        );
        assert_eq!((repeated.missing, repeated.extra), (0, 1));
    }
}
