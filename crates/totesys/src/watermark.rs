//! Watermark planning: what each table's extract reads this run, and what
//! the lake knows about the table afterwards. Pure decisions over the
//! state a manifest carries (no database, no lake), so they are tested
//! without either.
//!
//! A table's watermark is the newest `last_updated` ingested; a run reads
//! from the watermark less the lookback and drops rows it already has
//! (recent keys). A run also reads the rows whose transaction was not
//! visible to the snapshot of the last check (`xmin`), whatever their
//! `last_updated`, as often as that check's measured cost allows (see
//! [`check_interval`]), and at least every `late_check_every`.

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tributary_lake::RunId;

use crate::{ExtractPlan, ExtractStats, KeyRange, RowVersion, SourceSpec, SourceTable};

/// Tuning of the stage.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// How far before the watermark each run re-reads.
    pub lookback: Duration,
    /// Rows per Arrow batch.
    pub batch_rows: usize,
    /// Rows per Parquet file.
    pub file_rows: u64,
    /// The longest time between two late-commit checks of a table (zero:
    /// every run). A check costs a visibility test per source row; a table
    /// whose check is cheap gets it more often (see [`check_interval`]).
    pub late_check_every: Duration,
    /// Rows a run reads at most for first extracts (0: no bound). A table
    /// larger than what is left of it is read in parts, in primary-key
    /// order, one part per run, so every run fits its time and memory.
    pub max_rows: u64,
    /// Which tables are read, by which key and cursor (the source file).
    pub source: Arc<SourceSpec>,
}

/// A first extract read in parts over several runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstLoad {
    /// The last primary key read so far.
    pub after_key: i32,
    /// The source's clock when the first part was read (ms). When the last
    /// part is in, this becomes the watermark, so the next run reads every
    /// change made while the parts were read (rows it already has are
    /// dropped downstream as versions seen).
    pub started_ms: i64,
    /// The snapshot of the first part: the late-commit check's reference.
    pub snapshot: String,
    /// When the first part was read.
    pub started_at: DateTime<Utc>,
    /// Parts read so far.
    pub parts: u32,
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
    /// A first extract in progress, read in parts (`None` when none is).
    pub first_load: Option<FirstLoad>,
    /// How long the last late-commit check (or full read) took, in ms.
    pub check_ms: Option<u64>,
}

/// The late-commit check takes at most about 1/`CHECK_SHARE` of the time:
/// a table whose check took `c` is checked again after `c × CHECK_SHARE`.
/// The check scans the whole table on the company's operational database,
/// for an event that is rare, so it gets about 1% of the time (less for a
/// check over 6 s, which the `late_check_every` cap makes come more often):
/// a table checked in 10 ms is checked every run, a million-row table
/// checked in 0.5–0.8 s every run or every other one (at 5%, as before,
/// its check was due again after 10–16 s).
pub const CHECK_SHARE: u32 = 100;

/// How long after its last check a table is checked again: its measured
/// cost times [`CHECK_SHARE`], never more than `late_check_every`. The 57
/// real `design` rows changed without a new `last_updated` cost
/// milliseconds to find, so a small table is checked every run; a large
/// one, whose check scans millions of rows, waits up to `late_check_every`.
pub fn check_interval(state: &TableState, late_check_every: Duration) -> Duration {
    state.check_ms.map_or(late_check_every, |ms| {
        Duration::from_millis(ms.saturating_mul(u64::from(CHECK_SHARE))).min(late_check_every)
    })
}

/// What kind of extract a table gets in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
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
pub fn plan_extract(
    table: Arc<SourceTable>,
    state: &TableState,
    since: Option<DateTime<Utc>>,
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
        part: None,
        compare_columns: None,
    };
    if let Some(since) = since {
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
    let every = check_interval(state, options.late_check_every);
    let due = state
        .checked_at
        .is_none_or(|at| (started_at - at).to_std().unwrap_or_default() >= every);
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
                table = incremental.table.name.as_str(),
                "no usable snapshot for the late-commit check (restored or replaced source database?); \
                 this run uses the lookback only and becomes the new reference"
            );
            (incremental, Mode::Reset)
        }
    }
}

/// Bounds a first extract to `rows_left` rows when the table may hold more
/// (by the planner's estimate; `None`: unknown) or a first load in parts is
/// under way. Returns `false` when the table must wait for the next run
/// (nothing left of this run's bound).
pub fn bound_first_extract(
    plan: &mut ExtractPlan,
    mode: Mode,
    state: &TableState,
    rows_left: u64,
    estimated_rows: Option<u64>,
    options: &IngestOptions,
) -> bool {
    if mode != Mode::Full || options.max_rows == 0 {
        return true;
    }
    let too_big = estimated_rows.is_none_or(|rows| rows > rows_left);
    if state.first_load.is_none() && !too_big {
        return true;
    }
    if rows_left == 0 {
        return false;
    }
    plan.part = Some(KeyRange {
        after_key: state.first_load.as_ref().map(|load| load.after_key),
        limit: rows_left,
    });
    true
}

/// Whether `current`'s xmax is at or after `previous`'s: the visibility
/// test against an old snapshot only means something on the same history.
pub fn xid_moved_forward(previous: &str, current: &str) -> bool {
    let xmax = |snapshot: &str| {
        snapshot
            .split(':')
            .nth(1)
            .and_then(|x| x.parse::<u64>().ok())
    };
    matches!((xmax(previous), xmax(current)), (Some(p), Some(c)) if c >= p)
}

