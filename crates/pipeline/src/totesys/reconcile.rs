//! `tributary reconcile`: does every row version of the source reach the raw
//! lake, the processed lake and the warehouse, once?
//!
//! Per fact source table it compares the sets of (id, last_updated)
//! versions: current source rows ⊆ raw lake; raw lake (less quarantined
//! rows) = processed facts = warehouse facts. Per dimension it compares the
//! source's ids with the warehouse's. Each comparison reports the versions
//! missing and extra, and an order-independent checksum of both sides.

use std::collections::HashSet;

use arrow_array::{
    Array, Date32Array, Int32Array, Time64MicrosecondArray, TimestampMillisecondArray,
};
use tokio_postgres::Client;
use tributary_lake::{Lake, Log, Manifest, ManifestLog, keys, parquet::decode};

use crate::{
    Result,
    alerts::{Alert, Alerts},
    reconcile::compare,
    totesys::ingest::IngestState,
    totesys::transform::TransformState,
};

pub use crate::reconcile::{Comparison, ReconcileReport};

/// A row version: (id, last_updated in ms since the epoch).
type Version = (i32, i64);

const DAY_MS: i64 = 86_400_000;

const FACTS: [(&str, &str, &str); 3] = [
    ("sales_order", "sales_order_id", "fact_sales_order"),
    ("purchase_order", "purchase_order_id", "fact_purchase_order"),
    ("payment", "payment_id", "fact_payment"),
];

const DIMENSIONS: [(&str, &str, &str, &str); 7] = [
    ("address", "address_id", "dim_location", "location_id"),
    (
        "counterparty",
        "counterparty_id",
        "dim_counterparty",
        "counterparty_id",
    ),
    ("currency", "currency_id", "dim_currency", "currency_id"),
    ("design", "design_id", "dim_design", "design_id"),
    (
        "payment_type",
        "payment_type_id",
        "dim_payment_type",
        "payment_type_id",
    ),
    ("staff", "staff_id", "dim_staff", "staff_id"),
    (
        "transaction",
        "transaction_id",
        "dim_transaction",
        "transaction_id",
    ),
];

/// Compares all four layers. Run it after a full cycle: a layer that is
/// merely behind shows as missing.
pub async fn reconcile(
    source: &Client,
    raw: &Lake,
    processed: &Lake,
    warehouse: &Client,
    alerts: &dyn Alerts,
) -> Result<ReconcileReport> {
    let mut report = ReconcileReport::default();
    let raw_files = committed_files::<IngestState>(raw, Log::Totesys).await?;
    let processed_files = committed_files::<TransformState>(processed, Log::Transform).await?;
    for (table, key, fact) in FACTS {
        let source_versions: HashSet<Version> = source
            .query(
                &format!(
                    "SELECT \"{key}\", (extract(epoch FROM last_updated) * 1000)::bigint FROM \"{table}\""
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, i64>(1)))
            .collect();
        let mut raw_versions = HashSet::new();
        for file in raw_files.iter().filter(|(t, _)| t == table) {
            raw_versions.extend(raw_file_versions(raw, &file.1).await?);
        }
        let quarantined = quarantined_versions(raw, table).await?;
        let expected_facts: HashSet<Version> =
            raw_versions.difference(&quarantined).copied().collect();
        let mut processed_versions = Vec::new();
        for file in processed_files.iter().filter(|(t, _)| t == fact) {
            processed_versions.extend(fact_file_versions(processed, &file.1).await?);
        }
        let warehouse_versions: Vec<Version> = warehouse
            .query(
                &format!(
                    "SELECT \"{key}\", ((extract(epoch FROM last_updated_date + last_updated_time)) * 1000)::bigint FROM {fact}"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, i64>(1)))
            .collect();
        report.comparisons.push(compare(
            table,
            "source → raw",
            &source_versions,
            &raw_versions.iter().copied().collect::<Vec<_>>(),
            true,
        ));
        report.comparisons.push(compare(
            fact,
            "raw → processed",
            &expected_facts,
            &processed_versions,
            false,
        ));
        let processed_set: HashSet<Version> = processed_versions.iter().copied().collect();
        report.comparisons.push(compare(
            fact,
            "processed → warehouse",
            &processed_set,
            &warehouse_versions,
            false,
        ));
    }
    for (table, key, dimension, dim_key) in DIMENSIONS {
        let ids = |rows: Vec<tokio_postgres::Row>| -> HashSet<Version> {
            rows.iter().map(|r| (r.get::<_, i32>(0), 0)).collect()
        };
        let source_ids = ids(source
            .query(&format!("SELECT \"{key}\" FROM \"{table}\""), &[])
            .await?);
        let quarantined: HashSet<Version> = quarantined_versions(raw, table)
            .await?
            .into_iter()
            .map(|(k, _)| (k, 0))
            .collect();
        let expected: HashSet<Version> = source_ids.difference(&quarantined).copied().collect();
        let warehouse_ids: Vec<Version> = warehouse
            .query(&format!("SELECT {dim_key} FROM {dimension}"), &[])
            .await?
            .iter()
            .map(|r| (r.get::<_, i32>(0), 0))
            .collect();
        report.comparisons.push(compare(
            dimension,
            "source → warehouse",
            &expected,
            &warehouse_ids,
            false,
        ));
    }
    let differing: Vec<&Comparison> = report
        .comparisons
        .iter()
        .filter(|c| !c.is_clean())
        .collect();
    if let Some(first) = differing.first() {
        alerts
            .send(&Alert {
                stage: "reconcile",
                run_id: "-".to_string(),
                table: Some(first.table.to_string()),
                message: format!(
                    "{} comparison(s) differ; first: {} {} missing {} extra {} (e.g. {})",
                    differing.len(),
                    first.table,
                    first.layers,
                    first.missing,
                    first.extra,
                    first.example.as_deref().unwrap_or("-")
                ),
                action: "run `tributary reconcile` for the full table; if a stage is only behind, run the pipeline and reconcile again".to_string(),
            })
            .await;
    }
    Ok(report)
}

