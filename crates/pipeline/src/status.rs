//! `tributary status`: what the raw lake says about each source table.

use chrono::{DateTime, Utc};
use tributary_lake::{Lake, Log, Manifest, ManifestLog};
use tributary_totesys::MODEL_INPUTS;

use crate::{Result, totesys::ingest::IngestState};

/// One table's line of the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStatus {
    /// Table name.
    pub table: String,
    /// Newest last_updated ingested.
    pub watermark: Option<DateTime<Utc>>,
    /// Rows written by the last run that read the table.
    pub last_run_rows: u64,
    /// When that run started.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Rows written since the first run.
    pub total_rows: u64,
}

/// The ingest status of the raw lake.
#[derive(Debug, Clone)]
pub struct IngestStatus {
    /// The latest manifest's number (0: nothing ingested yet).
    pub seq: u64,
    /// When it was committed.
    pub committed_at: Option<DateTime<Utc>>,
    /// Per table, in source order.
    pub tables: Vec<TableStatus>,
}

/// Reads the latest ingest manifest.
pub async fn ingest_status(raw: &Lake) -> Result<IngestStatus> {
    let latest: Option<Manifest<IngestState>> =
        ManifestLog::new(raw.clone(), Log::Totesys).latest().await?;
    let (seq, committed_at, state) = match latest {
        Some(m) => (m.seq, Some(m.committed_at), m.state),
        None => (0, None, IngestState::default()),
    };
    // The star schema's tables, then any other table the ingest has read.
    let mut names: Vec<String> = MODEL_INPUTS.iter().map(|t| t.name.to_string()).collect();
    names.extend(
        state
            .tables
            .keys()
            .filter(|name| !MODEL_INPUTS.iter().any(|t| t.name == name.as_str()))
            .cloned(),
    );
    let tables = names
        .into_iter()
        .map(|table| {
            let s = state.tables.get(&table).cloned().unwrap_or_default();
            TableStatus {
                table,
                watermark: s.watermark,
                last_run_rows: s.last_run_rows,
                last_run_at: s.last_run_at,
                total_rows: s.total_rows,
            }
        })
        .collect();
    Ok(IngestStatus {
        seq,
        committed_at,
        tables,
    })
}

/// How far the stages after ingest have come.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownstreamStatus {
    /// The newest processed manifest and when it was committed.
    pub processed: Option<(u64, DateTime<Utc>)>,
    /// The newest processed manifest the warehouse holds, when asked.
    pub loaded_through: Option<u64>,
}

/// Reads the processed lake's latest transform manifest and, given a
/// warehouse connection, how far the load has come.
pub async fn downstream_status(
    processed: &Lake,
    warehouse: Option<&tokio_postgres::Client>,
) -> Result<DownstreamStatus> {
    let latest: Option<Manifest<crate::totesys::transform::TransformState>> =
        ManifestLog::new(processed.clone(), Log::Transform)
            .latest()
            .await?;
    // A status look must not change the warehouse: no DDL here, and a
    // warehouse not initialised yet has loaded nothing.
    let loaded_through = match warehouse {
        Some(client) => {
            let initialised: bool = client
                .query_one("SELECT to_regclass('tributary.load_log') IS NOT NULL", &[])
                .await?
                .get(0);
            Some(if initialised {
                tributary_warehouse::load::loaded_through(client).await?
            } else {
                0
            })
        }
        None => None,
    };
    Ok(DownstreamStatus {
        processed: latest.map(|m| (m.seq, m.committed_at)),
        loaded_through,
    })
}

/// The freshness lag of the warehouse: now minus the commit time of the
/// ingest manifest behind the newest processed manifest the warehouse has
/// loaded (which that processed manifest records, so the load needs no
/// access to the raw lake). Ingest commits a manifest every run, changes or
/// not, so this stays about one schedule period while every stage works and
/// grows when any of them stalls. `None` before the first load, and for a
/// processed manifest written before the commit time was recorded.
pub async fn freshness_lag(
    processed: &Lake,
    warehouse: &tokio_postgres::Client,
) -> Result<Option<std::time::Duration>> {
    let through = tributary_warehouse::load::loaded_through(warehouse).await?;
    if through == 0 {
        return Ok(None);
    }
    let loaded: Option<Manifest<crate::totesys::transform::TransformState>> =
        ManifestLog::new(processed.clone(), Log::Transform)
            .read(through)
            .await?;
    Ok(loaded
        .and_then(|m| m.state.raw_committed_at)
        .map(|at| (Utc::now() - at).to_std().unwrap_or_default()))
}
