//! The markets transform: sink batches in the raw lake → deduplicated trades
//! and daily OHLCV bars as Parquet in the processed lake.
//!
//! Trades of one symbol arrive in tid order (one partition key per symbol),
//! so the highest tid transformed per symbol is all the state deduplication
//! needs: a trade put twice (a poll that died between put and checkpoint, a
//! redelivered batch) is dropped. Bars of the last days stay in the state so
//! a late trade updates its day; each run writes the bars it changed.
//!
//! Once a day is closed (older than the open days), its small per-run trade
//! files are compacted into one generation under
//! `markets/trades_compacted/date=D/gen=<run_id>/`, which the catalog's
//! partition for that day then points at. A late trade for a closed day
//! makes a new generation (the previous one plus the late files), so a
//! reader of one partition never sees a trade twice; the lake keeps every
//! object, as always.

use std::{collections::BTreeMap, time::Instant};

use chrono::{Duration as Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tributary_lake::{Lake, Manifest, ManifestLog, RunId};
use tributary_markets::{
    AssetPage, Trade,
    rollup::{Bars, DailyBar, assets_batch, ohlcv_batch, roll_up, trades_batch},
};

use crate::{
    Error, Result,
    markets_poll::{PollState, SOURCE as POLL_SOURCE},
    stream_sink::{SOURCE as SINK_SOURCE, SinkState},
};

/// The manifest log of this stage in the processed lake.
pub const SOURCE: &str = "markets_transform";
/// Days whose bars stay open for late trades.
const OPEN_DAYS: i64 = 3;

/// The stage's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MarketsState {
    /// The last sink manifest consumed.
    pub sink_seq: u64,
    /// The last poll manifest consumed (for the asset snapshots).
    pub poll_seq: u64,
    /// The base currencies last written to `assets`.
    pub asset_symbols: Vec<String>,
    /// Highest tid transformed per symbol.
    pub max_tid: BTreeMap<String, i64>,
    /// Bars of the open days.
    pub open_bars: Vec<DailyBar>,
    /// Trade files not yet compacted, per day.
    pub uncompacted: BTreeMap<NaiveDate, Vec<String>>,
    /// The current compacted generation of each closed day.
    pub compacted: BTreeMap<NaiveDate, Vec<String>>,
    /// The last candle backfill manifest consumed.
    pub candles_seq: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct MarketsReport {
    /// The manifest committed (`None`: nothing new).
    pub seq: Option<u64>,
    /// Trades written.
    pub trades: u64,
    /// Trades dropped as already transformed.
    pub duplicates: u64,
    /// Bars written.
    pub bars: u64,
    /// Asset rows written.
    pub assets: u64,
    /// Closed days compacted by this run.
    pub compacted_days: u64,
    /// Daily candles of the history written.
    pub history_days: u64,
}

/// Runs the markets transform once.
/// On failure an alert names the error, as for the other stages.
pub async fn transform_markets(
    raw: &Lake,
    processed: &Lake,
    alerts: &dyn crate::alerts::Alerts,
) -> Result<MarketsReport> {
    let run_id = RunId::now();
    let result = transform_markets_run(raw, processed, &run_id).await;
    if let Err(error) = &result {
        let advice = crate::alerts::FailureAdvice {
            retryable: "nothing was committed; the next markets manifest retries",
            needs_fix: "fix the cause named above; the sink keeps writing raw batches meanwhile",
        };
        crate::alerts::stage_failed(alerts, "transform", run_id.as_str(), error, advice).await;
    }
    result
}

async fn transform_markets_run(
    raw: &Lake,
    processed: &Lake,
    run_id: &RunId,
) -> Result<MarketsReport> {
    let started = Instant::now();
    let run_id = run_id.clone();
    let log = ManifestLog::new(processed.clone(), SOURCE);
    let previous: Option<Manifest<MarketsState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let mut state = previous.map(|m| m.state).unwrap_or_default();
    let sink_log = ManifestLog::new(raw.clone(), SINK_SOURCE);
    let latest = sink_log.latest_seq().await?;
    let poll_log = ManifestLog::new(raw.clone(), POLL_SOURCE);
    let latest_poll = poll_log.latest_seq().await?;
    let candles_log = ManifestLog::new(raw.clone(), crate::markets_history::SOURCE);
    let latest_candles = candles_log.latest_seq().await?;
    if latest <= state.sink_seq
        && latest_poll <= state.poll_seq
        && latest_candles <= state.candles_seq
    {
        return Ok(MarketsReport::default());
    }
    let mut incoming: Vec<Trade> = Vec::new();
    for seq in state.sink_seq + 1..=latest {
        let manifest: Option<Manifest<SinkState>> = sink_log.read(seq).await?;
        for file in manifest.into_iter().flat_map(|m| m.files) {
            let text = crate::gz::read_text(raw, &file.key).await?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                incoming.push(serde_json::from_str(line)?);
            }
        }
    }
    incoming.sort_by(|a, b| (&a.symbol, a.tid).cmp(&(&b.symbol, b.tid)));
    let before = incoming.len();
    let mut fresh = Vec::with_capacity(before);
    for trade in incoming {
        let seen = state
            .max_tid
            .get(&trade.symbol)
            .copied()
            .unwrap_or(i64::MIN);
        if trade.tid > seen {
            state.max_tid.insert(trade.symbol.clone(), trade.tid);
            fresh.push(trade);
        }
    }
    let mut report = MarketsReport {
        duplicates: (before - fresh.len()) as u64,
        trades: fresh.len() as u64,
        ..MarketsReport::default()
    };

    let mut bars: Bars = state
        .open_bars
        .drain(..)
        .map(|b| ((b.symbol.clone(), b.day), b))
        .collect();
    let changed =
        roll_up(&mut bars, &fresh).map_err(|e| Error::Stream(format!("rolling up trades: {e}")))?;
    let mut files = Vec::new();
    let mut by_day: BTreeMap<NaiveDate, Vec<Trade>> = BTreeMap::new();
    for trade in fresh {
        let day = chrono::DateTime::from_timestamp_millis(trade.traded_at_ms)
            .unwrap_or_default()
            .date_naive();
        by_day.entry(day).or_default().push(trade);
    }
    for (day, trades) in by_day {
        let batch = trades_batch(&trades).map_err(|e| Error::Stream(e.to_string()))?;
        let key = format!(
            "markets/trades/date={}/{run_id}.parquet",
            day.format("%Y-%m-%d")
        );
        files.push(processed.put_batch(&key, "trades", &batch).await?);
        state.uncompacted.entry(day).or_default().push(key);
    }
    let changed_bars: Vec<&DailyBar> = changed.iter().filter_map(|k| bars.get(k)).collect();
    report.bars = changed_bars.len() as u64;
    let mut by_year: BTreeMap<i32, Vec<&DailyBar>> = BTreeMap::new();
    for bar in changed_bars {
        by_year
            .entry(chrono::Datelike::year(&bar.day))
            .or_default()
            .push(bar);
    }
    for (year, bars_of_year) in by_year {
        let batch = ohlcv_batch(&bars_of_year).map_err(|e| Error::Stream(e.to_string()))?;
        let key = format!("markets/ohlcv_daily/year={year}/{run_id}.parquet");
        files.push(processed.put_batch(&key, "ohlcv_daily", &batch).await?);
    }
    // Assets: the symbols traded and the newest CoinCap snapshot since the last run.
    if latest_poll > state.poll_seq {
        let newest: Option<Manifest<PollState>> = poll_log.read(latest_poll).await?;
        let mut snapshot = None;
        for seq in (state.poll_seq + 1..=latest_poll).rev() {
            let manifest: Option<Manifest<PollState>> = poll_log.read(seq).await?;
            if let Some(file) = manifest
                .into_iter()
                .flat_map(|m| m.files)
                .find(|f| f.table == "assets")
            {
                let text = crate::gz::read_text(raw, &file.key).await?;
                snapshot = Some(serde_json::from_str::<AssetPage>(&text)?);
                break;
            }
        }
        let mut bases: Vec<String> = newest
            .map(|m| m.state.symbols)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.split('-').next().map(str::to_string))
            .collect();
        bases.sort();
        bases.dedup();
        // Written when CoinCap said something new or the traded coins changed.
        if !bases.is_empty() && (snapshot.is_some() || bases != state.asset_symbols) {
            let batch = assets_batch(&bases, snapshot.as_ref())
                .map_err(|e| Error::Stream(e.to_string()))?;
            report.assets = batch.num_rows() as u64;
            let key = format!("markets/assets/{run_id}.parquet");
            files.push(processed.put_batch(&key, "assets", &batch).await?);
            state.asset_symbols = bases;
        }
        state.poll_seq = latest_poll;
    }
    // History from candle backfills, by year.
    let mut history: BTreeMap<i32, Vec<tributary_markets::Candle>> = BTreeMap::new();
    for seq in state.candles_seq + 1..=latest_candles {
        let manifest: Option<Manifest<serde_json::Value>> = candles_log.read(seq).await?;
        for file in manifest.into_iter().flat_map(|m| m.files) {
            let text = crate::gz::read_text(raw, &file.key).await?;
            let candles: Vec<tributary_markets::Candle> = serde_json::from_str(&text)?;
            for candle in candles {
                history
                    .entry(chrono::Datelike::year(&candle.day))
                    .or_default()
                    .push(candle);
            }
        }
    }
    for (year, candles) in history {
        report.history_days += candles.len() as u64;
        let batch = tributary_markets::rollup::history_batch(&candles)
            .map_err(|e| Error::Stream(e.to_string()))?;
        let key = format!("markets/ohlcv_history/year={year}/{run_id}.parquet");
        files.push(processed.put_batch(&key, "ohlcv_history", &batch).await?);
    }
    state.candles_seq = latest_candles;
    let horizon = Utc::now().date_naive() - Days::days(OPEN_DAYS);
    report.compacted_days =
        compact_closed_days(processed, &mut state, &run_id, horizon, &mut files).await?;
    state.open_bars = bars.into_values().filter(|b| b.day >= horizon).collect();
    state.sink_seq = latest;
    let manifest = log
        .commit(previous_seq, &run_id, Utc::now(), files, state)
        .await?;
    report.seq = Some(manifest.seq);
    tracing::info!(
        stage = "transform",
        run_id = %run_id,
        trades = report.trades,
        duplicates = report.duplicates,
        bars = report.bars,
        ms = started.elapsed().as_millis() as u64,
        "markets transformed"
    );
    Ok(report)
}

