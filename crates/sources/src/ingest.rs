//! One run of a configured PostgreSQL source into the raw lake.
//!
//! Every selected table is read inside one `REPEATABLE READ` snapshot:
//!
//! - **The first run** reads each table whole.
//! - **Later runs** read the rows whose creating transaction (`xmin`) the
//!   previous run's snapshot could not see: every insert and update
//!   committed since, exactly once, with no change-tracking column at all.
//!   A table with a declared `cursor` (a timestamp every change moves
//!   forward) narrows that scan to the rows stamped after the cursor's
//!   previous high-water mark minus [`CURSOR_LOOKBACK`], so an index can
//!   serve it; the delete check's full pass rescues anything older.
//! - **Deletes** are found every `deletes_every` by comparing keys: the key
//!   set of the previous check, plus the keys written since, minus the keys
//!   in the table now. Each missing key becomes a tombstone row in
//!   `<table>/_deletes/`, which the warehouse applies.
//! - **The schema** is read from the catalog each run and recorded in the
//!   manifest. A new column flows through (nullable); a dropped, renamed or
//!   retyped column stops that table only, with the command that accepts it.
//!
//! The run commits one manifest in the source's own folder of the raw lake
//! (`sources/<name>/_manifests/source/`), naming every file and the state
//! the next run starts from; a run that found every table unchanged (by
//! its statistics) commits nothing, so a quiet source read every minute
//! adds nothing to the lake or the warehouse.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, pin_mut};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::{Client, CopyOutStream, Transaction};
use tributary_lake::{FileEntry, Lake, Log, Manifest, ManifestLog, RunId, write_dataset};
use tributary_totesys::{
    SnapshotInfo,
    extract::{NOT_VISIBLE_TO_PREVIOUS, PREVIOUS_SNAPSHOT},
    open_snapshot,
    watermark::xid_moved_forward,
};

use crate::{
    Error, Result,
    config::SourceFile,
    decode::RowDecoder,
    keyset::{KeyHashes, Missing},
    types::{SourceColumn, arrow_schema, quote_ident, table_columns},
};

/// How far back a cursor scan starts before the previous high-water mark.
pub const CURSOR_LOOKBACK: std::time::Duration = std::time::Duration::from_secs(600);

/// A table whose statistics show no change is still read at least this
/// often: statistics can be reset, turned off or lost in a crash.
pub const READ_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Rows per Arrow batch read from the source.
const BATCH_ROWS: usize = 8192;
/// Rows per lake file at most.
const FILE_ROWS: u64 = 1_000_000;

/// What the lake knows about one table of a source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableState {
    /// The columns as last read (the schema contract).
    pub columns: Vec<SourceColumn>,
    /// The key columns.
    pub key: Vec<String>,
    /// The business date partitioning the processed table by month (the
    /// source file's `partition`), checked against the columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The snapshot of the last run that read this table.
    pub snapshot: Option<String>,
    /// The cursor's high-water mark (µs since the epoch), for a table with one.
    pub cursor_high_us: Option<i64>,
    /// The key-set file of the last delete check; `None` when that check
    /// read the table whole (its files are the key set) or none ran yet.
    pub keys_file: Option<String>,
    /// The last manifest whose keys the key set covers: the table's files
    /// in later manifests hold the keys written since (a check that read
    /// the table whole records the manifest before its own, so its files
    /// count among them).
    pub keys_seq: u64,
    /// When it ran.
    pub keys_checked_at: Option<DateTime<Utc>>,
    /// Rows written since the first run.
    pub total_rows: u64,
    /// Tombstones written since the first run.
    pub total_deletes: u64,
    /// The table's change counter in PostgreSQL's statistics (inserted +
    /// updated + deleted rows) just before the last run that read it.
    pub changes_seen: Option<i64>,
    /// When a run last read it.
    pub scanned_at: Option<DateTime<Utc>>,
    /// File drops: the version tag (size, modified time, entity tag) of
    /// each landing file as last received, by landing key. A file whose
    /// tag is unchanged is not downloaded again to be hashed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub landed: BTreeMap<String, String>,
    /// File drops: the sha256 of the version of each landing file last
    /// committed, by landing key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub received: BTreeMap<String, String>,
    /// File drops with `deletes = "snapshot"`: the lake files whose keys
    /// the next snapshot is compared with: the rows of the last snapshot
    /// deletes were inferred from, and of every file taken since.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshot_rows: Vec<String>,
}

