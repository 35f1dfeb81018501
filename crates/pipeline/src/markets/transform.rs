//! The markets transform: sink batches in the raw lake → deduplicated trades
//! and daily OHLCV bars as Parquet in the processed lake.
//!
//! Trades of one symbol arrive in tid order (one partition key per symbol),
//! so the highest tid transformed per symbol is all the state deduplication
//! needs: a trade put twice (a poll that died between put and checkpoint, a
//! redelivered batch) is dropped. A dropped trade that was never kept (out of
//! tid order, which Mercado Bitcoin's per-symbol tids should rule out) is
//! counted and logged at WARN. Bars of the last days stay in the state so
//! a late trade updates its day; each run writes the bars it changed. A late
//! trade for an older day has its day's bar rebuilt first from the day's
//! trades already in the processed lake, so the bar written is the whole day.
//!
//! Once a day is closed (older than the open days), its small per-run trade
//! files are compacted into one generation under
//! `markets/trades_compacted/date=D/gen=<run_id>/`. A late trade for a
//! closed day makes a new generation (the previous one plus the late
//! files), so a reader of one day's directory never sees a trade twice; the
//! lake keeps every object, as always. Readers of the catalog use the
//! Iceberg table `markets_trades` instead ([`crate::lakehouse`]), which takes
//! the per-run files only and is compacted by Iceberg maintenance.

use std::{collections::BTreeMap, time::Instant};

use chrono::{Duration as Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tributary_lake::{FileEntry, Lake, Log, Manifest, ManifestLog, RunId, keys};
use tributary_markets::{
    AssetPage, Trade,
    dedupe::{by_day, closed_days, keep_unseen},
    rollup::{
        Bars, DailyBar, assets_batch, closed_bars_to_rebuild, ohlcv_batch, refusal, roll_up,
        trades_batch, trades_of_batch,
    },
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
    /// Trades dropped because their tid is below the highest transformed for
    /// their symbol although they were never transformed (out of tid order;
    /// logged at WARN with the symbol and tids).
    pub out_of_order: u64,
    /// Lines of sink batches quarantined (not a trade, or not exact decimals).
    pub quarantined: u64,
    /// Bars written.
    pub bars: u64,
    /// Bars of closed days rebuilt from their processed trades for a late trade.
    pub reopened_bars: u64,
    /// Asset rows written.
    pub assets: u64,
    /// Closed days compacted by this run.
    pub compacted_days: u64,
    /// Daily candles of the history written.
    pub history_days: u64,
    /// What the publication to the markets' Iceberg tables did after the run.
    pub published: Option<crate::lakehouse::PublishReport>,
}

/// The markets transform (part of the transform stage) and what to do when it fails.
pub const STAGE: Stage = Stage {
    name: "markets-transform",
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
    let mut report = STAGE
        .run(alerts, |run_id| async move {
            transform_markets_run(raw, processed, &run_id).await
        })
        .await?;
    // As for the totesys tables: alerted on failure, finished by the next run.
    report.published = crate::lakehouse::STAGE
        .run(alerts, |_| crate::lakehouse::publish_markets(processed))
        .await
        .ok();
    Ok(report)
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

    let (incoming, quarantined) =
        read_sink_trades(raw, &inputs.sink, state.sink_seq + 1..=inputs.latest_sink).await?;
    report.quarantined = quarantined;
    let unseen = keep_unseen(incoming, &mut state.max_tid);
    report.trades = unseen.fresh.len() as u64;
    report.out_of_order = count_out_of_order(processed, &state, &unseen.behind).await?;
    report.duplicates = unseen.duplicates - report.out_of_order;
    let horizon = Utc::now().date_naive() - Days::days(OPEN_DAYS);
    let mut bars: Bars = state
        .open_bars
        .drain(..)
        .map(|b| ((b.symbol.clone(), b.day), b))
        .collect();
    report.reopened_bars =
        reopen_closed_bars(processed, &state, &mut bars, &unseen.fresh, horizon).await?;
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
        out_of_order = report.out_of_order,
        quarantined = report.quarantined,
        bars = report.bars,
        reopened_bars = report.reopened_bars,
        ms = started.elapsed().as_millis() as u64,
        "markets transformed"
    );
    Ok(report)
}

