//! A configured source's raw manifests applied to the warehouse.
//!
//! Each source gets its own schema, `src_<name>`, holding one table per
//! source table with the same columns (types mapped by
//! [`crate::types::PgColumnType::warehouse_type`]) and the same primary key:
//! the current rows of the source. Manifests are applied in order, one
//! transaction each, recorded in `src_<name>._tributary_load_log`, so a
//! re-run is a no-op and a crash leaves nothing half done. Within a
//! manifest, a table's new versions replace the rows with their keys, then
//! its tombstones delete theirs. A column added at the source is added here;
//! a column dropped at the source (once accepted) stays, NULL from then on.
//!
//! Beside each table, `<table>_history` keeps every version its rows had
//! and every delete (key columns only), with the manifest (`_tributary_seq`),
//! run (`_tributary_run`) and operation (`_tributary_op`: `upsert` or
//! `delete`) that brought it: "what did this row look like last month" is a
//! query, not a restore.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::{SinkExt, pin_mut};
use tokio_postgres::{Client, Transaction};
use tributary_lake::{FileEntry, Lake, Log, Manifest, ManifestLog};

use crate::{
    Error, Result,
    ingest::{SourceState, TableState, source_lake},
    text::put_rows,
    types::{SourceColumn, quote_ident},
};

/// What applying one source did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadRun {
    /// Manifests applied by this call.
    pub manifests: Vec<u64>,
    /// Rows written per table (inserted or replaced).
    pub rows: BTreeMap<String, u64>,
    /// Rows deleted per table.
    pub deleted: BTreeMap<String, u64>,
}

/// The warehouse schema of source `name`.
pub fn warehouse_schema(name: &str) -> String {
    format!("src_{name}")
}

/// Applies every manifest of source `name` the warehouse does not have yet.
pub async fn load_source(client: &mut Client, raw: &Lake, name: &str) -> Result<LoadRun> {
    let lake = source_lake(raw, name);
    let log = ManifestLog::new(lake.clone(), Log::Source);
    let schema = quote_ident(&warehouse_schema(name));
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; \
             CREATE TABLE IF NOT EXISTS {schema}._tributary_load_log ( \
               seq bigint PRIMARY KEY, run_id text NOT NULL, \
               loaded_at timestamptz NOT NULL DEFAULT now(), tables jsonb NOT NULL)"
        ))
        .await?;
    let latest = log.latest_seq().await?;
    let mut run = LoadRun::default();
    // The manifest this call applied last: the log says it is this lake's,
    // so only a number someone else applied is checked against the lake.
    let mut applied_here: Option<i64> = None;
    loop {
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('tributary.sources.' || $1))",
            &[&name],
        )
        .await?;
        let loaded: i64 = tx
            .query_one(
                &format!("SELECT COALESCE(max(seq), 0) FROM {schema}._tributary_load_log"),
                &[],
            )
            .await?
            .get(0);
        if loaded > 0 && applied_here != Some(loaded) {
            same_lake(&tx, &log, &schema, loaded as u64).await?;
        }
        let seq = loaded as u64 + 1;
        if seq > latest {
            break;
        }
        let Some(manifest) = log.read::<SourceState>(seq).await? else {
            break;
        };
        let applied = apply(&tx, &lake, &schema, &manifest).await?;
        let tables = serde_json::to_string(&applied).unwrap_or_else(|_| "{}".to_string());
        tx.execute(
            &format!(
                "INSERT INTO {schema}._tributary_load_log (seq, run_id, tables) VALUES ($1, $2, $3::text::jsonb)"
            ),
            &[&(seq as i64), &manifest.run_id.as_str(), &tables],
        )
        .await?;
        tx.commit().await?;
        applied_here = Some(seq as i64);
        for (table, (rows, deleted)) in applied {
            *run.rows.entry(table.clone()).or_default() += rows;
            *run.deleted.entry(table).or_default() += deleted;
        }
        run.manifests.push(seq);
    }
    Ok(run)
}

