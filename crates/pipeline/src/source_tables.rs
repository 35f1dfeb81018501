//! Configured sources in the processed lake, as Iceberg tables.
//!
//! Each table of a configured source (`crates/sources`) gets one Iceberg
//! table, `src_<source>_<table>` at `sources/<source>/<table>` in the
//! processed lake: every version its rows had and every delete, as the
//! warehouse's `<table>_history` keeps them, with the source manifest
//! (`_tributary_seq`), run (`_tributary_run`) and operation
//! (`_tributary_op`: `upsert` or `delete`, a delete carrying the key
//! columns only) that brought it, and its place in that manifest
//! (`_tributary_row`). Athena reads a row's current version as the one
//! with the highest `(_tributary_seq, _tributary_row)`, unless that is a
//! delete: the warehouse's row.
//!
//! A table whose source file names a `partition` (a business date: a date
//! or timestamp column) is partitioned by its month, so a query on a range
//! of business dates reads only those months; rows with no date (deletes,
//! a date not known yet) sit in the NULL partition. Without one, the table
//! is unpartitioned.
//!
//! [`publish_source`] takes every source manifest a table has not seen, in
//! order, and commits them as snapshots whose watermark is the manifest
//! number: a publication that dies half way is finished by the next one,
//! a repeated one finds the watermark and skips. The columns follow the
//! source: a column added there is added to the table (older rows read
//! NULL), a type Iceberg can widen is widened, and anything else stops that
//! table's publication with the column named (the source's other tables go
//! on). [`run_publication`] is the stage: the CLI after each source run,
//! the transform function on the source manifest's S3 event, and the
//! maintenance's catch-up call it.
//!
//! Types: Iceberg's, as Athena reads them. A time of day is its
//! microseconds since midnight (`long`), an array its text (`[1, 2]`), and
//! a small integer an `int`; the raw zone keeps each as it was read.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use arrow_array::{Int64Array, RecordBatch, StringArray, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use tributary_iceberg::{Catalog, Change, NewFile, Outcome, Partitioning, Rows, TableDef};
use tributary_lake::{FileEntry, Lake, Log, Manifest, ManifestLog};
use tributary_sources::ingest::{SourceState, TableState, source_lake};

use crate::{Result, lakehouse::PublishReport, stage::Stage};

/// The manifest that brought a row.
pub const SEQ: &str = "_tributary_seq";
/// The run that brought a row.
pub const RUN: &str = "_tributary_run";
/// `upsert` or `delete`.
pub const OP: &str = "_tributary_op";
/// The row's place in its manifest: files in order, new versions before
/// deletes, rows in file order. A file drop may bring one key several
/// times in one manifest; the highest `(_tributary_seq, _tributary_row)`
/// is the key's current version, as in the warehouse.
pub const ROW: &str = "_tributary_row";

/// The Iceberg table of a source's table.
pub fn table_name(source: &str, table: &str) -> String {
    format!("src_{source}_{table}").to_lowercase()
}

/// Where it lives in the processed lake.
pub fn location(source: &str, table: &str) -> String {
    format!("sources/{source}/{table}")
}

/// Where the highest manifest every table of `source` has seen is noted.
fn hint_key(source: &str) -> String {
    format!("_state/iceberg/sources/{source}-published")
}

/// The type a source column has in its Iceberg table.
fn iceberg_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Int8 | DataType::Int16 => DataType::Int32,
        DataType::Time32(_) | DataType::Time64(_) => DataType::Int64,
        DataType::List(_) | DataType::LargeList(_) => DataType::Utf8,
        other => other.clone(),
    }
}

/// The table of `table` of `source`, as its latest manifest describes it.
pub fn table_def(source: &str, table: &str, state: &TableState) -> TableDef {
    let mut fields: Vec<Field> = state
        .columns
        .iter()
        .map(|c| Field::new(&c.name, iceberg_type(&c.ty.arrow_type()), true))
        .collect();
    fields.extend([
        Field::new(SEQ, DataType::Int64, false),
        Field::new(RUN, DataType::Utf8, false),
        Field::new(OP, DataType::Utf8, false),
        Field::new(ROW, DataType::Int64, false),
    ]);
    TableDef {
        name: table_name(source, table),
        location: location(source, table),
        schema: Arc::new(Schema::new(fields)),
        partitioning: state
            .partition
            .clone()
            .map_or(Partitioning::None, Partitioning::Month),
        rows: Rows::Append,
    }
}

