//! One table's incremental extract, inside a REPEATABLE READ snapshot.
//!
//! The query is `COPY (SELECT … WHERE last_updated > lower_bound …) TO STDOUT
//! (FORMAT binary)`, streamed through [`CopyDecoder`] into Arrow batches and
//! handed to a channel, so memory is bounded by the batch size.
//!
//! Two nets keep changes from being lost:
//! - the *lookback*: the lower bound sits some minutes before the previous
//!   watermark, catching transactions that committed late with an older
//!   `last_updated`; rows the lake already holds (same key and last_updated)
//!   are dropped here;
//! - the *late-commit rescue*: rows whose creating transaction was not yet
//!   visible to the previous run's snapshot (judged by `xmin`) are read even
//!   when their `last_updated` is older than the lookback. They are counted as
//!   late so the caller can report them.

use std::{collections::HashSet, sync::Arc};

use arrow_array::{Array, BooleanArray, Int32Array, RecordBatch, TimestampMillisecondArray};
use futures_util::{StreamExt, pin_mut};
use tokio::sync::mpsc;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use crate::{Error, Result, SourceTable, copy_binary::CopyDecoder, source::quote_ident};

/// The source's view for one ingest run.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    /// `pg_current_snapshot()` as text (`xmin:xmax:xip,…`).
    pub snapshot: String,
    /// The source's clock at the start of the snapshot, ms since the epoch (UTC).
    pub now_ms: i64,
}

/// Opens the read-only REPEATABLE READ transaction every table of a run is
/// read in, so all 11 tables come from one consistent snapshot.
pub async fn open_snapshot(client: &mut Client) -> Result<(Transaction<'_>, SnapshotInfo)> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let row = tx
        .query_one(
            "SELECT pg_current_snapshot()::text, \
             (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            &[],
        )
        .await?;
    let info = SnapshotInfo {
        snapshot: row.get(0),
        now_ms: row.get(1),
    };
    Ok((tx, info))
}

/// What one table's extract reads.
#[derive(Debug, Clone)]
pub struct ExtractPlan {
    /// The table, as discovered this run.
    pub table: Arc<SourceTable>,
    /// Read rows with `last_updated` strictly after this (ms since the epoch);
    /// `None` reads the whole table.
    pub lower_bound_ms: Option<i64>,
    /// The previous committed run's snapshot, for the late-commit rescue.
    pub previous_snapshot: Option<String>,
    /// `(primary key, last_updated ms, row fingerprint)` already in the lake:
    /// rows read again with the same content are dropped.
    pub already_ingested: HashSet<RowVersion>,
    /// Keep keys whose last_updated is within this of the newest one seen.
    pub lookback_ms: i64,
    /// Rows per Arrow batch.
    pub batch_rows: usize,
    /// Keep the version of every row sent (for the next late-commit check).
    pub record_versions: bool,
    /// The source's clock (ms): rows stamped after it are counted as future.
    pub source_now_ms: i64,
    /// A bounded part of a first extract too large for one run: rows in
    /// primary-key order after a key, at most so many. `None`: no bound.
    pub part: Option<KeyRange>,
    /// The columns `already_ingested`'s fingerprints were taken over, when
    /// the table has gained columns since (positions in this read); `None`:
    /// all of them.
    pub compare_columns: Option<Vec<usize>>,
}

/// One part of a first extract read in primary-key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRange {
    /// Read keys after this one (`None`: from the first).
    pub after_key: Option<i32>,
    /// Read at most this many rows.
    pub limit: u64,
}

