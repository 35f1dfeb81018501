//! The catalog: the lake's tables, so Athena can query it without a
//! crawler.
//!
//! Every processed dataset is an Apache Iceberg table ([`crate::lakehouse`]).
//! After a transform, [`sync_pending`] registers each table at its current
//! metadata file (columns from the same Arrow schemas the files are written
//! with, for people browsing the catalog) with a [`Catalog`]: the Glue Data
//! Catalog in AWS (`tributary-aws`), nothing locally. Maintenance registers
//! the versions it commits the same way ([`iceberg_specs`]).
//!
//! The raw zone is catalogued as received ([`raw_specs`]): the totesys
//! extracts' Parquet and the market replies' JSON, each dataset one table
//! over its `date=YYYY-MM-DD/` folders, found by partition projection, so no
//! partition is ever registered and a new day is readable at once.

use std::{collections::BTreeMap, future::Future, pin::Pin};

use arrow_schema::DataType;
use tributary_lake::{Lake, Log, Manifest, ManifestLog};

use crate::Result;

/// One table of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Catalog table name, e.g. `fact_sales_order`, `raw_mercado_trades`.
    pub name: String,
    /// The table's location: the lake root URL and the table's prefix,
    /// without a trailing slash.
    pub location: String,
    /// Columns as (name, Hive type). Readers of an Iceberg table take the
    /// schema from its metadata (these are for people browsing); readers of
    /// a raw table read the files with these.
    pub columns: Vec<(String, String)>,
    /// What the files are and how readers find them.
    pub format: TableFormat,
}

/// How a table's files are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableFormat {
    /// An Apache Iceberg table at its current metadata file: readers plan
    /// the table's files from it.
    Iceberg {
        /// The current metadata file.
        metadata_location: String,
    },
    /// Raw files as received under `<location>/date=YYYY-MM-DD/`: readers
    /// find the day folders by partition projection on the string column
    /// `date`, from [`RAW_SINCE`] to today.
    Raw(RawFormat),
}

/// The files of a raw dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    /// Parquet (the totesys extracts).
    Parquet,
    /// gzip JSON, one object a line (trade batches, and replies that are
    /// one JSON object on one line).
    JsonLines,
    /// gzip text, each line one string column `reply` (replies whose top
    /// level is a JSON array, which a JSON SerDe cannot read as a row; SQL
    /// reads them with `json_parse` and `UNNEST`).
    Lines,
}

/// The first day partition projection offers for raw tables.
pub const RAW_SINCE: &str = "2020-01-01";

/// The partition column of raw tables (the lake's `date=` folders).
pub const RAW_PARTITION: &str = "date";

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

/// The Hive type Athena reads an Arrow column as. Times of day in the
/// processed lake are Int64 (microseconds since midnight); a Parquet TIME
/// column, which the Hive type system lacks, is declared `bigint` too.
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
        DataType::Time32(_) | DataType::Time64(_) => "bigint".into(),
        DataType::Binary | DataType::LargeBinary => "binary".into(),
        DataType::List(item) | DataType::LargeList(item) => {
            format!("array<{}>", hive_type(item.data_type()))
        }
        _ => "string".into(),
    }
}

/// Every raw table: [`raw_specs`] with the totesys columns as recorded, and
/// the configured sources' tables ([`source_raw_specs`]).
pub async fn all_raw_specs(raw: &Lake) -> Result<Vec<TableSpec>> {
    let mut specs = raw_specs(raw, &totesys_columns(raw).await?);
    specs.extend(source_raw_specs(raw).await?);
    Ok(specs)
}

/// The configured sources' raw tables: for each source whose manifest log
/// the raw lake holds (`sources/<name>/`), one table per table its latest
/// manifest records, `raw_src_<source>_<table>`, over the Parquet files of
/// its `date=` folders (what was read or parsed; a file drop's received
/// files, key sets and tombstones sit beside them, outside the folders the
/// table reads), with the columns as last read.
pub async fn source_raw_specs(raw: &Lake) -> Result<Vec<TableSpec>> {
    let at = |prefix: &str| format!("{}/{prefix}", raw.url().trim_end_matches('/'));
    let mut specs = Vec::new();
    for source in raw.folders("sources").await? {
        let lake = tributary_sources::ingest::source_lake(raw, &source);
        let latest: Option<Manifest<tributary_sources::ingest::SourceState>> =
            ManifestLog::new(lake, Log::Source).latest().await?;
        let Some(latest) = latest else { continue };
        for (table, state) in &latest.state.tables {
            if state.columns.is_empty() {
                continue;
            }
            specs.push(TableSpec {
                name: format!("raw_src_{source}_{table}").to_lowercase(),
                location: at(&format!("sources/{source}/{table}")),
                columns: state
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), hive_type(&c.ty.arrow_type())))
                    .collect(),
                format: TableFormat::Raw(RawFormat::Parquet),
            });
        }
    }
    Ok(specs)
}

