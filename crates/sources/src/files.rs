//! File drops as a source (`kind = "files"`): CSV, JSON lines and Parquet a partner
//! drops under a landing prefix (a folder or an S3 prefix), each table
//! declared with its key pattern, format and schema.
//!
//! One run, per table, per landing file matching the pattern:
//!
//! - **Received as is.** The file is copied byte for byte to
//!   `<table>/_received/<landing key>/<sha256>` in the source's raw lake,
//!   put-if-absent. A copy already there means the same bytes were taken
//!   before: the file is skipped, so a re-dropped identical file is a no-op.
//!   A changed file under the same name has another hash: it is a new
//!   version, received beside the old one, never over it. The listing's
//!   version tag of each file (size, modified time, entity tag) is kept in
//!   the manifest, so an unchanged file is not even downloaded again.
//! - **Parsed against the declared schema.** Good rows become one Parquet
//!   file (`<table>/date=<day>/…`); a row that does not fit (a value that
//!   does not parse, a NULL key, a malformed line) goes to
//!   `<table>/_quarantine/` with the landing key, its line and the reason.
//!   Nothing is dropped silently.
//! - **Deletes**, when the table declares them ([`FileDeletes`]): keys the
//!   newest snapshot lacks, or rows of a change feed marked deleted, become
//!   tombstones in `<table>/_deletes/`, as a PostgreSQL source's do.
//! - **One manifest** in the same log as a PostgreSQL source, so the
//!   warehouse load (`src_<name>`) applies file rows the same way: new
//!   versions replace the rows with their keys. A run that found nothing new
//!   commits nothing.

use std::{collections::BTreeMap, sync::Arc};

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{
        BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
        Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
    },
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tributary_lake::{Lake, Log, Manifest, ManifestLog, RunId, sha256_hex};

use crate::{
    Error, Result,
    config::{FileDeletes, SourceFile, TableOverride, glob},
    ingest::{SourceRun, SourceState, TableRun, source_lake},
    types::{PgColumnType, SourceColumn, arrow_schema},
};

/// The formats a dropped file may have.
const FORMATS: [&str; 3] = ["csv", "jsonl", "parquet"];

