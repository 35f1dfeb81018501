//! Table maintenance: compaction, snapshot expiry and orphan removal.
//!
//! Each is safe beside a writer. Compaction commits like any writer and, if
//! it loses the race for a version, commits again on the newer one as long
//! as every file it rewrote is still in the table (otherwise it gives up;
//! its output is then an orphan). Expiry removes snapshots from a new
//! metadata version the same way. File removal only ever deletes files this
//! crate wrote (`metadata/`, `data/` of the table) that no retained
//! snapshot references; the lake's own files, named by its manifests, are
//! never deleted.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use iceberg::spec::{DataFile, Operation, TableMetadataBuilder};
use tributary_lake::parquet::{ParquetEncoder, decode_batches, read_footer};

use crate::{
    Catalog, Error, Result, TableDef, files,
    table::{LiveFile, MAX_BASE_AGE, Plan, Table, version_key},
};

/// What maintenance aims for.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Target size of a compacted file (default 128 MB). Files under three
    /// quarters of it are small and are merged, partition by partition.
    pub target_file_bytes: u64,
    /// Snapshots younger than this are kept (default six hours), so
    /// readers of a recent snapshot and time travel within it keep working.
    /// A table committed every minute carries every kept snapshot in each
    /// metadata version, so this also bounds the size of a commit.
    pub keep_snapshots_for: Duration,
    /// At least this many of the newest snapshots are kept (default 5).
    pub keep_snapshots: usize,
    /// Unreferenced files younger than this are left alone (default one
    /// hour): a writer may be about to commit them.
    pub orphan_grace: Duration,
    /// Metadata versions kept before the current one (default 20).
    pub keep_versions: u64,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        Self {
            target_file_bytes: 128 * 1024 * 1024,
            keep_snapshots_for: Duration::from_secs(6 * 3600),
            keep_snapshots: 5,
            orphan_grace: Duration::from_secs(3600),
            keep_versions: 20,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Live data files before and after.
    pub files_before: u64,
    /// Live data files after (before, when nothing was committed).
    pub files_after: u64,
    /// Files merged away and files written.
    pub rewritten_files: u64,
    /// Files written.
    pub written_files: u64,
    /// Rows and bytes read.
    pub rows: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// The version committed, if any.
    pub version: Option<u64>,
    /// Commit attempts.
    pub attempts: u32,
    /// Wall time in milliseconds.
    pub millis: u64,
    /// Set when a concurrent replace removed a file being compacted.
    pub abandoned: bool,
}

/// What an expiry did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpireReport {
    /// Snapshots removed from the table.
    pub expired_snapshots: u64,
    /// Files deleted (manifest lists, manifests, rewritten data, old
    /// metadata versions, orphans).
    pub deleted_files: u64,
    /// Files kept because a writer may still be committing them.
    pub young_orphans: u64,
}

const COMMIT_ATTEMPTS: u32 = 8;

fn gone(def: &TableDef) -> Error {
    Error::Schema {
        table: def.name.clone(),
        reason: format!(
            "the table's metadata under {} disappeared during maintenance",
            def.location
        ),
    }
}

fn partition_key(file: &DataFile) -> String {
    format!("{:?}", file.partition())
}