/// The state of a source, carried from manifest to manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceState {
    /// Per table, by name.
    pub tables: BTreeMap<String, TableState>,
}

/// What a run did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRun {
    /// The table.
    pub table: String,
    /// Rows written (inserts and updates).
    pub rows: u64,
    /// Tombstones written.
    pub deletes: u64,
    /// Whether this run compared keys for deletes.
    pub checked_deletes: bool,
    /// Whether the table was left unread because its statistics show no
    /// change since the last read.
    pub unchanged: bool,
    /// Rows quarantined (file drops: rows that do not fit the schema).
    pub quarantined: u64,
    /// Columns added at the source and taken on in this run.
    pub added_columns: Vec<String>,
}

/// A table this run could not read, and why (the others went on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStop {
    /// The table.
    pub table: String,
    /// What is wrong and the command that fixes it.
    pub reason: String,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct SourceRun {
    /// The source.
    pub source: String,
    /// The run.
    pub run_id: RunId,
    /// The manifest it committed (the latest one when it committed none).
    pub seq: u64,
    /// Whether it committed a manifest: false when nothing was new.
    pub committed: bool,
    /// Per table read.
    pub tables: Vec<TableRun>,
    /// Tables stopped.
    pub stopped: Vec<TableStop>,
}

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Tables whose changed schema is accepted in this run.
    pub accept_schema: Vec<String>,
    /// Look for deletes now, whatever `deletes_every` says.
    pub check_deletes: bool,
}

/// The source's own folder of the raw lake.
pub fn source_lake(raw: &Lake, source: &str) -> Lake {
    raw.child(&format!("sources/{source}"))
}

