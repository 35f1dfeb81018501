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
use tributary_lake::{FileEntry, Lake, Log, Manifest, ManifestLog, RunId, keys};
use tributary_markets::{
    AssetPage, Trade,
    dedupe::{by_day, closed_days, keep_unseen},
    rollup::{Bars, DailyBar, assets_batch, ohlcv_batch, roll_up, trades_batch},
};

use crate::{Result, markets::poll::PollState, markets::sink::SinkState, stage::Stage};

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

/// The markets transform (part of the transform stage) and what to do when it fails.
pub const STAGE: Stage = Stage {
    name: "transform",
    retryable: "nothing was committed; the next markets manifest retries",
    needs_fix: "fix the cause named above; the sink keeps writing raw batches meanwhile",
};

/// Runs the markets transform once.
/// On failure an alert names the error, as for the other stages.
pub async fn transform_markets(
    raw: &Lake,
    processed: &Lake,
    alerts: &dyn crate::alerts::Alerts,
) -> Result<MarketsReport> {
    STAGE
        .run(alerts, |run_id| async move {
            transform_markets_run(raw, processed, &run_id).await
        })
        .await
}

/// The manifest logs the markets transform reads, and how far each has
/// been committed.
struct Inputs {
    sink: ManifestLog,
    poll: ManifestLog,
    candles: ManifestLog,
    latest_sink: u64,
    latest_poll: u64,
    latest_candles: u64,
}

impl Inputs {
    async fn read(raw: &Lake) -> Result<Self> {
        let sink = ManifestLog::new(raw.clone(), Log::MarketsTrades);
        let poll = ManifestLog::new(raw.clone(), Log::MarketsPoll);
        let candles = ManifestLog::new(raw.clone(), Log::MarketsCandles);
        Ok(Self {
            latest_sink: sink.latest_seq().await?,
            latest_poll: poll.latest_seq().await?,
            latest_candles: candles.latest_seq().await?,
            sink,
            poll,
            candles,
        })
    }

    fn nothing_new(&self, state: &MarketsState) -> bool {
        self.latest_sink <= state.sink_seq
            && self.latest_poll <= state.poll_seq
            && self.latest_candles <= state.candles_seq
    }
}

async fn transform_markets_run(
    raw: &Lake,
    processed: &Lake,
    run_id: &RunId,
) -> Result<MarketsReport> {
    let started = Instant::now();
    let log = ManifestLog::new(processed.clone(), Log::MarketsTransform);
    let previous: Option<Manifest<MarketsState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let mut state = previous.map(|m| m.state).unwrap_or_default();
    let inputs = Inputs::read(raw).await?;
    if inputs.nothing_new(&state) {
        return Ok(MarketsReport::default());
    }
    let mut report = MarketsReport::default();
    let mut files = Vec::new();

    let incoming =
        read_sink_trades(raw, &inputs.sink, state.sink_seq + 1..=inputs.latest_sink).await?;
    let unseen = keep_unseen(incoming, &mut state.max_tid);
    report.trades = unseen.fresh.len() as u64;
    report.duplicates = unseen.duplicates;
    let mut bars: Bars = state
        .open_bars
        .drain(..)
        .map(|b| ((b.symbol.clone(), b.day), b))
        .collect();
    let changed = roll_up(&mut bars, &unseen.fresh)?;
    write_trades(processed, run_id, unseen.fresh, &mut state, &mut files).await?;
    report.bars = write_bars(processed, run_id, &bars, &changed, &mut files).await?;
    if inputs.latest_poll > state.poll_seq {
        report.assets =
            write_assets(raw, processed, run_id, &inputs, &mut state, &mut files).await?;
    }
    report.history_days = write_history(
        raw,
        processed,
        run_id,
        &inputs.candles,
        state.candles_seq + 1..=inputs.latest_candles,
        &mut files,
    )
    .await?;
    state.candles_seq = inputs.latest_candles;
    let horizon = Utc::now().date_naive() - Days::days(OPEN_DAYS);
    report.compacted_days =
        compact_closed_days(processed, &mut state, run_id, horizon, &mut files).await?;
    state.open_bars = bars.into_values().filter(|b| b.day >= horizon).collect();
    state.sink_seq = inputs.latest_sink;
    let manifest = log
        .commit(previous_seq, run_id, Utc::now(), files, state)
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

/// Every trade line of the sink batches committed by manifests `seqs`.
async fn read_sink_trades(
    raw: &Lake,
    sink: &ManifestLog,
    seqs: std::ops::RangeInclusive<u64>,
) -> Result<Vec<Trade>> {
    let mut incoming = Vec::new();
    for seq in seqs {
        let manifest: Option<Manifest<SinkState>> = sink.read(seq).await?;
        for file in manifest.into_iter().flat_map(|m| m.files) {
            let text = crate::gz::read_text(raw, &file.key).await?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                incoming.push(serde_json::from_str(line)?);
            }
        }
    }
    Ok(incoming)
}

