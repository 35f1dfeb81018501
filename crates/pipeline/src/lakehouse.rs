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
//! (copy-on-write of the files holding those keys). The markets transform's
//! log feeds the markets tables the same way ([`publish_markets`],
//! [`markets_defs`]). [`run_maintenance`] is the maintenance stage.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, TryStreamExt};
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

/// Where the highest transform manifest every star-schema table has seen is
/// noted: a hint that bounds the manifests a publication reads. The tables'
/// watermarks are the truth.
pub const PUBLISHED_HINT: &str = "_state/iceberg/transform-published";

/// The same for the markets transform's tables.
pub const MARKETS_PUBLISHED_HINT: &str = "_state/iceberg/markets-published";

/// The Iceberg table of a warehouse table, in the processed lake at
/// `warehouse/<name>`, beside the files the transform writes.
pub fn table_def(table: &WarehouseTable) -> TableDef {
    let (partitioning, rows) = match table.kind {
        Kind::Fact { .. } => (Partitioning::Month("created_date".into()), Rows::Append),
        Kind::Dimension | Kind::History | Kind::Date => (
            Partitioning::None,
            Rows::ReplaceByKey(vec![table.key.into()]),
        ),
    };
    TableDef {
        name: table.name.into(),
        location: format!("warehouse/{}", table.name),
        schema: table.arrow_schema(),
        partitioning,
        rows,
    }
}

/// One Iceberg table fed by a processed log: its definition, and the
/// dataset name its files carry in that log's manifests.
#[derive(Debug, Clone)]
pub struct Projected {
    /// The table.
    pub def: TableDef,
    /// `FileEntry::table` of its files.
    pub dataset: &'static str,
}

/// The markets transform's tables: trades (append-only, by day of
/// `traded_at`), daily bars from trades and from candles (current bar per
/// symbol and day), and the newest CoinCap assets snapshot. The compacted
/// generations of closed days are not published: they repeat trades the
/// table has, and Iceberg compaction does their job.
pub fn markets_defs() -> Vec<Projected> {
    use tributary_markets::rollup::{assets_schema, history_schema, ohlcv_schema, trades_schema};
    let bars = || Rows::ReplaceByKey(vec!["symbol".into(), "day".into()]);
    vec![
        Projected {
            def: TableDef {
                name: "markets_trades".into(),
                location: "markets/trades".into(),
                schema: trades_schema(),
                partitioning: Partitioning::Day("traded_at".into()),
                rows: Rows::Append,
            },
            dataset: "trades",
        },
        Projected {
            def: TableDef {
                name: "markets_ohlcv_daily".into(),
                location: "markets/ohlcv_daily".into(),
                schema: ohlcv_schema(),
                partitioning: Partitioning::Month("day".into()),
                rows: bars(),
            },
            dataset: "ohlcv_daily",
        },
        Projected {
            def: TableDef {
                name: "markets_ohlcv_history".into(),
                location: "markets/ohlcv_history".into(),
                schema: history_schema(),
                partitioning: Partitioning::None,
                rows: bars(),
            },
            dataset: "ohlcv_history",
        },
        Projected {
            def: TableDef {
                name: "markets_assets".into(),
                location: "markets/assets".into(),
                schema: assets_schema(),
                partitioning: Partitioning::None,
                rows: Rows::Snapshot,
            },
            dataset: "assets",
        },
    ]
}