/// Checks the `[source]` and `[tables.*]` of a files source; the reason
/// when something is wrong.
pub(crate) fn check_config(
    landing_url: &Option<String>,
    tables: &BTreeMap<String, TableOverride>,
) -> std::result::Result<(), String> {
    if landing_url.as_deref().is_none_or(str::is_empty) {
        return Err(
            "kind = \"files\" needs landing_url, where files are dropped (file:///… or s3://bucket/prefix)"
                .to_string(),
        );
    }
    if tables.is_empty() {
        return Err("a files source declares its tables: [tables.<name>] with pattern, format, columns and primary_key".to_string());
    }
    for (table, t) in tables {
        let fail = |what: &str| Err(format!("[tables.{table}] {what}"));
        if t.pattern.as_deref().is_none_or(str::is_empty) {
            return fail("needs pattern, the landing keys of the table (e.g. \"orders/*.csv\")");
        }
        match t.format.as_deref() {
            Some(f) if FORMATS.contains(&f) => {}
            other => {
                return fail(&format!(
                    "format = {other:?}: use \"csv\", \"jsonl\" or \"parquet\""
                ));
            }
        }
        let columns = declared_columns(table, t)?;
        let Some(key) = &t.primary_key else {
            return fail("needs primary_key: rows of a new file replace the rows with their keys");
        };
        if let Some(missing) = key.iter().find(|k| !columns.iter().any(|c| &c.name == *k)) {
            return fail(&format!(
                "primary_key column {missing} is not among columns"
            ));
        }
        if let Some(column) = &t.partition {
            let declared = columns
                .iter()
                .find(|c| &c.name == column)
                .map(|c| c.ty.arrow_type());
            if !matches!(
                declared,
                Some(::arrow_schema::DataType::Date32 | ::arrow_schema::DataType::Timestamp(..))
            ) {
                return fail(&format!(
                    "partition = {column:?} must name a declared date or timestamp column"
                ));
            }
        }
        if t.cursor.is_some() || !t.types.is_empty() {
            return fail("cursor and types are for PostgreSQL sources; declare types in columns");
        }
        match &t.deletes {
            None => {}
            Some(FileDeletes::Mode(mode)) if mode == "snapshot" => {}
            Some(FileDeletes::Mode(other)) => {
                return fail(&format!(
                    "deletes = {other:?}: use \"snapshot\" (each file is the whole table) or \
                     {{ column = \"op\", values = [\"D\"] }} (an operation column)"
                ));
            }
            Some(FileDeletes::Marker { column, values }) => {
                if !columns.iter().any(|c| &c.name == column) {
                    return fail(&format!("deletes column {column} is not among columns"));
                }
                if key.contains(column) {
                    return fail(&format!(
                        "deletes column {column} is a primary_key column: name the operation column"
                    ));
                }
                if values.is_empty() {
                    return fail(
                        "deletes values is empty: name the values that mean deleted, e.g. [\"D\"]",
                    );
                }
                let ty = &columns
                    .iter()
                    .find(|c| &c.name == column)
                    .expect("found")
                    .ty;
                if !matches!(
                    ty,
                    PgColumnType::Text
                        | PgColumnType::Int2
                        | PgColumnType::Int4
                        | PgColumnType::Int8
                        | PgColumnType::Bool
                ) {
                    return fail(&format!(
                        "deletes column {column} is neither text, an integer nor boolean"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The declared columns of a files table, key columns NOT NULL.
fn declared_columns(
    table: &str,
    t: &TableOverride,
) -> std::result::Result<Vec<SourceColumn>, String> {
    if t.columns.is_empty() {
        return Err(format!(
            "[tables.{table}] needs columns, in order: [\"id bigint\", \"name text\", …]"
        ));
    }
    let key = t.primary_key.clone().unwrap_or_default();
    let mut out: Vec<SourceColumn> = Vec::new();
    for spec in &t.columns {
        let (name, ty) = spec.trim().split_once(char::is_whitespace).ok_or_else(|| {
            format!("[tables.{table}] column {spec:?}: write \"name type\", e.g. \"amount numeric(10,2)\"")
        })?;
        let parsed = PgColumnType::parse(ty.trim())
            .filter(supported)
            .ok_or_else(|| {
                format!(
                    "[tables.{table}] column {name}: type {:?} is not one a file column can have \
                     (smallint, integer, bigint, real, double precision, boolean, text, numeric(p,s), \
                     date, timestamp, timestamptz)",
                    ty.trim()
                )
            })?;
        if out.iter().any(|c| c.name == name) {
            return Err(format!("[tables.{table}] column {name} is declared twice"));
        }
        out.push(SourceColumn {
            name: name.to_string(),
            pg_type: ty.trim().to_string(),
            nullable: !key.iter().any(|k| k == name),
            ty: parsed,
            cast: None,
        });
    }
    Ok(out)
}

fn supported(ty: &PgColumnType) -> bool {
    matches!(
        ty,
        PgColumnType::Int2
            | PgColumnType::Int4
            | PgColumnType::Int8
            | PgColumnType::Float4
            | PgColumnType::Float8
            | PgColumnType::Bool
            | PgColumnType::Text
            | PgColumnType::Date
            | PgColumnType::Timestamp
            | PgColumnType::Timestamptz
    ) || ty.decimal().is_some()
}

/// One run of a files source: every new or changed landing file of every
/// declared table, received, parsed and committed in one manifest.
pub async fn run_files(raw: &Lake, source: &SourceFile) -> Result<SourceRun> {
    let landing_url = source.landing_url.clone().unwrap_or_default();
    let landing = Lake::from_url(&landing_url)?;
    let lake = source_lake(raw, &source.name);
    let log = ManifestLog::new(lake.clone(), Log::Source);
    let previous: Option<Manifest<SourceState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let mut state = previous.map(|m| m.state).unwrap_or_default();
    let run_id = RunId::now();
    let started_at = run_id.started_at().unwrap_or_else(Utc::now);
    let day = started_at.date_naive().format("%Y-%m-%d").to_string();
    let landed = landing.list_with_versions("").await?;

    let mut files = Vec::new();
    let mut runs = Vec::new();
    for (table, t) in &source.tables {
        let columns = declared_columns(table, t).map_err(|reason| Error::Config {
            file: source.path.display().to_string(),
            reason,
        })?;
        let key = t.primary_key.clone().unwrap_or_default();
        let pattern = t.pattern.clone().unwrap_or_default();
        let format = t.format.clone().unwrap_or_default();
        let mut table_run = TableRun {
            table: table.clone(),
            rows: 0,
            deletes: 0,
            checked_deletes: false,
            unchanged: true,
            quarantined: 0,
            added_columns: Vec::new(),
        };
        let mut part = 0;
        let (known_tags, known_sha) = state
            .tables
            .get(table)
            .map(|t| (t.landed.clone(), t.received.clone()))
            .unwrap_or_default();
        let mut seen = BTreeMap::new();
        let mut received_now = BTreeMap::new();
        let key_columns: Vec<SourceColumn> = key
            .iter()
            .filter_map(|k| columns.iter().find(|c| &c.name == k).cloned())
            .collect();
        let mut deletes = Deletes::new(t.deletes.as_ref(), &key_columns);
        // In landing-key order: for a snapshot table the last file is the
        // newest snapshot, for a change feed the last row of a key decides.
        let mut matching: Vec<&(String, String)> =
            landed.iter().filter(|(k, _)| glob(&pattern, k)).collect();
        matching.sort();
        for (landing_key, version) in matching {
            seen.insert(landing_key.clone(), version.clone());
            // Listed as when it was last committed: not downloaded again.
            if known_tags.get(landing_key) == Some(version)
                && let Some(sha) = known_sha.get(landing_key)
            {
                received_now.insert(landing_key.clone(), sha.clone());
                continue;
            }
            let bytes = landing.get(landing_key).await?;
            let sha = sha256_hex(&bytes);
            received_now.insert(landing_key.clone(), sha.clone());
            // The same bytes as the version last committed: nothing new.
            // (Only the committed state says so: a copy left by a run that
            // failed before its commit, or an older version dropped again,
            // is parsed and applied.)
            if known_sha.get(landing_key) == Some(&sha) {
                continue;
            }
            let received = format!("{table}/_received/{landing_key}/{sha}");
            let parsed = parse(&format, &bytes, &columns);
            let copy = lake
                .put_file(
                    &received,
                    &format!("{table}/_received"),
                    parsed.lines,
                    bytes.clone(),
                )
                .await?;
            files.push(copy);
            table_run.unchanged = false;
            let file_name = tributary_lake::keys::run_file(&run_id, part, "parquet");
            part += 1;
            let quarantined = !parsed.bad.is_empty();
            let rows = match parsed.rows(&columns)? {
                Some(batch) => deletes.take(batch, quarantined)?,
                None => {
                    deletes.empty_file(landing_key, quarantined);
                    None
                }
            };
            if let Some(batch) = rows {
                table_run.rows += batch.num_rows() as u64;
                let entry = lake
                    .put_batch(&format!("{table}/date={day}/{file_name}"), table, &batch)
                    .await?;
                deletes.written(&entry.key);
                files.push(entry);
            }
            if let Some(batch) = parsed.quarantine(landing_key, started_at)? {
                table_run.quarantined += batch.num_rows() as u64;
                tracing::warn!(source = %source.name, table, file = %landing_key, rows = batch.num_rows(), "rows quarantined");
                files.push(
                    lake.put_batch(
                        &format!("{table}/_quarantine/date={day}/{file_name}"),
                        &format!("{table}/_quarantine"),
                        &batch,
                    )
                    .await?,
                );
            }
        }
        if let Some(batch) = deletes
            .tombstones(&lake, state.tables.get(table), started_at)
            .await?
        {
            table_run.deletes = batch.num_rows() as u64;
            files.push(
                lake.put_batch(
                    &format!(
                        "{table}/_deletes/date={day}/{}",
                        tributary_lake::keys::run_file(&run_id, 0, "parquet")
                    ),
                    &format!("{table}/_deletes"),
                    &batch,
                )
                .await?,
            );
        }
        table_run.checked_deletes = deletes.checked();
        if let Some(warning) = deletes.warning() {
            tracing::warn!(source = %source.name, table, "{warning}");
        }
        let entry = state.tables.entry(table.clone()).or_default();
        if let Some(rows) = deletes.snapshot_rows(&entry.snapshot_rows) {
            entry.snapshot_rows = rows;
        }
        entry.total_deletes += table_run.deletes;
        entry.landed = seen;
        entry.received = received_now;
        entry.columns = columns;
        entry.key = key;
        entry.partition = t.partition.clone();
        entry.total_rows += table_run.rows;
        if !table_run.unchanged {
            entry.scanned_at = Some(started_at);
        }
        runs.push(table_run);
    }
    if files.is_empty() {
        // Nothing new landed: nothing to commit.
        return Ok(SourceRun {
            source: source.name.clone(),
            run_id,
            seq: previous_seq,
            committed: false,
            tables: runs,
            stopped: Vec::new(),
        });
    }
    let manifest = log
        .commit(previous_seq, &run_id, started_at, files, state)
        .await?;
    Ok(SourceRun {
        source: source.name.clone(),
        run_id,
        seq: manifest.seq,
        committed: true,
        tables: runs,
        stopped: Vec::new(),
    })
}

/// The deletes of one table in one run (see [`FileDeletes`]).
enum Deletes<'a> {
    /// The table declares none.
    None,
    /// Each file is the whole table.
    Snapshot {
        key_columns: &'a [SourceColumn],
        /// Keys (with their values) of the files of this run before the
        /// newest.
        earlier: Vec<RecordBatch>,
        /// The newest file's rows, and whether it had quarantined rows.
        newest: Option<(RecordBatch, bool)>,
        /// The lake file the newest rows went to.
        newest_file: Option<String>,
        /// Every lake file this run's rows went to.
        written: Vec<String>,
        /// Why deletes were not inferred this run.
        skipped: Option<String>,
    },
    /// An operation column.
    Marker {
        key_columns: &'a [SourceColumn],
        column: &'a str,
        values: &'a [String],
        /// Per key hash: whether its last row so far deletes it.
        last: std::collections::HashMap<u128, bool>,
        /// The key columns of each deleting row, with the row's key hash.
        deleting: Vec<(RecordBatch, Vec<u128>)>,
        seen: bool,
    },
}

impl<'a> Deletes<'a> {
    fn new(spec: Option<&'a FileDeletes>, key_columns: &'a [SourceColumn]) -> Self {
        match spec {
            None => Deletes::None,
            Some(FileDeletes::Mode(_)) => Deletes::Snapshot {
                key_columns,
                earlier: Vec::new(),
                newest: None,
                newest_file: None,
                written: Vec::new(),
                skipped: None,
            },
            Some(FileDeletes::Marker { column, values }) => Deletes::Marker {
                key_columns,
                column,
                values,
                last: Default::default(),
                deleting: Vec::new(),
                seen: false,
            },
        }
    }

    /// A file's good rows: the rows to write (deleting rows of a change
    /// feed are kept aside as keys).
    fn take(&mut self, batch: RecordBatch, quarantined: bool) -> Result<Option<RecordBatch>> {
        match self {
            Deletes::None => Ok(Some(batch)),
            Deletes::Snapshot {
                key_columns,
                earlier,
                newest,
                skipped,
                ..
            } => {
                if let Some((previous, _)) = newest.take() {
                    earlier.push(key_batch(&previous, key_columns)?);
                }
                *skipped = None;
                *newest = Some((batch.clone(), quarantined));
                Ok(Some(batch))
            }
            Deletes::Marker {
                key_columns,
                column,
                values,
                last,
                deleting,
                seen,
            } => {
                *seen = true;
                let ops = batch
                    .column_by_name(column)
                    .expect("the operation column is declared");
                let mut is_delete = Vec::with_capacity(batch.num_rows());
                for row in 0..batch.num_rows() {
                    let text = cell_text(ops.as_ref(), row);
                    is_delete.push(text.is_some_and(|t| values.iter().any(|v| v == &t)));
                }
                let hashes = crate::keyset::row_hashes(
                    &crate::keyset::key_arrays(&batch, key_columns)?,
                    key_columns,
                )?;
                for (hash, deleted) in hashes.iter().zip(&is_delete) {
                    last.insert(*hash, *deleted);
                }
                let mask = arrow_array::BooleanArray::from(is_delete.clone());
                let gone = arrow_select::filter::filter_record_batch(&batch, &mask)?;
                if gone.num_rows() > 0 {
                    let gone_hashes = hashes
                        .iter()
                        .zip(&is_delete)
                        .filter(|(_, d)| **d)
                        .map(|(h, _)| *h)
                        .collect();
                    deleting.push((key_batch(&gone, key_columns)?, gone_hashes));
                }
                let keep = arrow_array::BooleanArray::from(
                    is_delete.iter().map(|d| !d).collect::<Vec<_>>(),
                );
                let rows = arrow_select::filter::filter_record_batch(&batch, &keep)?;
                Ok((rows.num_rows() > 0).then_some(rows))
            }
        }
    }

    /// A file with no good rows: a snapshot infers nothing from it.
    fn empty_file(&mut self, landing_key: &str, quarantined: bool) {
        if let Deletes::Snapshot {
            key_columns,
            earlier,
            newest,
            skipped,
            ..
        } = self
        {
            if let Some((previous, _)) = newest.take()
                && let Ok(keys) = key_batch(&previous, key_columns)
            {
                earlier.push(keys);
            }
            *skipped = Some(format!(
                "{landing_key} has no good rows{}: taken as a delivery mistake, not as every row \
                 deleted; no deletes inferred until the next snapshot",
                if quarantined {
                    " (all quarantined)"
                } else {
                    ""
                }
            ));
        }
    }

    /// The lake file the last taken rows went to.
    fn written(&mut self, key: &str) {
        if let Deletes::Snapshot {
            newest_file,
            newest,
            written,
            ..
        } = self
            && newest.is_some()
        {
            *newest_file = Some(key.to_string());
            written.push(key.to_string());
        }
    }

    /// Whether this run looked for deletes.
    fn checked(&self) -> bool {
        match self {
            Deletes::None => false,
            Deletes::Snapshot { newest, .. } => newest.is_some(),
            Deletes::Marker { seen, .. } => *seen,
        }
    }

    fn warning(&self) -> Option<String> {
        match self {
            Deletes::Snapshot {
                skipped: Some(why), ..
            } => Some(why.clone()),
            Deletes::Snapshot {
                newest: Some((_, true)),
                ..
            } => Some(
                "the newest snapshot has quarantined rows: their keys cannot be read, so no \
                 deletes are inferred from it"
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// The files the next snapshot is compared with, when this run took
    /// files: the newest snapshot's alone when deletes were inferred from
    /// it; otherwise the previous ones and every file of this run, so
    /// that a key they brought is still found missing later.
    fn snapshot_rows(&self, previous: &[String]) -> Option<Vec<String>> {
        match self {
            Deletes::Snapshot {
                newest: Some((_, false)),
                newest_file: Some(file),
                skipped: None,
                ..
            } => Some(vec![file.clone()]),
            Deletes::Snapshot { written, .. } if !written.is_empty() => {
                Some(previous.iter().chain(written).cloned().collect())
            }
            _ => None,
        }
    }

    /// The tombstones of this run (key columns and `_deleted_at`), once
    /// per key.
    async fn tombstones(
        &self,
        lake: &Lake,
        previous: Option<&crate::ingest::TableState>,
        at: DateTime<Utc>,
    ) -> Result<Option<RecordBatch>> {
        let mut parts = Vec::new();
        let mut taken = std::collections::HashSet::new();
        match self {
            Deletes::None => return Ok(None),
            Deletes::Marker {
                last,
                deleting,
                key_columns,
                ..
            } => {
                for (keys, hashes) in deleting {
                    let mask: Vec<bool> = hashes
                        .iter()
                        .map(|h| last.get(h) == Some(&true) && taken.insert(*h))
                        .collect();
                    parts.push(arrow_select::filter::filter_record_batch(
                        keys,
                        &arrow_array::BooleanArray::from(mask),
                    )?);
                }
                return finish(parts, key_columns, at);
            }
            Deletes::Snapshot {
                key_columns,
                earlier,
                newest: Some((newest, false)),
                skipped: None,
                ..
            } => {
                let now: std::collections::HashSet<u128> = crate::keyset::row_hashes(
                    &crate::keyset::key_arrays(newest, key_columns)?,
                    key_columns,
                )?
                .into_iter()
                .collect();
                let mut candidates = earlier.clone();
                for file in previous
                    .map(|p| p.snapshot_rows.as_slice())
                    .unwrap_or_default()
                {
                    let names: Vec<&str> = key_columns.iter().map(|c| c.name.as_str()).collect();
                    let bytes = lake.get(file).await?;
                    for batch in tributary_lake::parquet::decode_column_batches(bytes, &names)? {
                        candidates.push(batch?);
                    }
                }
                for keys in candidates {
                    let hashes = crate::keyset::row_hashes(
                        &crate::keyset::key_arrays(&keys, key_columns)?,
                        key_columns,
                    )?;
                    let mask: Vec<bool> = hashes
                        .iter()
                        .map(|h| !now.contains(h) && taken.insert(*h))
                        .collect();
                    let keys = key_batch(&keys, key_columns)?;
                    parts.push(arrow_select::filter::filter_record_batch(
                        &keys,
                        &arrow_array::BooleanArray::from(mask),
                    )?);
                }
                return finish(parts, key_columns, at);
            }
            Deletes::Snapshot { .. } => return Ok(None),
        }

        fn finish(
            parts: Vec<RecordBatch>,
            key_columns: &[SourceColumn],
            at: DateTime<Utc>,
        ) -> Result<Option<RecordBatch>> {
            let parts: Vec<RecordBatch> = parts.into_iter().filter(|p| p.num_rows() > 0).collect();
            if parts.is_empty() {
                return Ok(None);
            }
            let schema = parts[0].schema();
            let keys = arrow_select::concat::concat_batches(&schema, &parts)?;
            let mut fields: Vec<Field> = arrow_schema(key_columns)
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new(
                crate::keyset::DELETED_AT,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ));
            let mut arrays: Vec<ArrayRef> = keys.columns().to_vec();
            arrays.push(Arc::new(
                arrow_array::TimestampMicrosecondArray::from(vec![
                    at.timestamp_micros();
                    keys.num_rows()
                ])
                .with_timezone("UTC"),
            ));
            Ok(Some(RecordBatch::try_new(
                Arc::new(Schema::new(fields)),
                arrays,
            )?))
        }
    }
}

/// The key columns of `batch`, in key order, as a batch of their own.
fn key_batch(batch: &RecordBatch, key_columns: &[SourceColumn]) -> Result<RecordBatch> {
    let arrays = crate::keyset::key_arrays(batch, key_columns)?;
    Ok(RecordBatch::try_new(arrow_schema(key_columns), arrays)?)
}

/// A cell as text (the operation column of a change feed).
fn cell_text(array: &dyn arrow_array::Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int16Type, Int32Type, Int64Type};
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(row).to_string()),
        DataType::Int16 => Some(array.as_primitive::<Int16Type>().value(row).to_string()),
        DataType::Int32 => Some(array.as_primitive::<Int32Type>().value(row).to_string()),
        DataType::Int64 => Some(array.as_primitive::<Int64Type>().value(row).to_string()),
        DataType::Boolean => Some(array.as_boolean().value(row).to_string()),
        _ => None,
    }
}

/// A value of a declared column, parsed.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Decimal(i128),
    Date(i32),
    Micros(i64),
}

/// A file parsed: good rows and quarantined records.
#[derive(Debug, Default)]
struct Parsed {
    good: Vec<Vec<Value>>,
    bad: Vec<(u64, String, String)>,
    lines: u64,
}

impl Parsed {
    fn rows(&self, columns: &[SourceColumn]) -> Result<Option<RecordBatch>> {
        if self.good.is_empty() {
            return Ok(None);
        }
        let arrays: Vec<ArrayRef> = (0..columns.len())
            .map(|i| build(&columns[i].ty, self.good.iter().map(|row| &row[i])))
            .collect();
        Ok(Some(RecordBatch::try_new(arrow_schema(columns), arrays)?))
    }

    fn quarantine(&self, file: &str, at: DateTime<Utc>) -> Result<Option<RecordBatch>> {
        if self.bad.is_empty() {
            return Ok(None);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("file", DataType::Utf8, false),
            Field::new("line", DataType::Int64, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("record", DataType::Utf8, false),
            Field::new(
                "_quarantined_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let n = self.bad.len();
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(arrow_array::StringArray::from(vec![file; n])),
            Arc::new(arrow_array::Int64Array::from_iter_values(
                self.bad.iter().map(|b| b.0 as i64),
            )),
            Arc::new(arrow_array::StringArray::from_iter_values(
                self.bad.iter().map(|b| b.1.as_str()),
            )),
            Arc::new(arrow_array::StringArray::from_iter_values(
                self.bad.iter().map(|b| b.2.as_str()),
            )),
            Arc::new(
                arrow_array::TimestampMicrosecondArray::from(vec![at.timestamp_micros(); n])
                    .with_timezone("UTC"),
            ),
        ];
        Ok(Some(RecordBatch::try_new(schema, arrays)?))
    }
}

fn build<'a>(ty: &PgColumnType, values: impl Iterator<Item = &'a Value>) -> ArrayRef {
    macro_rules! fill {
        ($builder:expr, $pat:pat => $v:expr) => {{
            let mut b = $builder;
            for value in values {
                match value {
                    $pat => b.append_value($v),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }};
    }
    match ty {
        PgColumnType::Int2 => fill!(Int16Builder::new(), Value::Int(v) => *v as i16),
        PgColumnType::Int4 => fill!(Int32Builder::new(), Value::Int(v) => *v as i32),
        PgColumnType::Int8 => fill!(Int64Builder::new(), Value::Int(v) => *v),
        PgColumnType::Float4 => fill!(Float32Builder::new(), Value::Float(v) => *v as f32),
        PgColumnType::Float8 => fill!(Float64Builder::new(), Value::Float(v) => *v),
        PgColumnType::Bool => fill!(BooleanBuilder::new(), Value::Bool(v) => *v),
        PgColumnType::Date => fill!(Date32Builder::new(), Value::Date(v) => *v),
        PgColumnType::Timestamp => {
            fill!(TimestampMicrosecondBuilder::new(), Value::Micros(v) => *v)
        }
        PgColumnType::Timestamptz => fill!(
            TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            Value::Micros(v) => *v
        ),
        PgColumnType::Numeric { .. } => {
            let (precision, scale) = ty.decimal().unwrap_or((38, 0));
            fill!(
                Decimal128Builder::new().with_precision_and_scale(precision, scale).unwrap_or_default(),
                Value::Decimal(v) => *v
            )
        }
        _ => fill!(StringBuilder::new(), Value::Text(v) => v.as_str()),
    }
}

/// Parses one field's text as column `column` wants it.
fn value(column: &SourceColumn, text: Option<&str>) -> std::result::Result<Value, String> {
    let Some(text) = text else {
        return if column.nullable {
            Ok(Value::Null)
        } else {
            Err(format!(
                "{}: missing, and it is part of the key",
                column.name
            ))
        };
    };
    let bad = |what: &str| format!("{}: {text:?} is not {what}", column.name);
    let t = text.trim();
    Ok(match &column.ty {
        PgColumnType::Int2 => Value::Int(t.parse::<i16>().map_err(|_| bad("a smallint"))?.into()),
        PgColumnType::Int4 => Value::Int(t.parse::<i32>().map_err(|_| bad("an integer"))?.into()),
        PgColumnType::Int8 => Value::Int(t.parse::<i64>().map_err(|_| bad("a bigint"))?),
        PgColumnType::Float4 | PgColumnType::Float8 => {
            Value::Float(t.parse::<f64>().map_err(|_| bad("a number"))?)
        }
        PgColumnType::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Value::Bool(true),
            "false" | "f" | "0" | "no" => Value::Bool(false),
            _ => return Err(bad("a boolean")),
        },
        PgColumnType::Date => {
            let date =
                NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| bad("a date (YYYY-MM-DD)"))?;
            Value::Date((date - NaiveDate::default()).num_days() as i32)
        }
        PgColumnType::Timestamp => {
            let at = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
                .ok_or_else(|| bad("a timestamp (YYYY-MM-DD HH:MM:SS)"))?;
            Value::Micros(at.and_utc().timestamp_micros())
        }
        PgColumnType::Timestamptz => {
            let at = DateTime::parse_from_rfc3339(t)
                .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z"))
                .map_err(|_| bad("a timestamp with a zone (RFC 3339)"))?;
            Value::Micros(at.with_timezone(&Utc).timestamp_micros())
        }
        PgColumnType::Numeric { .. } => {
            let (precision, scale) = column.ty.decimal().unwrap_or((38, 0));
            Value::Decimal(
                scaled_decimal(t, precision, scale)
                    .ok_or_else(|| bad(&format!("a numeric({precision},{scale})")))?,
            )
        }
        _ => Value::Text(text.to_string()),
    })
}

/// `text` as an integer count of 10^-`scale`, exactly; `None` when it has
/// more digits after the point than `scale` or more than `precision` in all.
fn scaled_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > scale {
        return None;
    }
    let mut value: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    value = value.checked_mul(10i128.checked_pow((scale - fraction.len()) as u32)?)?;
    if value >= 10i128.checked_pow(u32::from(precision))? {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// Parses a whole file: rows that fit the columns, and the others with
/// their line and reason.
fn parse(format: &str, bytes: &[u8], columns: &[SourceColumn]) -> Parsed {
    let mut parsed = Parsed::default();
    if format == "parquet" {
        parse_parquet(bytes, columns, &mut parsed);
        return parsed;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        parsed
            .bad
            .push((1, "the file is not UTF-8 text".to_string(), String::new()));
        return parsed;
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        "jsonl" => parse_jsonl(text, columns, &mut parsed),
        _ => parse_csv(text, columns, &mut parsed),
    }
    parsed
}

fn keep(
    parsed: &mut Parsed,
    line: u64,
    record: &str,
    fields: Vec<Option<String>>,
    columns: &[SourceColumn],
) {
    let mut row = Vec::with_capacity(columns.len());
    for (column, field) in columns.iter().zip(fields) {
        match value(column, field.as_deref()) {
            Ok(v) => row.push(v),
            Err(reason) => {
                parsed.bad.push((line, reason, record.to_string()));
                return;
            }
        }
    }
    parsed.good.push(row);
}

fn parse_jsonl(text: &str, columns: &[SourceColumn], parsed: &mut Parsed) {
    for (index, line) in text.lines().enumerate() {
        let number = index as u64 + 1;
        parsed.lines = number;
        if line.trim().is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(_) => {
                parsed.bad.push((
                    number,
                    "the line is not a JSON object".to_string(),
                    line.to_string(),
                ));
                continue;
            }
            Err(e) => {
                parsed
                    .bad
                    .push((number, format!("not JSON: {e}"), line.to_string()));
                continue;
            }
        };
        let mut fields = Vec::with_capacity(columns.len());
        for c in columns {
            fields.push(match object.get(&c.name) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(n)) if n.is_f64() && significant_digits(&n.to_string()) > 15 => {
                    // Read as a double, it may already have lost digits.
                    parsed.bad.push((
                        number,
                        format!("{}: the JSON number {n} has more digits than a double keeps; send it as a string", c.name),
                        line.to_string(),
                    ));
                    fields.clear();
                    break;
                }
                Some(other) => Some(other.to_string()),
            });
        }
        if fields.len() == columns.len() {
            keep(parsed, number, line, fields, columns);
        }
    }
}

/// A Parquet file: its columns found by name, each value checked against
/// the declared type through its text (so a Parquet `int64` fits a
/// `numeric(12,2)` column, and `1.005` does not fit `numeric(10,2)`). The
/// line of a row is its number in the file, from 1.
fn parse_parquet(bytes: &[u8], columns: &[SourceColumn], parsed: &mut Parsed) {
    let file_error =
        |parsed: &mut Parsed, reason: String| parsed.bad.push((0, reason, String::new()));
    let batches = match tributary_lake::parquet::decode(bytes::Bytes::copy_from_slice(bytes)) {
        Ok((_, batches)) => batches,
        Err(e) => return file_error(parsed, format!("not a readable Parquet file: {e}")),
    };
    // The whole file's schema is checked before any row is taken: a
    // missing or unreadable column refuses the file, not half of it.
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return;
    };
    for column in columns {
        match schema.field_with_name(&column.name) {
            Err(_) => return file_error(parsed, format!("the file has no column {}", column.name)),
            Ok(field) if !readable(field.data_type()) => {
                return file_error(
                    parsed,
                    format!(
                        "column {} is {} in the file, which a declared column cannot take",
                        column.name,
                        field.data_type()
                    ),
                );
            }
            Ok(_) => {}
        }
    }
    let mut number = 0u64;
    for batch in &batches {
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .filter_map(|c| batch.column_by_name(&c.name).cloned())
            .collect();
        'rows: for row in 0..batch.num_rows() {
            number += 1;
            let mut fields = Vec::with_capacity(columns.len());
            for (array, column) in arrays.iter().zip(columns) {
                match text_of(array.as_ref(), row) {
                    Ok(text) => fields.push(text),
                    Err(reason) => {
                        parsed.bad.push((
                            number,
                            format!("{}: {reason}", column.name),
                            String::new(),
                        ));
                        continue 'rows;
                    }
                }
            }
            let record = fields
                .iter()
                .map(|f| f.as_deref().unwrap_or("NULL"))
                .collect::<Vec<_>>()
                .join(",");
            keep(parsed, number, &record, fields, columns);
        }
    }
    parsed.lines = number;
}

/// Whether a Parquet column of this Arrow type can be read into a declared
/// column (its values are then checked one by one).
fn readable(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
            | DataType::Date32
            | DataType::Timestamp(_, _)
    )
}

