//! `tributary run`: ingest → transform → load once, and the change-to-warehouse lag.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use tributary_lake::Lake;

use crate::{
    Result,
    alerts::Alerts,
    totesys::ingest::{IngestOptions, IngestReport, IngestRequest, ingest},
    totesys::load::{LoadReport, load},
    totesys::transform::{TransformReport, TransformRequest, transform},
};

/// One pass of the three stages.
#[derive(Debug, Clone)]
pub struct CycleReport {
    /// The ingest run.
    pub ingest: IngestReport,
    /// The transform run.
    pub transform: TransformReport,
    /// The load run.
    pub load: LoadReport,
    /// From the newest source change this cycle carried to the moment the
    /// warehouse committed it; `None` when the cycle carried no change.
    pub change_to_warehouse: Option<Duration>,
}

/// The lakes and connections one cycle needs.
pub struct Pipeline<'a> {
    /// Source connection.
    pub source: &'a mut Client,
    /// Warehouse connection.
    pub warehouse: &'a mut Client,
    /// Raw lake.
    pub raw: &'a Lake,
    /// Processed lake.
    pub processed: &'a Lake,
    /// Ingest tuning.
    pub options: &'a IngestOptions,
    /// Where alerts go.
    pub alerts: &'a dyn Alerts,
}

impl Pipeline<'_> {
    /// Runs ingest, transform and load once.
    pub async fn cycle(&mut self) -> Result<CycleReport> {
        // Backfills queued with `tributary backfill` go first, as on AWS. One
        // that fails has alerted and stays queued (`tributary backfill
        // --status`); it does not hold back the incremental run.
        let _ =
            crate::totesys::requests::run_pending(self.source, self.raw, self.options, self.alerts)
                .await;
        let ingest = ingest(
            self.source,
            self.raw,
            self.options,
            &IngestRequest::default(),
            self.alerts,
        )
        .await?;
        let transform = transform(
            self.raw,
            self.processed,
            &TransformRequest::default(),
            self.alerts,
        )
        .await?;
        let load = load(self.warehouse, self.processed, self.alerts).await?;
        let newest_change: Option<DateTime<Utc>> = ingest
            .tables
            .iter()
            .filter(|t| t.rows > 0)
            .filter_map(|t| t.watermark)
            .max();
        let change_to_warehouse =
            newest_change.map(|t| (Utc::now() - t).to_std().unwrap_or_default());
        Ok(CycleReport {
            ingest,
            transform,
            load,
            change_to_warehouse,
        })
    }
}