/// Folds one extract into the table's state: the watermark (never past the
/// source's clock), the recent keys of the lookback window, the snapshot of
/// the last check and the run's figures.
pub fn update_state(
    state: &mut TableState,
    (plan, mode): (&ExtractPlan, Mode),
    stats: &ExtractStats,
    snapshot: &str,
    run_id: &RunId,
    started_at: DateTime<Utc>,
) {
    if let (Some(part), Mode::Full) = (plan.part, mode) {
        let first = state.first_load.take().unwrap_or(FirstLoad {
            after_key: i32::MIN,
            started_ms: plan.source_now_ms,
            snapshot: snapshot.to_string(),
            started_at,
            parts: 0,
        });
        state.last_run_id = Some(run_id.clone());
        state.last_run_at = Some(started_at);
        state.last_run_rows = stats.rows_sent;
        state.total_rows += stats.rows_sent;
        if stats.rows_read >= part.limit {
            // More to read: the next run goes on after the last key.
            state.first_load = Some(FirstLoad {
                after_key: stats.max_key.unwrap_or(first.after_key),
                parts: first.parts + 1,
                ..first
            });
            return;
        }
        // The last part: everything up to the first part's snapshot is in,
        // and what changed since comes with the next run's lookback and
        // late-commit check.
        state.watermark = DateTime::from_timestamp_millis(first.started_ms);
        state.recent_keys.clear();
        state.checked_snapshot = Some(first.snapshot);
        state.checked_at = Some(first.started_at);
        state.ingested_since_check.clear();
        return;
    }
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
            // A reset scans nothing extra: it says nothing of a check's cost.
            if mode != Mode::Reset {
                state.check_ms = Some(stats.elapsed_ms);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MODEL_INPUTS, SourceTable};

    #[test]
    fn rescue_is_only_used_while_transaction_ids_move_forward() {
        assert!(xid_moved_forward("100:105:", "104:110:101"));
        assert!(!xid_moved_forward("100:105:", "3:4:"));
        assert!(!xid_moved_forward("garbage", "3:4:"));
    }

    #[test]
    fn the_check_comes_as_often_as_its_cost_allows_and_at_least_every_late_check_every() {
        let most = Duration::from_secs(600);
        let mut state = TableState::default();
        // Never measured: the configured interval.
        assert_eq!(check_interval(&state, most), most);
        // A 20 ms check: again after 2 s, so every run.
        state.check_ms = Some(20);
        assert_eq!(check_interval(&state, most), Duration::from_secs(2));
        // A 0.7 s check (a million rows): after 70 s.
        state.check_ms = Some(700);
        assert_eq!(check_interval(&state, most), Duration::from_secs(70));
        // A 10 s check: capped at late_check_every.
        state.check_ms = Some(10_000);
        assert_eq!(check_interval(&state, most), most);
        // Zero means every run, whatever the cost.
        assert_eq!(check_interval(&state, Duration::ZERO), Duration::ZERO);

        // plan_extract follows it: a cheap check is due a minute later.
        let now = Utc::now();
        let state = TableState {
            watermark: Some(now),
            checked_snapshot: Some("100:105:".to_string()),
            checked_at: Some(now - chrono::Duration::seconds(60)),
            check_ms: Some(30),
            ..TableState::default()
        };
        let options = IngestOptions {
            lookback: Duration::from_secs(60),
            batch_rows: 10,
            file_rows: 100,
            late_check_every: most,
            max_rows: 0,
            source: Arc::default(),
        };
        let (_, mode) = plan_extract(
            SourceTable::from_model(&MODEL_INPUTS[0]),
            &state,
            None,
            ("104:110:", 0),
            now,
            &options,
        );
        assert_eq!(mode, Mode::Check);
        // An expensive one is not.
        let expensive = TableState {
            check_ms: Some(60_000),
            ..state
        };
        let (_, mode) = plan_extract(
            SourceTable::from_model(&MODEL_INPUTS[0]),
            &expensive,
            None,
            ("104:110:", 0),
            now,
            &options,
        );
        assert_eq!(mode, Mode::Incremental);
        // Its cost is what the extract measured.
        let mut after = expensive.clone();
        let (plan, _) = plan_extract(
            SourceTable::from_model(&MODEL_INPUTS[0]),
            &expensive,
            None,
            ("104:110:", 0),
            now,
            &options,
        );
        let stats = ExtractStats {
            elapsed_ms: 15,
            ..ExtractStats::default()
        };
        update_state(
            &mut after,
            (&plan, Mode::Check),
            &stats,
            "104:110:",
            &RunId::now(),
            now,
        );
        assert_eq!(after.check_ms, Some(15));
    }

    #[test]
    fn recent_keys_keep_only_the_lookback_window() {
        let mut state = TableState::default();
        let plan = ExtractPlan {
            table: SourceTable::from_model(&MODEL_INPUTS[0]),
            lower_bound_ms: None,
            previous_snapshot: None,
            already_ingested: [(1, 1_000, 7), (2, 9_000, 8)].into_iter().collect(),
            lookback_ms: 5_000,
            batch_rows: 10,
            record_versions: false,
            source_now_ms: i64::MAX,
            part: None,
            compare_columns: None,
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