/// The totesys tables' columns as the latest ingest manifest recorded them.
pub async fn totesys_columns(
    raw: &Lake,
) -> Result<BTreeMap<String, Vec<tributary_totesys::source::SourceColumn>>> {
    let latest: Option<Manifest<crate::totesys::ingest::IngestState>> =
        ManifestLog::new(raw.clone(), Log::Totesys).latest().await?;
    Ok(latest.map(|m| m.state.schemas).unwrap_or_default())
}

/// The raw zone's tables, as received, over the `raw` lake: each totesys
/// table's extracts (`raw_totesys_<table>`, Parquet with the extract's
/// columns) and the market sources (`raw_mercado_trades`: the stream's
/// trades, one a line; `raw_coincap_assets` and `raw_mercado_candles`: one
/// reply a line; `raw_mercado_tickers`: one `/tickers` reply a line, as
/// text). Their columns come from the same definitions the files are
/// written and read with.
///
/// The totesys tables are those the ingest has recorded (`totesys`: their
/// columns as last discovered, see [`totesys_columns`]), and every table the
/// star schema reads, as it reads them, until the ingest has recorded it.
pub fn raw_specs(
    raw: &Lake,
    totesys: &std::collections::BTreeMap<String, Vec<tributary_totesys::source::SourceColumn>>,
) -> Vec<TableSpec> {
    use tributary_lake::keys;
    let at = |prefix: &str| format!("{}/{prefix}", raw.url().trim_end_matches('/'));
    let named = |columns: &[(&str, &str)]| -> Vec<(String, String)> {
        columns
            .iter()
            .map(|(name, ty)| (name.to_string(), ty.to_string()))
            .collect()
    };
    let mut totesys = totesys.clone();
    for table in &tributary_totesys::tables::MODEL_INPUTS {
        totesys.entry(table.name.to_string()).or_insert_with(|| {
            tributary_totesys::SourceTable::from_model(table)
                .columns
                .clone()
        });
    }
    let mut specs: Vec<TableSpec> = totesys
        .iter()
        .map(|(table, columns)| TableSpec {
            name: format!("raw_totesys_{table}"),
            location: at(&keys::raw_totesys_dir(table)),
            columns: columns
                .iter()
                .map(|c| (c.name.clone(), hive_type(&c.pg.arrow_type())))
                .collect(),
            format: TableFormat::Raw(RawFormat::Parquet),
        })
        .collect();
    // The line the stream sink keeps (`tributary_markets::Trade`).
    specs.push(TableSpec {
        name: "raw_mercado_trades".into(),
        location: at(keys::RAW_TRADES),
        columns: named(&[
            ("symbol", "string"),
            ("tid", "bigint"),
            ("traded_at_ms", "bigint"),
            ("price", "string"),
            ("amount", "string"),
            ("side", "string"),
        ]),
        format: TableFormat::Raw(RawFormat::JsonLines),
    });
    specs.push(TableSpec {
        name: "raw_mercado_tickers".into(),
        location: at(keys::RAW_TICKERS),
        columns: named(&[("reply", "string")]),
        format: TableFormat::Raw(RawFormat::Lines),
    });
    // `/candles` as received: parallel arrays; the symbol is in the file
    // name (`"$path"` in Athena).
    specs.push(TableSpec {
        name: "raw_mercado_candles".into(),
        location: at(keys::RAW_CANDLES),
        columns: named(&[
            ("t", "array<bigint>"),
            ("o", "array<string>"),
            ("h", "array<string>"),
            ("l", "array<string>"),
            ("c", "array<string>"),
            ("v", "array<string>"),
        ]),
        format: TableFormat::Raw(RawFormat::JsonLines),
    });
    // CoinCap `/assets` as received (a JSON SerDe matches keys without
    // regard to case, so the struct's fields are lower case).
    specs.push(TableSpec {
        name: "raw_coincap_assets".into(),
        location: at(keys::RAW_COINCAP_ASSETS),
        columns: named(&[
            ("timestamp", "bigint"),
            (
                "data",
                "array<struct<id:string,rank:string,symbol:string,name:string,supply:string,\
                 maxsupply:string,marketcapusd:string,volumeusd24hr:string,priceusd:string,\
                 changepercent24hr:string,vwap24hr:string,explorer:string>>",
            ),
        ]),
        format: TableFormat::Raw(RawFormat::JsonLines),
    });
    specs
}

