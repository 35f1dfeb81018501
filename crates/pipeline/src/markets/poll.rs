//! Market polling inside the ingest schedule: Mercado Bitcoin trades into
//! the trade stream, with a per-symbol checkpoint kept in the raw lake.
//!
//! Each tick: one `/tickers` call for every crypto symbol; `/trades?since=`
//! for the symbols whose ticker moved (and those never read), at most
//! `max_symbols_per_tick` of them, least recently polled first, so every
//! symbol is visited within a few ticks. A symbol's checkpoint (the highest
//! tid in the stream) advances only after its trades were put.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tributary_lake::{FileEntry, Lake, Log, Manifest, ManifestLog, RunId, keys};
use tributary_markets::{Trade, coincap::CoinCap, mercado::MercadoBitcoin};

use crate::{
    Result,
    alerts::{Alert, Alerts},
    markets::stream::{TradeStream, pack_lines, put_all},
};

const STAGE: &str = "ingest";

/// Tuning of the poller.
#[derive(Debug, Clone)]
pub struct PollOptions {
    /// Symbols whose trades are read per tick (1 request/s each).
    pub max_symbols_per_tick: usize,
    /// How often the symbol list is read again.
    pub symbols_refresh: Duration,
    /// PutRecords attempts before a symbol is left for the next tick.
    pub put_attempts: u32,
}

impl PollOptions {
    /// Options for ticks `every` apart: each symbol's trades cost one
    /// request and the client makes at most one a second per endpoint, so a
    /// tick takes no more symbols than fit between two ticks (with slack
    /// for the tickers call).
    pub fn for_ticks_every(every: Duration) -> Self {
        Self {
            max_symbols_per_tick: (every.as_secs() as usize).saturating_sub(3).max(1),
            ..Self::default()
        }
    }
}

impl Default for PollOptions {
    fn default() -> Self {
        Self {
            max_symbols_per_tick: 40,
            symbols_refresh: Duration::from_secs(3600),
            put_attempts: 4,
        }
    }
}

/// What the poller remembers between ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PollState {
    /// Highest tid in the stream, per symbol.
    pub checkpoints: BTreeMap<String, i64>,
    /// Last ticker seen (last price, date) per symbol.
    pub tickers: BTreeMap<String, (String, i64)>,
    /// When each symbol's trades were last read.
    pub polled_at: BTreeMap<String, DateTime<Utc>>,
    /// The crypto symbols.
    pub symbols: Vec<String>,
    /// When they were read.
    pub symbols_at: Option<DateTime<Utc>>,
}

/// What a tick did.
#[derive(Debug, Clone, Default)]
pub struct PollReport {
    /// Symbols whose trades were read.
    pub polled: Vec<String>,
    /// Trades put into the stream.
    pub trades: u64,
    /// Symbols left for the next tick, with why.
    pub failed: Vec<(String, String)>,
}

/// Writes a JSON snapshot (gzip) and names it for the manifest.
async fn snapshot<T: Serialize>(
    raw: &Lake,
    table: &str,
    key: String,
    value: &T,
) -> Result<FileEntry> {
    let body = crate::gz::gzip(&serde_json::to_vec(value)?)?;
    Ok(raw
        .put_file(&key, table, 1, bytes::Bytes::from(body))
        .await?)
}