/// What an extract saw.
#[derive(Debug, Clone, Default)]
pub struct ExtractStats {
    /// Rows the query returned.
    pub rows_read: u64,
    /// Rows dropped because the lake already had them.
    pub rows_already_ingested: u64,
    /// Rows sent on.
    pub rows_sent: u64,
    /// Newest last_updated among the rows sent (ms).
    pub max_last_updated_ms: Option<i64>,
    /// Rows sent whose last_updated is at or before the lower bound: late
    /// commits found by the rescue.
    pub late_rows: u64,
    /// Oldest last_updated among the late rows (ms).
    pub oldest_late_ms: Option<i64>,
    /// Rows whose key and last_updated the lake already had, with other
    /// content: the source changed them without touching last_updated.
    pub rows_changed_in_place: u64,
    /// Versions of sent rows within the lookback of the newest.
    pub recent_keys: Vec<RowVersion>,
    /// Versions of every row sent, when the plan asks for them.
    pub sent_versions: Vec<RowVersion>,
    /// Rows sent whose last_updated is after the source's clock.
    pub future_rows: u64,
    /// Newest last_updated among rows not in the future (ms).
    pub max_present_ms: Option<i64>,
    /// Largest primary key sent.
    pub max_key: Option<i32>,
    /// How long the extract took (ms), as the caller measured it.
    pub elapsed_ms: u64,
}

/// One row version as the dedup of re-read rows sees it: primary key,
/// last_updated (ms) and a fingerprint of the whole row. The fingerprint
/// keeps a row that was changed without a new last_updated (the real source
/// does this) from being dropped as a re-read.
pub type RowVersion = (i32, i64, u64);

/// FNV-1a over every value of row `row`: stable across processes and
/// versions, so fingerprints can be stored in manifests.
pub fn row_fingerprint(batch: &RecordBatch, row: usize) -> u64 {
    use arrow_array::{BooleanArray, Decimal128Array, StringArray};
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for column in batch.columns() {
        if column.is_null(row) {
            feed(&[0]);
            continue;
        }
        feed(&[1]);
        let any = column.as_any();
        if let Some(a) = any.downcast_ref::<Int32Array>() {
            feed(&a.value(row).to_le_bytes());
        } else if let Some(a) = any.downcast_ref::<StringArray>() {
            feed(&(a.value(row).len() as u64).to_le_bytes());
            feed(a.value(row).as_bytes());
        } else if let Some(a) = any.downcast_ref::<TimestampMillisecondArray>() {
            feed(&a.value(row).to_le_bytes());
        } else if let Some(a) = any.downcast_ref::<Decimal128Array>() {
            feed(&a.value(row).to_le_bytes());
        } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
            feed(&[u8::from(a.value(row))]);
        }
    }
    hash
}

/// Turns a timestamp (ms since the epoch) into the literal PostgreSQL parses.
fn pg_timestamp_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "-infinity".to_string())
}

/// A FROM item bringing in, as `b`, the snapshot held by the transaction-local
/// setting `tributary.previous_snapshot` (set with a bind parameter), its
/// xmin as a 64-bit number and that xmin's age.
pub const PREVIOUS_SNAPSHOT: &str = "(SELECT prev, \
       pg_snapshot_xmin(prev)::text::bigint AS prev_xmin, \
       age((pg_snapshot_xmin(prev)::text::bigint % 4294967296)::text::xid) AS prev_age \
    FROM (SELECT current_setting('tributary.previous_snapshot')::pg_snapshot AS prev) s) b";

/// True for a row of `t` whose creating transaction the snapshot `b`
/// ([`PREVIOUS_SNAPSHOT`]) could not see: inserted or updated since. The
/// row's xmin is widened to 64 bits from its age for the exact test;
/// `age(xmin)` first prunes every row older than the snapshot's xmin.
pub const NOT_VISIBLE_TO_PREVIOUS: &str = "(age(t.xmin) <= b.prev_age \
    AND NOT pg_visible_in_snapshot((b.prev_xmin + (b.prev_age - age(t.xmin)))::text::xid8, b.prev))";

