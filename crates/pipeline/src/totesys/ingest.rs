//! The ingest stage: an incremental extract of the configured totesys tables
//! (the source file with `model = "totesys"`, see [`super::source`]) into the
//! raw lake, committed by one manifest.
//!
//! A run discovers each table's columns in the catalog, inside its snapshot,
//! and records them in the manifest; a table whose columns no longer give
//! the star schema what it reads is left out of the run with an alert, and
//! the others go on. A run reads its state (watermark, recent keys, source
//! snapshot per table) from the latest `totesys` manifest, reads every
//! selected table inside one REPEATABLE READ snapshot, writes the changed
//! rows as Parquet under `totesys/<table>/date=…/<run_id>.parquet`, and
//! commits the next manifest.
//! A run that fails before its manifest leaves nothing a reader trusts, and
//! the next run redoes its work.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tributary_lake::{FileEntry, Lake, Log, Manifest, ManifestLog, RunId, keys, write_dataset};
pub use tributary_totesys::watermark::{IngestOptions, TableState};
use tributary_totesys::{
    ExtractPlan, ExtractStats, KeyRange, SourceSpec, SourceTable, TableStop, extract_table,
    open_snapshot,
    source::{SourceColumn, discover},
    watermark::{Mode, bound_first_extract, plan_extract, update_state},
};

use crate::{
    Error, Result, Settings,
    alerts::{Alert, Alerts},
    stage::Stage,
};

/// The ingest stage and what to do when it fails.
pub const STAGE: Stage = Stage {
    name: "ingest",
    retryable: "nothing was committed; the next scheduled run retries. If it keeps failing, check the source database and the raw bucket",
    needs_fix: "fix the cause named above; nothing was committed",
};

/// A backfill (a request with `since`): its own name, so its failures and
/// recovery are told apart from the scheduled runs'.
pub const BACKFILL_STAGE: Stage = Stage {
    name: "backfill",
    retryable: "nothing was committed; a queued backfill is tried again by the next schedule (3 runs at most); one invoked by hand must be invoked again",
    needs_fix: "fix the cause named above; nothing was committed",
};

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

/// The stage's tuning from the settings, and what it reads from the source
/// file ([`super::source::configured`]).
pub fn ingest_options(settings: &Settings) -> Result<IngestOptions> {
    Ok(IngestOptions {
        lookback: settings.lookback,
        batch_rows: settings.batch_rows,
        file_rows: settings.file_rows,
        late_check_every: settings.late_check_every,
        max_rows: settings.ingest_max_rows,
        source: super::source::configured(settings)?,
    })
}

/// The stage's state, carried from manifest to manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestState {
    /// Per table, by name.
    pub tables: BTreeMap<String, TableState>,
    /// Backfills too large for one run, under way: per request (its
    /// [`backfill_key`]), how far each table has got. Committed with the
    /// manifest that holds the rows, so a part is taken exactly once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backfills: BTreeMap<String, BackfillProgress>,
    /// Per table read, its columns as the catalog described them at the last
    /// run that read it (what its raw files hold from then on).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schemas: BTreeMap<String, Vec<SourceColumn>>,
}

/// How far a backfill read in parts has got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackfillProgress {
    /// Tables read to the end.
    pub done: Vec<String>,
    /// Per table under way, the last primary key read.
    pub after_key: BTreeMap<String, i32>,
    /// Runs that read a part so far.
    pub parts: u32,
}

/// The name a backfill's progress goes by: the same request (tables and
/// `since`) invoked again goes on where the previous run stopped; once it
/// has finished, the same request starts over.
pub fn backfill_key(request: &IngestRequest) -> Option<String> {
    let since = request.since?;
    let tables = request
        .tables
        .as_ref()
        .map_or_else(|| "*".to_string(), |t| t.join(","));
    Some(format!("{}|{tables}", since.to_rfc3339()))
}