/// Refuses to go on when the last manifest the warehouse applied is not
/// this lake's manifest of that number: the schema was loaded from another
/// raw lake (or the lake was replaced), and applying this lake's later
/// manifests on top would mix two histories.
async fn same_lake(tx: &Transaction<'_>, log: &ManifestLog, schema: &str, seq: u64) -> Result<()> {
    let loaded_run: String = tx
        .query_one(
            &format!("SELECT run_id FROM {schema}._tributary_load_log WHERE seq = $1"),
            &[&(seq as i64)],
        )
        .await?
        .get(0);
    let here = log
        .read::<SourceState>(seq)
        .await?
        .map(|m| m.run_id.as_str().to_string());
    if here.as_deref() == Some(loaded_run.as_str()) {
        return Ok(());
    }
    Err(Error::Config {
        file: schema.to_string(),
        reason: format!(
            "the warehouse applied manifest {seq} of run {loaded_run}, but this raw lake's manifest {seq} is {}: \
             the schema was loaded from another lake. Point --raw-url at that lake, or drop the schema \
             (DROP SCHEMA {schema} CASCADE) to load this lake from the start",
            here.map_or("missing".to_string(), |r| format!("run {r}"))
        ),
    })
}

/// The suffix of the table keeping every version a table's rows had, with
/// the manifest, run and operation (`upsert` or `delete`) that brought it.
pub const HISTORY: &str = "_history";

/// One manifest: per table, its new versions, then its tombstones.
async fn apply(
    tx: &Transaction<'_>,
    lake: &Lake,
    schema: &str,
    manifest: &Manifest<SourceState>,
) -> Result<BTreeMap<String, (u64, u64)>> {
    let mut applied = BTreeMap::new();
    let seq = manifest.seq as i64;
    let run = manifest.run_id.as_str();
    for (table, state) in &manifest.state.tables {
        let data: Vec<&FileEntry> = manifest
            .files
            .iter()
            .filter(|f| &f.table == table)
            .collect();
        let deletes_name = format!("{table}/_deletes");
        let deletes: Vec<&FileEntry> = manifest
            .files
            .iter()
            .filter(|f| f.table == deletes_name)
            .collect();
        ensure_table(tx, schema, table, state).await?;
        let name = format!("{schema}.{}", quote_ident(table));
        let history = format!("{schema}.{}", quote_ident(&format!("{table}{HISTORY}")));
        let mut rows = 0;
        if !data.is_empty() {
            stage(tx, lake, &state.columns, &data).await?;
            if !state.received.is_empty() {
                // File drops may repeat a key (within a file, or across the
                // files of one run): the last one, in file and line order,
                // is the row.
                tx.execute(
                    &format!(
                        "DELETE FROM stage s USING stage t WHERE {} AND s.ctid < t.ctid",
                        key_match(&state.key)
                    ),
                    &[],
                )
                .await?;
            }
            let list = column_list(&state.columns);
            tx.execute(
                &format!(
                    "DELETE FROM {name} t USING stage s WHERE {}",
                    key_match(&state.key)
                ),
                &[],
            )
            .await?;
            rows = tx
                .execute(
                    &format!("INSERT INTO {name} ({list}) SELECT {list} FROM stage"),
                    &[],
                )
                .await?;
            tx.execute(
                &format!(
                    "INSERT INTO {history} ({list}, _tributary_seq, _tributary_run, _tributary_op) \
                     SELECT {list}, $1, $2, 'upsert' FROM stage"
                ),
                &[&seq, &run],
            )
            .await?;
            tx.batch_execute("DROP TABLE stage").await?;
        }
        let mut deleted = 0;
        if !deletes.is_empty() {
            let key_columns: Vec<SourceColumn> = state
                .key
                .iter()
                .filter_map(|k| state.columns.iter().find(|c| &c.name == k).cloned())
                .collect();
            stage(tx, lake, &key_columns, &deletes).await?;
            deleted = tx
                .execute(
                    &format!(
                        "DELETE FROM {name} t USING stage s WHERE {}",
                        key_match(&state.key)
                    ),
                    &[],
                )
                .await?;
            let keys = column_list(&key_columns);
            tx.execute(
                &format!(
                    "INSERT INTO {history} ({keys}, _tributary_seq, _tributary_run, _tributary_op) \
                     SELECT {keys}, $1, $2, 'delete' FROM stage"
                ),
                &[&seq, &run],
            )
            .await?;
            tx.batch_execute("DROP TABLE stage").await?;
        }
        if !data.is_empty() || !deletes.is_empty() {
            applied.insert(table.clone(), (rows, deleted));
        }
    }
    Ok(applied)
}