/// Compacts the trade files of every closed day (before `horizon`) that has
/// files not yet compacted: the day's current generation plus those files
/// become one new file. Returns the number of days compacted.
async fn compact_closed_days(
    processed: &Lake,
    state: &mut MarketsState,
    run_id: &RunId,
    horizon: NaiveDate,
    files: &mut Vec<tributary_lake::FileEntry>,
) -> Result<u64> {
    let closed: Vec<NaiveDate> = state
        .uncompacted
        .range(..horizon)
        .map(|(d, _)| *d)
        .collect();
    for day in &closed {
        let mut inputs = state.compacted.get(day).cloned().unwrap_or_default();
        inputs.extend(state.uncompacted.remove(day).unwrap_or_default());
        let mut batches = Vec::new();
        let mut schema = tributary_markets::rollup::trades_schema();
        for key in &inputs {
            let (file_schema, file_batches) =
                tributary_lake::parquet::decode(processed.get(key).await?)?;
            schema = file_schema;
            batches.extend(file_batches);
        }
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let bytes = tributary_lake::parquet::encode(schema, &batches)?;
        let key = format!(
            "markets/trades_compacted/date={}/gen={run_id}/trades.parquet",
            day.format("%Y-%m-%d")
        );
        files.push(
            processed
                .put_file(&key, "trades_compacted", rows as u64, bytes)
                .await?,
        );
        tracing::info!(day = %day, inputs = inputs.len(), rows, "closed day compacted");
        state.compacted.insert(*day, vec![key]);
    }
    Ok(closed.len() as u64)
}