/// (table, key) of every file named by a committed manifest of `log`.
async fn committed_files<S: serde::de::DeserializeOwned>(
    lake: &Lake,
    log: Log,
) -> Result<Vec<(String, String)>> {
    let log = ManifestLog::new(lake.clone(), log);
    let mut files = Vec::new();
    for seq in 1..=log.latest_seq().await? {
        let manifest: Option<Manifest<S>> = log.read(seq).await?;
        files.extend(
            manifest
                .into_iter()
                .flat_map(|m| m.files)
                .map(|f| (f.table, f.key)),
        );
    }
    Ok(files)
}

async fn raw_file_versions(lake: &Lake, key: &str) -> Result<Vec<Version>> {
    let (_, batches) = decode(lake.get(key).await?)?;
    let mut out = Vec::new();
    for batch in batches {
        let ids = batch.column(0).as_any().downcast_ref::<Int32Array>();
        let lus = batch
            .column_by_name("last_updated")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>());
        if let (Some(ids), Some(lus)) = (ids, lus) {
            out.extend((0..batch.num_rows()).map(|row| (ids.value(row), lus.value(row))));
        }
    }
    Ok(out)
}

async fn fact_file_versions(lake: &Lake, key: &str) -> Result<Vec<Version>> {
    let (_, batches) = decode(lake.get(key).await?)?;
    let mut out = Vec::new();
    for batch in batches {
        let ids = batch.column(0).as_any().downcast_ref::<Int32Array>();
        let dates = batch
            .column_by_name("last_updated_date")
            .and_then(|c| c.as_any().downcast_ref::<Date32Array>());
        let times = batch
            .column_by_name("last_updated_time")
            .and_then(|c| c.as_any().downcast_ref::<Time64MicrosecondArray>());
        if let (Some(ids), Some(dates), Some(times)) = (ids, dates, times) {
            out.extend((0..batch.num_rows()).map(|row| {
                (
                    ids.value(row),
                    dates.value(row) as i64 * DAY_MS + times.value(row) / 1_000,
                )
            }));
        }
    }
    Ok(out)
}

/// Versions of `table` the transform quarantined (from `_quarantine/`).
async fn quarantined_versions(raw: &Lake, table: &str) -> Result<HashSet<Version>> {
    let folder = keys::quarantine_dir(Log::Totesys.name(), table);
    let mut out = HashSet::new();
    for key in raw.list(&folder).await? {
        let bytes = raw.get(&key).await?;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(record) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            let id = record["key"].as_i64();
            let lu = record["row"]["last_updated"]
                .as_str()
                .and_then(|t| {
                    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.3f").ok()
                })
                .map(|t| t.and_utc().timestamp_millis());
            if let (Some(id), Some(lu)) = (id, lu) {
                out.insert((id as i32, lu));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_count_missing_extra_and_repeats() {
        let expected: HashSet<Version> = [(1, 10), (2, 20), (3, 30)].into_iter().collect();
        let clean = compare("t", "a → b", &expected, &[(3, 30), (1, 10), (2, 20)], false);
        assert!(clean.is_clean());
        assert_eq!(clean.checksums.0, clean.checksums.1);
        let off = compare("t", "a → b", &expected, &[(1, 10), (1, 10), (4, 40)], false);
        assert_eq!(
            (off.missing, off.extra),
            (2, 2),
            "two missing, one extra, one repeated"
        );
        assert_ne!(off.checksums.0, off.checksums.1);
        assert!(off.example.unwrap().starts_with("missing id 2"));
        let history = compare(
            "t",
            "a → b",
            &expected,
            &[(1, 10), (1, 5), (2, 20), (3, 30)],
            true,
        );
        assert!(
            history.is_clean(),
            "older versions are allowed where history is kept"
        );
    }
}
