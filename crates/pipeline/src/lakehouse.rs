//! The processed lake as Apache Iceberg tables.
//!
//! The transform's manifest is the commit point of a run across all its
//! tables: Iceberg commits one table at a time, so it cannot be that. Each
//! table is a projection of the transform log instead. [`publish`] takes
//! every processed manifest a table has not seen, in order, and commits its
//! files to the table as one snapshot whose summary names the run, the
//! processed manifest (`tributary.processed-seq`, also the table's
//! watermark) and the raw manifests the run consumed. A publication that
//! dies half way is finished by the next one; one that is repeated finds the
//! watermark and skips. A reader therefore sees each table at a processed
//! manifest boundary, never half a run, and at most one publication behind
//! the warehouse load, which reads the manifests directly.
//!
//! Facts are append-only and partitioned by the month of their business date
//! (`created_date`); dimensions, their histories and the calendar keep
//! current rows: a run's rows replace every row of the same key
//! (copy-on-write of the files holding those keys).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tributary_iceberg::{Catalog, Change, NewFile, Outcome, Partitioning, Rows, TableDef};
use tributary_lake::{Lake, Log, Manifest, ManifestLog};
use tributary_warehouse::tables::{Kind, WAREHOUSE_TABLES, WarehouseTable};

use crate::{Result, stage::Stage};

/// The publication stage and what to do when it fails.
pub const STAGE: Stage = Stage {
    name: "publish",
    retryable: "the transform committed; the next run publishes what this one did not",
    needs_fix: "fix the cause named above; the transform and the load are not affected, and the next run publishes everything pending",
};

/// Where the highest processed manifest every table has seen is noted: a
/// hint that bounds the manifests a publication reads. The tables'
/// watermarks are the truth.
pub const PUBLISHED_HINT: &str = "_state/iceberg/transform-published";

/// The Iceberg table of a warehouse table, in the processed lake at
/// `warehouse/<name>`, beside the files the transform writes.
pub fn table_def(table: &WarehouseTable) -> TableDef {
    let (partitioning, rows) = match table.kind {
        Kind::Fact { .. } => (Partitioning::Month("created_date".into()), Rows::Append),
        Kind::Dimension | Kind::History | Kind::Date => {
            (Partitioning::None, Rows::ReplaceByKey(table.key.into()))
        }
    };
    TableDef {
        name: table.name.into(),
        location: format!("warehouse/{}", table.name),
        schema: table.arrow_schema(),
        partitioning,
        rows,
    }
}

/// What one publication did.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// Processed manifests read.
    pub manifests: Vec<u64>,
    /// Snapshots committed: table, processed manifest, commit time.
    pub commits: Vec<(String, u64, Duration)>,
    /// Changes a table already had (a repeated publication).
    pub already: u64,
    /// Data files rewritten by replaces.
    pub rewritten_files: u64,
    /// Wall time.
    pub elapsed: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RunInputs {
    inputs: Vec<u64>,
    rebuild: bool,
}

