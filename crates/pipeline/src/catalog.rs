//! The catalog: the processed lake's tables, so Athena can query it without
//! a crawler.
//!
//! Every processed dataset is an Apache Iceberg table ([`crate::lakehouse`]).
//! After a transform, [`sync_pending`] registers each table at its current
//! metadata file (columns from the same Arrow schemas the files are written
//! with, for people browsing the catalog) with a [`Catalog`]: the Glue Data
//! Catalog in AWS (`tributary-aws`), nothing locally. Maintenance registers
//! the versions it commits the same way ([`iceberg_specs`]).

use std::{collections::BTreeMap, future::Future, pin::Pin};

use arrow_schema::{DataType, TimeUnit};
use tributary_lake::{Lake, Log, Manifest, ManifestLog};

use crate::Result;

/// One table of the catalog: an Apache Iceberg table at a metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Catalog table name, e.g. `fact_sales_order`, `markets_trades`.
    pub name: String,
    /// The table's location: the lake root URL and the table's prefix,
    /// without a trailing slash.
    pub location: String,
    /// Columns as (name, Hive type), for people browsing the catalog.
    pub columns: Vec<(String, String)>,
    /// The current metadata file. Readers plan the table's files from it.
    pub metadata_location: String,
}

/// Where tables are registered.
pub trait Catalog: Send + Sync {
    /// Creates each table, or points it at its new metadata file.
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

/// The processed lake's Iceberg tables as the catalog registers them: each
/// at its current metadata file, with its columns for people browsing the
/// catalog (readers take the schema from the metadata). Tables not
/// published yet are left out.
pub async fn iceberg_specs(processed: &Lake) -> Result<Vec<TableSpec>> {
    let catalog = tributary_iceberg::Catalog::new(processed.clone());
    let mut specs = Vec::new();
    for def in crate::lakehouse::all_defs() {
        let Some(current) = catalog.load(&def.location).await? else {
            continue;
        };
        specs.push(TableSpec {
            name: def.name.clone(),
            location: catalog.url_of(&def.location),
            columns: def
                .schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), hive_type(f.data_type())))
                .collect(),
            metadata_location: catalog.metadata_url(&def.location, &current),
        });
    }
    Ok(specs)
}

/// What the catalog log remembers: the last manifest registered per log.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CatalogState {
    synced: BTreeMap<String, u64>,
}

/// Registers every Iceberg table at its current version once either
/// transform log has moved since the last sync, then records how far it got
/// in the catalog's own log. A failed sync is alerted and left for the next
/// call, which retries it whether or not anything new was transformed.
/// Returns the number of tables registered.
pub async fn sync_pending(
    catalog: &dyn Catalog,
    processed: &Lake,
    alerts: &dyn crate::alerts::Alerts,
) -> Result<usize> {
    let result = sync_pending_run(catalog, processed).await;
    if let Err(error) = &result {
        alerts
            .send(&crate::alerts::Alert {
                stage: "transform",
                run_id: "-".into(),
                table: None,
                message: format!("catalog sync failed: {error}"),
                action: "the processed data is committed; Athena reads the tables' earlier versions until the next transform invocation registers the new ones (invoke transform with {} to retry now)".into(),
            })
            .await;
    }
    result
}

async fn sync_pending_run(catalog: &dyn Catalog, processed: &Lake) -> Result<usize> {
    let log = ManifestLog::new(processed.clone(), Log::Catalog);
    let previous: Option<Manifest<CatalogState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let mut state = previous.map(|m| m.state).unwrap_or_default();
    let mut changed = false;
    for source in [Log::Transform, Log::MarketsTransform] {
        let latest = ManifestLog::new(processed.clone(), source)
            .latest_seq()
            .await?;
        if state.synced.get(source.name()).copied().unwrap_or(0) < latest {
            state.synced.insert(source.to_string(), latest);
            changed = true;
        }
    }
    if !changed {
        return Ok(0);
    }
    let tables = iceberg_specs(processed).await?;
    catalog.sync(&tables).await?;
    let run_id = tributary_lake::RunId::now();
    log.commit(previous_seq, &run_id, chrono::Utc::now(), Vec::new(), state)
        .await?;
    Ok(tables.len())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    async fn commit(lake: &Lake, log: Log) {
        let log = ManifestLog::new(lake.clone(), log);
        let previous = log.latest_seq().await.unwrap();
        log.commit(
            previous,
            &tributary_lake::RunId::now(),
            chrono::Utc::now(),
            Vec::new(),
            (),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn tables_are_registered_at_their_version_once_and_a_failed_sync_is_retried() {
        let lake = Lake::from_url("memory://").unwrap();
        let iceberg = tributary_iceberg::Catalog::new(lake.clone());
        let dim_date = crate::lakehouse::table_def(
            tributary_warehouse::tables::WarehouseTable::by_name("dim_date").unwrap(),
        );
        let table = iceberg.load_or_create(&dim_date).await.unwrap();
        let catalog = Recording::default();
        let alerts = crate::alerts::RecordedAlerts::default();
        commit(&lake, Log::Transform).await;

        // The catalog is down: nothing is recorded as synced, and an alert says so.
        catalog
            .fail
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(sync_pending(&catalog, &lake, &alerts).await.is_err());
        assert!(alerts.sent()[0].message.contains("catalog sync failed"));
        catalog
            .fail
            .store(false, std::sync::atomic::Ordering::SeqCst);

        // The next call registers the table although nothing is new.
        assert_eq!(sync_pending(&catalog, &lake, &alerts).await.unwrap(), 1);
        {
            let synced = catalog.synced.lock().unwrap();
            assert_eq!(synced[0].name, "dim_date");
            assert_eq!(
                synced[0].metadata_location,
                iceberg.metadata_url(&dim_date.location, &table)
            );
        }
        // Then only when a log moves.
        assert_eq!(sync_pending(&catalog, &lake, &alerts).await.unwrap(), 0);
        commit(&lake, Log::MarketsTransform).await;
        assert_eq!(sync_pending(&catalog, &lake, &alerts).await.unwrap(), 1);
        assert_eq!(catalog.synced.lock().unwrap().len(), 2);
        assert_eq!(alerts.sent().len(), 1);
    }

    #[tokio::test]
    async fn no_catalog_accepts_anything() {
        NoCatalog.sync(&[]).await.unwrap();
    }
}
