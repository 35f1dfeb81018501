//! The loader: processed Parquet → the PostgreSQL warehouse.
//!
//! One transaction per processed manifest: binary COPY into temporary
//! staging tables, `dim_date` and dimensions first (upserted), then facts
//! (only versions not already there, by id + last_updated: the set-based
//! form of `ON CONFLICT DO NOTHING`, which the advisory lock makes safe),
//! then the `load_log` row. Re-running is a no-op; a crash leaves nothing
//! half done. The transform emits each fact version and dimension key once
//! per manifest; if that ever failed, the unique constraints stop the load.
//!
//! Foreign keys stay declared. Before facts move in, one anti-join per
//! foreign key checks the whole batch and fails the load on any orphan;
//! large batches then skip PostgreSQL's per-row FK triggers (where the role
//! may), since the set-based check inside the same transaction has already
//! proven every reference.

use std::collections::BTreeMap;

use bytes::BytesMut;
use futures_util::{SinkExt, pin_mut};
use tokio_postgres::{Client, Transaction};
use tributary_lake::{Lake, parquet::decode};

use crate::{
    Error, Kind, Result, WAREHOUSE_DDL, WAREHOUSE_TABLES, WType, WarehouseTable,
    copy_in::{CHUNK_BYTES, put_batch, put_header, put_trailer},
};

/// Fact batches at least this large skip per-row FK triggers.
pub const BULK_ROWS: u64 = 50_000;

/// Creates the schema (idempotent).
pub async fn init(client: &Client) -> Result<()> {
    client.batch_execute(WAREHOUSE_DDL).await?;
    Ok(())
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
    /// True when the load_log already had it (nothing done).
    pub already_loaded: bool,
}

/// Loads the files of processed manifest `seq` (keys per table) in one transaction.
pub async fn load_manifest(
    client: &mut Client,
    lake: &Lake,
    seq: u64,
    run_id: &str,
    files: &BTreeMap<String, Vec<String>>,
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
    for table in &WAREHOUSE_TABLES {
        let Some(keys) = files.get(table.name).filter(|k| !k.is_empty()) else {
            continue;
        };
        let started = std::time::Instant::now();
        let staged = stage(&tx, lake, table, keys).await?;
        let staged_ms = started.elapsed().as_millis() as u64;
        let rows = match table.kind {
            Kind::Date => insert_dates(&tx).await?,
            Kind::Dimension => upsert_dimension(&tx, table).await?,
            Kind::Fact { .. } => insert_facts(&tx, table, staged).await?,
        };
        tracing::info!(
            table = table.name,
            staged,
            rows,
            staged_ms,
            ms = started.elapsed().as_millis() as u64,
            "table loaded"
        );
        loaded.rows.insert(table.name, rows);
    }
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

/// COPYs every file of `table` into `stage`, a temporary table; returns rows staged.
async fn stage(
    tx: &Transaction<'_>,
    lake: &Lake,
    table: &WarehouseTable,
    keys: &[String],
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
    let sink = tx
        .copy_in::<_, bytes::Bytes>(&format!(
            "COPY stage ({}) FROM STDIN (FORMAT binary)",
            column_list(table)
        ))
        .await?;
    pin_mut!(sink);
    let mut buf = BytesMut::with_capacity(CHUNK_BYTES + 64 * 1024);
    put_header(&mut buf);
    for key in keys {
        let (_, batches) = decode(lake.get(key).await?)?;
        for batch in &batches {
            put_batch(&mut buf, table, batch)?;
            if buf.len() >= CHUNK_BYTES {
                sink.send(buf.split().freeze()).await?;
            }
        }
    }
    put_trailer(&mut buf);
    sink.send(buf.split().freeze()).await?;
    Ok(sink.finish().await?)
}

async fn insert_dates(tx: &Transaction<'_>) -> Result<u64> {
    let rows = tx
        .execute(
            "INSERT INTO dim_date SELECT * FROM stage ON CONFLICT (date_id) DO NOTHING",
            &[],
        )
        .await?;
    tx.batch_execute("DROP TABLE stage").await?;
    Ok(rows)
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

async fn insert_facts(
    tx: &Transaction<'_>,
    table: &'static WarehouseTable,
    staged: u64,
) -> Result<u64> {
    check_references(tx, table).await?;
    let bulk = staged >= BULK_ROWS && skip_fk_triggers(tx).await;
    let columns = column_list(table);
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
    if bulk {
        tx.batch_execute("SET LOCAL session_replication_role = origin")
            .await?;
    }
    tx.batch_execute("DROP TABLE stage").await?;
    Ok(rows)
}

/// One pass over the staged facts with an anti-join per foreign key: fails
/// with the first column that has rows without their dimension row.
async fn check_references(tx: &Transaction<'_>, table: &'static WarehouseTable) -> Result<()> {
    let references: Vec<(&'static str, &'static str, &'static str)> = table
        .columns
        .iter()
        .filter_map(|c| {
            let dimension = c.references?;
            let target = WarehouseTable::by_name(dimension)?.primary_key();
            Some((c.name, dimension, target))
        })
        .collect();
    let mut selects = Vec::new();
    let mut joins = Vec::new();
    for (i, (column, dimension, target)) in references.iter().enumerate() {
        selects.push(format!(
            "count(*) FILTER (WHERE d{i}.{target} IS NULL), \
             min(s.{column}::text) FILTER (WHERE d{i}.{target} IS NULL)"
        ));
        joins.push(format!(
            "LEFT JOIN {dimension} d{i} ON d{i}.{target} = s.{column}"
        ));
    }
    let row = tx
        .query_one(
            &format!(
                "SELECT {} FROM stage s {}",
                selects.join(", "),
                joins.join(" ")
            ),
            &[],
        )
        .await?;
    for (i, (column, dimension, _)) in references.iter().enumerate() {
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