/// Every configured source's tables as their latest manifests describe
/// them, for maintenance and the catalog.
pub async fn table_defs(raw: &Lake) -> Result<Vec<TableDef>> {
    let mut defs = Vec::new();
    for source in raw.folders("sources").await? {
        defs.extend(source_defs(raw, &source).await?);
    }
    Ok(defs)
}

/// The tables of one source as its latest manifest describes them.
pub async fn source_defs(raw: &Lake, source: &str) -> Result<Vec<TableDef>> {
    let latest: Option<Manifest<SourceState>> =
        ManifestLog::new(source_lake(raw, source), Log::Source)
            .latest()
            .await?;
    Ok(latest
        .map(|latest| {
            latest
                .state
                .tables
                .iter()
                .filter(|(_, state)| !state.columns.is_empty())
                .map(|(table, state)| table_def(source, table, state))
                .collect()
        })
        .unwrap_or_default())
}

/// Where a raw batch's rows came from.
struct Version<'a> {
    seq: u64,
    run: &'a str,
    op: &'a str,
    /// `_tributary_row` of its first row.
    first_row: i64,
}

/// A raw batch as rows of the table (`target`): the source's columns by
/// name, cast to the table's types (a value that does not fit is an error
/// naming the column, never a NULL), NULL where the file has none (a
/// delete's non-key columns, a column added later), and the metadata.
fn table_rows(
    table: &str,
    batch: &RecordBatch,
    target: &SchemaRef,
    version: &Version<'_>,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut columns = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = match field.name().as_str() {
            SEQ => Arc::new(Int64Array::from(vec![version.seq as i64; rows])) as _,
            RUN => Arc::new(StringArray::from(vec![version.run; rows])) as _,
            OP => Arc::new(StringArray::from(vec![version.op; rows])) as _,
            ROW => Arc::new(Int64Array::from_iter_values(
                version.first_row..version.first_row + rows as i64,
            )) as _,
            name => match batch.column_by_name(name) {
                Some(c) if c.data_type() == field.data_type() => c.clone(),
                Some(c) => {
                    arrow_cast::cast_with_options(c, field.data_type(), &EXACT).map_err(|e| {
                        crate::Error::from(tributary_iceberg::Error::Schema {
                            table: table.to_string(),
                            reason: format!("column {name}: {e}"),
                        })
                    })?
                }
                None => new_null_array(field.data_type(), rows),
            },
        };
        columns.push(column);
    }
    RecordBatch::try_new(target.clone(), columns).map_err(arrow)
}

/// Casts that fail rather than make a value NULL.
const EXACT: arrow_cast::CastOptions<'static> = arrow_cast::CastOptions {
    safe: false,
    format_options: arrow_cast::display::FormatOptions::new(),
};

fn arrow(error: arrow_schema::ArrowError) -> crate::Error {
    tributary_iceberg::Error::from(error).into()
}

/// What publication remembers of one table of a source: the highest
/// manifest it has been given (its rows up to there are in the table, or
/// it had none), and whether its Iceberg table existed then. A table that
/// existed and is gone (deleted to be recreated) starts again from the
/// first manifest; one that never had a row does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Seen {
    seq: u64,
    existed: bool,
}