/// A stable digest of table definitions: the catalog registers the raw
/// tables again only when it changes.
pub fn definition_digest(specs: &[TableSpec]) -> String {
    let text: String = specs.iter().map(|spec| format!("{spec:?}\n")).collect();
    tributary_lake::sha256_hex(text.as_bytes())
}

/// The processed lake's Iceberg tables as the catalog registers them: each
/// at its current metadata file, with its columns for people browsing the
/// catalog (readers take the schema from the metadata). Tables not
/// published yet are left out.
pub async fn iceberg_specs(processed: &Lake) -> Result<Vec<TableSpec>> {
    specs_of(processed, crate::lakehouse::all_defs()).await
}

/// The Iceberg tables of the configured sources ([`crate::source_tables`])
/// that exist, at their current versions.
pub async fn source_iceberg_specs(raw: &Lake, processed: &Lake) -> Result<Vec<TableSpec>> {
    specs_of(processed, crate::source_tables::table_defs(raw).await?).await
}

/// The specs of the tables of `defs` that exist in `processed`.
pub async fn specs_of(
    processed: &Lake,
    defs: Vec<tributary_iceberg::TableDef>,
) -> Result<Vec<TableSpec>> {
    let catalog = tributary_iceberg::Catalog::new(processed.clone());
    let mut specs = Vec::new();
    for def in defs {
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
            format: TableFormat::Iceberg {
                metadata_location: catalog.metadata_url(&def.location, &current),
            },
        });
    }
    Ok(specs)
}

/// What the catalog log remembers: the last manifest registered per log,
/// and the digest of the raw tables' definitions registered.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CatalogState {
    synced: BTreeMap<String, u64>,
    #[serde(default)]
    raw_definitions: Option<String>,
}