/// Every trade line of the sink batches committed by manifests `seqs`.
///
/// The sink quarantines a line that is not a trade or whose price or amount
/// is not an exact decimal, but a batch kept before it checked may still
/// hold one: such a line would stop every later run, so it is skipped here
/// and quarantined with its reason in
/// `raw/_quarantine/markets/trades/sink-manifest-<seq>.jsonl` (named by the
/// sink manifest, so a retried run writes the same object once). Returns
/// the trades and the lines quarantined.
async fn read_sink_trades(
    raw: &Lake,
    sink: &ManifestLog,
    seqs: std::ops::RangeInclusive<u64>,
) -> Result<(Vec<Trade>, u64)> {
    let (mut incoming, mut quarantined) = (Vec::new(), 0);
    for seq in seqs {
        let manifest: Option<Manifest<SinkState>> = sink.read(seq).await?;
        let mut refused = Vec::new();
        for file in manifest.into_iter().flat_map(|m| m.files) {
            let text = crate::gz::read_text(raw, &file.key).await?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let reason = match serde_json::from_str::<Trade>(line) {
                    Ok(trade) => match refusal(&trade) {
                        None => {
                            incoming.push(trade);
                            continue;
                        }
                        Some(reason) => reason,
                    },
                    Err(e) => format!("not a trade: {e}"),
                };
                let record = serde_json::json!({
                    "sink_manifest": seq,
                    "key": file.key,
                    "reason": reason,
                    "line": line,
                });
                refused.extend(record.to_string().into_bytes());
                refused.push(b'\n');
                quarantined += 1;
            }
        }
        if !refused.is_empty() {
            let key = keys::quarantine("markets", "trades", format!("sink-manifest-{seq}"));
            raw.put_once(&key, bytes::Bytes::from(refused)).await?;
            // ERROR: the error-log alarm counts quarantines as well as failures.
            tracing::error!(
                stage = "transform",
                sink_manifest = seq,
                quarantine = %key,
                "trade lines a sink batch kept were quarantined, not transformed"
            );
        }
    }
    Ok((incoming, quarantined))
}

/// Of the trades dropped because their tid is not above the highest kept
/// for their symbol (`behind`), those never kept: out of tid order. Mercado
/// Bitcoin's tids increase per symbol and one symbol's trades reach the sink
/// in order (see [`tributary_markets::dedupe`]), so this should not happen,
/// and the dedupe state (one tid per symbol) cannot take such a trade in: it
/// stays dropped, and each is counted and logged at WARN with its symbol and
/// tids (reconcile shows it as missing from the processed lake). A repeat
/// of a kept trade (a re-put batch) is the normal case; telling the two apart
/// reads the current files of the days of `behind`, which is only ever
/// non-empty after a re-put. Returns how many were never kept.
async fn count_out_of_order(
    processed: &Lake,
    state: &MarketsState,
    behind: &[Trade],
) -> Result<u64> {
    if behind.is_empty() {
        return Ok(0);
    }
    let days: BTreeMap<NaiveDate, Vec<&Trade>> =
        behind.iter().fold(BTreeMap::new(), |mut days, trade| {
            let day = chrono::DateTime::from_timestamp_millis(trade.traded_at_ms)
                .unwrap_or_default()
                .date_naive();
            days.entry(day).or_insert_with(Vec::new).push(trade);
            days
        });
    let mut never_kept: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (day, trades) in days {
        let mut kept = std::collections::HashSet::new();
        let files = state
            .compacted
            .get(&day)
            .into_iter()
            .chain(state.uncompacted.get(&day))
            .flatten();
        for key in files {
            let (_, batches) = tributary_lake::parquet::decode(processed.get(key).await?)?;
            for batch in &batches {
                kept.extend(
                    trades_of_batch(batch)?
                        .into_iter()
                        .map(|t| (t.symbol, t.tid)),
                );
            }
        }
        for trade in trades {
            if !kept.contains(&(trade.symbol.clone(), trade.tid)) {
                never_kept.entry(&trade.symbol).or_default().push(trade.tid);
            }
        }
    }
    let mut count = 0;
    for (symbol, tids) in never_kept {
        count += tids.len() as u64;
        tracing::warn!(
            stage = "transform",
            symbol,
            tids = ?tids,
            highest_kept = state.max_tid.get(symbol).copied().unwrap_or_default(),
            "trades out of tid order dropped: their tid is below the highest kept for the \
             symbol, yet they were never kept"
        );
    }
    Ok(count)
}

