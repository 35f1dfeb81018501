//! The catalog: tables and partitions of the processed lake, so Athena can
//! query it without a crawler.
//!
//! After a transform commits, [`sync_manifest`] describes each dataset the
//! manifest wrote to (columns from the same Arrow schemas the files are
//! written with, the partition key from the object keys) and hands it to a
//! [`Catalog`]: the Glue Data Catalog in AWS (`tributary-aws`), nothing locally.

use std::{collections::BTreeMap, future::Future, pin::Pin};

use arrow_schema::{DataType, SchemaRef, TimeUnit};
use tributary_lake::Log;
use tributary_lake::{
    Lake, Manifest, ManifestLog,
    keys::{self, ProcessedDataset},
};

use crate::Result;

/// One table of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Catalog table name, e.g. `fact_sales_order`, `markets_trades`.
    pub name: String,
    /// Where its files live: the lake root URL and the dataset prefix, with
    /// a trailing slash.
    pub location: String,
    /// Columns as (name, Hive type).
    pub columns: Vec<(String, String)>,
    /// Partition columns (Hive type `string`), e.g. `date`.
    pub partition_keys: Vec<String>,
    /// Partitions written: the partition values and their location.
    pub partitions: Vec<PartitionSpec>,
    /// For an Apache Iceberg table: its current metadata file. Readers plan
    /// its files from there; it has no Hive partitions.
    pub iceberg_metadata: Option<String>,
}

impl TableSpec {
    /// Whether a partition lives where Hive would put it: the table's
    /// location, then `key=value/` per partition key.
    pub fn is_default_location(&self, partition: &PartitionSpec) -> bool {
        let mut default = self.location.clone();
        for (key, value) in self.partition_keys.iter().zip(&partition.values) {
            default.push_str(&format!("{key}={value}/"));
        }
        partition.location == default
    }
}

/// One partition of a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionSpec {
    /// One value per partition key, e.g. `["2024-02-23"]`.
    pub values: Vec<String>,
    /// Its location, with a trailing slash.
    pub location: String,
}

/// Where tables and partitions are registered.
pub trait Catalog: Send + Sync {
    /// Creates or updates each table and adds its partitions; present
    /// partitions are left as they are.
    fn sync<'a>(
        &'a self,
        tables: &'a [TableSpec],
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
}

/// Local runs: no catalog.
#[derive(Debug, Default, Clone)]
pub struct NoCatalog;

impl Catalog for NoCatalog {
    fn sync<'a>(
        &'a self,
        _tables: &'a [TableSpec],
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async { Ok(()) })
    }
}

/// A processed dataset as the catalog sees it: its prefix, catalog name,
/// schema and partition key.
struct Dataset {
    prefix: String,
    name: String,
    schema: SchemaRef,
    partition_key: &'static str,
}

/// The dataset a processed key belongs to, its partition value and the
/// partition's directory (`keys::parse_processed`). Keys outside the
/// cataloged datasets (state, manifests, the asset snapshots, which are
/// whole snapshots rather than a growing table) give `None`. A compacted
/// generation of a closed day is that day's partition of `markets_trades`,
/// located at its generation.
fn dataset_of(key: &str) -> Option<(Dataset, String, String)> {
    let file = keys::parse_processed(key)?;
    let (name, schema) = match &file.dataset {
        // The star schema's tables are Iceberg tables ([`iceberg_specs`]):
        // directories of run files would show every version of a dimension.
        ProcessedDataset::Warehouse(_) => return None,
        ProcessedDataset::Trades => (
            "markets_trades".to_string(),
            tributary_markets::rollup::trades_schema(),
        ),
        ProcessedDataset::OhlcvHistory => (
            "markets_ohlcv_history".to_string(),
            tributary_markets::rollup::history_schema(),
        ),
        ProcessedDataset::OhlcvDaily => (
            "markets_ohlcv_daily".to_string(),
            tributary_markets::rollup::ohlcv_schema(),
        ),
        _ => return None,
    };
    let dataset = Dataset {
        prefix: file.dataset.prefix(),
        name,
        schema,
        partition_key: file.dataset.partition_key(),
    };
    Some((dataset, file.partition, file.dir))
}