/// One polling tick. With `coincap`, a snapshot of the top assets is kept
/// too; its failure is alerted and does not hold back the trades.
pub async fn poll_markets(
    mercado: &MercadoBitcoin,
    coincap: Option<&CoinCap>,
    stream: &dyn TradeStream,
    raw: &Lake,
    options: &PollOptions,
    alerts: &dyn Alerts,
) -> Result<PollReport> {
    let run_id = RunId::now();
    let now = Utc::now();
    let log = ManifestLog::new(raw.clone(), Log::MarketsPoll);
    let previous: Option<Manifest<PollState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let mut state = previous.map(|m| m.state).unwrap_or_default();
    let stale = state
        .symbols_at
        .is_none_or(|at| (now - at).to_std().unwrap_or_default() >= options.symbols_refresh);
    if stale || state.symbols.is_empty() {
        state.symbols = mercado
            .symbols()
            .await?
            .into_iter()
            .filter(|i| i.kind == "CRYPTO")
            .map(|i| i.symbol)
            .collect();
        state.symbols_at = Some(now);
    }
    let tickers = mercado.tickers(&state.symbols).await?;
    let date = now.date_naive();
    let mut files =
        vec![snapshot(raw, "tickers", keys::raw_tickers(date, &run_id), &tickers).await?];
    if let Some(coincap) = coincap {
        match coincap.assets(100, 0).await {
            Ok(page) => files.push(
                snapshot(
                    raw,
                    "assets",
                    keys::raw_coincap_assets(date, &run_id),
                    &page,
                )
                .await?,
            ),
            Err(error) => {
                alerts
                    .send(&Alert {
                        stage: STAGE,
                        run_id: run_id.to_string(),
                        table: Some("coincap assets".to_string()),
                        message: format!("CoinCap assets not read this tick: {error}"),
                        action:
                            "trades are unaffected; check the CoinCap key and URL if this repeats"
                                .to_string(),
                    })
                    .await;
            }
        }
    }
    let mut due: Vec<String> = tickers
        .iter()
        .filter(|t| {
            let seen = (t.last.to_string(), t.date);
            state.tickers.get(&t.pair) != Some(&seen) || !state.checkpoints.contains_key(&t.pair)
        })
        .map(|t| t.pair.clone())
        .collect();
    due.sort_by_key(|symbol| state.polled_at.get(symbol).copied());
    due.truncate(options.max_symbols_per_tick);

    let mut report = PollReport::default();
    for symbol in &due {
        let checkpoint = state.checkpoints.get(symbol).copied();
        let outcome = async {
            let wire = mercado.trades_after(symbol, checkpoint).await?;
            let lines: Vec<Vec<u8>> = wire
                .iter()
                .map(|t| serde_json::to_vec(&Trade::from_wire(symbol, t)))
                .collect::<Result<_, _>>()?;
            put_all(stream, pack_lines(symbol, &lines), options.put_attempts).await?;
            Ok::<_, crate::Error>((wire.len() as u64, wire.iter().map(|t| t.tid).max()))
        }
        .await;
        match outcome {
            Ok((count, newest)) => {
                if let Some(newest) = newest {
                    state.checkpoints.insert(symbol.clone(), newest);
                } else if checkpoint.is_none() {
                    state.checkpoints.insert(symbol.clone(), 0);
                }
                if let Some(t) = tickers.iter().find(|t| &t.pair == symbol) {
                    state
                        .tickers
                        .insert(symbol.clone(), (t.last.to_string(), t.date));
                }
                state.polled_at.insert(symbol.clone(), now);
                report.trades += count;
                report.polled.push(symbol.clone());
            }
            Err(error) => {
                alerts
                    .send(&Alert {
                        stage: STAGE,
                        run_id: run_id.to_string(),
                        table: Some(format!("trades {symbol}")),
                        message: format!("{symbol}: trades not saved this tick: {error}"),
                        action:
                            "its checkpoint stayed put; the next tick reads the same trades again"
                                .to_string(),
                    })
                    .await;
                report.failed.push((symbol.clone(), error.to_string()));
            }
        }
    }
    log.commit(previous_seq, &run_id, now, files, state).await?;
    tracing::info!(
        stage = STAGE,
        run_id = %run_id,
        polled = report.polled.len(),
        trades = report.trades,
        failed = report.failed.len(),
        "markets polled"
    );
    Ok(report)
}

/// Polls every `every` for as long as `budget` allows: one scheduled
/// invocation (every minute) then keeps trades flowing about every 15 s
/// instead of once a minute. A tick starts only if it can finish before the
/// budget ends, judged by the longest tick so far (at least `every`); a tick
/// that overran starts the next one at once rather than on the old grid.
#[allow(clippy::too_many_arguments)]
pub async fn poll_during(
    mercado: &MercadoBitcoin,
    coincap: Option<&CoinCap>,
    stream: &dyn TradeStream,
    raw: &Lake,
    options: &PollOptions,
    alerts: &dyn Alerts,
    budget: Duration,
    every: Duration,
) -> Result<Vec<PollReport>> {
    let started = tokio::time::Instant::now();
    let end = started + budget;
    let mut reports = Vec::new();
    let mut next = started;
    let mut longest = every;
    loop {
        tokio::time::sleep_until(next).await;
        let tick = tokio::time::Instant::now();
        reports.push(poll_markets(mercado, coincap, stream, raw, options, alerts).await?);
        longest = longest.max(tick.elapsed());
        next = (next + every).max(tokio::time::Instant::now());
        if next + longest > end {
            return Ok(reports);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_takes_no_more_symbols_than_requests_fit_between_ticks() {
        assert_eq!(
            PollOptions::for_ticks_every(Duration::from_secs(15)).max_symbols_per_tick,
            12
        );
        assert_eq!(
            PollOptions::for_ticks_every(Duration::from_secs(1)).max_symbols_per_tick,
            1
        );
        assert_eq!(
            PollOptions::for_ticks_every(Duration::from_secs(60)).put_attempts,
            PollOptions::default().put_attempts
        );
    }
}
