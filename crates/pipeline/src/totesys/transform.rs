//! The transform stage: raw totesys rows → the star schema in the processed lake.
//!
//! A run consumes every raw manifest not yet transformed, in order, applies
//! the changes to the reference state, writes the changed dimension rows,
//! the new fact rows and the dates they use, quarantines rows that break the
//! contract, saves the state, and commits one processed manifest naming all
//! of it and the raw manifests it consumed.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    time::{Duration, Instant},
};

use arrow_array::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tributary_lake::{
    FileEntry, Lake, Log, Manifest, ManifestLog, RunId, keys,
    parquet::{decode, decode_column_batches, decode_columns},
    write_partitioned_dataset,
};
use tributary_warehouse::{
    WarehouseTable,
    transform::{
        FACT_SOURCES, FactTransformer, Quarantined, REFERENCE_TABLES, ReferenceState, Version,
        apply_reference_changes, decode_state, dim_date_batch, encode_state, history_changes,
        known_keys, raw_versions, record_versions, to_json_lines, transactions_to_emit,
    },
};

use crate::{
    Error, Result,
    alerts::{Alert, Alerts},
    stage::Stage,
    totesys::ingest::IngestState,
    totesys::versions::{FactVersions, Segment},
};

/// The transform stage and what to do when it fails.
pub const STAGE: Stage = Stage {
    name: "transform",
    retryable: "nothing was committed; the next raw manifest or schedule retries",
    needs_fix: "fix the cause named above, then run the transform again (or with rebuild)",
};

/// Raw rows one run takes on across several raw manifests; a single
/// manifest is taken whole, whatever its size (the ingest bounds those).
/// Versions of several manifests may repeat one another, so a run that takes
/// several keeps every version it emits in memory to drop repeats: this
/// bounds that set (about 32 MB), and a first load read in parts goes
/// through one part per run.
pub const SEVERAL_MANIFESTS_ROWS: u64 = 1_000_000;

/// A manual request: `{"rebuild": true}` recomputes everything from raw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformRequest {
    /// Start from the first raw manifest with empty state.
    #[serde(default)]
    pub rebuild: bool,
}

/// The stage's state, carried from manifest to manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransformState {
    /// The last raw manifest consumed.
    pub raw_seq: u64,
    /// The raw manifests this run consumed.
    pub inputs: Vec<u64>,
    /// Whether this run recomputed everything from raw.
    pub rebuild: bool,
    /// Reference state parts → their keys in the processed lake.
    pub state_files: BTreeMap<String, String>,
    /// Rows quarantined by this run.
    pub quarantined: u64,
    /// When the last raw manifest consumed was committed: the freshness of
    /// what this manifest carries, read by the load without the raw lake.
    /// `None` in manifests written before this field existed.
    pub raw_committed_at: Option<DateTime<Utc>>,
    /// Per fact table, the versions the processed lake holds. `None` in
    /// manifests written before the index existed: the next run builds it
    /// from the fact files committed so far.
    pub versions: Option<BTreeMap<String, FactVersions>>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct TransformReport {
    /// The run.
    pub run_id: RunId,
    /// The processed manifest committed; `None` when there was nothing new.
    pub seq: Option<u64>,
    /// Raw manifests consumed.
    pub inputs: Vec<u64>,
    /// Rows written per warehouse table.
    pub rows: BTreeMap<&'static str, u64>,
    /// Rows quarantined, per source table.
    pub quarantined: BTreeMap<&'static str, u64>,
    /// Fact versions read again (a backfill, a late commit, a rebuild) and
    /// not written because the processed lake already has them, per fact table.
    pub repeats: BTreeMap<&'static str, u64>,
    /// Wall time.
    pub elapsed: Duration,
    /// Raw manifests left for the next run (see [`SEVERAL_MANIFESTS_ROWS`]).
    pub pending: u64,
    /// Where the wall time went, in order: each phase and its time. Phases
    /// of one fact table overlap with its Parquet encoding, which runs on
    /// another thread ("waiting for the encoder" is the part that did not).
    pub phases: Vec<(String, Duration)>,
    /// What the publication to the Iceberg tables did after the run.
    pub published: Option<crate::lakehouse::PublishReport>,
}

