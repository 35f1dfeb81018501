//! The ingest stage: an incremental extract of the 11 totesys tables into the
//! raw lake, committed by one manifest.
//!
//! A run reads its state (watermark, recent keys, source snapshot per table)
//! from the latest `totesys` manifest, reads every selected table inside one
//! REPEATABLE READ snapshot, writes the changed rows as Parquet under
//! `totesys/<table>/date=…/<run_id>.parquet`, and commits the next manifest.
//! A run that fails before its manifest leaves nothing a reader trusts, and
//! the next run redoes its work.

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tributary_lake::{FileEntry, Lake, Manifest, ManifestLog, RunId, keys, write_dataset};
use tributary_totesys::{
    ExtractPlan, ExtractStats, RowVersion, TABLES, TableDef, extract_table, open_snapshot,
};

use crate::{
    Error, Result, Settings,
    alerts::{Alert, Alerts, FailureAdvice, stage_failed},
};

/// The manifest log of this stage in the raw lake.
pub const SOURCE: &str = "totesys";
const STAGE: &str = "ingest";

/// A manual request: which tables, and from when (a backfill). The empty
/// request is the scheduled run: every table, incrementally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// Tables to read; all when absent.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Re-extract rows with `last_updated` after this, ignoring watermarks.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
}

/// Tuning of the stage.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// How far before the watermark each run re-reads.
    pub lookback: Duration,
    /// Rows per Arrow batch.
    pub batch_rows: usize,
    /// Rows per Parquet file.
    pub file_rows: u64,
    /// How often the late-commit check runs (zero: every run). It costs a
    /// visibility test per source row, so the runs in between use only the
    /// lookback.
    pub late_check_every: Duration,
}

impl From<&Settings> for IngestOptions {
    fn from(settings: &Settings) -> Self {
        Self {
            lookback: settings.lookback,
            batch_rows: settings.batch_rows,
            file_rows: settings.file_rows,
            late_check_every: settings.late_check_every,
        }
    }
}

/// The stage's state, carried from manifest to manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestState {
    /// Per table, by name.
    pub tables: BTreeMap<String, TableState>,
}

/// What the lake knows about one source table. Fields added later read as
/// their defaults from older manifests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableState {
    /// Newest `last_updated` ingested.
    pub watermark: Option<DateTime<Utc>>,
    /// The source snapshot (`pg_current_snapshot()`) of the last late-commit
    /// check (or full extract): rows not visible to it may be missing.
    pub checked_snapshot: Option<String>,
    /// When that check ran.
    pub checked_at: Option<DateTime<Utc>>,
    /// Versions ingested since that check; the next check drops them.
    pub ingested_since_check: Vec<RowVersion>,
    /// `[key, last_updated ms, fingerprint]` of rows within the lookback of
    /// the watermark: the rows the next run may read again and must drop.
    pub recent_keys: Vec<RowVersion>,
    /// The last run that read this table.
    pub last_run_id: Option<RunId>,
    /// When that run started.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Rows it wrote.
    pub last_run_rows: u64,
    /// Rows written for this table since the first run.
    pub total_rows: u64,
}