fn column_list(columns: &[SourceColumn]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_match(key: &[String]) -> String {
    key.iter()
        .map(|k| format!("t.{0} = s.{0}", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Creates the warehouse table, or brings it to the manifest's columns:
/// new columns added, changed types altered (an accepted change), dropped
/// columns kept.
async fn ensure_table(
    tx: &Transaction<'_>,
    schema: &str,
    table: &str,
    state: &TableState,
) -> Result<()> {
    let name = format!("{schema}.{}", quote_ident(table));
    let definition = state
        .columns
        .iter()
        .map(|c| format!("{} {}", quote_ident(&c.name), c.ty.warehouse_type()))
        .collect::<Vec<_>>()
        .join(", ");
    let key = state
        .key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let history = format!("{schema}.{}", quote_ident(&format!("{table}{HISTORY}")));
    let index = quote_ident(&format!("{table}{HISTORY}_key"));
    let by_seq = quote_ident(&format!("{table}{HISTORY}_seq"));
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {name} ({definition}, PRIMARY KEY ({key})); \
         CREATE TABLE IF NOT EXISTS {history} ({definition}, \
           _tributary_seq bigint NOT NULL, _tributary_run text NOT NULL, \
           _tributary_op text NOT NULL CHECK (_tributary_op IN ('upsert', 'delete'))); \
         CREATE INDEX IF NOT EXISTS {index} ON {history} ({key}, _tributary_seq); \
         CREATE INDEX IF NOT EXISTS {by_seq} ON {history} (_tributary_seq)"
    ))
    .await?;
    sync_columns(tx, &name, state).await?;
    sync_columns(tx, &history, state).await
}

/// Adds the columns `state` has and table `name` lacks, and follows their
/// types.
async fn sync_columns(tx: &Transaction<'_>, name: &str, state: &TableState) -> Result<()> {
    let existing = tx
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            &[&name],
        )
        .await?;
    let have: BTreeMap<String, String> = existing
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    for column in &state.columns {
        let wanted = column.ty.warehouse_type();
        match have.get(&column.name) {
            None => {
                tx.batch_execute(&format!(
                    "ALTER TABLE {name} ADD COLUMN {} {wanted}",
                    quote_ident(&column.name)
                ))
                .await?;
            }
            Some(current) if !same_type(current, &wanted) => {
                tx.batch_execute(&format!(
                    "ALTER TABLE {name} ALTER COLUMN {0} TYPE {wanted} USING {0}::text::{wanted}",
                    quote_ident(&column.name)
                ))
                .await?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether PostgreSQL's name for a type (`format_type`) is the one asked for.
fn same_type(current: &str, wanted: &str) -> bool {
    let normal = |t: &str| {
        t.replace("timestamp without time zone", "timestamp")
            .replace("timestamp with time zone", "timestamptz")
            .replace("time without time zone", "time")
            .replace("character varying", "text")
            .replace(' ', "")
    };
    normal(current) == normal(wanted)
}

/// COPYs the rows of `files` (with `columns`, in that order) into a
/// temporary table `stage`.
async fn stage(
    tx: &Transaction<'_>,
    lake: &Lake,
    columns: &[SourceColumn],
    files: &[&FileEntry],
) -> Result<()> {
    let definition = columns
        .iter()
        .map(|c| format!("{} {}", quote_ident(&c.name), c.ty.warehouse_type()))
        .collect::<Vec<_>>()
        .join(", ");
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE stage ({definition}) ON COMMIT DROP"
    ))
    .await?;
    let sink = tx
        .copy_in::<_, Bytes>(&format!("COPY stage ({}) FROM STDIN", column_list(columns)))
        .await?;
    pin_mut!(sink);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    for file in files {
        let bytes = lake.get(&file.key).await?;
        for batch in tributary_lake::parquet::decode_column_batches(bytes, &names)? {
            let mut buf = Vec::new();
            put_rows(&mut buf, &batch?, columns)?;
            sink.send(Bytes::from(buf)).await?;
        }
    }
    sink.finish().await?;
    Ok(())
}