/// Every Iceberg table of the processed lake: the star schema's, then the
/// markets'.
pub fn all_defs() -> Vec<TableDef> {
    WAREHOUSE_TABLES
        .iter()
        .map(table_def)
        .chain(markets_defs().into_iter().map(|p| p.def))
        .collect()
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

/// Publishes every transform manifest not yet in the star schema's tables.
pub async fn publish(processed: &Lake) -> Result<PublishReport> {
    let tables: Vec<Projected> = WAREHOUSE_TABLES
        .iter()
        .map(|t| Projected {
            def: table_def(t),
            dataset: t.name,
        })
        .collect();
    publish_log(processed, Log::Transform, PUBLISHED_HINT, &tables).await
}

/// Publishes every markets transform manifest not yet in the markets tables.
pub async fn publish_markets(processed: &Lake) -> Result<PublishReport> {
    publish_log(
        processed,
        Log::MarketsTransform,
        MARKETS_PUBLISHED_HINT,
        &markets_defs(),
    )
    .await
}

async fn publish_log(
    processed: &Lake,
    source: Log,
    hint_key: &str,
    tables: &[Projected],
) -> Result<PublishReport> {
    let started = Instant::now();
    let log = ManifestLog::new(processed.clone(), source);
    let latest = log.latest_seq().await?;
    let catalog = Catalog::new(processed.clone());
    let names: Vec<&str> = tables.iter().map(|t| t.def.name.as_str()).collect();
    // The hint holds for the tables it names; a table added since (or
    // removed to be recreated) starts from its own watermark.
    let hint: Option<Hint> = processed
        .get_opt(hint_key)
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|h: &Hint| h.tables == names);
    let from = match hint {
        Some(hint) => hint.seq,
        None => {
            let mut lowest = latest;
            for table in tables {
                let seen = catalog
                    .load(&table.def.location)
                    .await?
                    .and_then(|t| t.watermark())
                    .unwrap_or(0);
                lowest = lowest.min(seen);
            }
            lowest
        }
    };
    let mut report = PublishReport::default();
    if from >= latest {
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    let manifests: Vec<Manifest<RunState>> = log.read_range(from + 1..=latest).await?;
    report.manifests = manifests.iter().map(|m| m.seq).collect();
    let work = tables.iter().map(|table| {
        let catalog = &catalog;
        let manifests = &manifests;
        async move { publish_table(catalog, table, manifests).await }
    });
    let results: Vec<TableReport> = futures_util::stream::iter(work)
        .buffer_unordered(4)
        .try_collect()
        .await?;
    for table in results {
        report.commits.extend(table.commits);
        report.already += table.already;
        report.rewritten_files += table.rewritten_files;
    }
    let hint = Hint {
        seq: latest,
        tables: names.iter().map(|n| n.to_string()).collect(),
    };
    processed
        .put_replace(hint_key, bytes::Bytes::from(serde_json::to_vec(&hint)?))
        .await?;
    report.elapsed = started.elapsed();
    tracing::info!(
        stage = STAGE.name,
        log = source.name(),
        manifests = report.manifests.len(),
        commits = report.commits.len(),
        already = report.already,
        ms = report.elapsed.as_millis() as u64,
        "iceberg tables published"
    );
    Ok(report)
}

/// The publication hint: every table named has seen manifest `seq`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Hint {
    seq: u64,
    tables: Vec<String>,
}

/// What publication reads of a processed manifest's state: the raw
/// manifests it consumed (the rest, such as the version index, is skipped).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RunState {
    inputs: Vec<u64>,
    rebuild: bool,
    sink_seq: Option<u64>,
    poll_seq: Option<u64>,
    candles_seq: Option<u64>,
}

/// Manifests an append-only table takes in one commit when catching up.
const MANIFESTS_PER_APPEND: usize = 240;

#[derive(Debug, Default)]
struct TableReport {
    commits: Vec<(String, u64, Duration)>,
    already: u64,
    rewritten_files: u64,
}

/// The raw manifests processed manifests consumed, as their states record
/// them: the totesys transform's `inputs`, the markets transform's last
/// sink, poll and candle manifests.
fn raw_manifests(states: &[&RunState]) -> String {
    let inputs: Vec<u64> = states
        .iter()
        .flat_map(|s| s.inputs.iter().copied())
        .collect();
    if let (Some(a), Some(b)) = (inputs.iter().min(), inputs.iter().max()) {
        return if a == b {
            format!("totesys:{a}")
        } else {
            format!("totesys:{a}-{b}")
        };
    }
    let Some(last) = states.last() else {
        return String::new();
    };
    [
        (Log::MarketsTrades, last.sink_seq),
        (Log::MarketsPoll, last.poll_seq),
        (Log::MarketsCandles, last.candles_seq),
    ]
    .iter()
    .filter_map(|(log, seq)| Some(format!("{}:..{}", log.name(), (*seq)?)))
    .collect::<Vec<_>>()
    .join(",")
}