/// Runs one source once: reads what changed, commits one manifest.
pub async fn run_source(
    client: &mut Client,
    raw: &Lake,
    source: &SourceFile,
    options: &RunOptions,
) -> Result<SourceRun> {
    let lake = source_lake(raw, &source.name);
    let log = ManifestLog::new(lake.clone(), Log::Source);
    let previous: Option<Manifest<SourceState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let mut state = previous.map(|m| m.state).unwrap_or_default();
    let previous_state = state.clone();
    let run_id = RunId::now();
    let started_at = run_id.started_at().unwrap_or_else(Utc::now);

    // The change counters are read before the snapshot is taken: a change
    // they count was committed before it, so the snapshot sees it; a change
    // they miss moves them before the next run.
    let counters = change_counters(client, &source.schema).await?;
    let (tx, SnapshotInfo { snapshot, .. }) = open_snapshot(client).await?;
    let tables = selected_tables(&tx, source).await?;
    let mut files = Vec::new();
    let mut runs = Vec::new();
    let mut stopped = Vec::new();
    for table in &tables {
        let previous = state.tables.get(table).cloned();
        let prepared = prepare(&tx, source, table, previous.as_ref(), options).await;
        let (columns, key, added) = match prepared {
            Ok(prepared) => prepared,
            Err(stop) => {
                tracing::warn!(source = %source.name, table, reason = %stop, "table stopped");
                stopped.push(TableStop {
                    table: table.clone(),
                    reason: stop,
                });
                continue;
            }
        };
        let mut table_state = previous.unwrap_or_default();
        let overrides = source.table(table);
        table_state.partition = overrides.partition.clone();
        let due = source.deletes_every.is_some_and(|every| {
            table_state
                .keys_checked_at
                .is_none_or(|at| (started_at - at).to_std().unwrap_or_default() >= every)
        }) || options.check_deletes;
        // What to read: everything the first time (or when the source's
        // history changed under the snapshot), else what changed.
        let since = table_state
            .snapshot
            .clone()
            .filter(|previous| xid_moved_forward(previous, &snapshot));
        if table_state.snapshot.is_some() && since.is_none() {
            tracing::warn!(source = %source.name, table, "the source's transaction ids went back (restored or replaced database?): the table is read whole again");
        }
        let counter = counters.get(table).copied();
        let unchanged = source.trust_statistics
            && since.is_some()
            && table_state.columns == columns
            && table_state.key == key
            && !due
            && added.is_empty()
            && counter.is_some()
            && counter == table_state.changes_seen
            && table_state.scanned_at.is_some_and(|at| {
                (started_at - at).to_std().unwrap_or_default() < READ_AT_LEAST_EVERY
            });
        if unchanged {
            state.tables.insert(table.clone(), table_state);
            runs.push(TableRun {
                table: table.clone(),
                rows: 0,
                deletes: 0,
                checked_deletes: false,
                unchanged: true,
                quarantined: 0,
                added_columns: added,
            });
            continue;
        }
        let cursor_from = match (&overrides.cursor, table_state.cursor_high_us) {
            (Some(_), Some(high)) if !due => Some(high - CURSOR_LOOKBACK.as_micros() as i64),
            _ => None,
        };
        tx.execute(
            "SELECT set_config('tributary.previous_snapshot', $1, true)",
            &[&since.clone().unwrap_or_default()],
        )
        .await?;
        let select = extract_sql(
            &source.schema,
            table,
            &columns,
            since.is_some(),
            overrides.cursor.as_deref().zip(cursor_from),
        );
        let date = started_at.date_naive();
        let run = run_id.clone();
        let prefix = table.clone();
        let key_cols = key_columns(&columns, &key);
        // The keys the lake knows, for a delete check due now.
        let known = match due {
            true => known_key_files(&log, table, &table_state, previous_seq).await?,
            false => Vec::new(),
        };
        // A whole read sees every key, and its files hold them all: a
        // delete check due now takes the keys from it instead of reading
        // the table a second time, and its files become the next check's
        // key set (no key-set file). The keys are hashed only when there
        // are known keys to compare them with: on a first run there are
        // none, so nothing can be missing.
        let whole_check = due && since.is_none();
        let tee =
            (whole_check && !known.is_empty()).then(|| (KeyHashes::default(), key_cols.clone()));
        let (written, tee) = extract(&tx, table, &columns, &select, &lake, tee, move |part| {
            format!(
                "{prefix}/date={}/{}",
                date.format("%Y-%m-%d"),
                tributary_lake::keys::run_file(&run, part, "parquet")
            )
        })
        .await?;
        let rows: u64 = written.iter().map(|f| f.rows).sum();
        if let Some(cursor) = &overrides.cursor {
            let high: Option<i64> = tx
                .query_one(
                    &format!(
                        "SELECT (extract(epoch FROM max({}::timestamp)) * 1000000)::int8 FROM {}.{}",
                        quote_ident(cursor),
                        quote_ident(&source.schema),
                        quote_ident(table)
                    ),
                    &[],
                )
                .await?
                .get(0);
            table_state.cursor_high_us = high.or(table_state.cursor_high_us);
        }
        files.extend(written);
        let mut deletes = 0;
        if due {
            let (now, keys_file) = if whole_check {
                let mut now = tee.unwrap_or_default();
                now.seal();
                (now, None)
            } else {
                let (now, file) =
                    scan_keys(&tx, &lake, source, table, key_cols.clone(), &run_id).await?;
                (now, Some(file))
            };
            let tombstones = compare_keys(
                &lake,
                table,
                (&key_cols, &key),
                &now,
                known,
                (&run_id, started_at),
            )
            .await?;
            deletes = tombstones.as_ref().map_or(0, |f| f.rows);
            files.extend(tombstones);
            match keys_file {
                // The key set is the new file: later manifests add to it.
                Some(file) => {
                    table_state.keys_file = Some(file.key.clone());
                    table_state.keys_seq = previous_seq + 1;
                    files.push(file);
                }
                // The key set is this run's files of the table (this
                // manifest's), and what later manifests add.
                None => {
                    table_state.keys_file = None;
                    table_state.keys_seq = previous_seq;
                }
            }
            table_state.keys_checked_at = Some(started_at);
        }
        table_state.columns = columns;
        table_state.key = key;
        table_state.snapshot = Some(snapshot.clone());
        table_state.changes_seen = counter;
        table_state.scanned_at = Some(started_at);
        table_state.total_rows += rows;
        table_state.total_deletes += deletes;
        state.tables.insert(table.clone(), table_state);
        runs.push(TableRun {
            table: table.clone(),
            rows,
            deletes,
            checked_deletes: due,
            unchanged: false,
            quarantined: 0,
            added_columns: added,
        });
    }
    tx.rollback().await?;
    if files.is_empty() && state == previous_state {
        // Every table unchanged since the last read (or stopped): a
        // manifest would repeat the last one. A scheduled run every minute
        // on a quiet source commits nothing, so the load has nothing to do.
        return Ok(SourceRun {
            source: source.name.clone(),
            run_id,
            seq: previous_seq,
            committed: false,
            tables: runs,
            stopped,
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
        stopped,
    })
}

/// Each table's change counter (rows inserted, updated and deleted since
/// statistics began), by name; empty when statistics are off
/// (`track_counts`). Partitioned tables have none.
async fn change_counters(client: &Client, schema: &str) -> Result<BTreeMap<String, i64>> {
    let rows = client
        .query(
            "SELECT s.relname::text, s.n_tup_ins + s.n_tup_upd + s.n_tup_del \
             FROM pg_stat_user_tables s \
             WHERE s.schemaname = $1 AND current_setting('track_counts')::bool",
            &[&schema],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The tables of the source's schema that the file selects (partitions are
/// read through their parent), by name.
async fn selected_tables(tx: &Transaction<'_>, source: &SourceFile) -> Result<Vec<String>> {
    let rows = tx
        .query(
            "SELECT c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
             ORDER BY 1",
            &[&source.schema],
        )
        .await?;
    let tables: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|name| source.selects(name))
        .collect();
    if tables.is_empty() {
        return Err(Error::Config {
            file: source.path.display().to_string(),
            reason: format!(
                "no table of schema {} matches include {:?} / exclude {:?}",
                source.schema, source.include, source.exclude
            ),
        });
    }
    Ok(tables)
}

/// The table's columns and key, checked against what the lake has: `Err`
/// with the reason (and the fix) when this table must stop.
/// Checks a table's `partition`: one of its columns, a date or a timestamp.
pub fn check_partition(
    table: &str,
    column: &str,
    columns: &[SourceColumn],
    file: &std::path::Path,
) -> std::result::Result<(), String> {
    let Some(found) = columns.iter().find(|c| c.name == column) else {
        return Err(format!(
            "{table}: partition column {column} named in {} is not in the table; name a date or \
             timestamp column, or remove the line",
            file.display()
        ));
    };
    match found.ty.arrow_type() {
        ::arrow_schema::DataType::Date32 | ::arrow_schema::DataType::Timestamp(..) => Ok(()),
        _ => Err(format!(
            "{table}: partition column {column} named in {} is {}, not a date or timestamp: \
             the processed table is partitioned by its month",
            file.display(),
            found.pg_type
        )),
    }
}

async fn prepare(
    tx: &Transaction<'_>,
    source: &SourceFile,
    table: &str,
    previous: Option<&TableState>,
    options: &RunOptions,
) -> std::result::Result<(Vec<SourceColumn>, Vec<String>, Vec<String>), String> {
    let overrides = source.table(table);
    let columns = table_columns(tx.client(), &source.schema, table, &overrides.types)
        .await
        .map_err(|e| e.to_string())?;
    let key = match overrides.primary_key.clone() {
        Some(key) => key,
        None => primary_key(tx, &source.schema, table)
            .await
            .map_err(|e| e.to_string())?,
    };
    if key.is_empty() {
        return Err(format!(
            "{table} has no primary key: declare one in {} ([tables.{table}] primary_key = [\"…\"])",
            source.path.display()
        ));
    }
    for column in key.iter().chain(overrides.cursor.iter()) {
        if !columns.iter().any(|c| &c.name == column) {
            return Err(format!(
                "{table}: column {column} named in {} is not in the table",
                source.path.display()
            ));
        }
    }
    if let Some(column) = &overrides.partition {
        check_partition(table, column, &columns, &source.path)?;
    }
    // A declared key on columns the source lets be NULL: rows with a NULL
    // key could be neither compared for deletes nor kept by key in the
    // warehouse, so the table stops (the others go on) until the rows or
    // the declaration are fixed. (A catalog key is never NULL.)
    let nullable: Vec<&String> = key
        .iter()
        .filter(|k| columns.iter().any(|c| &c.name == *k && c.nullable))
        .collect();
    if !nullable.is_empty() {
        let condition = nullable
            .iter()
            .map(|k| format!("{} IS NULL", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let rows: i64 = tx
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.{} WHERE {condition}",
                    quote_ident(&source.schema),
                    quote_ident(table)
                ),
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if rows > 0 {
            return Err(format!(
                "{table}: {rows} row(s) have a NULL in the declared primary_key ({}) of {}: \
                 a key must never be NULL; name columns that are never NULL, or fix those rows",
                nullable
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                source.path.display()
            ));
        }
    }
    let Some(previous) = previous.filter(|p| !p.columns.is_empty()) else {
        return Ok((columns, key, Vec::new()));
    };
    let change = schema_change(&previous.columns, &columns);
    if !change.breaking.is_empty() && !options.accept_schema.iter().any(|t| t == table) {
        return Err(format!(
            "{table}: {}; the lake and the warehouse keep the old shape until it is accepted: \
             `tributary sources --source {} --accept-schema {table}`",
            change.breaking.join("; "),
            source.name
        ));
    }
    // Added columns may be NULL for the rows written before them.
    let columns = columns
        .into_iter()
        .map(|mut c| {
            if change.added.contains(&c.name) {
                c.nullable = true;
            }
            c
        })
        .collect();
    Ok((columns, key, change.added))
}

/// How a table's columns changed between two runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchemaChange {
    /// Columns that are new.
    pub added: Vec<String>,
    /// Changes the lake cannot take on by itself, described.
    pub breaking: Vec<String>,
}

/// Compares the columns the lake has with the ones the source has now.
pub fn schema_change(before: &[SourceColumn], now: &[SourceColumn]) -> SchemaChange {
    let mut change = SchemaChange::default();
    for old in before {
        match now.iter().find(|c| c.name == old.name) {
            None => change.breaking.push(format!(
                "column {} ({}) was dropped or renamed",
                old.name, old.pg_type
            )),
            Some(new) if new.ty != old.ty => change.breaking.push(format!(
                "column {} changed type from {} to {}",
                old.name, old.pg_type, new.pg_type
            )),
            Some(_) => {}
        }
    }
    for new in now {
        if !before.iter().any(|c| c.name == new.name) {
            change.added.push(new.name.clone());
        }
    }
    change
}

/// The catalog's primary key of `schema.table`, in key order.
async fn primary_key(tx: &Transaction<'_>, schema: &str, table: &str) -> Result<Vec<String>> {
    let mut keys = tributary_totesys::source::primary_keys(tx, schema, &[table]).await?;
    Ok(keys.remove(table).unwrap_or_default())
}

/// The extract's query: every column (cast where overridden), and, when
/// `since_snapshot`, only rows the previous snapshot (the setting
/// `tributary.previous_snapshot`) could not see.
pub fn extract_sql(
    schema: &str,
    table: &str,
    columns: &[SourceColumn],
    since_snapshot: bool,
    cursor_from_us: Option<(&str, i64)>,
) -> String {
    let list = columns
        .iter()
        .map(|c| format!("t.{}", c.select_expr()))
        .collect::<Vec<_>>()
        .join(", ");
    let name = format!("{}.{}", quote_ident(schema), quote_ident(table));
    if !since_snapshot {
        return format!("COPY (SELECT {list} FROM {name} t) TO STDOUT (FORMAT binary)");
    }
    let cursor = cursor_from_us.map_or(String::new(), |(column, from)| {
        format!(
            "t.{} >= to_timestamp({from}::float8 / 1000000) AT TIME ZONE 'UTC' AND ",
            quote_ident(column)
        )
    });
    format!(
        "COPY (SELECT {list} FROM {name} t, {PREVIOUS_SNAPSHOT} \
         WHERE {cursor}{NOT_VISIBLE_TO_PREVIOUS}) TO STDOUT (FORMAT binary)"
    )
}

/// Streams one query's binary COPY through the decoder into lake files;
/// with `keys` (an empty set and the key columns), the keys of the rows
/// read are hashed into that set too, and it is returned.
async fn extract(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[SourceColumn],
    select: &str,
    lake: &Lake,
    keys: Option<(KeyHashes, Vec<SourceColumn>)>,
    key_for_part: impl Fn(u32) -> String + Send + 'static,
) -> Result<(Vec<FileEntry>, Option<KeyHashes>)> {
    let (sender, receiver) = mpsc::channel(2);
    let writer = tokio::spawn(write_dataset(
        lake.clone(),
        table.to_string(),
        arrow_schema(columns),
        FILE_ROWS,
        key_for_part,
        receiver,
    ));
    // The stream is read and decoded in a task of its own, not by the
    // caller (which may be a thread outside the runtime's workers, as the
    // command line's `block_on` is): the connection's task hands it each
    // socket read's messages, and waking a task on the same worker is a
    // queue push where waking another thread is a futex call and a context
    // switch (measured: a seventh of a million-row extract's CPU).
    let read = match tx.copy_out(select).await {
        Ok(stream) => {
            let decoder = RowDecoder::new(table, columns, BATCH_ROWS);
            AbortOnDrop(tokio::spawn(decode_stream(stream, decoder, keys, sender)))
                .join()
                .await
                .map_err(|e| Error::Lake(tributary_lake::Error::Task(e)))
                .and_then(|read| read)
        }
        Err(e) => {
            // Nothing to write: the writer ends when its channel closes.
            drop(sender);
            Err(e.into())
        }
    };
    let written = writer
        .await
        .map_err(|e| Error::Lake(tributary_lake::Error::Task(e)))?;
    let written = written?;
    Ok((written.files, read?))
}

/// Decodes a COPY stream into batches for the writer (and their keys into
/// `keys`' set); a writer that stopped ends it early (it reports why).
async fn decode_stream(
    stream: CopyOutStream,
    mut decoder: RowDecoder,
    mut keys: Option<(KeyHashes, Vec<SourceColumn>)>,
    sender: mpsc::Sender<RecordBatch>,
) -> Result<Option<KeyHashes>> {
    pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        decoder.feed(&chunk?, &mut out)?;
        for batch in out.drain(..) {
            if let Some((hashes, key_columns)) = keys.as_mut() {
                hashes.add(&batch, key_columns)?;
            }
            if sender.send(batch).await.is_err() {
                return Ok(keys.map(|(hashes, _)| hashes));
            }
        }
    }
    if let Some(batch) = decoder.finish()? {
        if let Some((hashes, key_columns)) = keys.as_mut() {
            hashes.add(&batch, key_columns)?;
        }
        let _ = sender.send(batch).await;
    }
    Ok(keys.map(|(hashes, _)| hashes))
}

/// A task that is aborted when the run stops waiting for it (dropped,
/// cancelled): it reads a stream of the run's transaction.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> std::result::Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The key columns of `columns` named by `key`, in key order (never NULL).
fn key_columns(columns: &[SourceColumn], key: &[String]) -> Vec<SourceColumn> {
    key.iter()
        .filter_map(|k| columns.iter().find(|c| &c.name == k).cloned())
        .map(|mut c| {
            c.nullable = false;
            c
        })
        .collect()
}

/// The keys in a table now, as they are read: hashed into memory, their
/// values streamed to the new key-set file (`<table>/_keys/`).
struct KeyScan {
    columns: Vec<SourceColumn>,
    schema: arrow_schema::SchemaRef,
    now: KeyHashes,
    sender: mpsc::Sender<RecordBatch>,
    writer: tokio::task::JoinHandle<tributary_lake::Result<tributary_lake::DatasetFiles>>,
}

impl KeyScan {
    fn start(lake: &Lake, table: &str, run_id: &RunId, columns: Vec<SourceColumn>) -> KeyScan {
        let keys_table = format!("{table}/_keys");
        let schema = arrow_schema(&columns);
        let (sender, receiver) = mpsc::channel(2);
        let run = run_id.clone();
        let prefix = keys_table.clone();
        let writer = tokio::spawn(write_dataset(
            lake.clone(),
            keys_table,
            schema.clone(),
            u64::MAX,
            move |part| {
                format!(
                    "{prefix}/{}",
                    tributary_lake::keys::run_file(&run, part, "parquet")
                )
            },
            receiver,
        ));
        KeyScan {
            columns,
            schema,
            now: KeyHashes::default(),
            sender,
            writer,
        }
    }

    /// Takes the keys of `batch` (the key columns found by name, so a batch
    /// of whole rows will do).
    async fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let arrays = crate::keyset::key_arrays(batch, &self.columns)?;
        let keys = RecordBatch::try_new(self.schema.clone(), arrays)?;
        self.now.add(&keys, &self.columns)?;
        // A writer that stopped reports why when it is joined.
        let _ = self.sender.send(keys).await;
        Ok(())
    }

    /// The keys now and the key-set file holding them.
    async fn finish(
        self,
        lake: &Lake,
        table: &str,
        run_id: &RunId,
    ) -> Result<(KeyHashes, FileEntry)> {
        let KeyScan {
            columns,
            mut now,
            sender,
            writer,
            ..
        } = self;
        drop(sender);
        let written = writer
            .await
            .map_err(|e| Error::Lake(tributary_lake::Error::Task(e)))??;
        now.seal();
        let keys_file = match written.files.into_iter().next() {
            Some(file) => file,
            // An empty table: an empty key set, so the next check knows it.
            None => {
                let keys_table = format!("{table}/_keys");
                lake.put_batch(
                    &format!(
                        "{keys_table}/{}",
                        tributary_lake::keys::run_file(run_id, 0, "parquet")
                    ),
                    &keys_table,
                    &RecordBatch::new_empty(arrow_schema(&columns)),
                )
                .await?
            }
        };
        Ok((now, keys_file))
    }
}