/// Which of two directories of one partition is current: a compacted
/// generation over the small files, and a later generation over an earlier
/// one (run ids sort by time).
fn newer_location(current: &str, candidate: &str) -> bool {
    let generation = |dir: &str| dir.rsplit_once("/gen=").map(|(_, g)| g.to_string());
    match (generation(current), generation(candidate)) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => b > a,
        _ => false,
    }
}

/// The Hive type Athena reads an Arrow column as. Times of day are stored
/// as Parquet TIME(MICROS), which the Hive type system lacks: they are
/// declared `bigint` (microseconds since midnight).
pub fn hive_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "int".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Time32(_) | DataType::Time64(TimeUnit::Microsecond | TimeUnit::Nanosecond) => {
            "bigint".into()
        }
        DataType::Time64(_) => "bigint".into(),
        DataType::Binary | DataType::LargeBinary => "binary".into(),
        _ => "string".into(),
    }
}

/// Describes the datasets and partitions that `keys` were written to, with
/// locations under the lake root `root_url` (e.g. `s3://bucket/prefix`).
pub fn table_specs<'a>(root_url: &str, keys: impl IntoIterator<Item = &'a str>) -> Vec<TableSpec> {
    let root = root_url.trim_end_matches('/');
    let mut tables: BTreeMap<String, TableSpec> = BTreeMap::new();
    for key in keys {
        let Some((dataset, value, dir)) = dataset_of(key) else {
            continue;
        };
        let spec = tables
            .entry(dataset.name.clone())
            .or_insert_with(|| TableSpec {
                name: dataset.name.clone(),
                location: format!("{root}/{}/", dataset.prefix),
                columns: dataset
                    .schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), hive_type(f.data_type())))
                    .collect(),
                partition_keys: vec![dataset.partition_key.to_string()],
                partitions: Vec::new(),
                iceberg_metadata: None,
            });
        let location = format!("{root}/{dir}/");
        match spec
            .partitions
            .iter_mut()
            .find(|p| p.values == [value.clone()])
        {
            Some(existing) => {
                if newer_location(&existing.location, &location) {
                    existing.location = location;
                }
            }
            None => spec.partitions.push(PartitionSpec {
                values: vec![value],
                location,
            }),
        }
    }
    let mut tables: Vec<TableSpec> = tables.into_values().collect();
    for t in &mut tables {
        t.partitions.sort();
    }
    tables
}

/// Registers what processed manifests `seqs` of log `source` wrote, in one
/// sync (a partition named by several of them is registered once, at its
/// newest location). Returns the number of partitions named.
async fn sync_manifests(
    catalog: &dyn Catalog,
    processed: &Lake,
    root_url: &str,
    log: Log,
    seqs: std::ops::RangeInclusive<u64>,
) -> Result<usize> {
    let log = ManifestLog::new(processed.clone(), log);
    let mut keys = Vec::new();
    for seq in seqs {
        let manifest: Option<Manifest<serde_json::Value>> = log.read(seq).await?;
        keys.extend(manifest.into_iter().flat_map(|m| m.files).map(|f| f.key));
    }
    let tables = table_specs(root_url, keys.iter().map(String::as_str));
    catalog.sync(&tables).await?;
    Ok(tables.iter().map(|t| t.partitions.len()).sum())
}

/// The star schema's Iceberg tables as the catalog registers them: each
/// at its current metadata file, with its columns for people browsing the
/// catalog (readers take the schema from the metadata).
pub async fn iceberg_specs(processed: &Lake) -> Result<Vec<TableSpec>> {
    let catalog = tributary_iceberg::Catalog::new(processed.clone());
    let mut specs = Vec::new();
    for table in &tributary_warehouse::tables::WAREHOUSE_TABLES {
        let def = crate::lakehouse::table_def(table);
        let Some(current) = catalog.load(&def.location).await? else {
            continue;
        };
        specs.push(TableSpec {
            name: table.name.to_string(),
            location: format!("{}/", catalog.url_of(&def.location)),
            columns: def
                .schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), hive_type(f.data_type())))
                .collect(),
            partition_keys: Vec::new(),
            partitions: Vec::new(),
            iceberg_metadata: Some(catalog.metadata_url(&def.location, &current)),
        });
    }
    Ok(specs)
}

/// What the catalog log remembers: the last manifest registered per log.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CatalogState {
    synced: BTreeMap<String, u64>,
}