async fn publish_table(
    catalog: &Catalog,
    table: &Projected,
    manifests: &[Manifest<RunState>],
) -> Result<TableReport> {
    let mut report = TableReport::default();
    // Manifests with files for this table, in order; a table no pending
    // manifest touches costs no read at all.
    let touched: Vec<(&Manifest<RunState>, Vec<NewFile>)> = manifests
        .iter()
        .map(|m| {
            let files: Vec<NewFile> = m
                .files
                .iter()
                .filter(|f| f.table == table.dataset)
                .map(|f| NewFile {
                    key: f.key.clone(),
                    bytes: f.bytes,
                })
                .collect();
            (m, files)
        })
        .filter(|(_, files)| !files.is_empty())
        .collect();
    if touched.is_empty() {
        return Ok(report);
    }
    let have = catalog
        .load(&table.def.location)
        .await?
        .and_then(|t| t.watermark())
        .unwrap_or(0);
    // An append-only table takes consecutive manifests in one commit (a
    // catch-up is a few commits, not one per manifest); a replace takes one
    // manifest at a time, since a later manifest's rows replace an earlier
    // one's.
    let pending: Vec<_> = touched.into_iter().filter(|(m, _)| m.seq > have).collect();
    let per_commit = match table.def.rows {
        Rows::Append => MANIFESTS_PER_APPEND,
        _ => 1,
    };
    for group in pending.chunks(per_commit) {
        let (first, last) = (group[0].0, group[group.len() - 1].0);
        let states: Vec<&RunState> = group.iter().map(|(m, _)| &m.state).collect();
        let seqs = if first.seq == last.seq {
            last.seq.to_string()
        } else {
            format!("{}-{}", first.seq, last.seq)
        };
        let change = Change {
            files: group.iter().flat_map(|(_, f)| f.iter().cloned()).collect(),
            watermark: Some(last.seq),
            properties: BTreeMap::from([
                ("tributary.run-id".into(), last.run_id.to_string()),
                ("tributary.processed-seq".into(), seqs),
                ("tributary.raw-manifests".into(), raw_manifests(&states)),
                (
                    "tributary.rebuild".into(),
                    states.iter().any(|s| s.rebuild).to_string(),
                ),
            ]),
            after: None,
        };
        match catalog.commit(&table.def, &change).await? {
            Outcome::Committed(done) => {
                report.rewritten_files += done.removed_files;
                report.commits.push((
                    table.def.name.clone(),
                    last.seq,
                    Duration::from_millis(done.millis),
                ));
            }
            // (`after` is not set: a change here is one manifest, or
            // appends a watermark check covers.)
            Outcome::AlreadyCommitted | Outcome::Overlap(_) => report.already += 1,
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
    pub table: String,
    /// Its compaction.
    pub compaction: tributary_iceberg::CompactReport,
    /// Its expiry.
    pub expiry: tributary_iceberg::ExpireReport,
}

/// What one maintenance run did.
#[derive(Debug, Clone, Default)]
pub struct MaintainReport {
    /// The tables maintained.
    pub tables: Vec<TableMaintenance>,
    /// The tables that failed, with the error; the others went on.
    pub failed: Vec<(String, String)>,
}

impl MaintainReport {
    /// `Err` naming every table that failed.
    pub fn result(&self) -> Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        Err(crate::Error::Maintenance(
            self.failed
                .iter()
                .map(|(t, e)| format!("{t}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }
}

/// Compacts the small files of every table of `defs` ([`all_defs`], or
/// the configured sources' [`crate::source_tables::table_defs`]), then expires old snapshots and
/// deletes the files only they reached, table by table; a table that fails
/// is reported and the others go on. Safe beside a transform: each commit
/// retries on a newer version.
pub async fn maintain(
    processed: &Lake,
    defs: Vec<TableDef>,
    options: &tributary_iceberg::MaintainOptions,
) -> MaintainReport {
    let catalog = Catalog::new(processed.clone());
    let mut report = MaintainReport::default();
    for def in defs {
        let done = async {
            let compaction = catalog.compact(&def, options).await?;
            let expiry = catalog.expire(&def, options, chrono::Utc::now()).await?;
            Ok::<_, tributary_iceberg::Error>((compaction, expiry))
        }
        .await;
        match done {
            Ok((compaction, expiry)) => report.tables.push(TableMaintenance {
                table: def.name,
                compaction,
                expiry,
            }),
            Err(error) => {
                tracing::error!(stage = MAINTAIN_STAGE.name, table = %def.name, %error, "maintenance failed");
                report.failed.push((def.name, error.to_string()));
            }
        }
    }
    report
}

/// The maintenance stage: [`maintain`] the star schema's and the markets'
/// tables; publish what the configured sources' tables miss (a publication
/// event lost or failed; each source its own stage, alerted apart) and
/// maintain those tables; then point `catalog` at the versions it committed
/// (even when a table failed) and register the raw zone's tables again
/// (one deleted or changed by hand comes back: the transform registers
/// them only when their definitions change), then alert any maintenance
/// failure. The CLI and the transform function call this.
pub async fn run_maintenance(
    raw: &Lake,
    processed: &Lake,
    options: &tributary_iceberg::MaintainOptions,
    catalog: &dyn crate::catalog::Catalog,
    alerts: &dyn crate::alerts::Alerts,
) -> Result<MaintainReport> {
    let mut done = maintain(processed, all_defs(), options).await;
    crate::source_tables::publish_all(raw, processed, None, alerts).await;
    let mut source_specs = Vec::new();
    match crate::source_tables::table_defs(raw).await {
        Ok(defs) => {
            let sources = maintain(processed, defs.clone(), options).await;
            done.tables.extend(sources.tables);
            done.failed.extend(sources.failed);
            match crate::catalog::specs_of(processed, defs).await {
                Ok(specs) => source_specs = specs,
                Err(error) => done
                    .failed
                    .push(("the sources' tables".to_string(), error.to_string())),
            }
        }
        Err(error) => done
            .failed
            .push(("the sources' tables".to_string(), error.to_string())),
    }
    MAINTAIN_STAGE
        .run(alerts, |_| async move {
            let mut tables = crate::catalog::iceberg_specs(processed).await?;
            tables.extend(source_specs);
            tables.extend(crate::catalog::all_raw_specs(raw).await?);
            catalog.sync(&tables).await?;
            done.result()?;
            Ok(done)
        })
        .await
}

#[cfg(test)]
mod tests {
    use arrow_schema::DataType;

    /// Athena reads Iceberg `boolean, int, long, float, double, decimal,
    /// date, timestamp, timestamptz, string, binary` (and nested types):
    /// no `time` (a time of day is a `long` of microseconds), no unsigned
    /// or small integers, no `fixed`.
    #[test]
    fn every_table_uses_only_types_athena_reads() {
        for def in super::all_defs() {
            for field in def.schema.fields() {
                let readable = matches!(
                    field.data_type(),
                    DataType::Boolean
                        | DataType::Int32
                        | DataType::Int64
                        | DataType::Float32
                        | DataType::Float64
                        | DataType::Decimal128(..)
                        | DataType::Date32
                        | DataType::Timestamp(..)
                        | DataType::Utf8
                        | DataType::Binary
                );
                assert!(
                    readable,
                    "{}.{}: {} has no Athena type",
                    def.name,
                    field.name(),
                    field.data_type()
                );
            }
        }
    }
}