impl TransformReport {
    fn phase(&mut self, name: impl Into<String>, since: &mut Instant) {
        let now = Instant::now();
        self.phases.push((name.into(), now - *since));
        *since = now;
    }

    /// Fact rows written.
    pub fn fact_rows(&self) -> u64 {
        self.rows
            .iter()
            .filter(|(t, _)| t.starts_with("fact_"))
            .map(|(_, r)| r)
            .sum()
    }
}

/// Runs the transform stage once. On failure an alert names the run and error.
pub async fn transform(
    raw: &Lake,
    processed: &Lake,
    request: &TransformRequest,
    alerts: &dyn Alerts,
) -> Result<TransformReport> {
    let mut report = STAGE
        .run(alerts, |run_id| async move {
            transform_run(raw, processed, request, alerts, &run_id).await
        })
        .await?;
    // The tables catch up with every committed manifest, this run's and any
    // an earlier failed publication left. The run is committed whatever
    // happens here: a failed publication is alerted and left to the next
    // run, and the load does not wait for it.
    if let Ok(published) = crate::lakehouse::STAGE
        .run(alerts, |_| crate::lakehouse::publish(processed))
        .await
    {
        report
            .phases
            .push(("publish iceberg tables".into(), published.elapsed));
        report.published = Some(published);
    }
    Ok(report)
}

async fn transform_run(
    raw: &Lake,
    processed: &Lake,
    request: &TransformRequest,
    alerts: &dyn Alerts,
    run_id: &RunId,
) -> Result<TransformReport> {
    let started = Instant::now();
    let started_at = run_id.started_at().unwrap_or_else(Utc::now);
    let log = ManifestLog::new(processed.clone(), Log::Transform);
    let previous: Option<Manifest<TransformState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let raw_log = ManifestLog::new(raw.clone(), Log::Totesys);
    let raw_latest = raw_log.latest_seq().await?;
    let (first, mut state) = match (&previous, request.rebuild) {
        (Some(p), false) => (p.state.raw_seq + 1, read_state(processed, &p.state).await?),
        _ => (1, ReferenceState::default()),
    };
    let (raw_last, raw_files, raw_committed_at, read_at) =
        raw_files_by_table(&raw_log, first..=raw_latest, SEVERAL_MANIFESTS_ROWS).await?;
    let mut report = TransformReport {
        run_id: run_id.clone(),
        seq: None,
        pending: raw_latest.saturating_sub(raw_last.max(first - 1)),
        inputs: (first..=raw_last).collect(),
        rows: BTreeMap::new(),
        quarantined: BTreeMap::new(),
        repeats: BTreeMap::new(),
        elapsed: Duration::ZERO,
        phases: Vec::new(),
        published: None,
    };
    let mut lap = started;
    if report.inputs.is_empty() {
        tracing::info!(stage = STAGE.name, run_id = %run_id, raw_latest, "nothing new to transform");
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    tracing::info!(stage = STAGE.name, run_id = %run_id, first, last = raw_last, pending = report.pending, rebuild = request.rebuild, "run started");

    // The version index survives a rebuild: versions the lake has stay out.
    let mut versions = match &previous {
        Some(p) => match &p.state.versions {
            Some(v) => v.clone(),
            None => index_committed_facts(processed, &log, p.seq, run_id).await?,
        },
        None => BTreeMap::new(),
    };
    report.phase("read manifests, state and version index", &mut lap);
    let mut out = Output {
        processed,
        run_id,
        date: started_at.date_naive(),
        files: Vec::new(),
        quarantine: Vec::new(),
        report: &mut report,
    };
    transform_dimensions(raw, (&raw_files, &read_at), &mut state, &mut out, &mut lap).await?;
    transform_transactions(raw, &raw_files, &mut state, &mut out).await?;
    out.report.phase("dim_transaction", &mut lap);
    let keys_known = known_keys(&state)?;
    let mut dates: BTreeSet<i32> = BTreeSet::new();
    for source in FACT_SOURCES {
        let facts = FactsOf {
            source,
            keys_known: &keys_known,
            versions: &mut versions,
        };
        transform_facts(raw, &raw_files, facts, &mut dates, &mut out).await?;
        lap = Instant::now();
    }
    if !dates.is_empty() {
        let dim_date = WarehouseTable::by_name("dim_date").expect("listed warehouse table");
        out.write(dim_date, dim_date_batch(&dates)?).await?;
    }
    let Output {
        files, quarantine, ..
    } = out;

    quarantine_rows(raw, run_id, &quarantine, alerts, &mut report).await?;
    let state_files = save_state(processed, &state, run_id).await?;
    let manifest = log
        .commit(
            previous_seq,
            run_id,
            started_at,
            files,
            TransformState {
                raw_seq: raw_last,
                inputs: report.inputs.clone(),
                rebuild: request.rebuild,
                state_files,
                quarantined: quarantine.len() as u64,
                raw_committed_at,
                versions: Some(versions),
            },
        )
        .await?;
    report.phase("dim_date, quarantine, state and commit", &mut lap);
    report.seq = Some(manifest.seq);
    report.elapsed = started.elapsed();
    tracing::info!(
        stage = STAGE.name,
        run_id = %run_id,
        seq = manifest.seq,
        fact_rows = report.fact_rows(),
        quarantined = quarantine.len(),
        ms = report.elapsed.as_millis() as u64,
        "run committed"
    );
    Ok(report)
}

/// Where one transform run writes, and what it has written so far.
struct Output<'a> {
    processed: &'a Lake,
    run_id: &'a RunId,
    /// The run's date: the partition every file of the run goes to.
    date: NaiveDate,
    files: Vec<FileEntry>,
    quarantine: Vec<Quarantined>,
    report: &'a mut TransformReport,
}