/// One Parquet file of new trades per day; each is remembered as not yet
/// compacted.
async fn write_trades(
    processed: &Lake,
    run_id: &RunId,
    fresh: Vec<Trade>,
    state: &mut MarketsState,
    files: &mut Vec<FileEntry>,
) -> Result<()> {
    for (day, trades) in by_day(fresh) {
        let batch = trades_batch(&trades)?;
        let key = keys::processed_trades(day, run_id);
        files.push(processed.put_batch(&key, "trades", &batch).await?);
        state.uncompacted.entry(day).or_default().push(key);
    }
    Ok(())
}

/// The bars this run changed, one file per year; returns how many.
async fn write_bars(
    processed: &Lake,
    run_id: &RunId,
    bars: &Bars,
    changed: &[(String, NaiveDate)],
    files: &mut Vec<FileEntry>,
) -> Result<u64> {
    let changed_bars: Vec<&DailyBar> = changed.iter().filter_map(|k| bars.get(k)).collect();
    let count = changed_bars.len() as u64;
    let mut by_year: BTreeMap<i32, Vec<&DailyBar>> = BTreeMap::new();
    for bar in changed_bars {
        by_year
            .entry(chrono::Datelike::year(&bar.day))
            .or_default()
            .push(bar);
    }
    for (year, bars_of_year) in by_year {
        let batch = ohlcv_batch(&bars_of_year)?;
        let key = keys::processed_ohlcv_daily(year, run_id);
        files.push(processed.put_batch(&key, "ohlcv_daily", &batch).await?);
    }
    Ok(count)
}

/// The assets: the base currencies traded, with the newest CoinCap snapshot
/// polled since the last run. Written when CoinCap said something new or
/// the traded coins changed; returns the rows written.
async fn write_assets(
    raw: &Lake,
    processed: &Lake,
    run_id: &RunId,
    inputs: &Inputs,
    state: &mut MarketsState,
    files: &mut Vec<FileEntry>,
) -> Result<u64> {
    let newest: Option<Manifest<PollState>> = inputs.poll.read(inputs.latest_poll).await?;
    let mut snapshot = None;
    for seq in (state.poll_seq + 1..=inputs.latest_poll).rev() {
        let manifest: Option<Manifest<PollState>> = inputs.poll.read(seq).await?;
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
    let mut rows = 0;
    if !bases.is_empty() && (snapshot.is_some() || bases != state.asset_symbols) {
        let batch = assets_batch(&bases, snapshot.as_ref())?;
        rows = batch.num_rows() as u64;
        let key = keys::processed_assets(run_id);
        files.push(processed.put_batch(&key, "assets", &batch).await?);
        state.asset_symbols = bases;
    }
    state.poll_seq = inputs.latest_poll;
    Ok(rows)
}

/// Bars from the daily candles of backfills `seqs`, one file per year;
/// returns the candles written.
async fn write_history(
    raw: &Lake,
    processed: &Lake,
    run_id: &RunId,
    candles_log: &ManifestLog,
    seqs: std::ops::RangeInclusive<u64>,
    files: &mut Vec<FileEntry>,
) -> Result<u64> {
    let mut history: BTreeMap<i32, Vec<tributary_markets::Candle>> = BTreeMap::new();
    for seq in seqs {
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
    let mut written = 0;
    for (year, candles) in history {
        written += candles.len() as u64;
        let batch = tributary_markets::rollup::history_batch(&candles)?;
        let key = keys::processed_ohlcv_history(year, run_id);
        files.push(processed.put_batch(&key, "ohlcv_history", &batch).await?);
    }
    Ok(written)
}

/// Compacts the trade files of every closed day (before `horizon`) that has
/// files not yet compacted: the day's current generation plus those files
/// become one new file. Returns the number of days compacted.
async fn compact_closed_days(
    processed: &Lake,
    state: &mut MarketsState,
    run_id: &RunId,
    horizon: NaiveDate,
    files: &mut Vec<FileEntry>,
) -> Result<u64> {
    let closed = closed_days(&state.uncompacted, horizon);
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
        let key = keys::processed_trades_compacted(*day, run_id);
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
