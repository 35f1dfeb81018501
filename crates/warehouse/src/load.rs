//! The loader: processed Parquet → the PostgreSQL warehouse.
//!
//! One transaction per processed manifest: `dim_date` and dimensions first,
//! then facts, then the `load_log` row. Re-running is a no-op; a crash
//! leaves nothing half done (every step below, DDL included, is part of the
//! one transaction). The transform emits each fact version and dimension key
//! once per manifest; if that ever failed, the unique constraints stop the load.
//!
//! Two ways in, chosen per table:
//!
//! - **Into an empty table** (a first load, a backfill into a new
//!   warehouse): nothing can repeat or change, so rows are binary-COPYed
//!   straight into the table. The table is locked (ACCESS EXCLUSIVE, until
//!   commit: its readers wait, for a table that had nothing to show), its
//!   primary key and unique indexes are dropped (with the foreign keys that
//!   point at a dimension's key: their tables are empty too), the rows
//!   copied, a fact's record keys numbered by the loader from one reserved
//!   range of the serial's sequence, a fact's references checked, and the
//!   indexes and foreign keys declared again, each index built in one
//!   sorted pass: that rebuild is what enforces "one row per version" (one
//!   row per key for a dimension) here, and a repeat fails the load.
//! - **Into a table that has rows**: binary COPY into a temporary staging
//!   table, then dimensions are upserted and facts inserted where the
//!   version (id + last_updated) is not there yet: the set-based form of
//!   `ON CONFLICT DO NOTHING`, which the advisory lock makes safe.
//!
//! Foreign keys stay declared. Before facts are committed, every reference
//! of the batch is checked set-based: per foreign key, the batch's
//! `min`/`max` and a count of the dimension's keys in that range prove it
//! when the dimension holds every key in between (for a dimension this
//! transaction filled from empty, its least and greatest key against the
//! rows its COPY reported do, without reading it); otherwise one anti-join
//! per remaining key finds the orphans and fails the load. The referenced
//! dimensions are locked against writes (SHARE) until commit, so what was
//! checked stays true; facts copied into an empty table, and large staged
//! batches, then skip PostgreSQL's per-row FK triggers (where the role
//! may), since the check inside the same transaction has proven every
//! reference.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use arrow_array::RecordBatch;
use bytes::BytesMut;
use futures_util::{SinkExt, pin_mut};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Transaction};
use tributary_lake::{FileEntry, Lake};

use crate::{
    Error, Kind, Result, WAREHOUSE_DDL, WAREHOUSE_TABLES, WType, WarehouseTable, aggregates,
    copy_in::{CHUNK_BYTES, put_batch, put_header, put_numbered_batch, put_trailer},
};

/// Staged fact batches at least this large skip per-row FK triggers (batches
/// copied into an empty table always do, where the role may).
pub const BULK_ROWS: u64 = 50_000;

/// Rows per decoded batch, and batches decoded ahead of the COPY.
const DECODE_BATCH_ROWS: usize = 8192;
const DECODED_BATCHES: usize = 4;

/// `maintenance_work_mem` (kB) at least, while the indexes of a fact table
/// loaded empty are built again: the sorts stay in memory.
const INDEX_BUILD_KB: i64 = 256 * 1024;

/// `work_mem` (kB) at least, while staged facts move into their table: the
/// anti-join against the table's versions hashes or sorts in memory.
const MOVE_WORK_KB: i64 = 128 * 1024;

/// Creates the schema (idempotent), unless this version's schema is in
/// place already ([`crate::apply_ddl`]).
pub async fn init(client: &Client) -> Result<()> {
    crate::apply_ddl(
        client,
        "warehouse",
        WAREHOUSE_DDL,
        &crate::warehouse_relations(),
        false,
    )
    .await
}