/// A late trade for a closed day (before `horizon`; its bar is no longer in
/// the state) must not start a bar of its own: the loader would replace the
/// day's whole bar with it. So the bar of each such (symbol, day) is first
/// rebuilt into `bars` from that symbol's trades in the day's current files
/// (its compacted generation and any files not yet compacted, as the state
/// lists them); the new trades are then added as to an open bar. Bounded (one
/// day's files, read once per day) and exact: the same trades a reader of the
/// day sees. Returns the bars rebuilt.
async fn reopen_closed_bars(
    processed: &Lake,
    state: &MarketsState,
    bars: &mut Bars,
    fresh: &[Trade],
    horizon: NaiveDate,
) -> Result<u64> {
    let mut reopened = 0;
    for (day, symbols) in closed_bars_to_rebuild(bars, fresh, horizon) {
        let files: Vec<&String> = state
            .compacted
            .get(&day)
            .into_iter()
            .chain(state.uncompacted.get(&day))
            .flatten()
            .collect();
        let mut earlier = Vec::new();
        for key in &files {
            let (_, batches) = tributary_lake::parquet::decode(processed.get(key).await?)?;
            for batch in &batches {
                earlier.extend(
                    trades_of_batch(batch)?
                        .into_iter()
                        .filter(|t| symbols.contains(&t.symbol)),
                );
            }
        }
        let rebuilt = roll_up(bars, &earlier)?;
        reopened += rebuilt.len() as u64;
        tracing::info!(
            day = %day,
            symbols = symbols.len(),
            files = files.len(),
            trades = earlier.len(),
            bars = rebuilt.len(),
            "late trades for a closed day: its bars rebuilt from the day's trades"
        );
    }
    Ok(reopened)
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
///
/// Backfills of overlapping days hold a (symbol, day) more than once; only
/// the newest candle of each is written (a later manifest wins, as in the
/// raw lake's reading), so no file holds a (symbol, day) twice: the loader's
/// upsert cannot change one row twice in one statement.
async fn write_history(
    raw: &Lake,
    processed: &Lake,
    run_id: &RunId,
    candles_log: &ManifestLog,
    seqs: std::ops::RangeInclusive<u64>,
    files: &mut Vec<FileEntry>,
) -> Result<u64> {
    let mut newest: BTreeMap<(String, NaiveDate), tributary_markets::Candle> = BTreeMap::new();
    for seq in seqs {
        let manifest: Option<Manifest<serde_json::Value>> = candles_log.read(seq).await?;
        for file in manifest.into_iter().flat_map(|m| m.files) {
            let text = crate::gz::read_text(raw, &file.key).await?;
            let candles = tributary_markets::candles_from_raw(
                &text,
                tributary_lake::keys::raw_candles_symbol(&file.key),
            )?;
            for candle in candles {
                newest.insert((candle.symbol.clone(), candle.day), candle);
            }
        }
    }
    let mut history: BTreeMap<i32, Vec<tributary_markets::Candle>> = BTreeMap::new();
    for candle in newest.into_values() {
        history
            .entry(chrono::Datelike::year(&candle.day))
            .or_default()
            .push(candle);
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