impl Catalog {
    /// Merges the small files of each partition into files of about the
    /// target size, as one `replace` snapshot.
    pub async fn compact(
        &self,
        def: &TableDef,
        options: &MaintainOptions,
    ) -> Result<CompactReport> {
        let started = Instant::now();
        let mut report = CompactReport::default();
        let Some(table) = self.load(&def.location).await? else {
            return Ok(report);
        };
        let live = self.all_live(&table).await?;
        report.files_before = live.len() as u64;
        report.files_after = report.files_before;
        let small = options.target_file_bytes * 3 / 4;
        let mut by_partition: BTreeMap<String, Vec<&LiveFile>> = BTreeMap::new();
        for file in &live {
            if file.file.file_size_in_bytes() < small {
                by_partition
                    .entry(partition_key(&file.file))
                    .or_default()
                    .push(file);
            }
        }
        // Bins of consecutive small files up to the target size.
        let mut bins: Vec<Vec<&LiveFile>> = Vec::new();
        for files in by_partition.into_values() {
            let mut bin: Vec<&LiveFile> = Vec::new();
            let mut bytes = 0;
            for file in files {
                if bytes + file.file.file_size_in_bytes() > options.target_file_bytes
                    && !bin.is_empty()
                {
                    bins.push(std::mem::take(&mut bin));
                    bytes = 0;
                }
                bytes += file.file.file_size_in_bytes();
                bin.push(file);
            }
            bins.push(bin);
        }
        bins.retain(|bin| bin.len() >= 2);
        if bins.is_empty() {
            report.millis = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        let token = format!("{:016x}", rand::random::<u64>());
        let schema = table.metadata.current_schema().clone();
        // The table's own partitioning, whatever `def` says now (a changed
        // definition is refused at the next commit, not applied here).
        let partitioning = table.partitioning();
        // Files from before a column was added (or widened) are written
        // again in the current schema, so merging them loses nothing; a
        // bin's output keeps its first file's Arrow types where they are
        // the table's (a file in milliseconds stays in milliseconds).
        let current_arrow = crate::schema::to_arrow(&def.name, &schema)?;
        let spec_id = table.metadata.default_partition_spec_id();
        let mut inputs: HashSet<String> = HashSet::new();
        let mut outputs: Vec<DataFile> = Vec::new();
        for bin in &bins {
            let mut encoder: Option<ParquetEncoder> = None;
            let mut arrow = None;
            let mut target: Option<arrow_schema::SchemaRef> = None;
            for file in bin {
                inputs.insert(file.file.file_path().to_string());
                report.bytes_read += file.file.file_size_in_bytes();
                let bytes = self
                    .lake()
                    .get(&self.key_of(file.file.file_path())?)
                    .await?;
                for batch in decode_batches(bytes)? {
                    let batch = batch?;
                    let target = match &target {
                        Some(t) => t,
                        None => target.insert(crate::schema::output_schema(
                            &def.name,
                            &schema,
                            &current_arrow,
                            &batch.schema(),
                        )?),
                    };
                    let batch = crate::schema::conform(&def.name, &batch, target)?;
                    report.rows += batch.num_rows() as u64;
                    let current = match encoder.as_mut() {
                        Some(e) => e,
                        None => {
                            arrow = Some(batch.schema());
                            encoder.insert(ParquetEncoder::for_batch(batch.schema(), &batch)?)
                        }
                    };
                    current.write(&batch)?;
                }
            }
            let (Some(encoder), Some(arrow)) = (encoder, arrow) else {
                continue;
            };
            let key = format!(
                "{}/data/compact-{token}-{}.parquet",
                def.location,
                outputs.len()
            );
            let rows = encoder.rows();
            let entry = self
                .lake()
                .put_file(&key, &def.name, rows, encoder.finish()?)
                .await?;
            report.bytes_written += entry.bytes;
            let footer = read_footer(self.lake(), &key).await?;
            let stats = files::stats(&schema, &arrow, &footer);
            let partition = files::partition_of(&schema, &partitioning, &stats).map_err(|()| {
                Error::Schema {
                    table: def.name.clone(),
                    reason: format!("compacted file {key} spans partitions"),
                }
            })?;
            outputs.push(files::data_file(
                self.url_of(&key),
                entry.bytes,
                &stats,
                files::partition_struct(partition),
                spec_id,
            )?);
        }
        report.rewritten_files = inputs.len() as u64;
        report.written_files = outputs.len() as u64;
        let mut table = table;
        let mut live = live;
        for attempt in 1..=COMMIT_ATTEMPTS {
            report.attempts = attempt;
            let still: HashSet<&str> = live.iter().map(|l| l.file.file_path()).collect();
            if !inputs.iter().all(|i| still.contains(i.as_str())) {
                report.abandoned = true;
                tracing::info!(table = %def.name, "compaction abandoned: a concurrent replace removed one of its files");
                break;
            }
            let kept: Vec<LiveFile> = live
                .iter()
                .filter(|l| !inputs.contains(l.file.file_path()))
                .cloned()
                .collect();
            let files_after = (kept.len() + outputs.len()) as u64;
            if started.elapsed() > MAX_BASE_AGE {
                // Its first output may be older than expiry's grace period
                // by the time it commits: give up rather than risk
                // committing a file expiry deleted as an orphan.
                report.abandoned = true;
                tracing::warn!(table = %def.name, "compaction took too long to commit safely; abandoned");
                break;
            }
            let plan = Plan {
                keep: Vec::new(),
                rewrite: vec![kept],
                added: outputs.clone(),
                removed: inputs.len() as u64,
                removed_rows: report.rows,
                removed_bytes: report.bytes_read,
                rewritten_rows: report.rows,
                operation: Some(Operation::Replace),
            };
            let mut properties = BTreeMap::from([(
                "tributary.maintenance".to_string(),
                "compaction".to_string(),
            )]);
            if let Some(w) = table.watermark() {
                properties.insert(crate::WATERMARK.into(), w.to_string());
            }
            if let Some(done) = self.write_snapshot(def, &table, plan, properties).await? {
                report.version = Some(done.version);
                report.files_after = files_after;
                break;
            }
            table = self.load(&def.location).await?.ok_or_else(|| gone(def))?;
            live = self.all_live(&table).await?;
        }
        report.millis = started.elapsed().as_millis() as u64;
        tracing::info!(table = %def.name, before = report.files_before, after = report.files_after, rows = report.rows, ms = report.millis, "compaction");
        Ok(report)
    }

    async fn all_live(&self, table: &Table) -> Result<Vec<LiveFile>> {
        let mut live = Vec::new();
        for manifest in &self.manifests(table).await? {
            live.extend(self.live_files(manifest).await?);
        }
        Ok(live)
    }

    /// Every file a snapshot reaches: its manifest list, manifests and data.
    async fn reachable(&self, table: &Table, ids: &[i64]) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for id in ids {
            let Some(snapshot) = table.metadata.snapshot_by_id(*id) else {
                continue;
            };
            out.insert(snapshot.manifest_list().to_string());
            for manifest in self.manifests_of(snapshot).await? {
                // Manifests never change: one shared by many snapshots is
                // read once.
                if out.insert(manifest.manifest_path.clone()) {
                    for live in self.live_files(&manifest).await? {
                        out.insert(live.file.file_path().to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Expires snapshots older than the options allow (keeping the newest
    /// few and the current one), then deletes the table's own files no kept
    /// snapshot reaches: those of expired snapshots, old metadata versions,
    /// and orphans of failed commits older than the grace period.
    pub async fn expire(
        &self,
        def: &TableDef,
        options: &MaintainOptions,
        now: DateTime<Utc>,
    ) -> Result<ExpireReport> {
        let mut report = ExpireReport::default();
        let Some(mut table) = self.load(&def.location).await? else {
            return Ok(report);
        };
        let cutoff = now.timestamp_millis() - options.keep_snapshots_for.as_millis() as i64;
        for attempt in 1..=COMMIT_ATTEMPTS {
            let mut snapshots: Vec<(i64, i64)> = table
                .metadata
                .snapshots()
                .map(|s| (s.timestamp_ms(), s.snapshot_id()))
                .collect();
            snapshots.sort();
            let current = table.metadata.current_snapshot_id();
            let newest: HashSet<i64> = snapshots
                .iter()
                .rev()
                .take(options.keep_snapshots)
                .map(|s| s.1)
                .collect();
            let expired: Vec<i64> = snapshots
                .iter()
                .filter(|(at, id)| *at < cutoff && !newest.contains(id) && Some(*id) != current)
                .map(|s| s.1)
                .collect();
            if expired.is_empty() {
                break;
            }
            let next = TableMetadataBuilder::new_from_metadata(
                table.metadata.clone(),
                Some(self.url_of(&version_key(&def.location, table.version))),
            )
            .remove_snapshots(&expired)
            .build()?
            .metadata;
            if self
                .put_version(&def.location, table.version + 1, &next)
                .await?
            {
                report.expired_snapshots = expired.len() as u64;
                break;
            }
            if attempt == COMMIT_ATTEMPTS {
                return Err(Error::Contention {
                    table: def.name.clone(),
                    attempts: attempt,
                });
            }
            table = self.load(&def.location).await?.ok_or_else(|| gone(def))?;
        }
        // Files: everything under metadata/ and data/ that no kept snapshot
        // reaches, except recent versions and young files.
        let table = self.load(&def.location).await?.ok_or_else(|| gone(def))?;
        let ids: Vec<i64> = table
            .metadata
            .snapshots()
            .map(|s| s.snapshot_id())
            .collect();
        let reachable = self.reachable(&table, &ids).await?;
        let grace = now - chrono::Duration::from_std(options.orphan_grace).unwrap_or_default();
        let oldest_version = table.version.saturating_sub(options.keep_versions);
        for dir in ["metadata/", "data/"] {
            for (key, modified) in self
                .lake()
                .list_modified(&format!("{}/{dir}", def.location))
                .await?
            {
                let name = key.rsplit('/').next().unwrap_or_default();
                if name == "version-hint.text" {
                    continue;
                }
                if let Some(v) = name
                    .strip_prefix('v')
                    .and_then(|s| s.strip_suffix(".metadata.json"))
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    // Old enough by number and by time: a writer holding
                    // it as its base has given up (MAX_BASE_AGE).
                    if v < oldest_version && modified <= grace {
                        self.lake().delete(&key).await?;
                        report.deleted_files += 1;
                    }
                    continue;
                }
                if reachable.contains(&self.url_of(&key)) {
                    continue;
                }
                if modified > grace {
                    report.young_orphans += 1;
                    continue;
                }
                self.lake().delete(&key).await?;
                report.deleted_files += 1;
            }
        }
        tracing::info!(table = %def.name, expired = report.expired_snapshots, deleted = report.deleted_files, "expiry");
        Ok(report)
    }
}