/// Publishes every manifest of `source` its tables have not seen. A table
/// that cannot be published (a type Iceberg cannot change, a changed
/// partitioning) is left as it was and the others go on; the error then
/// names each such table.
pub async fn publish_source(raw: &Lake, processed: &Lake, source: &str) -> Result<PublishReport> {
    let started = Instant::now();
    let lake = source_lake(raw, source);
    let log = ManifestLog::new(lake.clone(), Log::Source);
    let mut report = PublishReport::default();
    let latest_seq = log.latest_seq().await?;
    let Some(latest) = log.read::<SourceState>(latest_seq).await? else {
        report.elapsed = started.elapsed();
        return Ok(report);
    };
    let catalog = Catalog::new(processed.clone());
    let hint_before: BTreeMap<String, Seen> = processed
        .get_opt(&hint_key(source))
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    // Where each table starts: its watermark, or further on where the hint
    // says it was given later manifests and the table is still there.
    let mut tables: Vec<(String, TableDef, u64, bool)> = Vec::new();
    for (table, state) in &latest.state.tables {
        if state.columns.is_empty() {
            continue;
        }
        let def = table_def(source, table, state);
        let current = catalog.load(&def.location).await?;
        let exists = current.is_some();
        let watermark = current.and_then(|t| t.watermark()).unwrap_or(0);
        let start = match hint_before.get(table) {
            Some(seen) if exists || !seen.existed => seen.seq.max(watermark),
            _ => watermark,
        };
        tables.push((table.clone(), def, start, exists));
    }
    let from = tables.iter().map(|t| t.2).min().unwrap_or(latest_seq);
    let mut hint = hint_before.clone();
    let mut failed: Vec<(String, crate::Error)> = Vec::new();
    if from < latest_seq {
        let manifests: Vec<Manifest<SourceState>> = log.read_range(from + 1..=latest_seq).await?;
        report.manifests = manifests.iter().map(|m| m.seq).collect();
        for (table, def, start, exists) in &tables {
            let commits = report.commits.len();
            match publish_table(&catalog, &lake, table, def, *start, &manifests, &mut report).await
            {
                Ok(()) => {
                    let existed = *exists || report.commits.len() > commits;
                    hint.insert(
                        table.clone(),
                        Seen {
                            seq: latest_seq,
                            existed,
                        },
                    );
                }
                Err(error) => {
                    tracing::error!(source, table = %def.name, %error, "table not published");
                    failed.push((def.name.clone(), error));
                }
            }
        }
    }
    if hint != hint_before {
        processed
            .put_replace(
                &hint_key(source),
                bytes::Bytes::from(serde_json::to_vec(&hint)?),
            )
            .await?;
    }
    report.elapsed = started.elapsed();
    tracing::info!(
        source,
        manifests = report.manifests.len(),
        commits = report.commits.len(),
        already = report.already,
        failed = failed.len(),
        ms = report.elapsed.as_millis() as u64,
        "source tables published"
    );
    if failed.is_empty() {
        return Ok(report);
    }
    let retryable = failed.iter().all(|(_, e)| e.is_retryable());
    let detail: Vec<String> = failed.iter().map(|(t, e)| format!("{t}: {e}")).collect();
    Err(crate::Error::Publication(
        format!(
            "{} of {} table(s) of source {source} not published (the others were): {}",
            failed.len(),
            tables.len(),
            detail.join("; ")
        ),
        retryable,
    ))
}

/// The files of `table` in a manifest: new versions, then deletes (the
/// order `_tributary_row` numbers them in, the order the warehouse
/// applies them in).
fn files_of<'a>(
    manifest: &'a Manifest<SourceState>,
    table: &str,
) -> Vec<(&'a FileEntry, &'static str)> {
    let deletes = format!("{table}/_deletes");
    let mut out: Vec<(&FileEntry, &'static str)> = manifest
        .files
        .iter()
        .filter(|f| f.table == table)
        .map(|f| (f, "upsert"))
        .collect();
    out.extend(
        manifest
            .files
            .iter()
            .filter(|f| f.table == deletes)
            .map(|f| (f, "delete")),
    );
    out
}

/// Manifests one commit takes at most when catching up, and rows: a first
/// load or a backlog is several commits, each a bounded piece of work that
/// the next call goes on from.
const MANIFESTS_PER_COMMIT: usize = 64;
const ROWS_PER_COMMIT: u64 = 2_000_000;

/// The pending manifests of a table in commit-sized groups.
fn groups<'a>(
    pending: &[&'a Manifest<SourceState>],
    table: &str,
) -> Vec<Vec<&'a Manifest<SourceState>>> {
    let mut out: Vec<Vec<&Manifest<SourceState>>> = Vec::new();
    let mut rows = 0;
    for manifest in pending {
        let here: u64 = files_of(manifest, table).iter().map(|(f, _)| f.rows).sum();
        match out.last_mut() {
            Some(group) if group.len() < MANIFESTS_PER_COMMIT && rows + here <= ROWS_PER_COMMIT => {
                group.push(manifest);
                rows += here;
            }
            _ => {
                out.push(vec![manifest]);
                rows = here;
            }
        }
    }
    out
}