/// One table's part of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// Table name.
    pub table: &'static str,
    /// Rows written.
    pub rows: u64,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Rows read again inside the lookback and dropped as already ingested.
    pub already_ingested: u64,
    /// Rows that committed late, older than the lookback (rescued).
    pub late_rows: u64,
    /// Rows changed inside the lookback without a new last_updated.
    pub changed_in_place: u64,
    /// Watermark after the run.
    pub watermark: Option<DateTime<Utc>>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct IngestReport {
    /// The run.
    pub run_id: RunId,
    /// The manifest number it committed.
    pub seq: u64,
    /// Per table read.
    pub tables: Vec<TableReport>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl IngestReport {
    /// Rows written across tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Runs the ingest stage once. On failure an alert names the run and error.
pub async fn ingest(
    source: &mut Client,
    raw: &Lake,
    options: &IngestOptions,
    request: &IngestRequest,
    alerts: &dyn Alerts,
) -> Result<IngestReport> {
    let run_id = RunId::now();
    let result = ingest_run(source, raw, options, request, alerts, &run_id).await;
    if let Err(error) = &result {
        let advice = FailureAdvice {
            retryable: "nothing was committed; the next scheduled run retries. If it keeps failing, check the source database and the raw bucket",
            needs_fix: "fix the cause named above; nothing was committed",
        };
        stage_failed(alerts, STAGE, run_id.as_str(), error, advice).await;
    }
    result
}

/// Resolves a request's table names against the fixed list.
pub fn selected_tables(request: &IngestRequest) -> Result<Vec<&'static TableDef>> {
    match &request.tables {
        None => Ok(TABLES.iter().collect()),
        Some(names) => names
            .iter()
            .map(|name| {
                TableDef::by_name(name).ok_or_else(|| {
                    Error::UnknownTable(
                        name.clone(),
                        TABLES.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
                    )
                })
            })
            .collect(),
    }
}

async fn ingest_run(
    source: &mut Client,
    raw: &Lake,
    options: &IngestOptions,
    request: &IngestRequest,
    alerts: &dyn Alerts,
    run_id: &RunId,
) -> Result<IngestReport> {
    let started = Instant::now();
    let started_at = run_id.started_at().unwrap_or_else(Utc::now);
    let tables = selected_tables(request)?;
    let log = ManifestLog::new(raw.clone(), SOURCE);
    let previous: Option<Manifest<IngestState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let mut state = previous.map(|m| m.state).unwrap_or_default();
    tracing::info!(stage = STAGE, run_id = %run_id, previous_seq, tables = tables.len(), "run started");

    let (tx, snapshot) = open_snapshot(source).await?;
    let mut files = Vec::new();
    let mut reports = Vec::new();
    for table in tables {
        let table_state = state.tables.entry(table.name.to_string()).or_default();
        let (plan, mode) = plan_extract(
            table,
            table_state,
            request,
            (&snapshot.snapshot, snapshot.now_ms),
            started_at,
            options,
        );
        let table_started = Instant::now();
        let (stats, written) =
            extract_to_lake(&tx, &plan, raw, run_id, started_at, options.file_rows).await?;
        update_state(
            table_state,
            (&plan, mode),
            &stats,
            &snapshot.snapshot,
            run_id,
            started_at,
        );
        let report = TableReport {
            table: table.name,
            rows: stats.rows_sent,
            files: written.len(),
            bytes: written.iter().map(|f| f.bytes).sum(),
            already_ingested: stats.rows_already_ingested,
            late_rows: stats.late_rows,
            changed_in_place: stats.rows_changed_in_place,
            watermark: table_state.watermark,
        };
        tracing::info!(
            stage = STAGE,
            run_id = %run_id,
            table = table.name,
            rows = report.rows,
            files = report.files,
            bytes = report.bytes,
            already_ingested = report.already_ingested,
            late_rows = report.late_rows,
            ms = table_started.elapsed().as_millis() as u64,
            "table extracted"
        );
        if stats.future_rows > 0 {
            alerts
                .send(&Alert {
                    stage: STAGE,
                    run_id: run_id.to_string(),
                    table: Some(table.name.to_string()),
                    message: format!(
                        "{} row(s) have last_updated after the source's clock; they were ingested, and the watermark stays at the newest present change",
                        stats.future_rows
                    ),
                    action: "find the writer that stamps rows in the future (clock skew or a bad default)".to_string(),
                })
                .await;
        }
        if stats.late_rows + stats.rows_changed_in_place > 0 {
            alerts
                .send(&late_rows_alert(
                    run_id,
                    table,
                    &plan,
                    &stats,
                    options.lookback,
                ))
                .await;
        }
        files.extend(written);
        reports.push(report);
    }
    // Read-only: ending the snapshot changes nothing in the source.
    tx.rollback().await?;

    let manifest = log
        .commit(previous_seq, run_id, started_at, files, state)
        .await?;
    let report = IngestReport {
        run_id: run_id.clone(),
        seq: manifest.seq,
        tables: reports,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        stage = STAGE,
        run_id = %run_id,
        seq = report.seq,
        rows = report.rows(),
        ms = report.elapsed.as_millis() as u64,
        "run committed"
    );
    Ok(report)
}

/// What kind of extract a table gets in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// First run: everything.
    Full,
    /// Lookback plus the late-commit check against the checked snapshot.
    Check,
    /// A check was due but the source's history changed: lookback only,
    /// and this snapshot becomes the new reference.
    Reset,
    /// Lookback only; the versions read are remembered for the next check.
    Incremental,
    /// A manual backfill from a given time.
    Backfill,
}