/// Reads the keys in the table now, for a delete check.
async fn scan_keys(
    tx: &Transaction<'_>,
    lake: &Lake,
    source: &SourceFile,
    table: &str,
    key_columns: Vec<SourceColumn>,
    run_id: &RunId,
) -> Result<(KeyHashes, FileEntry)> {
    let select = format!(
        "COPY (SELECT {} FROM {}.{} t) TO STDOUT (FORMAT binary)",
        key_columns
            .iter()
            .map(|c| format!("t.{}", c.select_expr()))
            .collect::<Vec<_>>()
            .join(", "),
        quote_ident(&source.schema),
        quote_ident(table)
    );
    let mut decoder = RowDecoder::new(table, &key_columns, BATCH_ROWS);
    let mut scan = KeyScan::start(lake, table, run_id, key_columns);
    let read = async {
        let stream = tx.copy_out(select.as_str()).await?;
        pin_mut!(stream);
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            decoder.feed(&chunk?, &mut out)?;
            for batch in out.drain(..) {
                scan.add(&batch).await?;
            }
        }
        if let Some(batch) = decoder.finish()? {
            scan.add(&batch).await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    let finished = scan.finish(lake, table, run_id).await;
    read?;
    finished
}

/// The files holding the keys the lake says exist in `table`: the last
/// delete check's key-set file (if it wrote one), and the table's files in
/// every manifest since that check's (an insert the table has deleted
/// again must be deleted too; after a check that read the table whole,
/// its files there are the key set).
async fn known_key_files(
    log: &ManifestLog,
    table: &str,
    state: &TableState,
    previous_seq: u64,
) -> Result<Vec<String>> {
    let mut known = Vec::new();
    if let Some(file) = &state.keys_file {
        known.push(file.clone());
    }
    for seq in state.keys_seq + 1..=previous_seq {
        let Some(manifest) = log.read::<serde_json::Value>(seq).await? else {
            continue;
        };
        known.extend(
            manifest
                .files
                .into_iter()
                .filter(|f| f.table == table)
                .map(|f| f.key),
        );
    }
    Ok(known)
}

/// Compares keys: the keys in the `known` files − the keys in the table
/// now = the deleted keys, written as tombstones (`None` when none is
/// missing).
async fn compare_keys(
    lake: &Lake,
    table: &str,
    (key_columns, key): (&[SourceColumn], &[String]),
    now: &KeyHashes,
    known: Vec<String>,
    (run_id, started_at): (&RunId, DateTime<Utc>),
) -> Result<Option<FileEntry>> {
    // The known keys are streamed past the keys now; only the missing ones
    // are kept.
    let mut missing = Missing::default();
    let names: Vec<&str> = key.iter().map(String::as_str).collect();
    for file in known {
        let bytes = lake.get(&file).await?;
        for batch in tributary_lake::parquet::decode_column_batches(bytes, &names)? {
            missing.collect(&batch?, key_columns, now)?;
        }
    }
    let day = started_at.date_naive().format("%Y-%m-%d");
    Ok(match missing.to_batch(key_columns, started_at)? {
        Some(batch) => Some(
            lake.put_batch(
                &format!(
                    "{table}/_deletes/date={day}/{}",
                    tributary_lake::keys::run_file(run_id, 0, "parquet")
                ),
                &format!("{table}/_deletes"),
                &batch,
            )
            .await?,
        ),
        None => None,
    })
}
