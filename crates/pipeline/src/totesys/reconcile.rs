//! `tributary reconcile`: does every row version of the source reach the raw
//! lake, the processed lake and the warehouse, once?
//!
//! Per fact source table it compares the sets of (id, last_updated)
//! versions: current source rows ⊆ raw lake; raw lake (less quarantined
//! rows) = processed facts = warehouse facts. Per dimension it compares the
//! source's ids with the warehouse's. Each comparison reports the versions
//! missing and extra, and an order-independent checksum of both sides.

use std::collections::HashSet;
use tributary_totesys::source::quote_ident;

use tokio_postgres::Client;
use tributary_lake::{Lake, Log, Manifest, ManifestLog, keys, parquet::decode_columns};
use tributary_warehouse::transform::{
    Version, fact_version_columns, fact_versions, raw_versions as raw_row_versions,
};

use crate::{
    Result,
    alerts::{Alert, Alerts},
    reconcile::{RowVersion, compare, finalize},
    totesys::transform::TransformState,
};

pub use crate::reconcile::{Comparison, ReconcileReport};

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
/// merely behind shows as missing. `source_schema` is the source file's
/// `schema` (the star schema's tables are read from it).
pub async fn reconcile(
    source: &Client,
    source_schema: &str,
    raw: &Lake,
    processed: &Lake,
    warehouse: &Client,
    alerts: &dyn Alerts,
) -> Result<ReconcileReport> {
    let mut report = ReconcileReport::default();
    let raw_files = committed_files(raw, Log::Totesys).await?;
    let processed_files = committed_files(processed, Log::Transform).await?;
    let progress = Progress::of(raw, processed, warehouse).await?;
    let in_source = |table: &str| format!("{}.{}", quote_ident(source_schema), quote_ident(table));
    for (table, key, fact) in FACTS {
        let source_versions: HashSet<Version> = source
            .query(
                &format!(
                    "SELECT \"{key}\", (extract(epoch FROM last_updated) * 1000)::bigint FROM {}",
                    in_source(table)
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, i64>(1)))
            .collect();
        let mut raw_versions = HashSet::new();
        for file in raw_files.iter().filter(|(t, _)| t == table) {
            raw_versions.extend(raw_file_versions(raw, &file.1, key).await?);
        }
        let quarantined = quarantined_versions(raw, table).await?;
        let mut processed_versions = Vec::new();
        for file in processed_files.iter().filter(|(t, _)| t == fact) {
            processed_versions.extend(fact_file_versions(processed, &file.1, key).await?);
        }
        let processed_set: HashSet<Version> = processed_versions.iter().copied().collect();
        // A quarantined version is not expected in the processed lake, but
        // may be there: fixed references let a rebuild or backfill write it.
        let expected_facts: HashSet<Version> = raw_versions
            .iter()
            .filter(|v| !quarantined.contains(v) || processed_set.contains(v))
            .copied()
            .collect();
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
        let mut to_raw = compare(
            table,
            "source → raw",
            &source_versions,
            &raw_versions.iter().copied().collect::<Vec<_>>(),
            true,
        );
        let oldest_missing = source_versions
            .iter()
            .filter(|v| !raw_versions.contains(v))
            .map(|v| v.1)
            .min();
        to_raw.advice = Some(progress.advice_source_to_raw(table, oldest_missing));
        report.comparisons.push(to_raw);
        let mut to_processed = compare(
            fact,
            "raw → processed",
            &expected_facts,
            &processed_versions,
            false,
        );
        to_processed.advice = Some(progress.advice_raw_to_processed(&to_processed));
        report.comparisons.push(to_processed);
        let mut to_warehouse = compare(
            fact,
            "processed → warehouse",
            &processed_set,
            &warehouse_versions,
            false,
        );
        to_warehouse.advice = Some(progress.advice_processed_to_warehouse(&to_warehouse));
        report.comparisons.push(to_warehouse);
    }
    for (table, key, dimension, dim_key) in DIMENSIONS {
        let ids = |rows: Vec<tokio_postgres::Row>| -> Vec<DimensionId> {
            rows.iter()
                .map(|r| DimensionId(r.get::<_, i32>(0)))
                .collect()
        };
        let source_ids: HashSet<DimensionId> = ids(source
            .query(&format!("SELECT \"{key}\" FROM {}", in_source(table)), &[])
            .await?)
        .into_iter()
        .collect();
        let warehouse_ids = ids(warehouse
            .query(&format!("SELECT {dim_key} FROM {dimension}"), &[])
            .await?);
        let loaded: HashSet<DimensionId> = warehouse_ids.iter().copied().collect();
        // As for facts: a quarantined row is not expected, but may have
        // arrived with a later change.
        let quarantined: HashSet<DimensionId> = quarantined_versions(raw, table)
            .await?
            .into_iter()
            .map(|(k, _)| DimensionId(k))
            .collect();
        let expected: HashSet<DimensionId> = source_ids
            .iter()
            .filter(|id| !quarantined.contains(id) || loaded.contains(id))
            .copied()
            .collect();
        let mut comparison = compare(
            dimension,
            "source → warehouse",
            &expected,
            &warehouse_ids,
            false,
        );
        comparison.advice = Some(progress.advice_dimension(&comparison));
        report.comparisons.push(comparison);
    }
    // The layers were read one after another: if a stage committed
    // meanwhile, a difference may only be in flight, and no advice to
    // rebuild or delete should follow from it.
    let after = Progress::of(raw, processed, warehouse).await?;
    if after != progress {
        let moved = format!(
            "the pipeline committed while reconcile was reading (raw manifests {}→{}, processed {}→{}, loaded {}→{}): this difference may be in flight; run reconcile again, with the schedules paused for an exact answer",
            progress.raw_latest,
            after.raw_latest,
            progress.processed_latest,
            after.processed_latest,
            progress.loaded,
            after.loaded
        );
        for c in report.comparisons.iter_mut().filter(|c| !c.is_clean()) {
            c.advice = Some(moved.clone());
        }
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
                action: first.advice.clone().unwrap_or_else(|| {
                    "run `tributary reconcile` for the full table and its advice".to_string()
                }),
            })
            .await;
    }
    Ok(report)
}