async fn publish_table(
    catalog: &Catalog,
    lake: &Lake,
    table: &str,
    def: &TableDef,
    have: u64,
    manifests: &[Manifest<SourceState>],
    report: &mut PublishReport,
) -> Result<()> {
    let mut have = have;
    // Each commit says which watermark it was computed against, so a
    // concurrent publisher (a `tributary sources` by hand beside the
    // function) never makes a version appear twice: a commit that finds
    // the table moved on is computed again from there.
    'again: loop {
        let pending: Vec<&Manifest<SourceState>> = manifests
            .iter()
            .filter(|m| m.seq > have && !files_of(m, table).is_empty())
            .collect();
        for group in groups(&pending, table) {
            let (first, last) = (group[0], group[group.len() - 1]);
            let change = Change {
                files: write_group(catalog, lake, table, def, &group).await?,
                watermark: Some(last.seq),
                properties: BTreeMap::from([
                    ("tributary.run-id".into(), last.run_id.to_string()),
                    (
                        "tributary.source-seq".into(),
                        seq_range(first.seq, last.seq),
                    ),
                ]),
                after: Some(have),
            };
            match catalog.commit(def, &change).await? {
                Outcome::Committed(done) => {
                    report.commits.push((
                        def.name.clone(),
                        last.seq,
                        std::time::Duration::from_millis(done.millis),
                    ));
                    have = last.seq;
                }
                Outcome::Empty => have = last.seq,
                Outcome::AlreadyCommitted | Outcome::Overlap(_) => {
                    report.already += 1;
                    have = catalog
                        .load(&def.location)
                        .await?
                        .and_then(|t| t.watermark())
                        .unwrap_or(have);
                    continue 'again;
                }
            }
        }
        return Ok(());
    }
}

