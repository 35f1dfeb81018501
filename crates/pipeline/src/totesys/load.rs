//! The load stage: every processed manifest not yet in the warehouse, in
//! order, one transaction each.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use tokio_postgres::Client;
use tributary_lake::{FileEntry, Lake, Log, Manifest, ManifestLog, RunId};
use tributary_warehouse::load::{LoadedManifest, init, load_manifest, loaded_through};

use crate::{Error, Result, alerts::Alerts, stage::Stage, totesys::transform::TransformState};

/// The load stage and what to do when it fails.
pub const STAGE: Stage = Stage {
    name: "load",
    retryable: "the failed manifest was rolled back; the next run retries it",
    needs_fix: "the failed manifest was rolled back and blocks later ones: fix the cause named above",
};

/// What a run did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The run.
    pub run_id: RunId,
    /// Per manifest applied, in order.
    pub manifests: Vec<LoadedManifest>,
    /// Wall time.
    pub elapsed: Duration,
    /// Processed manifests left for the next run (this one took on
    /// [`crate::stage::ROWS_PER_RUN`] rows or more).
    pub pending: u64,
}

impl LoadReport {
    /// Rows inserted or changed across manifests.
    pub fn rows(&self) -> u64 {
        self.manifests.iter().flat_map(|m| m.rows.values()).sum()
    }
}

/// Runs the load stage once. On failure an alert names the run and error.
pub async fn load(
    warehouse: &mut Client,
    processed: &Lake,
    alerts: &dyn Alerts,
) -> Result<LoadReport> {
    STAGE
        .run(alerts, |run_id| async move {
            load_run(warehouse, processed, &run_id).await
        })
        .await
}

async fn load_run(warehouse: &mut Client, processed: &Lake, run_id: &RunId) -> Result<LoadReport> {
    let started = Instant::now();
    init(warehouse).await?;
    let log = ManifestLog::new(processed.clone(), Log::Transform);
    let latest = log.latest_seq().await?;
    let through = loaded_through(warehouse).await?;
    let mut manifests = Vec::new();
    let mut taken = 0u64;
    let mut pending = 0;
    for seq in through + 1..=latest {
        if taken >= crate::stage::ROWS_PER_RUN {
            pending = latest - seq + 1;
            tracing::info!(stage = STAGE.name, run_id = %run_id, pending, "enough for one run: the next run loads the rest");
            break;
        }
        let manifest: Manifest<TransformState> = log.read(seq).await?.ok_or_else(|| {
            Error::Lake(tributary_lake::Error::CorruptManifest {
                key: Log::Transform.manifest(seq),
                reason: "missing although a later manifest exists".to_string(),
            })
        })?;
        let mut files: BTreeMap<String, Vec<FileEntry>> = BTreeMap::new();
        for file in &manifest.files {
            files
                .entry(file.table.clone())
                .or_default()
                .push(file.clone());
        }
        taken += manifest.files.iter().map(|f| f.rows).sum::<u64>();
        let table_started = Instant::now();
        let loaded =
            load_manifest(warehouse, processed, seq, manifest.run_id.as_str(), &files).await?;
        tracing::info!(
            stage = STAGE.name,
            run_id = %run_id,
            seq,
            rows = loaded.rows.values().sum::<u64>(),
            already_loaded = loaded.already_loaded,
            ms = table_started.elapsed().as_millis() as u64,
            "manifest loaded"
        );
        manifests.push(loaded);
    }
    Ok(LoadReport {
        run_id: run_id.clone(),
        manifests,
        elapsed: started.elapsed(),
        pending,
    })
}

/// Creates the warehouse schema, load log, exchange-rate tables and
/// reporting views (idempotent): `tributary warehouse init`. It always runs
/// the DDL, so a table dropped by hand comes back (the loads run it only
/// for a new version of it).
pub async fn init_warehouse(warehouse: &Client) -> Result<()> {
    // The star schema and the exchange-rate tables and views together.
    Ok(tributary_warehouse::fx::init(warehouse, true).await?)
}
