//! Configured sources in the processed lake, as Iceberg tables.
//!
//! Each table of a configured source (`crates/sources`) gets one Iceberg
//! table, `src_<source>_<table>` at `sources/<source>/<table>` in the
//! processed lake: every version its rows had and every delete, as the
//! warehouse's `<table>_history` keeps them, with the source manifest
//! (`_tributary_seq`), run (`_tributary_run`) and operation
//! (`_tributary_op`: `upsert` or `delete`, a delete carrying the key
//! columns only) that brought it. Athena reads a row's current version as
//! the one with the highest `_tributary_seq`, unless that is a delete.
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
//! table's publication with the column named.
//!
//! Types: Iceberg's, as Athena reads them. A time of day is its
//! microseconds since midnight (`long`), an array its text (`[1, 2]`), and
//! a small integer an `int`; the raw zone keeps each as it was read.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use arrow_array::{Int64Array, RecordBatch, StringArray, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures_util::{StreamExt, TryStreamExt};
use tributary_iceberg::{Catalog, Change, NewFile, Outcome, Partitioning, Rows, TableDef};
use tributary_lake::{FileEntry, Lake, Log, Manifest, ManifestLog};
use tributary_sources::ingest::{SourceState, TableState, source_lake};

use crate::{Result, lakehouse::PublishReport, stage::Stage};

/// The publication stage of configured sources.
pub const STAGE: Stage = Stage {
    name: "publish sources",
    retryable: "the raw lake has the source's manifests; the next publication takes what this one did not",
    needs_fix: "fix the cause named above; the raw lake and the warehouse are not affected, and the next publication takes every manifest pending",
};

/// The manifest that brought a row.
pub const SEQ: &str = "_tributary_seq";
/// The run that brought a row.
pub const RUN: &str = "_tributary_run";
/// `upsert` or `delete`.
pub const OP: &str = "_tributary_op";

/// Source manifests one commit takes at most when catching up.
const MANIFESTS_PER_COMMIT: usize = 64;

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

/// A raw batch as rows of the table (`target`): the source's columns by
/// name, cast to the table's types, NULL where the file has none (a
/// delete's non-key columns, a column added later), and the metadata.
fn table_rows(
    batch: &RecordBatch,
    target: &SchemaRef,
    seq: u64,
    run: &str,
    op: &str,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut columns = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = match field.name().as_str() {
            SEQ => Arc::new(Int64Array::from(vec![seq as i64; rows])) as _,
            RUN => Arc::new(StringArray::from(vec![run; rows])) as _,
            OP => Arc::new(StringArray::from(vec![op; rows])) as _,
            name => match batch.column_by_name(name) {
                Some(c) if c.data_type() == field.data_type() => c.clone(),
                Some(c) => arrow_cast::cast(c, field.data_type()).map_err(arrow)?,
                None => new_null_array(field.data_type(), rows),
            },
        };
        columns.push(column);
    }
    RecordBatch::try_new(target.clone(), columns).map_err(arrow)
}

fn arrow(error: arrow_schema::ArrowError) -> crate::Error {
    tributary_iceberg::Error::from(error).into()
}

/// The publication hint of one source: every table named has seen
/// manifest `seq`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Hint {
    seq: u64,
    tables: Vec<String>,
}

/// Publishes every manifest of `source` its tables have not seen.
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
    let defs: Vec<(String, TableDef)> = latest
        .state
        .tables
        .iter()
        .filter(|(_, state)| !state.columns.is_empty())
        .map(|(table, state)| (table.clone(), table_def(source, table, state)))
        .collect();
    let names: Vec<String> = defs.iter().map(|(t, _)| t.clone()).collect();
    let hint: Option<Hint> = processed
        .get_opt(&hint_key(source))
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|h: &Hint| h.tables == names);
    if hint.as_ref().is_some_and(|h| h.seq >= latest_seq) {
        // Every table has seen the latest manifest: nothing to read.
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (table, def) in &defs {
        let have = catalog
            .load(&def.location)
            .await?
            .and_then(|t| t.watermark())
            .unwrap_or(0);
        seen.insert(table.clone(), have);
    }
    let from = match &hint {
        Some(hint) => hint.seq,
        None => seen.values().copied().min().unwrap_or(latest_seq),
    };
    if from < latest_seq {
        let manifests: Vec<Manifest<SourceState>> =
            futures_util::stream::iter(from + 1..=latest_seq)
                .map(|seq| log.read::<SourceState>(seq))
                .buffered(8)
                .try_collect::<Vec<_>>()
                .await?
                .into_iter()
                .flatten()
                .collect();
        report.manifests = manifests.iter().map(|m| m.seq).collect();
        for (table, def) in &defs {
            publish_table(
                &catalog,
                &lake,
                table,
                def,
                seen[table],
                &manifests,
                &mut report,
            )
            .await?;
        }
    }
    let hint = Hint {
        seq: latest_seq,
        tables: names,
    };
    processed
        .put_replace(
            &hint_key(source),
            bytes::Bytes::from(serde_json::to_vec(&hint)?),
        )
        .await?;
    report.elapsed = started.elapsed();
    tracing::info!(
        stage = STAGE.name,
        source,
        manifests = report.manifests.len(),
        commits = report.commits.len(),
        already = report.already,
        ms = report.elapsed.as_millis() as u64,
        "source tables published"
    );
    Ok(report)
}

