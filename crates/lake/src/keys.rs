//! The key layout of the lake, relative to a root (see ARCHITECTURE.md).
//!
//! Every key is built here so that writers and readers cannot drift apart.

use chrono::NaiveDate;

use crate::RunId;

/// `totesys/<table>/date=YYYY-MM-DD/<run_id>.parquet`, or `<run_id>-<part>.parquet`
/// for the second and later files of a large extract.
pub fn raw_totesys_file(table: &str, date: NaiveDate, run_id: &RunId, part: u32) -> String {
    let name = if part == 0 {
        format!("{run_id}.parquet")
    } else {
        format!("{run_id}-{part:04}.parquet")
    };
    format!("totesys/{table}/date={}/{name}", date.format("%Y-%m-%d"))
}

/// `warehouse/<table>/date=YYYY-MM-DD/<run_id>.parquet` (parts as for raw files).
pub fn processed_warehouse_file(table: &str, date: NaiveDate, run_id: &RunId, part: u32) -> String {
    let name = if part == 0 {
        format!("{run_id}.parquet")
    } else {
        format!("{run_id}-{part:04}.parquet")
    };
    format!("warehouse/{table}/date={}/{name}", date.format("%Y-%m-%d"))
}

/// `_state/<part>/<run_id>.<extension>`: state a stage carries between runs.
pub fn state_file(part: &str, run_id: &RunId, extension: &str) -> String {
    format!("_state/{part}/{run_id}.{extension}")
}

/// The folder holding the numbered manifests of one source or stage.
pub fn manifest_dir(source: &str) -> String {
    format!("_manifests/{source}")
}

/// `_manifests/<source>/<seq:020>.json`
pub fn manifest(source: &str, seq: u64) -> String {
    format!("_manifests/{source}/{seq:020}.json")
}

/// `_quarantine/<source>/<table>/<run_id>.jsonl`
pub fn quarantine(source: &str, table: &str, run_id: &RunId) -> String {
    format!("_quarantine/{source}/{table}/{run_id}.jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_lake_contract() {
        let run = RunId::new(chrono::Utc::now());
        let day = NaiveDate::from_ymd_opt(2024, 2, 3).unwrap();
        assert_eq!(
            raw_totesys_file("sales_order", day, &run, 0),
            format!("totesys/sales_order/date=2024-02-03/{run}.parquet")
        );
        assert_eq!(
            raw_totesys_file("sales_order", day, &run, 2),
            format!("totesys/sales_order/date=2024-02-03/{run}-0002.parquet")
        );
        assert_eq!(
            manifest("ingest", 7),
            "_manifests/ingest/00000000000000000007.json"
        );
        assert_eq!(
            quarantine("totesys", "payment", &run),
            format!("_quarantine/totesys/payment/{run}.jsonl")
        );
    }
}
