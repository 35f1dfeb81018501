//! Loading market data into the warehouse: every processed markets manifest
//! not yet in `tributary.market_load_log`, in order.

use tokio_postgres::Client;
use tributary_lake::{Lake, Log, Manifest, ManifestLog};
use tributary_warehouse::{
    load::init,
    markets::{load_markets_manifest, markets_loaded_through},
};

use crate::{Result, alerts::Alerts, markets::transform::MarketsState, stage::Stage};

/// What a markets load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarketsLoadReport {
    /// Processed markets manifests applied.
    pub manifests: u64,
    /// Trades inserted.
    pub trades: u64,
    /// Daily bars inserted or changed.
    pub bars: u64,
}

/// The markets load (part of the load stage) and what to do when it fails.
pub const STAGE: Stage = Stage {
    name: "markets-load",
    retryable: "the markets manifest was rolled back; the next load retries it",
    needs_fix: "the markets manifest was rolled back and blocks later ones: fix the cause named above",
};

/// Loads every processed markets manifest not yet loaded, one transaction
/// each. On failure an alert names the error, as for the other stages.
pub async fn load_markets(
    warehouse: &mut Client,
    processed: &Lake,
    alerts: &dyn Alerts,
) -> Result<MarketsLoadReport> {
    STAGE
        .run(alerts, |_| async move {
            load_markets_run(warehouse, processed).await
        })
        .await
}

async fn load_markets_run(warehouse: &mut Client, processed: &Lake) -> Result<MarketsLoadReport> {
    init(warehouse).await?;
    let log = ManifestLog::new(processed.clone(), Log::MarketsTransform);
    let latest = log.latest_seq().await?;
    let mut report = MarketsLoadReport::default();
    for seq in markets_loaded_through(warehouse).await? + 1..=latest {
        let manifest: Option<Manifest<MarketsState>> = log.read(seq).await?;
        let files: Vec<(String, String)> = manifest
            .into_iter()
            .flat_map(|m| m.files)
            .map(|f| (f.table, f.key))
            .collect();
        let (trades, bars) = load_markets_manifest(warehouse, processed, seq, &files).await?;
        report.manifests += 1;
        report.trades += trades;
        report.bars += bars;
    }
    Ok(report)
}