/// One Arrow value as text (`None` for NULL); `Err` with the reason when
/// it cannot be one (out of range, or a type [`readable`] refuses).
fn text_of(
    array: &dyn arrow_array::Array,
    row: usize,
) -> std::result::Result<Option<String>, String> {
    use arrow_array::{cast::AsArray, types::*};
    if array.is_null(row) {
        return Ok(None);
    }
    let micros = |value: i64, unit: &TimeUnit| match unit {
        TimeUnit::Second => value.checked_mul(1_000_000),
        TimeUnit::Millisecond => value.checked_mul(1_000),
        TimeUnit::Microsecond => Some(value),
        TimeUnit::Nanosecond => Some(value.div_euclid(1_000)),
    };
    Ok(Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::Float32 => array.as_primitive::<Float32Type>().value(row).to_string(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).to_string(),
        DataType::Decimal128(_, scale) => {
            let value = array.as_primitive::<Decimal128Type>().value(row);
            decimal_text(value, *scale)
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            NaiveDate::default()
                .checked_add_signed(chrono::Duration::days(days.into()))
                .ok_or_else(|| format!("date {days} days from 1970 is out of range"))?
                .to_string()
        }
        DataType::Timestamp(unit, zone) => {
            let raw = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row)
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
            };
            let at = micros(raw, unit)
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(|| format!("timestamp {raw} ({unit:?}) is out of range"))?;
            match zone {
                // An instant: RFC 3339 in UTC, which fits timestamptz.
                Some(_) => at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                None => at.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            }
        }
        other => return Err(format!("{other} values cannot be read")),
    }))
}