/// The COPY statement. Identifiers come from the catalog, quoted; values
/// travel as transaction-local settings set with bind parameters, because
/// COPY itself cannot take parameters.
fn copy_statement(plan: &ExtractPlan) -> String {
    let table = &plan.table;
    let columns = table.quoted_columns("t");
    let cursor = quote_ident(&table.cursor);
    let name = table.quoted_name();
    let filter = match (plan.lower_bound_ms, &plan.previous_snapshot) {
        (None, _) => String::new(),
        (Some(_), None) => format!(
            "WHERE t.{cursor} > (SELECT current_setting('tributary.lower_bound')::timestamp)"
        ),
        (Some(_), Some(_)) => format!(
            ", {PREVIOUS_SNAPSHOT} \
             WHERE t.{cursor} > (SELECT current_setting('tributary.lower_bound')::timestamp) \
                OR {NOT_VISIBLE_TO_PREVIOUS}"
        ),
    };
    let (filter, order) = match plan.part {
        None => (filter, String::new()),
        Some(part) => {
            let key = format!("t.{}", quote_ident(&table.primary_key));
            let after = part.after_key.map_or(String::new(), |_| {
                format!("{key} > current_setting('tributary.after_key')::int")
            });
            let filter = match (filter.is_empty(), after.is_empty()) {
                (_, true) => filter,
                (true, false) => format!("WHERE {after}"),
                (false, false) => format!("{filter} AND {after}"),
            };
            (filter, format!(" ORDER BY {key} LIMIT {}", part.limit))
        }
    };
    format!("COPY (SELECT {columns} FROM {name} t {filter}{order}) TO STDOUT (FORMAT binary)")
}

/// Streams one table's changed rows as Arrow batches into `batches`.
pub async fn extract_table(
    tx: &Transaction<'_>,
    plan: &ExtractPlan,
    batches: mpsc::Sender<RecordBatch>,
) -> Result<ExtractStats> {
    tx.execute(
        "SELECT set_config('tributary.lower_bound', $1, true), \
                set_config('tributary.previous_snapshot', $2, true), \
                set_config('tributary.after_key', $3, true)",
        &[
            &plan
                .lower_bound_ms
                .map(pg_timestamp_text)
                .unwrap_or_default(),
            &plan.previous_snapshot.clone().unwrap_or_default(),
            &plan
                .part
                .and_then(|p| p.after_key)
                .map(|k| k.to_string())
                .unwrap_or_default(),
        ],
    )
    .await?;
    let stream = tx.copy_out(copy_statement(plan).as_str()).await?;
    pin_mut!(stream);

    let mut decoder = CopyDecoder::new(plan.table.clone(), plan.batch_rows);
    let mut tracker = ExtractTracker::new(plan);
    let mut ready = Vec::new();
    while let Some(chunk) = stream.next().await {
        decoder.feed(&chunk?, &mut ready)?;
        for batch in ready.drain(..) {
            tracker.forward(batch, &batches).await?;
        }
    }
    let rows_read = decoder.rows();
    if let Some(batch) = decoder.finish()? {
        tracker.forward(batch, &batches).await?;
    }
    let mut stats = tracker.finish();
    stats.rows_read = rows_read;
    Ok(stats)
}

/// Per-batch bookkeeping: duplicate dropping, watermark, late rows, recent keys.
struct ExtractTracker<'a> {
    plan: &'a ExtractPlan,
    key_column: usize,
    lu_column: usize,
    stats: ExtractStats,
    prune_at: usize,
    /// `(key, last_updated)` of `plan.already_ingested`, for a cheap first test.
    seen_keys: HashSet<(i32, i64)>,
}

impl<'a> ExtractTracker<'a> {
    fn new(plan: &'a ExtractPlan) -> Self {
        Self {
            plan,
            key_column: plan
                .table
                .column_index(&plan.table.primary_key)
                .unwrap_or(0),
            lu_column: plan.table.column_index(&plan.table.cursor).unwrap_or(0),
            stats: ExtractStats::default(),
            prune_at: 4096,
            seen_keys: plan
                .already_ingested
                .iter()
                .map(|(k, l, _)| (*k, *l))
                .collect(),
        }
    }

