//! A source, a warehouse and two local lakes, wired for end-to-end runs.

use std::time::Duration;

use tokio_postgres::Client;
use tributary_lake::Lake;
use tributary_pipeline::{
    alerts::RecordedAlerts,
    run::{CycleReport, Pipeline},
    totesys::ingest::IngestOptions,
};

use crate::{TestDb, temp_lake};

/// Everything one end-to-end test runs against.
pub struct Stack {
    /// The source database.
    pub source_db: TestDb,
    /// The warehouse database.
    pub warehouse_db: TestDb,
    /// A connection to the source.
    pub source: Client,
    /// A connection to the warehouse.
    pub warehouse: Client,
    /// The raw lake.
    pub raw: Lake,
    /// The processed lake.
    pub processed: Lake,
    /// Alerts raised so far.
    pub alerts: RecordedAlerts,
    /// Ingest tuning.
    pub options: IngestOptions,
    /// Lake directories, removed on drop.
    pub dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Stack {
    /// Two fresh databases and two empty lakes; `None` without a stack.
    pub async fn new(label: &str) -> Option<Stack> {
        let source_db = TestDb::create(&format!("{label}_src")).await?;
        let warehouse_db = TestDb::create(&format!("{label}_wh")).await?;
        let source = source_db.connect().await;
        let warehouse = warehouse_db.connect().await;
        let (raw_dir, raw_url) = temp_lake();
        let (processed_dir, processed_url) = temp_lake();
        Some(Stack {
            source,
            warehouse,
            source_db,
            warehouse_db,
            raw: Lake::from_url(&raw_url).expect("raw lake"),
            processed: Lake::from_url(&processed_url).expect("processed lake"),
            alerts: RecordedAlerts::default(),
            options: IngestOptions {
                lookback: Duration::from_secs(600),
                batch_rows: 4_096,
                file_rows: 100_000,
                late_check_every: Duration::ZERO,
                max_rows: 5_000_000,
                source: std::sync::Arc::new(shipped_totesys_source()),
            },
            dirs: (raw_dir, processed_dir),
        })
    }

    /// Ingest → transform → load once.
    pub async fn cycle(&mut self) -> CycleReport {
        Pipeline {
            source: &mut self.source,
            warehouse: &mut self.warehouse,
            raw: &self.raw,
            processed: &self.processed,
            options: &self.options,
            alerts: &self.alerts,
        }
        .cycle()
        .await
        .expect("pipeline cycle")
    }

    /// Rows of a query on the warehouse, every value as text.
    pub async fn warehouse_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        text_rows(&self.warehouse, sql).await
    }

    /// Rows of a query on the source, every value as text.
    pub async fn source_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        text_rows(&self.source, sql).await
    }
}

/// Runs `sql` (whose columns must all be text) and collects the rows.
pub async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.get::<_, Option<String>>(i))
                .collect()
        })
        .collect()
}

impl Stack {
    /// A stack whose source holds the real 2024-02-23 totesys snapshot, and
    /// the folder of the real snapshots; `None` without them or the stack.
    pub async fn real_first_snapshot(label: &str) -> Option<(Stack, std::path::PathBuf)> {
        let shared = crate::shared_totesys()?;
        let stack = Stack::new(label).await?;
        let schema = std::fs::read_to_string(shared.join("schema.sql")).expect("read schema.sql");
        stack
            .source
            .batch_execute(&schema)
            .await
            .expect("create the totesys schema");
        crate::load_dump(
            &stack.source,
            &shared.join("snapshot-2024-02-23.sql.gz"),
            "public",
        )
        .await;
        Some((stack, shared))
    }

    /// A stack whose source holds `days` of generated history.
    pub async fn generated(label: &str, days: u32) -> Option<Stack> {
        let mut stack = Stack::new(label).await?;
        tributary_totesys::generate::generate(
            &mut stack.source,
            &tributary_totesys::generate::GenerateOptions {
                seed: 5,
                scale: 1,
                days,
                until_ms: chrono::Utc::now().timestamp_millis() - 60_000,
            },
        )
        .await
        .expect("generate");
        Some(stack)
    }

    /// Compares every layer (see `tributary reconcile`).
    pub async fn reconcile(&self) -> tributary_pipeline::totesys::reconcile::ReconcileReport {
        tributary_pipeline::totesys::reconcile::reconcile(
            &self.source,
            &self.options.source.schema,
            &self.raw,
            &self.processed,
            &self.warehouse,
            &self.alerts,
        )
        .await
        .expect("reconcile")
    }

    /// Panics with the differing comparisons unless every layer agrees.
    pub async fn assert_reconciled(&self) {
        let report = self.reconcile().await;
        let differing: Vec<_> = report
            .comparisons
            .iter()
            .filter(|c| !c.is_clean())
            .collect();
        assert!(differing.is_empty(), "reconcile differs: {differing:#?}");
    }
}

impl Stack {
    /// A scheduled ingest run.
    pub async fn ingest(
        &mut self,
    ) -> tributary_pipeline::Result<tributary_pipeline::totesys::ingest::IngestReport> {
        tributary_pipeline::totesys::ingest::ingest(
            &mut self.source,
            &self.raw,
            &self.options,
            &tributary_pipeline::totesys::ingest::IngestRequest::default(),
            &self.alerts,
        )
        .await
    }

    /// A transform run triggered by new raw manifests.
    pub async fn transform(
        &self,
    ) -> tributary_pipeline::Result<tributary_pipeline::totesys::transform::TransformReport> {
        tributary_pipeline::totesys::transform::transform(
            &self.raw,
            &self.processed,
            &tributary_pipeline::totesys::transform::TransformRequest::default(),
            &self.alerts,
        )
        .await
    }

    /// A load run.
    pub async fn load(
        &mut self,
    ) -> tributary_pipeline::Result<tributary_pipeline::totesys::load::LoadReport> {
        tributary_pipeline::totesys::load::load(&mut self.warehouse, &self.processed, &self.alerts)
            .await
    }
}

/// The repository's `sources/totesys.toml`, as the ingest reads it: the
/// tests read totesys through the file a deployment ships.
pub fn shipped_totesys_source() -> tributary_totesys::SourceSpec {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sources/totesys.toml");
    let file = tributary_sources::config::SourceFile::read(&path).expect("sources/totesys.toml");
    tributary_pipeline::totesys::source::spec_of(&file).expect("sources/totesys.toml")
}