/// A Decimal128 value as exact text.
fn decimal_text(value: i128, scale: i8) -> String {
    if scale <= 0 {
        return (value * 10i128.pow(u32::from(scale.unsigned_abs()))).to_string();
    }
    let scale = scale as usize;
    let digits = value.unsigned_abs().to_string();
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{}{whole}.{fraction}", if value < 0 { "-" } else { "" })
}

/// Digits of a number's text that carry information (no sign, point,
/// exponent, or leading and trailing zeros).
fn significant_digits(text: &str) -> usize {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    digits.trim_start_matches('0').trim_end_matches('0').len()
}

/// RFC 4180 CSV: a header row naming the columns (extra ones are ignored),
/// fields quoted with `"` where they hold commas, quotes or line breaks. An
/// empty unquoted field is NULL; `""` is an empty string.
fn parse_csv(text: &str, columns: &[SourceColumn], parsed: &mut Parsed) {
    let records = csv_records(text);
    let Some((_, header_text, header)) = records.first() else {
        return;
    };
    let header: Vec<String> = header
        .iter()
        .map(|f| f.clone().unwrap_or_default().trim().to_string())
        .collect();
    let mut positions = Vec::new();
    for column in columns {
        match header.iter().position(|h| h == &column.name) {
            Some(i) => positions.push(i),
            None => {
                parsed.bad.push((
                    1,
                    format!("the header has no column {}", column.name),
                    header_text.clone(),
                ));
                return;
            }
        }
    }
    let last = records.len().saturating_sub(1);
    for (i, (line, record, fields)) in records.into_iter().enumerate().skip(1) {
        parsed.lines = parsed.lines.max(line);
        // A blank line: nothing, unless the file has one column, where it
        // is a record whose one value is empty (NULL; quarantined when it
        // is the key). A blank last line is the file's end either way.
        if fields.len() == 1 && fields[0].is_none() && (header.len() > 1 || i == last) {
            continue;
        }
        if fields.len() != header.len() {
            parsed.bad.push((
                line,
                format!("{} fields, the header has {}", fields.len(), header.len()),
                record,
            ));
            continue;
        }
        let chosen = positions.iter().map(|&i| fields[i].clone()).collect();
        keep(parsed, line, &record, chosen, columns);
    }
}