/// Publishes every transform manifest not yet in the tables.
pub async fn publish(processed: &Lake) -> Result<PublishReport> {
    let started = Instant::now();
    let log = ManifestLog::new(processed.clone(), Log::Transform);
    let latest = log.latest_seq().await?;
    let hint: u64 = match processed.get_opt(PUBLISHED_HINT).await? {
        Some(bytes) => String::from_utf8_lossy(&bytes).trim().parse().unwrap_or(0),
        None => 0,
    };
    let mut report = PublishReport::default();
    if hint >= latest {
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    let manifests: Vec<Manifest<RunInputs>> = futures_util::stream::iter(hint + 1..=latest)
        .map(|seq| log.read::<RunInputs>(seq))
        .buffered(16)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect();
    report.manifests = manifests.iter().map(|m| m.seq).collect();
    let catalog = Catalog::new(processed.clone());
    let tables = WAREHOUSE_TABLES.iter().map(|table| {
        let catalog = &catalog;
        let manifests = &manifests;
        async move { publish_table(catalog, table, manifests).await }
    });
    let results: Vec<TableReport> = futures_util::stream::iter(tables)
        .buffer_unordered(4)
        .try_collect()
        .await?;
    for table in results {
        report.commits.extend(table.commits);
        report.already += table.already;
        report.rewritten_files += table.rewritten_files;
    }
    processed
        .put_replace(PUBLISHED_HINT, bytes::Bytes::from(latest.to_string()))
        .await?;
    report.elapsed = started.elapsed();
    tracing::info!(
        stage = STAGE.name,
        manifests = report.manifests.len(),
        commits = report.commits.len(),
        already = report.already,
        ms = report.elapsed.as_millis() as u64,
        "iceberg tables published"
    );
    Ok(report)
}

#[derive(Debug, Default)]
struct TableReport {
    commits: Vec<(String, u64, Duration)>,
    already: u64,
    rewritten_files: u64,
}

async fn publish_table(
    catalog: &Catalog,
    table: &WarehouseTable,
    manifests: &[Manifest<RunInputs>],
) -> Result<TableReport> {
    let def = table_def(table);
    let mut report = TableReport::default();
    for manifest in manifests {
        let files: Vec<NewFile> = manifest
            .files
            .iter()
            .filter(|f| f.table == table.name)
            .map(|f| NewFile {
                key: f.key.clone(),
                bytes: f.bytes,
            })
            .collect();
        if files.is_empty() {
            continue;
        }
        let inputs = &manifest.state.inputs;
        let raw = match (inputs.first(), inputs.last()) {
            (Some(a), Some(b)) if a == b => format!("totesys:{a}"),
            (Some(a), Some(b)) => format!("totesys:{a}-{b}"),
            _ => String::new(),
        };
        let change = Change {
            files,
            watermark: Some(manifest.seq),
            properties: BTreeMap::from([
                ("tributary.run-id".into(), manifest.run_id.to_string()),
                ("tributary.processed-seq".into(), manifest.seq.to_string()),
                ("tributary.raw-manifests".into(), raw),
                (
                    "tributary.rebuild".into(),
                    manifest.state.rebuild.to_string(),
                ),
            ]),
        };
        match catalog.commit(&def, &change).await? {
            Outcome::Committed(done) => {
                report.rewritten_files += done.removed_files;
                report.commits.push((
                    table.name.to_string(),
                    manifest.seq,
                    Duration::from_millis(done.millis),
                ));
            }
            Outcome::AlreadyCommitted => report.already += 1,
            Outcome::Empty => {}
        }
    }
    Ok(report)
}

/// The maintenance stage and what to do when it fails.
pub const MAINTAIN_STAGE: Stage = Stage {
    name: "maintain",
    retryable: "the tables are as they were or compacted; the next scheduled maintenance retries",
    needs_fix: "fix the cause named above; readers are not affected, small files and old snapshots wait for the next run",
};

/// What maintenance did to one table.
#[derive(Debug, Clone)]
pub struct TableMaintenance {
    /// The table.
    pub table: &'static str,
    /// Its compaction.
    pub compaction: tributary_iceberg::CompactReport,
    /// Its expiry.
    pub expiry: tributary_iceberg::ExpireReport,
}

/// Compacts every table's small files, then expires old snapshots and
/// deletes the files only they reached, table by table. Safe beside a
/// transform: each commit retries on a newer version.
pub async fn maintain(
    processed: &Lake,
    options: &tributary_iceberg::MaintainOptions,
) -> Result<Vec<TableMaintenance>> {
    let catalog = Catalog::new(processed.clone());
    let mut out = Vec::new();
    for table in &WAREHOUSE_TABLES {
        let def = table_def(table);
        let compaction = catalog.compact(&def, options).await?;
        let expiry = catalog.expire(&def, options, chrono::Utc::now()).await?;
        out.push(TableMaintenance {
            table: table.name,
            compaction,
            expiry,
        });
    }
    Ok(out)
}