/// Decides what one table's extract reads.
fn plan_extract(
    table: &'static TableDef,
    state: &TableState,
    request: &IngestRequest,
    (current_snapshot, source_now_ms): (&str, i64),
    started_at: DateTime<Utc>,
    options: &IngestOptions,
) -> (ExtractPlan, Mode) {
    let lookback_ms = options.lookback.as_millis() as i64;
    let base = ExtractPlan {
        table,
        lower_bound_ms: None,
        previous_snapshot: None,
        already_ingested: HashSet::new(),
        lookback_ms,
        batch_rows: options.batch_rows,
        record_versions: false,
        source_now_ms,
    };
    if let Some(since) = request.since {
        // A backfill re-reads on purpose: rows already in the lake are written
        // again and deduplicated downstream by (id, last_updated).
        let plan = ExtractPlan {
            lower_bound_ms: Some(since.timestamp_millis()),
            ..base
        };
        return (plan, Mode::Backfill);
    }
    let Some(watermark) = state.watermark else {
        return (base, Mode::Full);
    };
    let incremental = ExtractPlan {
        lower_bound_ms: Some(watermark.timestamp_millis() - lookback_ms),
        already_ingested: state.recent_keys.iter().copied().collect(),
        ..base
    };
    let due = state.checked_at.is_none_or(|at| {
        (started_at - at).to_std().unwrap_or_default() >= options.late_check_every
    });
    if !due {
        let plan = ExtractPlan {
            record_versions: true,
            ..incremental
        };
        return (plan, Mode::Incremental);
    }
    match state
        .checked_snapshot
        .clone()
        .filter(|checked| xid_moved_forward(checked, current_snapshot))
    {
        Some(checked) => {
            let mut already_ingested = incremental.already_ingested.clone();
            already_ingested.extend(state.ingested_since_check.iter().copied());
            let plan = ExtractPlan {
                previous_snapshot: Some(checked),
                already_ingested,
                ..incremental
            };
            (plan, Mode::Check)
        }
        None => {
            tracing::warn!(
                table = table.name,
                "no usable snapshot for the late-commit check (restored or replaced source database?); \
                 this run uses the lookback only and becomes the new reference"
            );
            (incremental, Mode::Reset)
        }
    }
}

/// Whether `current`'s xmax is at or after `previous`'s: the visibility
/// test against an old snapshot only means something on the same history.
fn xid_moved_forward(previous: &str, current: &str) -> bool {
    let xmax = |snapshot: &str| {
        snapshot
            .split(':')
            .nth(1)
            .and_then(|x| x.parse::<u64>().ok())
    };
    matches!((xmax(previous), xmax(current)), (Some(p), Some(c)) if c >= p)
}

/// Streams one table through the extractor into Parquet files in the lake.
async fn extract_to_lake(
    tx: &tokio_postgres::Transaction<'_>,
    plan: &ExtractPlan,
    raw: &Lake,
    run_id: &RunId,
    started_at: DateTime<Utc>,
    file_rows: u64,
) -> Result<(ExtractStats, Vec<FileEntry>)> {
    let table = plan.table;
    let (sender, receiver) = mpsc::channel(2);
    let date = started_at.date_naive();
    let run = run_id.clone();
    let writer = tokio::spawn(write_dataset(
        raw.clone(),
        table.name.to_string(),
        table.arrow_schema(),
        file_rows,
        move |part| keys::raw_totesys_file(table.name, date, &run, part),
        receiver,
    ));
    let extracted = extract_table(tx, plan, sender).await;
    let written = writer
        .await
        .map_err(|e| Error::Lake(tributary_lake::Error::Task(e.to_string())))?;
    // The writer's error is the cause when both failed (the extract only saw
    // its channel close).
    let written = written?;
    Ok((extracted?, written.files))
}