/// The records of a CSV text: (first line number, raw text, fields).
fn csv_records(text: &str) -> Vec<(u64, String, Vec<Option<String>>)> {
    let mut out = Vec::new();
    let mut fields: Vec<Option<String>> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut line: u64 = 1;
    let mut start_line: u64 = 1;
    let mut raw = String::new();
    let mut chars = text.chars().peekable();
    let finish_field = |fields: &mut Vec<Option<String>>, field: &mut String, quoted: &mut bool| {
        if field.is_empty() && !*quoted {
            fields.push(None);
        } else {
            fields.push(Some(std::mem::take(field)));
        }
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        if c != '\n' && c != '\r' || in_quotes {
            raw.push(c);
        }
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    raw.push('"');
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                in_quotes = true;
                quoted = true;
            }
            ',' => finish_field(&mut fields, &mut field, &mut quoted),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                finish_field(&mut fields, &mut field, &mut quoted);
                out.push((
                    start_line,
                    std::mem::take(&mut raw),
                    std::mem::take(&mut fields),
                ));
                line += 1;
                start_line = line;
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !fields.is_empty() || quoted {
        finish_field(&mut fields, &mut field, &mut quoted);
        out.push((start_line, raw, fields));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, nullable: bool) -> SourceColumn {
        SourceColumn {
            name: name.to_string(),
            ty: PgColumnType::parse(ty).unwrap(),
            pg_type: ty.to_string(),
            nullable,
            cast: None,
        }
    }

    #[test]
    fn a_blank_line_of_a_one_column_file_is_an_empty_value() {
        let key = [col("id", "text", false)];
        let parsed = parse("csv", b"id\nA1\n\nA3\n", &key);
        assert_eq!(parsed.good.len(), 2);
        assert_eq!(parsed.bad.len(), 1, "{:?}", parsed.bad);
        assert_eq!(parsed.bad[0].0, 3, "the blank line is line 3");
        let nullable = [col("note", "text", true)];
        let parsed = parse("csv", b"note\nx\n\ny\n", &nullable);
        assert_eq!(parsed.good.len(), 3, "x, NULL, y");
        assert!(parsed.bad.is_empty());
        let two = [col("id", "text", false), col("n", "text", true)];
        let parsed = parse("csv", b"id,n\nA,1\n\nB,2\n", &two);
        assert_eq!(
            (parsed.good.len(), parsed.bad.len()),
            (2, 0),
            "a blank line between records of two columns is nothing"
        );
    }

    #[test]
    fn csv_quotes_commas_line_breaks_and_nulls() {
        let records = csv_records("a,b,c\r\n1,\"x, \"\"y\"\"\",\n2,\"two\nlines\",\"\"\n");
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].0, 2);
        assert_eq!(
            records[1].2,
            [Some("1".into()), Some("x, \"y\"".into()), None]
        );
        assert_eq!(records[2].0, 3, "a record starts on its first line");
        assert_eq!(
            records[2].2,
            [
                Some("2".into()),
                Some("two\nlines".into()),
                Some(String::new())
            ]
        );
    }

    #[test]
    fn rows_that_do_not_fit_are_quarantined_with_line_and_reason() {
        let columns = [
            col("id", "bigint", false),
            col("amount", "numeric(10,2)", true),
            col("at", "timestamptz", true),
        ];
        let text = "note,id,amount,at\n\
                    ok,1,12.50,2024-05-01T10:00:00Z\n\
                    bad amount,2,12.505,\n\
                    no key,,3,\n\
                    short,4\n\
                    ok,5,-0.1,2024-05-01 12:00:00+02:00\n";
        let parsed = parse("csv", text.as_bytes(), &columns);
        assert_eq!(parsed.good.len(), 2);
        assert_eq!(parsed.good[0][1], Value::Decimal(1250));
        assert_eq!(parsed.good[1][1], Value::Decimal(-10));
        assert_eq!(parsed.good[0][2], parsed.good[1][2], "the same instant");
        let lines: Vec<u64> = parsed.bad.iter().map(|b| b.0).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert!(parsed.bad[0].1.contains("amount"), "{:?}", parsed.bad);
        assert!(parsed.bad[1].1.contains("key"), "{:?}", parsed.bad);
        assert!(parsed.bad[2].1.contains("fields"), "{:?}", parsed.bad);
        // A header without a declared column: the file is refused whole.
        let parsed = parse("csv", b"id,total\n1,2\n", &columns);
        assert!(parsed.good.is_empty());
        assert!(parsed.bad[0].1.contains("no column amount"));
    }

    #[test]
    fn json_lines_take_strings_numbers_and_nulls() {
        let columns = [
            col("id", "integer", false),
            col("name", "text", true),
            col("ok", "boolean", true),
        ];
        let text =
            "{\"id\": 1, \"name\": \"a\", \"ok\": true}\n\n{\"id\": 2}\n[1]\n{\"id\": \"x\"}\n";
        let parsed = parse("jsonl", text.as_bytes(), &columns);
        assert_eq!(parsed.good.len(), 2);
        assert_eq!(parsed.good[1], [Value::Int(2), Value::Null, Value::Null]);
        let lines: Vec<u64> = parsed.bad.iter().map(|b| b.0).collect();
        assert_eq!(lines, [4, 5]);
        // A number a double cannot hold exactly is refused, not rounded.
        let money = [
            col("id", "integer", false),
            col("amount", "numeric(20,2)", true),
        ];
        let text = "{\"id\": 1, \"amount\": 123456789012345678.91}\n{\"id\": 2, \"amount\": 12.5}\n{\"id\": 3, \"amount\": \"123456789012345678.91\"}\n";
        let parsed = parse("jsonl", text.as_bytes(), &money);
        assert_eq!(parsed.good.len(), 2);
        assert_eq!(parsed.good[1][1], Value::Decimal(12345678901234567891));
        assert_eq!(parsed.bad.len(), 1);
        assert!(
            parsed.bad[0].1.contains("send it as a string"),
            "{:?}",
            parsed.bad
        );
    }

    #[test]
    fn parquet_drops_are_checked_value_by_value_against_the_declared_types() {
        use arrow_array::{Decimal128Array, Int64Array, StringArray, TimestampMillisecondArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("extra", DataType::Utf8, true),
            Field::new("id", DataType::Int64, true),
            Field::new("price", DataType::Decimal128(12, 3), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+02:00".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])),
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None])),
                Arc::new(
                    Decimal128Array::from(vec![Some(12_500), Some(-5), Some(1)])
                        .with_precision_and_scale(12, 3)
                        .unwrap(),
                ),
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(1_000), None, Some(0)])
                        .with_timezone("+02:00"),
                ),
            ],
        )
        .unwrap();
        let bytes = tributary_lake::parquet::encode(schema, &[batch]).unwrap();
        let columns = [
            col("id", "bigint", false),
            col("price", "numeric(10,2)", true),
            col("at", "timestamptz", true),
        ];
        let parsed = parse("parquet", &bytes, &columns);
        assert_eq!(parsed.good.len(), 1, "{:?}", parsed.bad);
        assert_eq!(
            parsed.good[0],
            [
                Value::Int(1),
                Value::Decimal(1250),
                Value::Micros(1_000_000)
            ]
        );
        // -0.005 has three decimals; row 3 has no key.
        let lines: Vec<u64> = parsed.bad.iter().map(|b| b.0).collect();
        assert_eq!(lines, [2, 3]);
        assert!(parsed.bad[0].1.contains("price"), "{:?}", parsed.bad);
        // A missing column, or bytes that are not Parquet: the file is refused.
        let missing = parse("parquet", &bytes, &[col("sku", "text", true)]);
        assert!(missing.bad[0].1.contains("no column sku"));
        let junk = parse("parquet", b"PAR1 not really", &columns);
        assert!(junk.good.is_empty() && junk.bad[0].1.contains("Parquet"));
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(12_500, 3), "12.500");
    }

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(scaled_decimal("12.5", 10, 2), Some(1250));
        assert_eq!(scaled_decimal("-0.01", 10, 2), Some(-1));
        assert_eq!(scaled_decimal("12.500", 10, 2), Some(1250));
        assert_eq!(scaled_decimal("12.505", 10, 2), None);
        assert_eq!(scaled_decimal("1e3", 10, 2), None);
        assert_eq!(scaled_decimal("100000000", 10, 2), None, "11 digits");
        assert_eq!(scaled_decimal("", 10, 2), None);
    }
}