fn seq_range(first: u64, last: u64) -> String {
    if first == last {
        last.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// Rows waiting to be written at most, over all partitions: the writer
/// writes the partition holding most whenever more wait.
const ROWS_HELD: usize = 256 * 1024;

/// Writes the table's rows of a group of manifests into the table's
/// `data/`, streaming each raw file's batches through one fan-out writer
/// ([`tributary_iceberg::RowWriter`]), so memory holds one raw file's
/// bytes and [`ROWS_HELD`] rows. Rows are numbered within their manifest
/// (`_tributary_row`).
async fn write_group(
    catalog: &Catalog,
    lake: &Lake,
    table: &str,
    def: &TableDef,
    group: &[&Manifest<SourceState>],
) -> Result<Vec<NewFile>> {
    let current = catalog.evolve(def).await?;
    let target = catalog.arrow_schema(def, &current)?;
    let name = format!("{:010}-{:08x}", group[0].seq, rand::random::<u32>());
    let mut writer = catalog.row_writer(def, &name, ROWS_HELD);
    for manifest in group {
        let mut row = 0i64;
        for (entry, op) in files_of(manifest, table) {
            let bytes = lake.get(&entry.key).await?;
            for batch in tributary_lake::parquet::decode_batches(bytes)? {
                let batch = batch?;
                let version = Version {
                    seq: manifest.seq,
                    run: manifest.run_id.as_str(),
                    op,
                    first_row: row,
                };
                row += batch.num_rows() as i64;
                writer
                    .push(&table_rows(&def.name, &batch, &target, &version)?)
                    .await?;
            }
        }
    }
    Ok(writer.finish().await?)
}

/// Publishes every configured source found in the raw lake, each as its
/// own stage (a failure is alerted; the others go on).
pub async fn publish_all(
    raw: &Lake,
    processed: &Lake,
    catalog: Option<&dyn crate::catalog::Catalog>,
    alerts: &dyn crate::alerts::Alerts,
) -> Vec<(String, Result<PublishReport>)> {
    let sources = match raw.folders("sources").await {
        Ok(sources) => sources,
        Err(e) => return vec![("*".to_string(), Err(e.into()))],
    };
    let mut out = Vec::with_capacity(sources.len());
    for source in sources {
        let done = run_publication(raw, processed, &source, catalog, alerts).await;
        out.push((source, done));
    }
    out
}

/// The stage publishing one source, named after it, so one source's
/// recovery does not close another's alert.
pub fn stage(source: &str) -> Stage {
    Stage {
        name: crate::stage::intern(&format!("publish {source}")),
        retryable: "the raw lake has the source's manifests; the next publication takes what this one did not",
        needs_fix: "fix the cause named above (a table whose type or partitioning changed: delete its folder in the processed lake for the next publication to recreate it from the raw lake); the other tables, the raw lake and the warehouse are not affected",
    }
}

/// The publication stage of one source (a transform function invoked by
/// the source's new manifest, its maintenance, or `tributary sources`):
/// publish, then point `catalog` (when there is one) at the tables'
/// current versions, whether this call committed them or another did
/// (the CLI, a lost race); a failure is alerted.
pub async fn run_publication(
    raw: &Lake,
    processed: &Lake,
    source: &str,
    catalog: Option<&dyn crate::catalog::Catalog>,
    alerts: &dyn crate::alerts::Alerts,
) -> Result<PublishReport> {
    stage(source)
        .run(alerts, |_| async move {
            let published = publish_source(raw, processed, source).await;
            if let Some(catalog) = catalog {
                let defs = source_defs(raw, source).await?;
                catalog
                    .sync(&crate::catalog::specs_of(processed, defs).await?)
                    .await?;
            }
            published
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int16Array, Time64MicrosecondArray};

    #[test]
    fn raw_rows_become_versions_with_their_manifest_run_and_operation() {
        let raw = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int16, false),
                Field::new(
                    "at",
                    DataType::Time64(arrow_schema::TimeUnit::Microsecond),
                    true,
                ),
            ])),
            vec![
                Arc::new(Int16Array::from(vec![7, 8])),
                Arc::new(Time64MicrosecondArray::from(vec![Some(1_000_000), None])),
            ],
        )
        .unwrap();
        let target = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("at", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
            Field::new(SEQ, DataType::Int64, false),
            Field::new(RUN, DataType::Utf8, false),
            Field::new(OP, DataType::Utf8, false),
            Field::new(ROW, DataType::Int64, false),
        ]));
        let version = Version {
            seq: 12,
            run: "run-x",
            op: "delete",
            first_row: 40,
        };
        let rows = table_rows("t", &raw, &target, &version).unwrap();
        assert_eq!(rows.num_rows(), 2);
        let at = rows
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!((at.value(0), at.is_null(1)), (1_000_000, true));
        assert_eq!(
            rows.column(2).null_count(),
            2,
            "a column the file lacks is NULL"
        );
        let seq = rows
            .column(3)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(seq.value(1), 12);
        let op = rows
            .column(5)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(op.value(0), "delete");
        let row = rows
            .column(6)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!((row.value(0), row.value(1)), (40, 41));
    }

    #[test]
    fn a_value_that_does_not_fit_the_tables_type_is_an_error_not_a_null() {
        let raw = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("n", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec!["12", "twelve"]))],
        )
        .unwrap();
        let target = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let version = Version {
            seq: 1,
            run: "r",
            op: "upsert",
            first_row: 0,
        };
        let error = table_rows("src_x_t", &raw, &target, &version)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("src_x_t") && error.contains("column n"),
            "{error}"
        );
    }
}