/// The highest processed manifest number the warehouse holds (0: none).
pub async fn loaded_through(client: &Client) -> Result<u64> {
    let row = client
        .query_one(
            "SELECT COALESCE(max(seq), 0)::bigint FROM tributary.load_log",
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// What loading one manifest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedManifest {
    /// The manifest number.
    pub seq: u64,
    /// Rows inserted or changed per table.
    pub rows: BTreeMap<&'static str, u64>,
    /// How each table's rows went in: `direct` (into the empty table),
    /// `append` (facts whose ids all follow the table's) or `staged`.
    pub paths: BTreeMap<&'static str, &'static str>,
    /// True when the load_log already had it (nothing done).
    pub already_loaded: bool,
    /// The dashboard aggregates recomputed for the days it touched.
    pub aggregates: aggregates::Refreshed,
}

/// Loads the files of processed manifest `seq` (its entries per table) in one transaction.
pub async fn load_manifest(
    client: &mut Client,
    lake: &Lake,
    seq: u64,
    run_id: &str,
    files: &BTreeMap<String, Vec<FileEntry>>,
) -> Result<LoadedManifest> {
    let tx = client.transaction().await?;
    // One loader at a time; a second waits, then finds the manifest logged.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('tributary.load'))",
        &[],
    )
    .await?;
    let done = tx
        .query_opt(
            "SELECT 1 FROM tributary.load_log WHERE seq = $1",
            &[&(seq as i64)],
        )
        .await?;
    if done.is_some() {
        return Ok(LoadedManifest {
            seq,
            already_loaded: true,
            ..LoadedManifest::default()
        });
    }
    let mut loaded = LoadedManifest {
        seq,
        ..LoadedManifest::default()
    };
    let mut filled = Filled::new();
    let marks = aggregates::marks(&tx).await?;
    for table in &WAREHOUSE_TABLES {
        let Some(entries) = files.get(table.name).filter(|k| !k.is_empty()) else {
            continue;
        };
        let keys: Vec<String> = entries.iter().map(|f| f.key.clone()).collect();
        let keys = keys.as_slice();
        // Only a large batch may be appended; a small one (a minute of
        // changes) skips the footer reads that decide it.
        let large = entries.iter().map(|f| f.rows).sum::<u64>() >= BULK_ROWS;
        let started = Instant::now();
        let table_load = match table.kind {
            Kind::Date => load_dates(&tx, lake, table, keys).await?,
            Kind::Dimension => load_dimension(&tx, lake, table, keys, large).await?,
            Kind::History => load_history(&tx, lake, table, keys).await?,
            Kind::Fact { record_key } => {
                load_facts(&tx, lake, table, record_key, (keys, large), &filled).await?
            }
        };
        let TableLoad {
            path,
            staged,
            rows,
            staged_ms,
            read_ms,
            check_ms,
            index_ms,
        } = table_load;
        tracing::info!(
            table = table.name,
            path,
            staged,
            rows,
            staged_ms,
            read_ms,
            check_ms,
            index_ms,
            ms = started.elapsed().as_millis() as u64,
            "table loaded"
        );
        if table.kind == Kind::Dimension && path == "direct" {
            filled.insert(table.name, rows);
        }
        if rows >= BULK_ROWS {
            // Statistics for what follows in this transaction (the
            // aggregates' plans) and for readers until autovacuum gets to it:
            // a table that was empty is otherwise planned as if it still were.
            tx.batch_execute(&format!("ANALYZE {}", table.name)).await?;
        }
        loaded.rows.insert(table.name, rows);
        loaded.paths.insert(table.name, path);
    }
    loaded.aggregates = aggregates::refresh(&tx, marks).await?;
    tracing::info!(
        days = loaded.aggregates.days,
        rows = loaded.aggregates.rows,
        ms = loaded.aggregates.elapsed.as_millis() as u64,
        "aggregates refreshed"
    );
    let total: u64 = loaded.rows.values().sum();
    let tables = serde_json::to_string(&loaded.rows).unwrap_or_else(|_| "{}".to_string());
    tx.execute(
        "INSERT INTO tributary.load_log (seq, run_id, rows_loaded, tables) VALUES ($1, $2, $3, $4::text::jsonb)",
        &[&(seq as i64), &run_id, &(total as i64), &tables],
    )
    .await?;
    tx.commit().await?;
    Ok(loaded)
}

fn pg_type(ty: WType) -> &'static str {
    match ty {
        WType::Int => "int4",
        WType::Text => "text",
        WType::Date => "date",
        WType::Time => "time",
        WType::Money => "numeric(10,2)",
        WType::Bool => "boolean",
        WType::BigInt => "int8",
        WType::Timestamp => "timestamp",
    }
}

