//! The history before polling: Mercado Bitcoin's daily candles of each coin,
//! kept as received in the raw lake and committed by a manifest of the log
//! `markets_candles`. The markets transform turns them into
//! `processed/markets/ohlcv_history` and the loader into
//! `ohlcv_daily_history`; the view `ohlcv_daily_all` prefers the bars built
//! from trades wherever both exist.
//!
//! Started by hand: `tributary markets --history-since 2020-01-01`, or the
//! ingest function with `{"candles": {"since": "2020-01-01"}}`.

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tributary_lake::{Lake, Log, Manifest, ManifestLog, RunId, keys};
use tributary_markets::mercado::MercadoBitcoin;

use crate::{Error, Result};

/// What to backfill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRequest {
    /// First day.
    pub since: NaiveDate,
    /// Last day (default: yesterday).
    #[serde(default)]
    pub until: Option<NaiveDate>,
    /// Symbols (default: every CRYPTO symbol).
    #[serde(default)]
    pub symbols: Option<Vec<String>>,
}

/// What a backfill committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryState {
    /// The days asked for.
    pub since: Option<NaiveDate>,
    /// …through.
    pub until: Option<NaiveDate>,
    /// Candles kept per symbol.
    pub candles: std::collections::BTreeMap<String, u64>,
}

/// Reads the daily candles of each symbol and commits them to the raw lake
/// (one gzipped JSON file per symbol, one manifest).
pub async fn backfill_history(
    mercado: &MercadoBitcoin,
    raw: &Lake,
    request: &HistoryRequest,
) -> Result<HistoryState> {
    let run_id = RunId::now();
    let until = request
        .until
        .unwrap_or_else(|| Utc::now().date_naive() - chrono::Days::new(1));
    if until < request.since {
        return Err(Error::Setting {
            variable: "candles.since",
            problem: format!("{} is after the last day {until}", request.since),
            example: "2020-01-01",
        });
    }
    let symbols = match &request.symbols {
        Some(symbols) => symbols.clone(),
        None => mercado
            .symbols()
            .await?
            .into_iter()
            .filter(|i| i.kind == "CRYPTO")
            .map(|i| i.symbol)
            .collect(),
    };
    let seconds = |day: NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp())
    };
    let (from, to) = (seconds(request.since), seconds(until));
    let mut state = HistoryState {
        since: Some(request.since),
        until: Some(until),
        ..HistoryState::default()
    };
    let mut files = Vec::new();
    let today = Utc::now().date_naive();
    for symbol in &symbols {
        let reply = mercado.daily_candles(symbol, from, to).await?;
        let candles = reply.value;
        state.candles.insert(symbol.clone(), candles.len() as u64);
        if candles.is_empty() {
            continue;
        }
        // Kept as received: the reply's arrays, named by symbol in the key.
        let body = crate::gz::gzip(&reply.body)?;
        let key = keys::raw_candles(today, &run_id, symbol);
        files.push(
            raw.put_file(
                &key,
                "candles",
                candles.len() as u64,
                bytes::Bytes::from(body),
            )
            .await?,
        );
    }
    let log = ManifestLog::new(raw.clone(), Log::MarketsCandles);
    let previous: Option<Manifest<HistoryState>> = log.latest().await?;
    let previous_seq = previous.map_or(0, |m| m.seq);
    log.commit(previous_seq, &run_id, Utc::now(), files, state.clone())
        .await?;
    tracing::info!(
        run_id = %run_id,
        symbols = symbols.len(),
        candles = state.candles.values().sum::<u64>(),
        "candle history kept"
    );
    Ok(state)
}