impl Output<'_> {
    /// Writes one batch of `table` as one file and counts its rows.
    async fn write(&mut self, table: &'static WarehouseTable, batch: RecordBatch) -> Result<()> {
        let written = write_batch(self.processed, table, self.date, self.run_id, batch).await?;
        *self.report.rows.entry(table.name).or_default() += written.rows;
        self.files.push(written);
        Ok(())
    }
}

/// The raw files named by manifests `seqs`, per source table, in commit
/// order, and when the last of those manifests was committed: the first
/// manifest whole, and those after it while all together stay within
/// `max_rows` raw rows.
/// Returns the last manifest taken (0 when `seqs` is empty), and when the
/// ingest run that wrote each file started (ms since the epoch, by key).
async fn raw_files_by_table(
    raw_log: &ManifestLog,
    seqs: std::ops::RangeInclusive<u64>,
    max_rows: u64,
) -> Result<(u64, RawFiles, Option<DateTime<Utc>>, ReadAt)> {
    let mut raw_files = RawFiles::new();
    let mut read_at = ReadAt::new();
    let mut committed_at = None;
    let (mut last, mut rows) = (0, 0u64);
    for seq in seqs {
        let manifest: Manifest<IngestState> = raw_log.read(seq).await?.ok_or_else(|| {
            Error::Lake(tributary_lake::Error::CorruptManifest {
                key: Log::Totesys.manifest(seq),
                reason: "missing although a later manifest exists".to_string(),
            })
        })?;
        let files: Vec<(&'static str, FileEntry)> = manifest
            .files
            .into_iter()
            .filter_map(|f| Some((tributary_totesys::TableDef::by_name(&f.table)?.name, f)))
            .collect();
        let manifest_rows = files.iter().map(|(_, f)| f.rows).sum::<u64>();
        if last != 0 && rows.saturating_add(manifest_rows) > max_rows {
            break;
        }
        committed_at = Some(manifest.committed_at);
        last = seq;
        rows += manifest_rows;
        for (table, file) in files {
            read_at.insert(file.key.clone(), manifest.started_at.timestamp_millis());
            raw_files.entry(table).or_default().push(file);
        }
    }
    Ok((last, raw_files, committed_at, read_at))
}

/// Raw files per source table.
type RawFiles = HashMap<&'static str, Vec<FileEntry>>;

/// A raw file's batches as the star schema reads them: its model columns
/// (`tributary_totesys::MODEL_INPUTS`), in the model's order, whatever other
/// columns the source has gained since. Streams batch by batch.
async fn modelled_batches(
    raw: &Lake,
    table: &'static str,
    file: &FileEntry,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    let def = tributary_totesys::TableDef::by_name(table).ok_or_else(|| {
        Error::Lake(tributary_lake::Error::CorruptManifest {
            key: file.key.clone(),
            reason: format!("{table} is not a table the star schema reads"),
        })
    })?;
    let names: Vec<&str> = def.columns.iter().map(|c| c.name).collect();
    let batches = decode_column_batches(raw.get(&file.key).await?, &names)?;
    let key = file.key.clone();
    Ok(batches.map(move |batch| as_modelled(def, &key, batch?)))
}

/// [`modelled_batches`], all of them.
async fn read_as_modelled(
    raw: &Lake,
    table: &'static str,
    file: &FileEntry,
) -> Result<Vec<RecordBatch>> {
    modelled_batches(raw, table, file).await?.collect()
}

/// `batch` (a projection of a raw file of `def`) in the model's schema.
fn as_modelled(
    def: &'static tributary_totesys::TableDef,
    key: &str,
    batch: RecordBatch,
) -> Result<RecordBatch> {
    let schema = def.arrow_schema();
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = def
        .columns
        .iter()
        .map(|c| {
            batch.column_by_name(c.name).cloned().ok_or_else(|| {
                Error::Lake(tributary_lake::Error::CorruptManifest {
                    key: key.to_string(),
                    reason: format!(
                        "the raw file has no column {}.{}, which the star schema reads",
                        def.name, c.name
                    ),
                })
            })
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema, columns).map_err(|e| {
        Error::Lake(tributary_lake::Error::CorruptManifest {
            key: key.to_string(),
            reason: format!(
                "its {} columns do not read as the star schema's: {e}",
                def.name
            ),
        })
    })
}

/// When the ingest run that wrote a raw file started (ms), by key.
type ReadAt = HashMap<String, i64>;

/// The reference tables (small) are read whole and applied to the reference
/// state; every dimension row they reach is written again, and the whole
/// history of every dimension entity that gained a version.
async fn transform_dimensions(
    raw: &Lake,
    (raw_files, read_at): (&RawFiles, &ReadAt),
    state: &mut ReferenceState,
    out: &mut Output<'_>,
    lap: &mut Instant,
) -> Result<()> {
    let mut reference_rows: HashMap<&'static str, Vec<RecordBatch>> = HashMap::new();
    let mut versions: HashMap<&'static str, Vec<(RecordBatch, i64)>> = HashMap::new();
    for name in REFERENCE_TABLES {
        for file in raw_files.get(name).into_iter().flatten() {
            let batches = read_as_modelled(raw, name, file).await?;
            let at = read_at.get(&file.key).copied().unwrap_or_default();
            versions
                .entry(name)
                .or_default()
                .extend(batches.iter().map(|b| (b.clone(), at)));
            reference_rows.entry(name).or_default().extend(batches);
        }
    }
    let dims = apply_reference_changes(state, &reference_rows)?;
    drop(reference_rows);
    out.quarantine.extend(dims.quarantine);
    for (table, batch) in dims.batches {
        out.write(table, batch).await?;
    }
    out.report.phase("dimensions", lap);
    let gained = record_versions(state, &versions)?;
    drop(versions);
    for (table, batch) in history_changes(state, &gained)? {
        out.write(table, batch).await?;
    }
    out.report.phase("dimension histories", lap);
    Ok(())
}

/// Transactions are many: their raw files stream, newest first, batch by
/// batch into `dim_transaction` (the newest version of each id), and only
/// their ids join the reference state.
async fn transform_transactions(
    raw: &Lake,
    raw_files: &RawFiles,
    state: &mut ReferenceState,
    out: &mut Output<'_>,
) -> Result<()> {
    let files = raw_files.get("transaction").map_or(&[][..], Vec::as_slice);
    if files.is_empty() {
        return Ok(());
    }
    let table = WarehouseTable::by_name("dim_transaction").expect("listed warehouse table");
    let (sender, receiver) = mpsc::channel::<(i64, RecordBatch)>(2);
    let writer = spawn_writer(out.processed, table, out.date, out.run_id, receiver);
    let mut emitted = roaring::RoaringBitmap::new();
    let produced: Result<()> = async {
        for file in files.iter().rev() {
            for batch in modelled_batches(raw, "transaction", file).await? {
                let rows = transactions_to_emit(state, &batch?, &mut emitted)?;
                if rows.num_rows() > 0 && sender.send((0, rows)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
    .await;
    drop(sender);
    let written = writer.await.map_err(tributary_lake::Error::Task)??;
    produced?;
    *out.report.rows.entry(table.name).or_default() += written.iter().map(|f| f.rows).sum::<u64>();
    out.files.extend(written);
    Ok(())
}

/// One fact source and what its facts are checked against.
struct FactsOf<'a> {
    source: &'static str,
    keys_known: &'a tributary_warehouse::transform::KnownKeys,
    versions: &'a mut BTreeMap<String, FactVersions>,
}

/// One fact source's raw files, streamed file by file through the fact
/// transformer into the writer; the dates the facts use join `dates`.
/// Versions the processed lake already has are not written again.
async fn transform_facts(
    raw: &Lake,
    raw_files: &RawFiles,
    facts: FactsOf<'_>,
    dates: &mut BTreeSet<i32>,
    out: &mut Output<'_>,
) -> Result<()> {
    let FactsOf {
        source,
        keys_known,
        versions,
    } = facts;
    let Some(transformer) = FactTransformer::for_source(source, keys_known) else {
        return Ok(());
    };
    let table = transformer.table();
    let started = Instant::now();
    let index = versions.entry(table.name.to_string()).or_default();
    let files = raw_files.get(source).map_or(&[][..], Vec::as_slice);
    let already = versions_already_emitted(raw, out.processed, files, table.key, index).await?;
    // One ingest run never repeats a version; several may (backfill, rebuild),
    // and any may re-read one an earlier run emitted.
    let mut transformer = if out.report.inputs.len() > 1 || !already.is_empty() {
        transformer.once_per_version(already)
    } else {
        transformer
    };
    let looked_up = Instant::now();
    let (sender, receiver) = mpsc::channel::<(i64, RecordBatch)>(2);
    let writer = spawn_writer(out.processed, table, out.date, out.run_id, receiver);
    let (mut decoding, mut transforming, mut waiting) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut quarantine = Vec::new();
    let produced: Result<()> = async {
        for file in files {
            let clock = Instant::now();
            let mut batches = modelled_batches(raw, source, file).await?;
            decoding += clock.elapsed();
            loop {
                let clock = Instant::now();
                let Some(batch) = batches.next() else { break };
                let batch = batch?;
                let transformed = Instant::now();
                decoding += transformed - clock;
                let facts = transformer.transform(&batch)?;
                quarantine.extend(facts.quarantine);
                let sending = Instant::now();
                transforming += sending - transformed;
                for part in by_month(&facts.facts, BUSINESS_DATE)? {
                    if sender.send(part).await.is_err() {
                        return Ok(());
                    }
                }
                waiting += sending.elapsed();
            }
        }
        Ok(())
    }
    .await;
    drop(sender);
    let clock = Instant::now();
    let written = writer.await.map_err(tributary_lake::Error::Task)??;
    waiting += clock.elapsed();
    produced?;
    out.quarantine.extend(quarantine);
    let phases = &mut out.report.phases;
    phases.push((
        format!("{}: version lookups", table.name),
        looked_up - started,
    ));
    phases.push((format!("{}: decode raw", table.name), decoding));
    phases.push((format!("{}: transform", table.name), transforming));
    phases.push((format!("{}: waiting for the encoder", table.name), waiting));
    let indexed = Instant::now();
    index.record(
        &written,
        transformer.emitted_range(),
        transformer.emitted_max_id(),
    );
    if index.needs_compaction() {
        index
            .compact(out.processed, table.name, table.key, out.run_id)
            .await?;
    }
    out.report
        .phases
        .push((format!("{}: version index", table.name), indexed.elapsed()));
    let repeats = transformer.repeats();
    if repeats > 0 {
        out.report.repeats.insert(table.name, repeats);
    }
    dates.extend(transformer.into_dates());
    let rows = written.iter().map(|f| f.rows).sum::<u64>();
    tracing::info!(stage = STAGE.name, run_id = %out.run_id, table = table.name, rows, repeats, "facts written");
    *out.report.rows.entry(table.name).or_default() += rows;
    out.files.extend(written);
    Ok(())
}

/// Of the versions in `files`, those an earlier run already wrote. Only
/// versions at or below the high-water mark are looked up; in a run of
/// ordinary changes there are none or a few.
async fn versions_already_emitted(
    raw: &Lake,
    processed: &Lake,
    files: &[FileEntry],
    key: &str,
    index: &FactVersions,
) -> Result<HashSet<Version>> {
    if index.high_water_ms.is_none() {
        return Ok(HashSet::new());
    }
    let mut candidates = HashSet::new();
    for file in files {
        let (_, batches) = decode_columns(raw.get(&file.key).await?, &[key, "last_updated"])?;
        for batch in &batches {
            candidates.extend(
                raw_versions(batch, key)?
                    .into_iter()
                    .filter(|(id, ms)| index.may_hold(*id, *ms)),
            );
        }
    }
    index.present(processed, key, &candidates).await
}

/// The version index of a lake whose manifests predate it: every fact file
/// committed so far, folded into buckets (once).
async fn index_committed_facts(
    processed: &Lake,
    log: &ManifestLog,
    last_seq: u64,
    run_id: &RunId,
) -> Result<BTreeMap<String, FactVersions>> {
    let mut versions: BTreeMap<String, FactVersions> = BTreeMap::new();
    for file in log.committed_files(last_seq).await? {
        let is_fact = WarehouseTable::by_name(&file.table)
            .is_some_and(|t| matches!(t.kind, tributary_warehouse::Kind::Fact { .. }));
        if is_fact {
            versions
                .entry(file.table.clone())
                .or_default()
                .segments
                .push(Segment {
                    key: file.key,
                    min_ms: i64::MIN,
                    max_ms: i64::MAX,
                    rows: file.rows,
                });
        }
    }
    for (fact, index) in &mut versions {
        let table = WarehouseTable::by_name(fact).expect("a fact table");
        index
            .compact(processed, table.name, table.key, run_id)
            .await?;
        tracing::info!(stage = STAGE.name, run_id = %run_id, table = table.name, buckets = index.buckets.len(), "version index built from the committed fact files");
    }
    Ok(versions)
}

/// The business date of every fact: its files hold one month of it each,
/// the partitions of the facts' Iceberg tables.
const BUSINESS_DATE: &str = "created_date";

/// The writer of one table's rows, on another thread; batches come labelled
/// with a partition (their month for facts, 0 otherwise), and a file holds
/// one label only.
fn spawn_writer(
    processed: &Lake,
    table: &'static WarehouseTable,
    date: NaiveDate,
    run_id: &RunId,
    receiver: mpsc::Receiver<(i64, RecordBatch)>,
) -> tokio::task::JoinHandle<Result<Vec<FileEntry>>> {
    let run = run_id.clone();
    let lake = processed.clone();
    tokio::spawn(async move {
        let written = write_partitioned_dataset(
            lake,
            table.name.to_string(),
            table.arrow_schema(),
            1_048_576,
            move |part| keys::processed_warehouse_file(table.name, date, &run, part),
            receiver,
        )
        .await?;
        Ok(written.files)
    })
}

/// Splits a batch by the calendar month of its date column `column`
/// (months since 1970-01), months in the order they first appear.
fn by_month(batch: &RecordBatch, column: &str) -> Result<Vec<(i64, RecordBatch)>> {
    use arrow_array::{Array, BooleanArray, Date32Array};
    use chrono::Datelike;
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let dates = batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<Date32Array>())
        .ok_or_else(|| {
            Error::Lake(tributary_lake::Error::Arrow(
                arrow_schema::ArrowError::SchemaError(format!(
                    "{column} is not a date column of the facts"
                )),
            ))
        })?;
    // Days since 1970-01-01 to days since 0001-01-01 (day 1).
    const CE_DAYS_AT_EPOCH: i32 = 719_163;
    let months: Vec<i64> = (0..dates.len())
        .map(|i| {
            NaiveDate::from_num_days_from_ce_opt(dates.value(i).saturating_add(CE_DAYS_AT_EPOCH))
                .map_or(0, |day| {
                    i64::from(day.year() - 1970) * 12 + i64::from(day.month0())
                })
        })
        .collect();
    let mut order: Vec<i64> = Vec::new();
    for m in &months {
        if !order.contains(m) {
            order.push(*m);
        }
    }
    if order.len() == 1 {
        return Ok(vec![(order[0], batch.clone())]);
    }
    order
        .into_iter()
        .map(|month| {
            let mask: BooleanArray = months.iter().map(|m| Some(*m == month)).collect();
            let part = arrow_select::filter::filter_record_batch(batch, &mask)
                .map_err(|e| Error::Lake(tributary_lake::Error::Arrow(e)))?;
            Ok((month, part))
        })
        .collect()
}

/// One small batch (a dimension, the calendar) as one processed file.
async fn write_batch(
    processed: &Lake,
    table: &'static WarehouseTable,
    date: NaiveDate,
    run_id: &RunId,
    batch: RecordBatch,
) -> Result<FileEntry> {
    let key = keys::processed_warehouse_file(table.name, date, run_id, 0);
    Ok(processed.put_batch(&key, table.name, &batch).await?)
}

/// Writes refused rows to `raw/_quarantine/totesys/<table>/<run_id>.jsonl`
/// and raises one alert per table.
async fn quarantine_rows(
    raw: &Lake,
    run_id: &RunId,
    rows: &[Quarantined],
    alerts: &dyn Alerts,
    report: &mut TransformReport,
) -> Result<()> {
    let mut by_table: BTreeMap<&'static str, Vec<Quarantined>> = BTreeMap::new();
    for row in rows {
        by_table.entry(row.table).or_default().push(row.clone());
    }
    for (table, records) in by_table {
        let key = keys::quarantine(Log::Totesys.name(), table, run_id);
        raw.put_once(&key, Bytes::from(to_json_lines(&records)))
            .await?;
        report.quarantined.insert(table, records.len() as u64);
        // ERROR: the error-log alarm counts quarantines as well as failures.
        tracing::error!(
            stage = STAGE.name,
            run_id = %run_id,
            table,
            rows = records.len(),
            quarantine = %key,
            "rows quarantined, e.g. key {}: {}",
            records[0].key.map_or("?".to_string(), |k| k.to_string()),
            records[0].reason
        );
        alerts
            .send(&Alert {
                stage: STAGE.name,
                run_id: run_id.to_string(),
                table: Some(table.to_string()),
                message: format!(
                    "{} row(s) quarantined, e.g. key {}: {}",
                    records.len(),
                    records[0].key.map_or("?".to_string(), |k| k.to_string()),
                    records[0].reason
                ),
                action: format!(
                    "the rest of the run was loaded; fix the rows in the source (they are in {key} with their reasons) and they arrive with their next change"
                ),
            })
            .await;
    }
    Ok(())
}

async fn save_state(
    processed: &Lake,
    state: &ReferenceState,
    run_id: &RunId,
) -> Result<BTreeMap<String, String>> {
    let mut keys_written = BTreeMap::new();
    for (part, bytes) in encode_state(state)? {
        let extension = if part == "transaction_ids" {
            "roaring"
        } else {
            "parquet"
        };
        let key = keys::state_file(&part, run_id, extension);
        processed.put_once(&key, bytes).await?;
        keys_written.insert(part, key);
    }
    Ok(keys_written)
}

async fn read_state(processed: &Lake, state: &TransformState) -> Result<ReferenceState> {
    let mut parts = Vec::new();
    for (part, key) in &state.state_files {
        parts.push((part.clone(), key.clone(), processed.get(key).await?));
    }
    Ok(decode_state(parts)?)
}

/// The raw transaction columns `dim_transaction` is made from.
const TRANSACTION_COLUMNS: [&str; 5] = [
    "transaction_id",
    "transaction_type",
    "sales_order_id",
    "purchase_order_id",
    "last_updated",
];

/// What [`transform_floor`] measured.
#[derive(Debug, Clone)]
pub struct FloorReport {
    /// Fact rows encoded again.
    pub fact_rows: u64,
    /// Rows encoded again, every table.
    pub rows: u64,
    /// Raw rows decoded.
    pub raw_rows: u64,
    /// Wall time of decode and encode together.
    pub elapsed: Duration,
    /// Of which: decoding the raw files alone (on one thread).
    pub decode: Duration,
    /// And encoding the output alone (on the other).
    pub encode: Duration,
}

/// The transform's floor, for benchmarks: what is left when the transform
/// does no work. After a first transform of `raw` into `processed`, its
/// output is read into memory (not timed); then, timed and side by side on
/// two threads as the transform runs them, every raw file it read is decoded
/// (only the columns it reads, in the same batches) and every output batch
/// is encoded again with the same Parquet settings and file size (into
/// memory). No transform of these files into that output can be faster.
pub async fn transform_floor(raw: &Lake, processed: &Lake) -> Result<FloorReport> {
    let raw_log = ManifestLog::new(raw.clone(), Log::Totesys);
    let (_, raw_files, _, _) =
        raw_files_by_table(&raw_log, 1..=raw_log.latest_seq().await?, u64::MAX).await?;
    let log = ManifestLog::new(processed.clone(), Log::Transform);
    let mut outputs: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    for file in log.committed_files(log.latest_seq().await?).await? {
        let (_, batches) = decode(processed.get(&file.key).await?)?;
        outputs.entry(file.table).or_default().extend(batches);
    }
    let rows = |tables: &BTreeMap<String, Vec<RecordBatch>>, facts_only: bool| {
        tables
            .iter()
            .filter(|(t, _)| !facts_only || t.starts_with("fact_"))
            .flat_map(|(_, b)| b.iter().map(|b| b.num_rows() as u64))
            .sum::<u64>()
    };
    let (fact_rows, all_rows) = (rows(&outputs, true), rows(&outputs, false));

    let started = Instant::now();
    let raw = raw.clone();
    let decoding = tokio::spawn(async move {
        let clock = Instant::now();
        let mut decoded = 0u64;
        for (table, files) in &raw_files {
            let columns: Vec<&str> = match FactTransformer::source_columns(table) {
                Some(columns) => columns,
                None if *table == "transaction" => TRANSACTION_COLUMNS.to_vec(),
                None => tributary_totesys::TableDef::by_name(table)
                    .map_or(Vec::new(), |d| d.columns.iter().map(|c| c.name).collect()),
            };
            for file in files {
                for batch in decode_column_batches(raw.get(&file.key).await?, &columns)? {
                    decoded += batch?.num_rows() as u64;
                }
            }
        }
        Ok::<_, Error>((decoded, clock.elapsed()))
    });
    let encoding = async {
        let clock = Instant::now();
        let scratch = Lake::from_url("memory://")?;
        let run_id = RunId::new(Utc::now());
        for (table, batches) in outputs {
            let Some(table) = WarehouseTable::by_name(&table) else {
                continue;
            };
            let (sender, receiver) = mpsc::channel::<(i64, RecordBatch)>(2);
            let writer = spawn_writer(&scratch, table, Utc::now().date_naive(), &run_id, receiver);
            for batch in batches {
                if sender.send((0, batch)).await.is_err() {
                    break;
                }
            }
            drop(sender);
            writer.await.map_err(tributary_lake::Error::Task)??;
        }
        Ok::<_, Error>(clock.elapsed())
    };
    let (decoded, encoded) = tokio::join!(decoding, encoding);
    let decoded = decoded.map_err(tributary_lake::Error::Task)?;
    let ((raw_rows, decode), encode) = (decoded?, encoded?);
    Ok(FloorReport {
        fact_rows,
        rows: all_rows,
        raw_rows,
        elapsed: started.elapsed(),
        decode,
        encode,
    })
}