fn column_list(table: &WarehouseTable) -> String {
    table
        .columns
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What loading one table did, and where its time went.
#[derive(Debug, Default)]
struct TableLoad {
    /// `direct` (COPY into the empty table) or `staged` (COPY into a
    /// temporary table, then a set-based move).
    path: &'static str,
    /// Rows copied in.
    staged: u64,
    /// Rows inserted or changed.
    rows: u64,
    /// Milliseconds to COPY the rows in (the Parquet decoded on the way).
    staged_ms: u64,
    /// Of which waiting for the Parquet files: fetching them, and decoding
    /// where it does not overlap the COPY.
    read_ms: u64,
    /// Milliseconds to check the references.
    check_ms: u64,
    /// Milliseconds to build the indexes set aside.
    index_ms: u64,
}

fn ms_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// Whether `table` has no rows (visible to this transaction).
async fn is_empty(tx: &Transaction<'_>, table: &str) -> Result<bool> {
    let row = tx
        .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"), &[])
        .await?;
    Ok(row.get(0))
}

/// COPYs every file of `table` into `relation` (the table's columns, in its
/// order); with a record key, each row leads with it, numbered from `first`.
/// Returns rows copied; adds the time spent waiting for the files (fetched,
/// then decoded while earlier batches go out) to `read`.
async fn copy_files(
    tx: &Transaction<'_>,
    lake: &Lake,
    table: &WarehouseTable,
    keys: &[String],
    relation: &str,
    record_key: Option<(&str, i64)>,
    read: &mut Duration,
) -> Result<u64> {
    let columns = match record_key {
        Some((key, _)) => format!("{key}, {}", column_list(table)),
        None => column_list(table),
    };
    let sink = tx
        .copy_in::<_, bytes::Bytes>(&format!(
            "COPY {relation} ({columns}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    pin_mut!(sink);
    let mut next_key = record_key.map(|(_, first)| first);
    let mut buf = BytesMut::with_capacity(CHUNK_BYTES + 64 * 1024);
    put_header(&mut buf);
    for key in keys {
        let reading = Instant::now();
        let (mut batches, decoder) = decode_in_background(lake.get(key).await?);
        *read += reading.elapsed();
        loop {
            let waiting = Instant::now();
            let Some(batch) = batches.recv().await else {
                break;
            };
            *read += waiting.elapsed();
            let batch = batch?;
            match next_key.as_mut() {
                Some(next) => *next = put_numbered_batch(&mut buf, table, &batch, *next)?,
                None => put_batch(&mut buf, table, &batch)?,
            }
            if buf.len() >= CHUNK_BYTES {
                sink.send(buf.split().freeze()).await?;
            }
        }
        if let Err(e) = decoder.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    put_trailer(&mut buf);
    sink.send(buf.split().freeze()).await?;
    Ok(sink.finish().await?)
}

/// Decodes a Parquet file on a blocking thread, a batch at a time, while
/// the caller encodes and sends the batches before: the server never waits
/// for a whole file to decode, and a file is never held decoded whole.
fn decode_in_background(
    bytes: bytes::Bytes,
) -> (
    mpsc::Receiver<Result<RecordBatch>>,
    tokio::task::JoinHandle<()>,
) {
    let (batches, receiver) = mpsc::channel(DECODED_BATCHES);
    let decoder = tokio::task::spawn_blocking(move || {
        let reader = match ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|builder| builder.with_batch_size(DECODE_BATCH_ROWS).build())
        {
            Ok(reader) => reader,
            Err(e) => {
                let _ = batches.blocking_send(Err(tributary_lake::Error::from(e).into()));
                return;
            }
        };
        for batch in reader {
            // A closed channel: the COPY failed; stop decoding.
            if batches.blocking_send(batch.map_err(Error::from)).is_err() {
                return;
            }
        }
    });
    (receiver, decoder)
}

/// COPYs every file of `table` into `stage`, a temporary table; returns rows staged.
async fn stage(
    tx: &Transaction<'_>,
    lake: &Lake,
    table: &WarehouseTable,
    keys: &[String],
    read: &mut Duration,
) -> Result<u64> {
    let definition = table
        .columns
        .iter()
        .map(|c| format!("{} {}", c.name, pg_type(c.ty)))
        .collect::<Vec<_>>()
        .join(", ");
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE stage ({definition}) ON COMMIT DROP"
    ))
    .await?;
    copy_files(tx, lake, table, keys, "stage", None, read).await
}

async fn load_dates(
    tx: &Transaction<'_>,
    lake: &Lake,
    table: &WarehouseTable,
    keys: &[String],
) -> Result<TableLoad> {
    let started = Instant::now();
    let mut read = Duration::ZERO;
    let staged = stage(tx, lake, table, keys, &mut read).await?;
    let staged_ms = ms_since(started);
    let rows = tx
        .execute(
            "INSERT INTO dim_date SELECT * FROM stage ON CONFLICT (date_id) DO NOTHING",
            &[],
        )
        .await?;
    tx.batch_execute("DROP TABLE stage").await?;
    Ok(TableLoad {
        path: "staged",
        staged,
        rows,
        staged_ms,
        read_ms: read.as_millis() as u64,
        ..TableLoad::default()
    })
}

async fn load_dimension(
    tx: &Transaction<'_>,
    lake: &Lake,
    table: &WarehouseTable,
    keys: &[String],
    large: bool,
) -> Result<TableLoad> {
    let started = Instant::now();
    let mut read = Duration::ZERO;
    if is_empty(tx, table.name).await? {
        tx.batch_execute(&format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            table.name
        ))
        .await?;
        if is_empty(tx, table.name).await? {
            // Nothing to change or skip: every row is new. The primary key,
            // set aside with the foreign keys pointing at it (their tables
            // are empty too) and built again, stops a key given twice.
            let rebuild = set_aside_indexes(tx, table.name).await?;
            let rows = copy_files(tx, lake, table, keys, table.name, None, &mut read).await?;
            let staged_ms = ms_since(started);
            let indexed = Instant::now();
            build_indexes(tx, &rebuild).await?;
            return Ok(TableLoad {
                path: "direct",
                staged: rows,
                rows,
                staged_ms,
                read_ms: read.as_millis() as u64,
                check_ms: 0,
                index_ms: ms_since(indexed),
            });
        }
    }
    if large
        && keys_after_table(tx, lake, table, table.primary_key(), keys)
            .await?
            .is_some()
    {
        // Only new keys, many: nothing to change, so straight in, the
        // primary key kept (it refuses a key given twice).
        let rows = copy_files(tx, lake, table, keys, table.name, None, &mut read).await?;
        return Ok(TableLoad {
            path: "append",
            staged: rows,
            rows,
            staged_ms: ms_since(started),
            read_ms: read.as_millis() as u64,
            ..TableLoad::default()
        });
    }
    let staged = stage(tx, lake, table, keys, &mut read).await?;
    let staged_ms = ms_since(started);
    let rows = upsert_dimension(tx, table).await?;
    Ok(TableLoad {
        path: "staged",
        staged,
        rows,
        staged_ms,
        read_ms: read.as_millis() as u64,
        ..TableLoad::default()
    })
}