/// Registers every Iceberg table at its current version once either
/// transform log has moved since the last sync, and the raw zone's tables
/// ([`raw_specs`]) when their definitions are new, then records how far it
/// got in the catalog's own log. A failed sync is alerted and left for the
/// next call, which retries it whether or not anything new was transformed.
/// Returns the number of tables registered.
pub async fn sync_pending(
    catalog: &dyn Catalog,
    raw: &Lake,
    processed: &Lake,
    alerts: &dyn crate::alerts::Alerts,
) -> Result<usize> {
    let result = sync_pending_run(catalog, raw, processed).await;
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

async fn sync_pending_run(catalog: &dyn Catalog, raw: &Lake, processed: &Lake) -> Result<usize> {
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
    let raw_tables = all_raw_specs(raw).await?;
    let raw_digest = definition_digest(&raw_tables);
    let raw_new = state.raw_definitions.as_deref() != Some(raw_digest.as_str());
    if !changed && !raw_new {
        return Ok(0);
    }
    let mut tables = if changed {
        iceberg_specs(processed).await?
    } else {
        Vec::new()
    };
    if raw_new {
        tables.extend(raw_tables);
        state.raw_definitions = Some(raw_digest);
    }
    catalog.sync(&tables).await?;
    let run_id = tributary_lake::RunId::now();
    log.commit(previous_seq, &run_id, chrono::Utc::now(), Vec::new(), state)
        .await?;
    Ok(tables.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::TimeUnit;

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

        let raw = Lake::from_url("memory://raw").unwrap();
        let raw_tables = raw_specs(&raw, &BTreeMap::new()).len();

        // The catalog is down: nothing is recorded as synced, and an alert says so.
        catalog
            .fail
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(sync_pending(&catalog, &raw, &lake, &alerts).await.is_err());
        assert!(alerts.sent()[0].message.contains("catalog sync failed"));
        catalog
            .fail
            .store(false, std::sync::atomic::Ordering::SeqCst);

        // The next call registers the table although nothing is new, and
        // the raw zone's tables the first time.
        assert_eq!(
            sync_pending(&catalog, &raw, &lake, &alerts).await.unwrap(),
            1 + raw_tables
        );
        {
            let synced = catalog.synced.lock().unwrap();
            assert_eq!(synced[0].name, "dim_date");
            assert_eq!(
                synced[0].format,
                TableFormat::Iceberg {
                    metadata_location: iceberg.metadata_url(&dim_date.location, &table)
                }
            );
            assert!(
                synced[1..]
                    .iter()
                    .all(|t| matches!(t.format, TableFormat::Raw(_)))
            );
        }
        // Then only when a log moves; the raw tables are not registered again.
        assert_eq!(
            sync_pending(&catalog, &raw, &lake, &alerts).await.unwrap(),
            0
        );
        commit(&lake, Log::MarketsTransform).await;
        assert_eq!(
            sync_pending(&catalog, &raw, &lake, &alerts).await.unwrap(),
            1
        );
        assert_eq!(catalog.synced.lock().unwrap().len(), 2 + raw_tables);
        assert_eq!(alerts.sent().len(), 1);
    }

    #[test]
    fn raw_market_columns_are_the_keys_of_what_is_kept() {
        let raw = Lake::from_url("memory://raw").unwrap();
        let specs = raw_specs(&raw, &BTreeMap::new());
        let declared = |name: &str| -> Vec<String> {
            let spec = specs.iter().find(|s| s.name == name).unwrap();
            spec.columns.iter().map(|(c, _)| c.clone()).collect()
        };
        let keys = |value: serde_json::Value| -> Vec<String> {
            let mut keys: Vec<String> = value
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.to_lowercase())
                .collect();
            keys.sort();
            keys
        };
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        // The line the stream sink keeps is a serialised `Trade`.
        let trade = tributary_markets::Trade {
            symbol: "BTC-BRL".into(),
            tid: 1,
            traded_at_ms: 0,
            price: "1".into(),
            amount: "1".into(),
            side: tributary_markets::Side::Buy,
        };
        assert_eq!(
            keys(serde_json::to_value(&trade).unwrap()),
            sorted(declared("raw_mercado_trades"))
        );
        // Replies as the APIs send them (markets/API.md), as the replay
        // servers answer them.
        let candles = serde_json::json!({"t": [1], "o": ["1"], "h": ["1"], "l": ["1"], "c": ["1"], "v": ["1"]});
        assert_eq!(keys(candles), sorted(declared("raw_mercado_candles")));
        let assets = serde_json::json!({"timestamp": 1, "data": []});
        assert_eq!(keys(assets), sorted(declared("raw_coincap_assets")));
        // Every field an asset row carries is in the struct declared.
        let row = specs
            .iter()
            .find(|s| s.name == "raw_coincap_assets")
            .unwrap()
            .columns[1]
            .1
            .clone();
        let asset = tributary_markets::Asset {
            id: "bitcoin".into(),
            rank: 1,
            symbol: "BTC".into(),
            name: "Bitcoin".into(),
            supply: None,
            max_supply: None,
            market_cap_usd: None,
            volume_usd_24h: None,
            price_usd: None,
            change_percent_24h: None,
        };
        for key in keys(serde_json::to_value(&asset).unwrap()) {
            assert!(row.contains(&format!("{key}:")), "{key} not in {row}");
        }
    }

    #[tokio::test]
    async fn raw_tables_sit_where_the_lake_writes_each_dataset() {
        let raw = Lake::from_url("memory://raw").unwrap();
        let root = raw.url().trim_end_matches('/').to_string();
        let specs = raw_specs(&raw, &BTreeMap::new());
        let run = tributary_lake::RunId::now();
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        use tributary_lake::keys;
        let written = [
            (
                "raw_totesys_sales_order",
                keys::raw_totesys_file("sales_order", day, &run, 0),
            ),
            (
                "raw_mercado_trades",
                keys::raw_trades_batch(day, "shard", "1"),
            ),
            ("raw_mercado_tickers", keys::raw_tickers(day, &run)),
            ("raw_coincap_assets", keys::raw_coincap_assets(day, &run)),
            (
                "raw_mercado_candles",
                keys::raw_candles(day, &run, "BTC-BRL"),
            ),
        ];
        for (name, key) in written {
            let spec = specs.iter().find(|s| s.name == name).expect(name);
            // Partition projection's template, at the file's day, is the
            // file's folder.
            let folder = format!("{}/{RAW_PARTITION}=2026-11-30/", spec.location);
            assert!(
                format!("{root}/{key}").starts_with(&folder),
                "{name}: {key} is not under {folder}"
            );
        }
        let payment = specs
            .iter()
            .find(|s| s.name == "raw_totesys_payment")
            .unwrap();
        assert_eq!(payment.columns[0], ("payment_id".into(), "int".into()));
        assert_eq!(
            specs.len(),
            tributary_totesys::tables::MODEL_INPUTS.len() + 4,
            "every totesys table and four market datasets"
        );
        // The digest moves with any definition.
        let mut changed = specs.clone();
        changed[0].columns.pop();
        assert_ne!(definition_digest(&specs), definition_digest(&changed));
        assert_eq!(
            definition_digest(&specs),
            definition_digest(&raw_specs(&raw, &BTreeMap::new()))
        );
    }

    #[tokio::test]
    async fn no_catalog_accepts_anything() {
        NoCatalog.sync(&[]).await.unwrap();
    }
}