/// One table's part of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// Table name.
    pub table: String,
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
    /// Parts of a first extract read in parts so far, while one is under
    /// way (the next run reads the next part); `None` otherwise.
    pub first_load_parts: Option<u32>,
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
    /// Tables whose first extract goes on in the next run (read in parts:
    /// `TRIBUTARY_INGEST_MAX_ROWS`), or that wait for it.
    pub first_loads_pending: Vec<String>,
    /// For a backfill larger than `TRIBUTARY_INGEST_MAX_ROWS`: the tables
    /// still to read, in the next run of the same request.
    pub backfill_pending: Vec<String>,
    /// Tables left out of this run, and why (each alerted).
    pub stopped: Vec<TableStop>,
}

impl IngestReport {
    /// Rows written across tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Runs the ingest stage once. On failure an alert names the run and error;
/// a request naming a table the source file does not configure is refused
/// first, unalerted: it is the caller's to see.
pub async fn ingest(
    source: &mut Client,
    raw: &Lake,
    options: &IngestOptions,
    request: &IngestRequest,
    alerts: &dyn Alerts,
) -> Result<IngestReport> {
    let selected = selected_tables(request, &options.source)?;
    let stage = if request.since.is_some() {
        BACKFILL_STAGE
    } else {
        STAGE
    };
    let selected = &selected;
    stage
        .run(alerts, |run_id| async move {
            ingest_run(source, raw, options, (request, selected), alerts, &run_id).await
        })
        .await
}

/// The configured tables a request reads (all of them for the scheduled
/// run); a name that is not configured is refused.
pub fn selected_tables(request: &IngestRequest, source: &SourceSpec) -> Result<SourceSpec> {
    if source.tables.is_empty() {
        return Err(Error::UnknownTable(
            request
                .tables
                .as_ref()
                .map_or_else(String::new, |t| t.join(",")),
            "none are configured (sources/totesys.toml)".to_string(),
        ));
    }
    let tables = match &request.tables {
        None => source.tables.clone(),
        Some(names) => names
            .iter()
            .map(|name| {
                source
                    .table(name)
                    .cloned()
                    .ok_or_else(|| Error::UnknownTable(name.clone(), source.names()))
            })
            .collect::<Result<_>>()?,
    };
    Ok(SourceSpec {
        schema: source.schema.clone(),
        tables,
    })
}

async fn ingest_run(
    source: &mut Client,
    raw: &Lake,
    options: &IngestOptions,
    (request, selected): (&IngestRequest, &SourceSpec),
    alerts: &dyn Alerts,
    run_id: &RunId,
) -> Result<IngestReport> {
    let started = Instant::now();
    let started_at = run_id.started_at().unwrap_or_else(Utc::now);
    let log = ManifestLog::new(raw.clone(), Log::Totesys);
    let previous: Option<Manifest<IngestState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let mut state = previous.map(|m| m.state).unwrap_or_default();
    tracing::info!(stage = STAGE.name, run_id = %run_id, previous_seq, tables = selected.tables.len(), "run started");

    let (tx, snapshot) = open_snapshot(source).await?;
    let mut tables = Vec::new();
    let mut stopped = Vec::new();
    for found in discover(&tx, selected).await? {
        match found {
            Ok(table) => tables.push(table),
            // A backfill asked for this table: it fails (a queued one is
            // tried again by the next schedules, then given up with an alert).
            Err(stop) if request.since.is_some() => return Err(Error::TableStopped(stop)),
            Err(stop) => {
                tracing::warn!(stage = STAGE.name, run_id = %run_id, table = %stop.table, reason = %stop.reason, "table left out of this run");
                alerts.send(&stop_alert(run_id, &stop)).await;
                stopped.push(stop);
            }
        }
    }
    let mut files = Vec::new();
    let mut reports = Vec::new();
    let mut rows_left = options.max_rows;
    let mut pending = Vec::new();
    let backfill = backfill_key(request);
    let mut progress = backfill
        .as_ref()
        .map(|key| state.backfills.remove(key).unwrap_or_default());
    let mut backfill_pending = Vec::new();
    for table in tables {
        if progress
            .as_ref()
            .is_some_and(|p| p.done.iter().any(|t| *t == table.name))
        {
            continue;
        }
        let table_state = state.tables.entry(table.name.clone()).or_default();
        let compare_columns = compare_columns(state.schemas.get(&table.name), table_state, &table);
        let (mut plan, mode) = plan_extract(
            table.clone(),
            table_state,
            request.since,
            (&snapshot.snapshot, snapshot.now_ms),
            started_at,
            options,
        );
        let estimate = match mode {
            Mode::Full => estimated_rows(&tx, &table, rows_left).await?,
            _ => None,
        };
        plan.compare_columns = compare_columns;
        if !bound_first_extract(&mut plan, mode, table_state, rows_left, estimate, options) {
            tracing::info!(stage = STAGE.name, run_id = %run_id, table = table.name, max_rows = options.max_rows, "first extract waits for the next run: this run read its bound");
            pending.push(table.name.clone());
            continue;
        }
        if let Some(progress) = progress.as_ref().filter(|_| options.max_rows > 0) {
            // A backfill is read in primary-key order, in parts that each
            // fit one run, like a first load.
            if rows_left == 0 {
                backfill_pending.push(table.name.clone());
                continue;
            }
            plan.part = Some(KeyRange {
                after_key: progress.after_key.get(&table.name).copied(),
                limit: rows_left,
            });
        }
        let table_started = Instant::now();
        let (mut stats, written) =
            extract_to_lake(&tx, &plan, raw, run_id, started_at, options.file_rows).await?;
        stats.elapsed_ms = table_started.elapsed().as_millis() as u64;
        rows_left = rows_left.saturating_sub(stats.rows_read);
        if let (Some(progress), Mode::Backfill) = (progress.as_mut(), mode) {
            match plan.part {
                Some(part) if stats.rows_read >= part.limit => {
                    if let Some(key) = stats.max_key {
                        progress.after_key.insert(table.name.clone(), key);
                    }
                    backfill_pending.push(table.name.clone());
                }
                _ => {
                    progress.after_key.remove(&table.name);
                    progress.done.push(table.name.clone());
                }
            }
        }
        // Read: from now on its files hold these columns.
        state
            .schemas
            .insert(table.name.clone(), table.columns.clone());
        update_state(
            table_state,
            (&plan, mode),
            &stats,
            &snapshot.snapshot,
            run_id,
            started_at,
        );
        let report = TableReport {
            table: table.name.clone(),
            rows: stats.rows_sent,
            files: written.len(),
            bytes: written.iter().map(|f| f.bytes).sum(),
            already_ingested: stats.rows_already_ingested,
            late_rows: stats.late_rows,
            changed_in_place: stats.rows_changed_in_place,
            watermark: table_state.watermark,
            first_load_parts: table_state.first_load.as_ref().map(|load| load.parts),
        };
        if let Some(parts) = report.first_load_parts {
            tracing::info!(stage = STAGE.name, run_id = %run_id, table = %table.name, parts, "first extract read in parts: the next run reads the next one");
            pending.push(table.name.clone());
        }
        tracing::info!(
            stage = STAGE.name,
            run_id = %run_id,
            table = %table.name,
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
                    stage: STAGE.name,
                    run_id: run_id.to_string(),
                    table: Some(table.name.clone()),
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
                    &table,
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
    if let (Some(key), Some(mut progress)) = (backfill, progress)
        && !backfill_pending.is_empty()
    {
        progress.parts += 1;
        tracing::info!(stage = BACKFILL_STAGE.name, run_id = %run_id, parts = progress.parts, tables = ?backfill_pending, "backfill read in parts: the same request goes on in the next run");
        state.backfills.insert(key, progress);
    }

    let manifest = log
        .commit(previous_seq, run_id, started_at, files, state)
        .await?;
    let report = IngestReport {
        run_id: run_id.clone(),
        seq: manifest.seq,
        tables: reports,
        elapsed: started.elapsed(),
        first_loads_pending: pending,
        backfill_pending,
        stopped,
    };
    tracing::info!(
        stage = STAGE.name,
        run_id = %run_id,
        seq = report.seq,
        rows = report.rows(),
        ms = report.elapsed.as_millis() as u64,
        "run committed"
    );
    Ok(report)
}

/// How many rows a table holds, as far as the bound `limit` cares: the
/// planner's estimate, or, for a table never analysed, a count that stops
/// after `limit + 1` rows.
async fn estimated_rows(
    tx: &tokio_postgres::Transaction<'_>,
    table: &SourceTable,
    limit: u64,
) -> Result<Option<u64>> {
    let name = table.quoted_name();
    let row = tx
        .query_one(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = $1::text::regclass",
            &[&name],
        )
        .await?;
    if let Ok(estimate) = u64::try_from(row.get::<_, i64>(0)) {
        return Ok(Some(estimate));
    }
    let limit = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let row = tx
        .query_one(
            &format!("SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT $1) s"),
            &[&limit],
        )
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).ok())
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
    let table = Arc::clone(&plan.table);
    let (sender, receiver) = mpsc::channel(2);
    let date = started_at.date_naive();
    let run = run_id.clone();
    let writer = tokio::spawn(write_dataset(
        raw.clone(),
        table.name.clone(),
        table.arrow_schema(),
        file_rows,
        move |part| keys::raw_totesys_file(&table.name, date, &run, part),
        receiver,
    ));
    let extracted = extract_table(tx, plan, sender).await;
    let written = writer
        .await
        .map_err(|e| Error::Lake(tributary_lake::Error::Task(e)))?;
    // The writer's error is the cause when both failed (the extract only saw
    // its channel close).
    let written = written?;
    Ok((extracted?, written.files))
}

/// How this run compares re-read rows with the versions the state keeps.
///
/// Fingerprints cover the columns a table had when they were taken: those
/// recorded (or, in state written before columns were recorded, the star
/// schema's, which is all the extract read then). When the table has only
/// gained columns since, the same columns are compared, so nothing is taken
/// for a change made in place. When a column went or changed, no kept
/// fingerprint can match: the kept versions are dropped, and rows read again
/// are written again (the transform keeps each version once).
fn compare_columns(
    recorded: Option<&Vec<SourceColumn>>,
    state: &mut TableState,
    table: &SourceTable,
) -> Option<Vec<usize>> {
    let model;
    let before = match recorded {
        Some(columns) => columns,
        None if state.watermark.is_some() => {
            model = tributary_totesys::TableDef::by_name(&table.name)
                .map(|def| SourceTable::from_model(def).columns.clone())?;
            &model
        }
        None => return None,
    };
    if *before == table.columns {
        return None;
    }
    let positions: Option<Vec<usize>> = before
        .iter()
        .map(|old| table.columns.iter().position(|c| c == old))
        .collect();
    if positions.is_none() {
        state.recent_keys.clear();
        state.ingested_since_check.clear();
    }
    positions
}

/// The alert for a table left out of a run.
fn stop_alert(run_id: &RunId, stop: &TableStop) -> Alert {
    Alert {
        stage: STAGE.name,
        run_id: run_id.to_string(),
        table: Some(stop.table.clone()),
        message: format!(
            "{}; this table is not read until it is mended, the other tables go on",
            stop.reason
        ),
        action: stop.action.clone(),
    }
}

fn late_rows_alert(
    run_id: &RunId,
    table: &SourceTable,
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
        stage: STAGE.name,
        run_id: run_id.to_string(),
        table: Some(table.name.clone()),
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
        action: "late rows are in the raw lake and flow on. A row changed without a new last_updated is in \
                 the raw lake too, but a version is (id, last_updated): the processed lake and the warehouse \
                 keep the first content of that version, not the change. If this repeats, either a source \
                 transaction runs longer than the lookback (raise TRIBUTARY_LOOKBACK or find the slow writer) \
                 or the source updates rows without setting last_updated (fix the writer)"
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
        let source = crate::totesys::source::model_defaults();
        let err = selected_tables(&request, &source).unwrap_err().to_string();
        assert!(
            err.contains("\"users; --\"") && err.contains("sales_order"),
            "{err}"
        );
        let one = IngestRequest {
            tables: Some(vec!["payment".into()]),
            since: None,
        };
        let selected = selected_tables(&one, &source).unwrap();
        assert_eq!(
            selected.tables,
            vec![source.table("payment").unwrap().clone()]
        );
        let none = selected_tables(&IngestRequest::default(), &SourceSpec::default());
        assert!(
            none.unwrap_err()
                .to_string()
                .contains("none are configured")
        );
    }
}