/// A dimension row: its id only (a dimension keeps the present, not history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct DimensionId(i32);

impl RowVersion for DimensionId {
    fn show(&self) -> String {
        format!("id {}", self.0)
    }

    fn mix(&self) -> u64 {
        finalize(self.0 as u64)
    }
}

/// How far each stage has got, to tell "behind" from "wrong" in advice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    /// The newest raw manifest.
    raw_latest: u64,
    /// The newest raw manifest the transform consumed.
    transformed_raw: u64,
    /// The newest processed manifest.
    processed_latest: u64,
    /// The newest processed manifest the warehouse applied.
    loaded: u64,
}

impl Progress {
    async fn of(raw: &Lake, processed: &Lake, warehouse: &Client) -> Result<Progress> {
        let raw_latest = ManifestLog::new(raw.clone(), Log::Totesys)
            .latest_seq()
            .await?;
        let log = ManifestLog::new(processed.clone(), Log::Transform);
        let latest: Option<Manifest<TransformState>> = log.latest().await?;
        let loaded = warehouse
            .query_opt(
                "SELECT COALESCE(max(seq), 0)::bigint FROM tributary.load_log",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map_or(0, |r| r.get::<_, i64>(0) as u64);
        Ok(Progress {
            raw_latest,
            transformed_raw: latest.as_ref().map_or(0, |m| m.state.raw_seq),
            processed_latest: latest.as_ref().map_or(0, |m| m.seq),
            loaded,
        })
    }

    fn advice_source_to_raw(&self, table: &str, oldest_missing: Option<i64>) -> String {
        let since = oldest_missing
            .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms - 60_000))
            .map_or_else(
                || "<time before the oldest missing change>".to_string(),
                |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
        format!(
            "if ingest only has not run since these changes, run `tributary ingest` (or wait for the schedule); otherwise backfill them: `tributary backfill --tables {table} --since {since}` (queued for the next scheduled ingest; locally `tributary ingest --tables {table} --since {since}` runs it at once). Versions the lake already has are not written twice downstream"
        )
    }

    fn advice_raw_to_processed(&self, c: &Comparison) -> String {
        if self.transformed_raw < self.raw_latest {
            return format!(
                "the transform is behind (raw manifests {}..={} not yet transformed): run `tributary transform` (or the pipeline) and reconcile again",
                self.transformed_raw + 1,
                self.raw_latest
            );
        }
        if c.missing > 0 {
            "the transform has consumed every raw manifest but lacks these versions: `tributary transform --rebuild` writes every version the processed lake does not have (and none twice); then `tributary load`".to_string()
        } else {
            "the processed lake holds versions more than once (written before the version index existed) or versions the raw lake lacks; the warehouse is not affected (its key keeps one). The lake is immutable, so to clear this start a new processed lake: point TRIBUTARY_PROCESSED_URL at an empty location, run `tributary transform --rebuild`, and load it into a new warehouse database (`tributary warehouse init`, `tributary load`)".to_string()
        }
    }

    fn advice_processed_to_warehouse(&self, c: &Comparison) -> String {
        if self.loaded < self.processed_latest {
            return format!(
                "the load is behind (processed manifests {}..={} not yet applied): run `tributary load` (or the pipeline) and reconcile again",
                self.loaded + 1,
                self.processed_latest
            );
        }
        if c.missing > 0 {
            "every processed manifest is applied but rows are missing (deleted in the warehouse?): `DELETE FROM tributary.load_log` and run `tributary load`; re-applying is idempotent".to_string()
        } else {
            "the warehouse holds rows no processed manifest has (written by hand or by another process): find them by the example above and delete them".to_string()
        }
    }

    fn advice_dimension(&self, c: &Comparison) -> String {
        if self.transformed_raw < self.raw_latest || self.loaded < self.processed_latest {
            "the pipeline is behind: run `tributary run` and reconcile again".to_string()
        } else if c.missing > 0 {
            "`tributary transform --rebuild` emits every dimension row again; then `tributary load`"
                .to_string()
        } else {
            "the source no longer has these rows (deleted there); Tributary keeps deleted dimension rows in the warehouse until deletes are carried".to_string()
        }
    }
}

/// (table, key) of every file named by a committed manifest of `log`.
async fn committed_files(lake: &Lake, log: Log) -> Result<Vec<(String, String)>> {
    let log = ManifestLog::new(lake.clone(), log);
    let files = log.committed_files(log.latest_seq().await?).await?;
    Ok(files.into_iter().map(|f| (f.table, f.key)).collect())
}

/// The (id, `last_updated`) of every row of a raw file of `table` (key `key`).
async fn raw_file_versions(lake: &Lake, file: &str, key: &str) -> Result<Vec<Version>> {
    let (_, batches) = decode_columns(lake.get(file).await?, &[key, "last_updated"])?;
    let mut out = Vec::new();
    for batch in &batches {
        out.extend(raw_row_versions(batch, key)?);
    }
    Ok(out)
}

/// The (id, `last_updated`) of every row of a fact file (key `key`).
async fn fact_file_versions(lake: &Lake, file: &str, key: &str) -> Result<Vec<Version>> {
    let (_, batches) = decode_columns(lake.get(file).await?, &fact_version_columns(key))?;
    let mut out = Vec::new();
    for batch in &batches {
        out.extend(fact_versions(batch, key)?);
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