/// The files of `table` in a manifest: new versions, then deletes.
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
        for group in pending.chunks(MANIFESTS_PER_COMMIT) {
            let (first, last) = (group[0], group[group.len() - 1]);
            let change = Change {
                files: write_group(catalog, lake, table, def, group).await?,
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

/// Rows each written file holds at most (one per partition of them).
const ROWS_PER_WRITE: usize = 256 * 1024;

/// Writes the table's rows of a group of manifests into the table's
/// `data/`, one raw file at a time, its batches gathered up to
/// [`ROWS_PER_WRITE`] rows, so memory holds one raw file's bytes and one
/// such chunk.
async fn write_group(
    catalog: &Catalog,
    lake: &Lake,
    table: &str,
    def: &TableDef,
    group: &[&Manifest<SourceState>],
) -> Result<Vec<NewFile>> {
    let current = catalog.evolve(def).await?;
    let target = catalog.arrow_schema(def, &current)?;
    let token = format!("{:08x}", rand::random::<u32>());
    let mut files: Vec<NewFile> = Vec::new();
    let mut written = 0usize;
    for manifest in group {
        for (entry, op) in files_of(manifest, table) {
            let bytes = lake.get(&entry.key).await?;
            let mut chunk: Vec<RecordBatch> = Vec::new();
            let mut rows = 0usize;
            let mut batches = tributary_lake::parquet::decode_batches(bytes)?.peekable();
            while let Some(batch) = batches.next() {
                let batch = batch?;
                rows += batch.num_rows();
                chunk.push(table_rows(
                    &batch,
                    &target,
                    manifest.seq,
                    manifest.run_id.as_str(),
                    op,
                )?);
                if rows >= ROWS_PER_WRITE || batches.peek().is_none() {
                    let batch =
                        arrow_select::concat::concat_batches(&target, &chunk).map_err(arrow)?;
                    let name = format!("{:010}-{token}-{written}", manifest.seq);
                    files.extend(catalog.write_rows(def, &name, &batch).await?);
                    written += 1;
                    chunk.clear();
                    rows = 0;
                }
            }
        }
    }
    Ok(files)
}

/// Publishes every configured source found in the raw lake; a source that
/// fails is reported and the others go on.
pub async fn publish_all(raw: &Lake, processed: &Lake) -> Vec<(String, Result<PublishReport>)> {
    let sources = match raw.folders("sources").await {
        Ok(sources) => sources,
        Err(e) => return vec![("*".to_string(), Err(e.into()))],
    };
    let mut out = Vec::with_capacity(sources.len());
    for source in sources {
        let done = publish_source(raw, processed, &source).await;
        if let Err(error) = &done {
            tracing::error!(stage = STAGE.name, source = %source, %error, "publication failed");
        }
        out.push((source, done));
    }
    out
}

/// The publication stage of one source (a transform function invoked by
/// the source's new manifest, or `tributary sources`): publish, then point
/// `catalog` at the tables' new versions; a failure is alerted.
pub async fn run_publication(
    raw: &Lake,
    processed: &Lake,
    source: &str,
    catalog: &dyn crate::catalog::Catalog,
    alerts: &dyn crate::alerts::Alerts,
) -> Result<PublishReport> {
    STAGE
        .run(alerts, |_| async move {
            let report = publish_source(raw, processed, source).await?;
            if !report.commits.is_empty() {
                let defs = source_defs(raw, source).await?;
                catalog
                    .sync(&crate::catalog::specs_of(processed, defs).await?)
                    .await?;
            }
            Ok(report)
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
        ]));
        let rows = table_rows(&raw, &target, 12, "run-x", "delete").unwrap();
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
    }
}