/// Replaces the whole history of every entity the files carry: the
/// transform writes an entity's every version whenever one of them changes
/// (a late version splits an interval, so neighbours change too). Returns
/// the versions written; those already there as they are stay untouched.
async fn load_history(
    tx: &Transaction<'_>,
    lake: &Lake,
    table: &WarehouseTable,
    keys: &[String],
) -> Result<TableLoad> {
    let started = Instant::now();
    let mut read = Duration::ZERO;
    let staged = stage(tx, lake, table, keys, &mut read).await?;
    let staged_ms = ms_since(started);
    let (name, key, columns) = (table.name, table.key, column_list(table));
    let version_key = table.primary_key();
    let row = |alias: &str| {
        table
            .columns
            .iter()
            .map(|c| format!("{alias}.{}", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Versions of the staged entities that the stage does not repeat
    // exactly go; staged versions not there yet come in. A rebuild that
    // gives the same history changes nothing.
    tx.execute(
        &format!(
            "DELETE FROM {name} h WHERE h.{key} IN (SELECT {key} FROM stage) \
             AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.{version_key} = h.{version_key} \
                             AND ({}) IS NOT DISTINCT FROM ({}))",
            row("s"),
            row("h")
        ),
        &[],
    )
    .await?;
    let rows = tx
        .execute(
            &format!(
                "INSERT INTO {name} ({columns}) SELECT {columns} FROM stage s \
                 WHERE NOT EXISTS (SELECT 1 FROM {name} h WHERE h.{version_key} = s.{version_key})"
            ),
            &[],
        )
        .await?;
    tx.batch_execute("DROP TABLE stage").await?;
    Ok(TableLoad {
        path: "staged",
        staged,
        rows,
        staged_ms,
        read_ms: read.as_millis() as u64,
        ..TableLoad::default()
    })
}

async fn upsert_dimension(tx: &Transaction<'_>, table: &WarehouseTable) -> Result<u64> {
    // The transform emits one row per key per manifest, so two set-based
    // statements replace a slower row-by-row ON CONFLICT: change what
    // differs, then add what is new.
    let key = table.primary_key();
    let others: Vec<&str> = table.columns[1..].iter().map(|c| c.name).collect();
    let list = |prefix: &str| {
        others
            .iter()
            .map(|c| format!("{prefix}{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let set = others
        .iter()
        .map(|c| format!("{c} = s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let columns = column_list(table);
    let name = table.name;
    let changed = tx
        .execute(
            &format!(
                "UPDATE {name} AS cur SET {set} FROM stage s \
                 WHERE cur.{key} = s.{key} AND ROW({}) IS DISTINCT FROM ROW({})",
                list("cur."),
                list("s.")
            ),
            &[],
        )
        .await?;
    let added = tx
        .execute(
            &format!(
                "INSERT INTO {name} ({columns}) SELECT {columns} FROM stage s \
                 WHERE NOT EXISTS (SELECT 1 FROM {name} cur WHERE cur.{key} = s.{key})"
            ),
            &[],
        )
        .await?;
    let rows = changed + added;
    tx.batch_execute("DROP TABLE stage").await?;
    Ok(rows)
}

async fn load_facts(
    tx: &Transaction<'_>,
    lake: &Lake,
    table: &'static WarehouseTable,
    record_key: &'static str,
    (keys, large): (&[String], bool),
    filled: &Filled,
) -> Result<TableLoad> {
    if is_empty(tx, table.name).await? {
        // Readers of this table wait for the commit from here on; the
        // table had nothing to show them.
        tx.batch_execute(&format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            table.name
        ))
        .await?;
        if is_empty(tx, table.name).await? {
            return load_facts_into_empty(tx, lake, table, record_key, keys, filled).await;
        }
    }
    if large && let Some(after) = keys_after_table(tx, lake, table, table.key, keys).await? {
        return append_facts(tx, lake, table, keys, filled, after).await;
    }
    let started = Instant::now();
    let mut read = Duration::ZERO;
    let staged = stage(tx, lake, table, keys, &mut read).await?;
    let staged_ms = ms_since(started);
    let checked = Instant::now();
    // A minute of changes: one key probe per row is cheapest. A range proof
    // could count most of a dimension (an old order's payment spans every
    // transaction since), and right after a first load, before vacuum has
    // marked the pages visible, that reads them all (a second, not 2 ms).
    let check = if staged <= PROBE_ROWS {
        Check::Probe
    } else {
        Check::Prove
    };
    check_references(tx, table, "stage", check, filled).await?;
    let check_ms = ms_since(checked);
    let rows = insert_facts(tx, table, staged).await?;
    Ok(TableLoad {
        path: "staged",
        staged,
        rows,
        staged_ms,
        read_ms: read.as_millis() as u64,
        check_ms,
        index_ms: 0,
    })
}

/// A large batch whose keys all follow the table's.
struct After {
    /// The table's greatest key before the batch.
    key: i64,
}

/// Whether every row's `column` (a fact's id, a dimension's key) is
/// greater than any in the table, by the files' footer statistics (two
/// small ranged reads a file), so that no row of the batch can be there
/// already: the next part of a first load read in parts, or a backfill of
/// new rows. `None` when not, or when a file says nothing of its keys.
/// Callers ask only for large batches ([`BULK_ROWS`] rows or more, by the
/// manifest): for a minute of changes the footers would cost more than
/// they save.
async fn keys_after_table(
    tx: &Transaction<'_>,
    lake: &Lake,
    table: &WarehouseTable,
    column: &str,
    keys: &[String],
) -> Result<Option<After>> {
    // Writers wait from here until commit (the advisory lock already keeps
    // other loads out), so the greatest key stays the greatest.
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
        table.name
    ))
    .await?;
    let greatest: Option<i64> = tx
        .query_one(
            &format!("SELECT max({column})::int8 FROM {}", table.name),
            &[],
        )
        .await?
        .get(0);
    let Some(greatest) = greatest else {
        return Ok(None);
    };
    for key in keys {
        let footer = match tributary_lake::parquet::read_footer(lake, key).await {
            Ok(footer) => footer,
            Err(error) => {
                // The staged path reads the whole file and reports what is
                // wrong with it, if anything is.
                tracing::debug!(key, %error, "footer unreadable: the batch is staged");
                return Ok(None);
            }
        };
        if footer.file_metadata().num_rows() == 0 {
            continue;
        }
        match tributary_lake::parquet::int_column_min(&footer, column) {
            Some(least) if least > greatest => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(After { key: greatest }))
}

/// Facts whose keys all follow the table's (see [`keys_after_table`]):
/// COPY straight into the table, its indexes kept (the unique index still
/// refuses a version twice within the batch), then the new rows' references
/// checked as a staged batch's are. Writers wait until commit (locked by
/// [`keys_after_table`]); readers do not.
async fn append_facts(
    tx: &Transaction<'_>,
    lake: &Lake,
    table: &'static WarehouseTable,
    keys: &[String],
    filled: &Filled,
    after: After,
) -> Result<TableLoad> {
    let started = Instant::now();
    // Large: the per-row FK triggers give way to the set-based check below.
    let bulk = skip_fk_triggers(tx).await;
    let mut read = Duration::ZERO;
    let rows = copy_files(tx, lake, table, keys, table.name, None, &mut read).await?;
    if bulk {
        tx.batch_execute("SET LOCAL session_replication_role = origin")
            .await?;
    }
    let staged_ms = ms_since(started);
    let checked = Instant::now();
    let new_rows = format!(
        "(SELECT * FROM {} WHERE {} > {})",
        table.name, table.key, after.key
    );
    check_references(tx, table, &new_rows, Check::Prove, filled).await?;
    Ok(TableLoad {
        path: "append",
        staged: rows,
        rows,
        staged_ms,
        read_ms: read.as_millis() as u64,
        check_ms: ms_since(checked),
        index_ms: 0,
    })
}

/// A first load of a fact table (empty, locked by the caller): COPY straight
/// into it with its indexes set aside, record keys numbered here, then the
/// references checked and the indexes built again.
async fn load_facts_into_empty(
    tx: &Transaction<'_>,
    lake: &Lake,
    table: &'static WarehouseTable,
    record_key: &'static str,
    keys: &[String],
    filled: &Filled,
) -> Result<TableLoad> {
    let started = Instant::now();
    let rebuild = set_aside_indexes(tx, table.name).await?;
    // One range of the serial's sequence instead of a nextval() per row:
    // the first value now, the sequence moved past the last one after the
    // COPY. Nothing else can insert into the locked table meanwhile; a
    // nextval() called on the sequence by hand in between would collide,
    // and the primary key, built again below, would fail the load.
    let sequence: Option<String> = tx
        .query_one(
            "SELECT pg_get_serial_sequence($1, $2)",
            &[&table.name, &record_key],
        )
        .await?
        .get(0);
    let first: Option<i64> = match &sequence {
        Some(sequence) => Some(
            tx.query_one("SELECT nextval($1::text::regclass)", &[sequence])
                .await?
                .get(0),
        ),
        None => None,
    };
    let bulk = skip_fk_triggers(tx).await;
    let mut read = Duration::ZERO;
    let rows = copy_files(
        tx,
        lake,
        table,
        keys,
        table.name,
        first.map(|first| (record_key, first)),
        &mut read,
    )
    .await?;
    if bulk {
        tx.batch_execute("SET LOCAL session_replication_role = origin")
            .await?;
    }
    if let (Some(sequence), Some(first)) = (&sequence, first)
        && rows > 0
    {
        tx.execute(
            "SELECT setval($1::text::regclass, \
             greatest($2, coalesce(pg_sequence_last_value($1::text::regclass), 0)))",
            &[sequence, &(first + rows as i64 - 1)],
        )
        .await?;
    }
    let staged_ms = ms_since(started);
    // The table was empty: every row in it is this batch.
    let checked = Instant::now();
    check_references(tx, table, table.name, Check::Prove, filled).await?;
    let check_ms = ms_since(checked);
    let indexed = Instant::now();
    build_indexes(tx, &rebuild).await?;
    Ok(TableLoad {
        path: "direct",
        staged: rows,
        rows,
        staged_ms,
        read_ms: read.as_millis() as u64,
        check_ms,
        index_ms: ms_since(indexed),
    })
}

/// Drops the indexes of `table` (its primary key and unique constraints
/// included) and returns the statements that build them again. The foreign
/// keys of other tables that point at them go too, and come back after them
/// (checked again by PostgreSQL then: the callers only set aside the indexes
/// of an empty table, so what points at it is empty too). Keeps everything
/// (and returns nothing) when something cannot go: another object depends on
/// it (a view grouping by the primary key, say) or it is the replica identity.
async fn set_aside_indexes(tx: &Transaction<'_>, table: &str) -> Result<Vec<String>> {
    let indexes = tx
        .query(
            "SELECT quote_ident(c.conname), pg_get_constraintdef(c.oid), \
                    i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), \
                    i.indisreplident \
             FROM pg_index i \
             LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid \
                 AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x') \
             WHERE i.indrelid = $1::text::regclass \
             ORDER BY c.contype = 'p' DESC, 3",
            &[&table],
        )
        .await?;
    let referencing = tx
        .query(
            "SELECT conrelid::regclass::text, quote_ident(conname), pg_get_constraintdef(oid), \
                    conrelid = confrelid \
             FROM pg_constraint WHERE contype = 'f' AND confrelid = $1::text::regclass \
             ORDER BY 1, 2",
            &[&table],
        )
        .await?;
    if indexes.is_empty()
        || indexes.iter().any(|i| i.get::<_, bool>(4))
        || referencing.iter().any(|f| f.get::<_, bool>(3))
    {
        return Ok(Vec::new());
    }
    let mut drop = Vec::new();
    let mut rebuild = Vec::new();
    for fk in &referencing {
        let (other, name): (String, String) = (fk.get(0), fk.get(1));
        drop.push(format!("ALTER TABLE {other} DROP CONSTRAINT {name}"));
    }
    let mut drop_constraints = Vec::new();
    let mut add_constraints = Vec::new();
    let mut drop_indexes = Vec::new();
    let mut create_indexes = Vec::new();
    for index in &indexes {
        match index.get::<_, Option<String>>(0) {
            Some(constraint) => {
                let definition: String = index.get(1);
                drop_constraints.push(format!("DROP CONSTRAINT {constraint}"));
                add_constraints.push(format!("ADD CONSTRAINT {constraint} {definition}"));
            }
            None => {
                drop_indexes.push(index.get::<_, String>(2));
                create_indexes.push(index.get::<_, String>(3));
            }
        }
    }
    if !drop_constraints.is_empty() {
        drop.push(format!(
            "ALTER TABLE {table} {}",
            drop_constraints.join(", ")
        ));
        rebuild.push(format!(
            "ALTER TABLE {table} {}",
            add_constraints.join(", ")
        ));
    }
    if !drop_indexes.is_empty() {
        drop.push(format!("DROP INDEX {}", drop_indexes.join(", ")));
    }
    rebuild.extend(create_indexes);
    for fk in &referencing {
        let (other, name, definition): (String, String, String) = (fk.get(0), fk.get(1), fk.get(2));
        rebuild.push(format!(
            "ALTER TABLE {other} ADD CONSTRAINT {name} {definition}"
        ));
    }
    tx.batch_execute("SAVEPOINT set_aside").await?;
    match tx.batch_execute(&drop.join("; ")).await {
        Ok(()) => {
            tx.batch_execute("RELEASE SAVEPOINT set_aside").await?;
            Ok(rebuild)
        }
        Err(e) => {
            tracing::info!(table, error = %e, "indexes kept during the load");
            tx.batch_execute("ROLLBACK TO SAVEPOINT set_aside; RELEASE SAVEPOINT set_aside")
                .await?;
            Ok(Vec::new())
        }
    }
}

/// Runs the statements [`set_aside_indexes`] returned, each a sorted build.
async fn build_indexes(tx: &Transaction<'_>, rebuild: &[String]) -> Result<()> {
    if rebuild.is_empty() {
        return Ok(());
    }
    let previous = raise_memory(tx, "maintenance_work_mem", INDEX_BUILD_KB).await?;
    tx.batch_execute(&rebuild.join("; ")).await?;
    restore_setting(tx, "maintenance_work_mem", &previous).await
}

/// Raises a memory setting (kB) to at least `kb` for this transaction;
/// returns what it was.
async fn raise_memory(tx: &Transaction<'_>, setting: &str, kb: i64) -> Result<String> {
    let row = tx
        .query_one(
            "SELECT current_setting($1), \
                    set_config($1, greatest(setting::bigint, $2)::text || 'kB', true) \
             FROM pg_settings WHERE name = $1",
            &[&setting, &kb],
        )
        .await?;
    Ok(row.get(0))
}

async fn restore_setting(tx: &Transaction<'_>, setting: &str, value: &str) -> Result<()> {
    tx.execute("SELECT set_config($1, $2, true)", &[&setting, &value])
        .await?;
    Ok(())
}

async fn insert_facts(
    tx: &Transaction<'_>,
    table: &'static WarehouseTable,
    staged: u64,
) -> Result<u64> {
    let bulk = staged >= BULK_ROWS && skip_fk_triggers(tx).await;
    let columns = column_list(table);
    let previous = raise_memory(tx, "work_mem", MOVE_WORK_KB).await?;
    let rows = tx
        .execute(
            &format!(
                "INSERT INTO {name} ({columns}) SELECT {columns} FROM stage s \
                 WHERE NOT EXISTS (SELECT 1 FROM {name} f WHERE f.{key} = s.{key} \
                   AND f.last_updated_date = s.last_updated_date \
                   AND f.last_updated_time = s.last_updated_time)",
                name = table.name,
                key = table.key
            ),
            &[],
        )
        .await?;
    restore_setting(tx, "work_mem", &previous).await?;
    if bulk {
        tx.batch_execute("SET LOCAL session_replication_role = origin")
            .await?;
    }
    tx.batch_execute("DROP TABLE stage").await?;
    Ok(rows)
}

/// Dimensions this transaction filled from empty (COPY straight in), with
/// the rows the COPY reported: all they hold.
type Filled = BTreeMap<&'static str, u64>;

/// A foreign key of a fact table: its column and type, the dimension and
/// the dimension's key.
type Reference = (&'static str, WType, &'static str, &'static str);

/// Checks every reference of the facts in `source` (the staging table, the
/// fact table itself when it was empty, or a subquery of its new rows), set-based; fails with the
/// first column that has rows without their dimension row. A range proof
/// ([`Check::Prove`], for rows going in without FK triggers) locks the
/// referenced dimensions against writes until commit, so the proof holds.
async fn check_references(
    tx: &Transaction<'_>,
    table: &'static WarehouseTable,
    source: &str,
    check: Check,
    filled: &Filled,
) -> Result<()> {
    let references: Vec<Reference> = table
        .columns
        .iter()
        .filter_map(|c| {
            let dimension = c.references?;
            let target = WarehouseTable::by_name(dimension)?.primary_key();
            Some((c.name, c.ty, dimension, target))
        })
        .collect();
    if references.is_empty() {
        return Ok(());
    }
    if check == Check::Probe {
        // The rows go in with their FK triggers on (fewer than
        // `BULK_ROWS`), which lock each referenced row: no table lock. A
        // SHARE lock would wait for autovacuum (its lock conflicts) until
        // the deadlock timeout cancels it: a second per dimension being
        // vacuumed, as after a first load.
        return find_orphans(tx, table, source, &references).await;
    }
    let mut dimensions: Vec<&str> = references.iter().map(|r| r.2).collect();
    dimensions.sort_unstable();
    dimensions.dedup();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN SHARE MODE",
        dimensions.join(", ")
    ))
    .await?;
    let unproven = unproven_references(tx, source, &references, filled).await?;
    if unproven.is_empty() {
        return Ok(());
    }
    find_orphans(tx, table, source, &unproven).await
}

/// Up to this many staged rows, references are checked by probing the
/// dimension's key for each row ([`Check::Probe`]); below [`BULK_ROWS`], so
/// such rows always go in with their FK triggers on.
const PROBE_ROWS: u64 = 10_000;
const _: () = assert!(PROBE_ROWS < BULK_ROWS);

/// How [`check_references`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// One key probe per row (an anti-join).
    Probe,
    /// Prove key ranges first (a pass whatever the row count), and probe
    /// only the references no range proves.
    Prove,
}

/// One pass over `source` for each integer or date key's `min` and `max`;
/// a key is proven when its dimension holds every value in between (the
/// dimension's key is its primary key: unique, not null), since then every
/// value of the batch has its row. Returns the references not proven so.
async fn unproven_references(
    tx: &Transaction<'_>,
    source: &str,
    references: &[Reference],
    filled: &Filled,
) -> Result<Vec<Reference>> {
    let ranged: Vec<&Reference> = references
        .iter()
        .filter(|(_, ty, _, _)| matches!(ty, WType::Int | WType::Date))
        .collect();
    let mut unproven: Vec<Reference> = references
        .iter()
        .filter(|(_, ty, _, _)| !matches!(ty, WType::Int | WType::Date))
        .copied()
        .collect();
    if ranged.is_empty() {
        return Ok(unproven);
    }
    let mut bounds = Vec::new();
    let mut proofs = Vec::new();
    for (i, (column, ty, dimension, target)) in ranged.iter().enumerate() {
        bounds.push(format!("min({column}) AS lo{i}, max({column}) AS hi{i}"));
        let width = match ty {
            WType::Date => format!("b.hi{i} - b.lo{i} + 1"),
            _ => format!("b.hi{i}::int8 - b.lo{i} + 1"),
        };
        let counted = format!(
            "(SELECT count(*) FROM {dimension} d \
               WHERE d.{target} BETWEEN b.lo{i} AND b.hi{i}) = {width}"
        );
        // A dimension filled from empty in this transaction holds exactly
        // the rows its COPY reported, its (rebuilt) key unique: when they
        // run from its least key to its greatest without a gap, two index
        // probes prove the range, where counting would read the whole
        // dimension.
        let proof = match filled.get(dimension) {
            Some(rows) => {
                let extent = match ty {
                    WType::Date => "max(d.{target}) - min(d.{target}) + 1",
                    _ => "max(d.{target})::int8 - min(d.{target}) + 1",
                }
                .replace("{target}", target);
                format!(
                    "COALESCE((SELECT min(d.{target}) <= b.lo{i} AND max(d.{target}) >= b.hi{i} \
                       AND {extent} = {rows} FROM {dimension} d), false) OR {counted}"
                )
            }
            None => counted,
        };
        // No rows (NULL bounds): nothing to prove.
        proofs.push(format!(
            "CASE WHEN b.lo{i} IS NULL THEN true ELSE COALESCE({proof}, false) END"
        ));
    }
    let row = tx
        .query_one(
            &format!(
                "WITH b AS (SELECT {} FROM {source} src) SELECT {} FROM b",
                bounds.join(", "),
                proofs.join(", ")
            ),
            &[],
        )
        .await?;
    for (i, reference) in ranged.into_iter().enumerate() {
        if !row.get::<_, bool>(i) {
            unproven.push(*reference);
        }
    }
    // In table order, so the first failing column is reported first.
    unproven.sort_by_key(|r| references.iter().position(|x| x.0 == r.0));
    Ok(unproven)
}

/// One pass over `source` with an anti-join per foreign key: fails with the
/// first column that has rows without their dimension row.
async fn find_orphans(
    tx: &Transaction<'_>,
    table: &'static WarehouseTable,
    source: &str,
    references: &[Reference],
) -> Result<()> {
    let mut selects = Vec::new();
    let mut joins = Vec::new();
    for (i, (column, _, dimension, target)) in references.iter().enumerate() {
        selects.push(format!(
            "count(*) FILTER (WHERE s.{column} IS NOT NULL AND d{i}.{target} IS NULL), \
             min(s.{column}::text) FILTER (WHERE s.{column} IS NOT NULL AND d{i}.{target} IS NULL)"
        ));
        joins.push(format!(
            "LEFT JOIN {dimension} d{i} ON d{i}.{target} = s.{column}"
        ));
    }
    let row = tx
        .query_one(
            &format!(
                "SELECT {} FROM {source} s {}",
                selects.join(", "),
                joins.join(" ")
            ),
            &[],
        )
        .await?;
    for (i, (column, _, dimension, _)) in references.iter().enumerate() {
        let orphans: i64 = row.get(2 * i);
        if orphans > 0 {
            return Err(Error::Orphans {
                table: table.name,
                column,
                dimension,
                rows: orphans,
                example: row.get::<_, Option<String>>(2 * i + 1).unwrap_or_default(),
            });
        }
    }
    Ok(())
}

/// Turns off per-row FK triggers for the rest of the statement batch, if the
/// role is allowed to; otherwise leaves them on (slower, equally correct).
async fn skip_fk_triggers(tx: &Transaction<'_>) -> bool {
    if tx.batch_execute("SAVEPOINT bulk_fk").await.is_err() {
        return false;
    }
    match tx
        .batch_execute("SET LOCAL session_replication_role = replica")
        .await
    {
        Ok(()) => {
            let _ = tx.batch_execute("RELEASE SAVEPOINT bulk_fk").await;
            true
        }
        Err(_) => {
            let _ = tx.batch_execute("ROLLBACK TO SAVEPOINT bulk_fk").await;
            false
        }
    }
}