/// Registers every processed manifest (of the transform and markets
/// transform logs) not yet in the catalog, then records how far it got in
/// the catalog's own log. A failed sync is alerted and left for the next
/// call, which retries it whether or not anything new was transformed.
/// Returns the number of partitions and Iceberg tables registered.
pub async fn sync_pending(
    catalog: &dyn Catalog,
    processed: &Lake,
    root_url: &str,
    alerts: &dyn crate::alerts::Alerts,
) -> Result<usize> {
    let result = sync_pending_run(catalog, processed, root_url).await;
    if let Err(error) = &result {
        alerts
            .send(&crate::alerts::Alert {
                stage: "transform",
                run_id: "-".into(),
                table: None,
                message: format!("catalog sync failed: {error}"),
                action: "the processed data is committed; Athena misses the new partitions until the next transform invocation registers them (invoke transform with {} to retry now)".into(),
            })
            .await;
    }
    result
}

async fn sync_pending_run(
    catalog: &dyn Catalog,
    processed: &Lake,
    root_url: &str,
) -> Result<usize> {
    let log = ManifestLog::new(processed.clone(), Log::Catalog);
    let previous: Option<Manifest<CatalogState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let mut state = previous.map(|m| m.state).unwrap_or_default();
    let mut partitions = 0;
    let mut changed = false;
    for source in [Log::Transform, Log::MarketsTransform] {
        let latest = ManifestLog::new(processed.clone(), source)
            .latest_seq()
            .await?;
        let first = state.synced.get(source.name()).copied().unwrap_or(0) + 1;
        if first > latest {
            continue;
        }
        partitions += sync_manifests(catalog, processed, root_url, source, first..=latest).await?;
        if source == Log::Transform {
            let tables = iceberg_specs(processed).await?;
            catalog.sync(&tables).await?;
            partitions += tables.len();
        }
        state.synced.insert(source.to_string(), latest);
        changed = true;
    }
    if changed {
        let run_id = tributary_lake::RunId::now();
        log.commit(previous_seq, &run_id, chrono::Utc::now(), Vec::new(), state)
            .await?;
    }
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_tables_columns_and_partitions_from_keys() {
        let keys = [
            "warehouse/fact_payment/date=2024-02-23/r1.parquet",
            "warehouse/fact_payment/date=2024-02-23/r1-0002.parquet",
            "warehouse/fact_payment/date=2024-02-24/r1.parquet",
            "markets/trades/date=2026-11-22/r2.parquet",
            "markets/ohlcv_daily/year=2026/r2.parquet",
            "markets/ohlcv_history/year=2020/r3.parquet",
            "markets/assets/r2.parquet",
            "_state/transform/r1/reference.parquet",
            "warehouse/not_a_table/date=2024-02-23/r1.parquet",
        ];
        let specs = table_specs("s3://processed/lake/", keys);
        let names: Vec<&str> = specs.iter().map(|t| t.name.as_str()).collect();
        // The star schema's tables are Iceberg tables, not Hive partitions.
        assert_eq!(
            names,
            [
                "markets_ohlcv_daily",
                "markets_ohlcv_history",
                "markets_trades"
            ]
        );
        let trades = &specs[2];
        assert_eq!(trades.location, "s3://processed/lake/markets/trades/");
        assert_eq!(trades.partition_keys, ["date"]);
        assert_eq!(
            trades.partitions,
            [PartitionSpec {
                values: vec!["2026-11-22".into()],
                location: "s3://processed/lake/markets/trades/date=2026-11-22/".into()
            }]
        );
        assert!(trades.iceberg_metadata.is_none());
        assert_eq!(specs[0].partition_keys, ["year"]);
        assert_eq!(specs[0].partitions[0].values, ["2026"]);
    }

    #[test]
    fn a_compacted_generation_is_the_partition_of_its_day() {
        let specs = table_specs(
            "s3://p",
            [
                "markets/trades/date=2026-11-01/r5.parquet",
                "markets/trades_compacted/date=2026-11-01/gen=20261105T000000000Z-aaaaaa/trades.parquet",
                "markets/trades_compacted/date=2026-11-01/gen=20261104T000000000Z-bbbbbb/trades.parquet",
                "markets/trades/date=2026-11-05/r5.parquet",
            ],
        );
        assert_eq!(specs.len(), 1);
        let locations: Vec<&str> = specs[0]
            .partitions
            .iter()
            .map(|p| p.location.as_str())
            .collect();
        assert_eq!(
            locations,
            [
                "s3://p/markets/trades_compacted/date=2026-11-01/gen=20261105T000000000Z-aaaaaa/",
                "s3://p/markets/trades/date=2026-11-05/",
            ]
        );
        assert_eq!(specs[0].location, "s3://p/markets/trades/");
        assert!(
            !specs[0].is_default_location(&specs[0].partitions[0]),
            "a generation"
        );
        assert!(
            specs[0].is_default_location(&specs[0].partitions[1]),
            "small files"
        );
    }

    #[test]
    fn hive_types_cover_the_lake_types() {
        assert_eq!(hive_type(&DataType::Utf8), "string");
        assert_eq!(hive_type(&DataType::Boolean), "boolean");
        assert_eq!(hive_type(&DataType::Date32), "date");
        assert_eq!(hive_type(&DataType::Int32), "int");
        assert_eq!(hive_type(&DataType::Int64), "bigint");
        assert_eq!(hive_type(&DataType::Decimal128(38, 18)), "decimal(38,18)");
        assert_eq!(
            hive_type(&DataType::Timestamp(TimeUnit::Millisecond, None)),
            "timestamp"
        );
        assert_eq!(
            hive_type(&DataType::Time64(TimeUnit::Microsecond)),
            "bigint"
        );
    }

    /// Records what it is asked to sync; fails while `fail` is set.
    #[derive(Default)]
    struct Recording {
        synced: std::sync::Mutex<Vec<TableSpec>>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Catalog for Recording {
        fn sync<'a>(
            &'a self,
            tables: &'a [TableSpec],
        ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
            Box::pin(async move {
                if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(crate::Error::Aws {
                        source: "glue unreachable".into(),
                        retryable: true,
                    });
                }
                self.synced.lock().unwrap().extend_from_slice(tables);
                Ok(())
            })
        }
    }

    async fn commit(lake: &Lake, log: Log, key: &str) {
        let log = ManifestLog::new(lake.clone(), log);
        let previous = log.latest_seq().await.unwrap();
        let file = lake
            .put_file(key, "t", 1, bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
        log.commit(
            previous,
            &tributary_lake::RunId::now(),
            chrono::Utc::now(),
            vec![file],
            (),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn pending_manifests_are_registered_once_and_a_failed_sync_is_retried() {
        let lake = Lake::from_url("memory://").unwrap();
        let catalog = Recording::default();
        let alerts = crate::alerts::RecordedAlerts::default();
        commit(
            &lake,
            Log::Transform,
            "warehouse/dim_date/date=2024-01-01/a.parquet",
        )
        .await;
        commit(
            &lake,
            Log::MarketsTransform,
            "markets/trades/date=2024-01-01/b.parquet",
        )
        .await;

        // The catalog is down: nothing is recorded as synced, and an alert says so.
        catalog
            .fail
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            sync_pending(&catalog, &lake, "s3://p", &alerts)
                .await
                .is_err()
        );
        assert!(alerts.sent()[0].message.contains("catalog sync failed"));
        catalog
            .fail
            .store(false, std::sync::atomic::Ordering::SeqCst);

        // The next call registers both logs' manifests although nothing is
        // new (the transform log's dim_date is an Iceberg table, registered
        // once published: none is here).
        assert_eq!(
            sync_pending(&catalog, &lake, "s3://p", &alerts)
                .await
                .unwrap(),
            1
        );
        let names: Vec<String> = catalog
            .synced
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        assert_eq!(names, ["markets_trades"]);
        // Then only what is new.
        assert_eq!(
            sync_pending(&catalog, &lake, "s3://p", &alerts)
                .await
                .unwrap(),
            0
        );
        commit(
            &lake,
            Log::MarketsTransform,
            "markets/trades/date=2024-01-02/c.parquet",
        )
        .await;
        assert_eq!(
            sync_pending(&catalog, &lake, "s3://p", &alerts)
                .await
                .unwrap(),
            1
        );
        assert_eq!(catalog.synced.lock().unwrap().len(), 2);
        assert_eq!(alerts.sent().len(), 1);
    }

    #[tokio::test]
    async fn no_catalog_accepts_anything() {
        NoCatalog
            .sync(&table_specs(
                "file:///x",
                ["warehouse/dim_date/date=2024-01-01/r.parquet"],
            ))
            .await
            .unwrap();
    }
}