    async fn forward(&mut self, batch: RecordBatch, to: &mpsc::Sender<RecordBatch>) -> Result<()> {
        let table = self.plan.table.name.clone();
        let batch = self.drop_already_ingested(batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.observe(&batch);
        to.send(batch)
            .await
            .map_err(|_| Error::ReceiverClosed { table })
    }

    fn columns<'b>(
        &self,
        batch: &'b RecordBatch,
    ) -> (&'b Int32Array, &'b TimestampMillisecondArray) {
        let keys = batch
            .column(self.key_column)
            .as_any()
            .downcast_ref::<Int32Array>();
        let lus = batch
            .column(self.lu_column)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>();
        match (keys, lus) {
            (Some(k), Some(l)) => (k, l),
            // The decoder builds these types from the same table definition.
            _ => unreachable!("table definition and decoder disagree on column types"),
        }
    }

    fn drop_already_ingested(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        if self.plan.already_ingested.is_empty() {
            return Ok(batch);
        }
        let (keys, lus) = self.columns(&batch);
        // Fingerprints stored before the table gained columns cover only
        // the columns it had then.
        let compared = match &self.plan.compare_columns {
            Some(columns) => batch.project(columns)?,
            None => batch.clone(),
        };
        let mut in_place = 0;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| {
                let (key, lu) = (keys.value(row), lus.value(row));
                if !self.seen_keys.contains(&(key, lu)) {
                    return Some(true);
                }
                let version = (key, lu, row_fingerprint(&compared, row));
                let known = self.plan.already_ingested.contains(&version);
                in_place += u64::from(!known);
                Some(!known)
            })
            .collect();
        self.stats.rows_changed_in_place += in_place;
        let dropped = keep.false_count() as u64;
        if dropped == 0 {
            return Ok(batch);
        }
        self.stats.rows_already_ingested += dropped;
        Ok(arrow_select::filter::filter_record_batch(&batch, &keep)?)
    }

    fn observe(&mut self, batch: &RecordBatch) {
        let (keys, lus) = self.columns(batch);
        let batch_max = lus.values().iter().copied().max().unwrap_or(i64::MIN);
        if let Some(key) = keys.values().iter().copied().max() {
            self.stats.max_key = Some(self.stats.max_key.map_or(key, |k| k.max(key)));
        }
        let max = self
            .stats
            .max_last_updated_ms
            .unwrap_or(i64::MIN)
            .max(batch_max);
        self.stats.max_last_updated_ms = Some(max);
        if let Some(lower) = self.plan.lower_bound_ms {
            for lu in lus.values().iter().filter(|lu| **lu <= lower) {
                self.stats.late_rows += 1;
                self.stats.oldest_late_ms =
                    Some(self.stats.oldest_late_ms.map_or(*lu, |o| o.min(*lu)));
            }
        }
        // Only rows near the newest so far can end up in the lookback window;
        // fingerprint just those (a full extract in time order keeps few).
        let now = self.plan.source_now_ms;
        for lu in lus.values() {
            if *lu > now {
                self.stats.future_rows += 1;
            } else {
                self.stats.max_present_ms =
                    Some(self.stats.max_present_ms.map_or(*lu, |m| m.max(*lu)));
            }
        }
        // The window is measured from the newest present change: a row stamped
        // in the future must not push ordinary rows out of it.
        let floor = self
            .stats
            .max_present_ms
            .unwrap_or(max)
            .saturating_sub(self.plan.lookback_ms);
        for (row, (key, lu)) in keys.values().iter().zip(lus.values().iter()).enumerate() {
            if self.plan.record_versions {
                self.stats
                    .sent_versions
                    .push((*key, *lu, row_fingerprint(batch, row)));
            }
            if *lu >= floor {
                self.stats
                    .recent_keys
                    .push((*key, *lu, row_fingerprint(batch, row)));
            }
        }
        self.stats.rows_sent += batch.num_rows() as u64;
        if self.stats.recent_keys.len() > self.prune_at {
            self.prune();
            self.prune_at = (self.stats.recent_keys.len() * 2).max(4096);
        }
    }

    fn prune(&mut self) {
        if let Some(max) = self.stats.max_present_ms.or(self.stats.max_last_updated_ms) {
            let floor = max.saturating_sub(self.plan.lookback_ms);
            self.stats.recent_keys.retain(|(_, lu, _)| *lu >= floor);
        }
    }

    fn finish(mut self) -> ExtractStats {
        self.prune();
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MODEL_INPUTS, SourceTable};

    fn plan(lower: Option<i64>, snapshot: Option<&str>) -> ExtractPlan {
        ExtractPlan {
            table: SourceTable::from_model(&MODEL_INPUTS[10]),
            lower_bound_ms: lower,
            previous_snapshot: snapshot.map(str::to_string),
            already_ingested: HashSet::new(),
            lookback_ms: 600_000,
            batch_rows: 1024,
            record_versions: false,
            source_now_ms: i64::MAX,
            part: None,
            compare_columns: None,
        }
    }

    #[test]
    fn a_part_of_a_first_extract_reads_in_key_order_after_a_bound_key() {
        let first = copy_statement(&ExtractPlan {
            part: Some(KeyRange {
                after_key: None,
                limit: 500,
            }),
            ..plan(None, None)
        });
        assert!(
            first.contains("ORDER BY t.\"payment_id\" LIMIT 500"),
            "{first}"
        );
        assert!(!first.contains("WHERE"), "{first}");
        let next = copy_statement(&ExtractPlan {
            part: Some(KeyRange {
                after_key: Some(41),
                limit: 500,
            }),
            ..plan(None, None)
        });
        assert!(
            next.contains("WHERE t.\"payment_id\" > current_setting('tributary.after_key')::int"),
            "{next}"
        );
        assert!(!next.contains("41"), "values must not be spliced into SQL");
        let since = copy_statement(&ExtractPlan {
            part: Some(KeyRange {
                after_key: Some(41),
                limit: 500,
            }),
            ..plan(Some(0), None)
        });
        assert!(
            since.contains("lower_bound')::timestamp) AND t.\"payment_id\" >"),
            "{since}"
        );
    }

    #[test]
    fn statements_name_only_listed_identifiers_and_bind_values() {
        let full = copy_statement(&plan(None, None));
        assert!(full.starts_with("COPY (SELECT t.\"payment_id\""));
        assert!(!full.contains("WHERE"));
        let incremental = copy_statement(&plan(Some(0), None));
        assert!(incremental.contains("current_setting('tributary.lower_bound')"));
        let rescued = copy_statement(&plan(Some(0), Some("1:2:")));
        assert!(rescued.contains("pg_visible_in_snapshot"));
        assert!(
            !rescued.contains("1:2:"),
            "values must not be spliced into SQL"
        );
    }

    #[test]
    fn fingerprints_tell_rows_apart_by_any_value() {
        use arrow_array::StringArray;
        use std::sync::Arc;
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("id", arrow_schema::DataType::Int32, false),
            arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![1, 1, 1, 1])),
                Arc::new(StringArray::from(vec![
                    Some("/bin"),
                    Some("/home"),
                    None,
                    Some("/bin"),
                ])),
            ],
        )
        .unwrap();
        let prints: Vec<u64> = (0..4).map(|row| row_fingerprint(&batch, row)).collect();
        assert_eq!(prints[0], prints[3]);
        assert_ne!(prints[0], prints[1]);
        assert_ne!(prints[0], prints[2]);
        // Stored in manifests, so the value must never change between builds.
        assert_eq!(prints[0], row_fingerprint(&batch.slice(3, 1), 0));
    }

    #[test]
    fn timestamps_render_with_milliseconds() {
        assert_eq!(
            pg_timestamp_text(1_700_000_000_123),
            "2023-11-14 22:13:20.123"
        );
    }
}