fn update_state(
    state: &mut TableState,
    (plan, mode): (&ExtractPlan, Mode),
    stats: &ExtractStats,
    snapshot: &str,
    run_id: &RunId,
    started_at: DateTime<Utc>,
) {
    let lookback_ms = plan.lookback_ms;
    // A row stamped in the future must not drag the watermark past the
    // source's clock, or every ordinary change after it would fall outside
    // the lookback. It is re-read each run and dropped as already ingested.
    let previous_ms = state.watermark.map(|w| w.timestamp_millis());
    let newest_ms = match (previous_ms, stats.max_present_ms) {
        (Some(p), Some(n)) => Some(p.max(n)),
        (p, n) => p.or(n),
    };
    state.watermark = newest_ms.and_then(DateTime::from_timestamp_millis);
    if let Some(newest) = newest_ms {
        let floor = newest - lookback_ms;
        let mut keys: Vec<RowVersion> = plan
            .already_ingested
            .iter()
            .copied()
            .chain(stats.recent_keys.iter().copied())
            .filter(|(_, lu, _)| *lu >= floor)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        state.recent_keys = keys;
    }
    match mode {
        Mode::Full | Mode::Check | Mode::Reset => {
            state.checked_snapshot = Some(snapshot.to_string());
            state.checked_at = Some(started_at);
            state.ingested_since_check.clear();
        }
        Mode::Incremental => {
            state
                .ingested_since_check
                .extend(stats.sent_versions.iter().copied());
        }
        Mode::Backfill => {}
    }
    state.last_run_id = Some(run_id.clone());
    state.last_run_at = Some(started_at);
    state.last_run_rows = stats.rows_sent;
    state.total_rows += stats.rows_sent;
}

fn late_rows_alert(
    run_id: &RunId,
    table: &TableDef,
    plan: &ExtractPlan,
    stats: &ExtractStats,
    lookback: Duration,
) -> Alert {
    let show = |ms: Option<i64>| {
        ms.and_then(DateTime::from_timestamp_millis).map_or_else(
            || "?".to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        )
    };
    Alert {
        stage: STAGE,
        run_id: run_id.to_string(),
        table: Some(table.name.to_string()),
        message: format!(
            "{} row(s) changed since the previous run with last_updated older than the {} lookback \
             (oldest {}, lookback started at {}), and {} changed inside the lookback without a new \
             last_updated; the late-commit check found them and they were ingested",
            stats.late_rows,
            humantime::format_duration(lookback),
            show(stats.oldest_late_ms),
            show(plan.lower_bound_ms),
            stats.rows_changed_in_place,
        ),
        action: "no data was lost; if this repeats, either a source transaction runs longer than the lookback \
                 (raise TRIBUTARY_LOOKBACK or find the slow writer) or the source updates rows without \
                 setting last_updated (fix the writer so that other consumers do not miss changes)"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfill_requests_parse_from_the_lambda_payload() {
        let request: IngestRequest =
            serde_json::from_str(r#"{"tables": ["payment"], "since": "2024-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(
            request.tables.as_deref(),
            Some(&["payment".to_string()][..])
        );
        assert_eq!(
            request.since.unwrap().to_rfc3339(),
            "2024-01-01T00:00:00+00:00"
        );
        let scheduled: IngestRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(scheduled, IngestRequest::default());
        assert!(serde_json::from_str::<IngestRequest>(r#"{"table": "x"}"#).is_err());
    }

    #[test]
    fn unknown_tables_are_refused_by_name() {
        let request = IngestRequest {
            tables: Some(vec!["payment".into(), "users; --".into()]),
            since: None,
        };
        let err = selected_tables(&request).unwrap_err().to_string();
        assert!(
            err.contains("\"users; --\"") && err.contains("sales_order"),
            "{err}"
        );
    }

    #[test]
    fn rescue_is_only_used_while_transaction_ids_move_forward() {
        assert!(xid_moved_forward("100:105:", "104:110:101"));
        assert!(!xid_moved_forward("100:105:", "3:4:"));
        assert!(!xid_moved_forward("garbage", "3:4:"));
    }

    #[test]
    fn recent_keys_keep_only_the_lookback_window() {
        let mut state = TableState::default();
        let plan = ExtractPlan {
            table: &TABLES[0],
            lower_bound_ms: None,
            previous_snapshot: None,
            already_ingested: [(1, 1_000, 7), (2, 9_000, 8)].into_iter().collect(),
            lookback_ms: 5_000,
            batch_rows: 10,
            record_versions: false,
            source_now_ms: i64::MAX,
        };
        let stats = ExtractStats {
            rows_sent: 2,
            max_last_updated_ms: Some(12_000),
            max_present_ms: Some(12_000),
            recent_keys: vec![(3, 12_000, 9), (4, 6_000, 10)],
            ..ExtractStats::default()
        };
        update_state(
            &mut state,
            (&plan, Mode::Full),
            &stats,
            "1:2:",
            &RunId::now(),
            Utc::now(),
        );
        assert_eq!(state.recent_keys, vec![(2, 9_000, 8), (3, 12_000, 9)]);
        assert_eq!(state.watermark.unwrap().timestamp_millis(), 12_000);
        assert_eq!(state.total_rows, 2);
    }
}
