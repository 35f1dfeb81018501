//! Loading market data into the warehouse: every processed markets manifest
//! not yet in `tributary.market_load_log`, in order.

use tokio_postgres::Client;
use tributary_lake::{Lake, Manifest, ManifestLog};
use tributary_warehouse::{
    load::init,
    markets::{load_markets_manifest, markets_loaded_through},
};

use crate::{
    Result,
    markets_transform::{MarketsState, SOURCE},
};

/// Loads what is new; returns (trades, bars) inserted or changed. On
/// failure an alert names the error, as for the other stages.
pub async fn load_markets(
    warehouse: &mut Client,
    processed: &Lake,
    alerts: &dyn crate::alerts::Alerts,
) -> Result<(u64, u64)> {
    let result = load_markets_run(warehouse, processed).await;
    if let Err(error) = &result {
        let advice = crate::alerts::FailureAdvice {
            retryable: "the markets manifest was rolled back; the next load retries it",
            needs_fix: "the markets manifest was rolled back and blocks later ones: fix the cause named above",
        };
        crate::alerts::stage_failed(alerts, "load", "-", error, advice).await;
    }
    result
}

async fn load_markets_run(warehouse: &mut Client, processed: &Lake) -> Result<(u64, u64)> {
    init(warehouse).await?;
    let log = ManifestLog::new(processed.clone(), SOURCE);
    let latest = log.latest_seq().await?;
    let mut totals = (0, 0);
    for seq in markets_loaded_through(warehouse).await? + 1..=latest {
        let manifest: Option<Manifest<MarketsState>> = log.read(seq).await?;
        let files: Vec<(String, String)> = manifest
            .into_iter()
            .flat_map(|m| m.files)
            .map(|f| (f.table, f.key))
            .collect();
        let (trades, bars) = load_markets_manifest(warehouse, processed, seq, &files).await?;
        totals = (totals.0 + trades, totals.1 + bars);
    }
    Ok(totals)
}
