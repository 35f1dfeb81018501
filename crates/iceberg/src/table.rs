//! Iceberg tables kept in the lake itself: a catalog with no server.
//!
//! A table lives under a key prefix of a lake (its *location*). Its versions
//! are `metadata/v1.metadata.json`, `v2`, …, each written put-if-absent: two
//! writers that race for version N+1 cannot both win, and the loser reloads
//! and tries again on the new version (optimistic concurrency, as every
//! Iceberg catalog does). `metadata/version-hint.text` names the newest
//! version for readers that look for it (DuckDB, Hadoop-style catalogs); it
//! is a hint only: the catalog itself lists the versions.
//!
//! Manifests and manifest lists are encoded by the `iceberg` crate into
//! memory and stored in the lake with the same put-if-absent writes.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use arrow_array::{
    Array, BooleanArray, Date32Array, Int32Array, Int64Array, LargeStringArray, RecordBatch,
    StringArray,
};
use arrow_schema::{DataType, SchemaRef};
use bytes::Bytes;
use iceberg::{
    io::{MemoryStorage, OutputFile, Storage},
    spec::{
        DataFile, FormatVersion, Manifest, ManifestFile, ManifestList, ManifestListWriter,
        ManifestStatus, ManifestWriterBuilder, NestedField, NestedFieldRef, Operation,
        PrimitiveLiteral, Schema, Snapshot, SortOrder, Summary, TableMetadata,
        TableMetadataBuilder, Type, UnboundPartitionSpec,
    },
};
use tributary_lake::{Lake, PutOutcome, parquet as lake_parquet};

use crate::{
    Error, Result,
    files::{self, FileStats, Partitioning},
    schema,
};

/// Summary property every snapshot carries: the highest change (the
/// caller's sequence, e.g. a processed manifest's) the table reflects.
pub const WATERMARK: &str = "tributary.watermark";

/// Attempts at one commit before giving up to concurrent writers.
const COMMIT_ATTEMPTS: u32 = 8;

/// How rows arrive in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows {
    /// Every file adds rows; nothing is replaced (facts, events).
    Append,
    /// A file's rows replace every row of the same key (current rows of a
    /// dimension, the whole history of an entity): copy-on-write. The key
    /// is one column or several (a composite key, e.g. symbol and day).
    ReplaceByKey(Vec<String>),
    /// Each change is the whole table (a snapshot): it replaces every row.
    Snapshot,
}

/// What a table is: its place, its columns, its partitioning and how rows
/// arrive.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Table name (the catalog's).
    pub name: String,
    /// Key prefix of the table in the lake, without a trailing slash.
    pub location: String,
    /// The schema of its files.
    pub schema: SchemaRef,
    /// Its partitioning.
    pub partitioning: Partitioning,
    /// How rows arrive.
    pub rows: Rows,
}

/// A lake file offered to a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    /// Key relative to the lake root.
    pub key: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// One change to a table: files, and what the snapshot says about it.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Files to add (or, by key, to replace rows with).
    pub files: Vec<NewFile>,
    /// The caller's sequence of this change: a table whose watermark is
    /// already this high has it, and the change is skipped. Snapshots carry
    /// the watermark forward.
    pub watermark: Option<u64>,
    /// Extra snapshot summary properties (run id, inputs).
    pub properties: BTreeMap<String, String>,
    /// The table's watermark this change was computed against (its files
    /// are everything after it up to `watermark`). A table whose watermark
    /// has moved past it, but not to `watermark`, already holds part of the
    /// change (another writer's): the commit answers [`Outcome::Overlap`]
    /// instead of adding those rows twice.
    pub after: Option<u64>,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new table version.
    Committed(Committed),
    /// The table's watermark showed the change was already in.
    AlreadyCommitted,
    /// No files: nothing to do.
    Empty,
    /// The table's watermark (given) moved past the change's `after` while
    /// it was computed: nothing was committed; compute it again from there.
    Overlap(u64),
}

/// A new table version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its number (`v<N>.metadata.json`).
    pub version: u64,
    /// The new snapshot.
    pub snapshot_id: i64,
    /// Data files added (including rewritten survivors).
    pub added_files: u64,
    /// Data files no longer in the table.
    pub removed_files: u64,
    /// Rows copied from replaced files into new ones.
    pub rewritten_rows: u64,
    /// Commit attempts (1 without contention).
    pub attempts: u32,
    /// Wall time of the commit in milliseconds.
    pub millis: u64,
}

/// A loaded table version.
#[derive(Debug, Clone)]
pub struct Table {
    /// The version number.
    pub version: u64,
    /// Its metadata.
    pub metadata: TableMetadata,
    /// When it was read: a commit on a base older than [`MAX_BASE_AGE`]
    /// reloads first (see [`crate::MaintainOptions::orphan_grace`]).
    pub loaded_at: Instant,
}

/// The oldest base a commit may build on. Expiry deletes metadata versions
/// and unreferenced files only once they are older than an hour (the
/// orphan grace), so a writer whose base, or whose first new file, is
/// younger than this cannot have either deleted under it.
pub const MAX_BASE_AGE: std::time::Duration = std::time::Duration::from_secs(20 * 60);

impl Table {
    /// How the table is partitioned, as its default spec says (the first
    /// field: Tributary's tables have one at most); a transform other than
    /// month or day reads as none.
    pub fn partitioning(&self) -> Partitioning {
        let spec = self.metadata.default_partition_spec();
        let Some(field) = spec.fields().first() else {
            return Partitioning::None;
        };
        let column = self
            .metadata
            .current_schema()
            .name_by_field_id(field.source_id)
            .unwrap_or_default()
            .to_string();
        match field.transform {
            iceberg::spec::Transform::Month => Partitioning::Month(column),
            iceberg::spec::Transform::Day => Partitioning::Day(column),
            _ => Partitioning::None,
        }
    }

    /// The watermark of the current snapshot, if any.
    pub fn watermark(&self) -> Option<u64> {
        self.metadata
            .current_snapshot()?
            .summary()
            .additional_properties
            .get(WATERMARK)?
            .parse()
            .ok()
    }
}

/// A live data file of a snapshot with the manifest facts a rewrite keeps.
#[derive(Debug, Clone)]
pub(crate) struct LiveFile {
    pub(crate) file: DataFile,
    pub(crate) snapshot_id: i64,
    pub(crate) sequence: i64,
}

/// The catalog of the tables kept in one lake.
#[derive(Debug, Clone)]
pub struct Catalog {
    lake: Lake,
}

fn metadata_dir(location: &str) -> String {
    format!("{location}/metadata/")
}

pub(crate) fn version_key(location: &str, version: u64) -> String {
    format!("{location}/metadata/v{version}.metadata.json")
}

fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Catalog {
    /// The catalog of the tables in `lake`.
    pub fn new(lake: Lake) -> Self {
        Self { lake }
    }

    /// The lake the tables live in.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// The URL of a key, as Iceberg metadata names files.
    pub fn url_of(&self, key: &str) -> String {
        format!("{}/{}", self.lake.url().trim_end_matches('/'), key)
    }

    /// The URL of a table version's metadata file (what a catalog such as
    /// Glue registers as the table's `metadata_location`).
    pub fn metadata_url(&self, location: &str, table: &Table) -> String {
        self.url_of(&version_key(location, table.version))
    }

    /// The key of a URL this catalog wrote.
    pub(crate) fn key_of(&self, url: &str) -> Result<String> {
        let root = format!("{}/", self.lake.url().trim_end_matches('/'));
        url.strip_prefix(&root)
            .map(str::to_string)
            .ok_or_else(|| Error::Schema {
                table: String::new(),
                reason: format!("{url} is outside the lake at {root}"),
            })
    }

    /// The newest version of the table at `location`, if it exists: from
    /// the version hint, checking that no later version exists (two small
    /// reads), or by listing the metadata when the hint is missing or names
    /// an expired version.
    pub async fn load(&self, location: &str) -> Result<Option<Table>> {
        let hint = self
            .lake
            .get_opt(&format!("{location}/metadata/version-hint.text"))
            .await?
            .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u64>().ok());
        if let Some(mut version) = hint
            && let Some(mut bytes) = self.lake.get_opt(&version_key(location, version)).await?
        {
            while let Some(next) = self
                .lake
                .get_opt(&version_key(location, version + 1))
                .await?
            {
                version += 1;
                bytes = next;
            }
            return Ok(Some(self.parse(location, version, &bytes)?));
        }
        let mut newest: Option<u64> = None;
        for key in self.lake.list(&metadata_dir(location)).await? {
            let Some(name) = key.rsplit('/').next() else {
                continue;
            };
            if let Some(n) = name
                .strip_prefix('v')
                .and_then(|s| s.strip_suffix(".metadata.json"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                newest = newest.max(Some(n));
            }
        }
        let Some(version) = newest else {
            return Ok(None);
        };
        let bytes = self.lake.get(&version_key(location, version)).await?;
        Ok(Some(self.parse(location, version, &bytes)?))
    }

    fn parse(&self, location: &str, version: u64, bytes: &[u8]) -> Result<Table> {
        let metadata = serde_json::from_slice(bytes).map_err(|source| Error::Metadata {
            key: version_key(location, version),
            source,
        })?;
        Ok(Table {
            version,
            metadata,
            loaded_at: Instant::now(),
        })
    }

    /// The table, created empty if it does not exist yet.
    pub async fn load_or_create(&self, def: &TableDef) -> Result<Table> {
        if let Some(table) = self.load(&def.location).await? {
            return Ok(table);
        }
        let schema = schema::to_iceberg(&def.name, &def.schema)?;
        let mut spec = UnboundPartitionSpec::builder();
        if let (Some(column), Some(transform)) =
            (def.partitioning.column(), def.partitioning.transform())
        {
            let field = schema.field_by_name(column).ok_or_else(|| Error::Schema {
                table: def.name.clone(),
                reason: format!("partition column {column} is not a column"),
            })?;
            let name = match def.partitioning {
                Partitioning::Month(_) => format!("{column}_month"),
                _ => format!("{column}_day"),
            };
            spec = spec.add_partition_field(field.id, name, transform)?;
        }
        if let Rows::ReplaceByKey(columns) = &def.rows {
            for column in columns {
                match def.schema.field_with_name(column) {
                    Ok(field) if !field.is_nullable() => {}
                    _ => {
                        return Err(Error::Schema {
                            table: def.name.clone(),
                            reason: format!(
                                "key column {column} must be a non-null column: a row with a NULL key could never be replaced"
                            ),
                        });
                    }
                }
            }
        }
        let properties = HashMap::from([
            // The lake's own files are data files of these tables: an
            // engine's own snapshot expiry or orphan removal (Spark, Athena
            // VACUUM) must not delete them. Tributary's maintenance deletes
            // only what Iceberg wrote.
            ("gc.enabled".to_string(), "false".to_string()),
            ("write.format.default".to_string(), "parquet".to_string()),
            (
                "write.parquet.compression-codec".to_string(),
                "zstd".to_string(),
            ),
            (
                "tributary.rows".to_string(),
                match &def.rows {
                    Rows::Append => "append".to_string(),
                    Rows::ReplaceByKey(k) => format!("replace-by-key:{}", k.join(",")),
                    Rows::Snapshot => "snapshot".to_string(),
                },
            ),
        ]);
        let built = TableMetadataBuilder::new(
            schema,
            spec.build(),
            SortOrder::unsorted_order(),
            self.url_of(&def.location),
            FormatVersion::V2,
            properties,
        )?
        .build()?
        .metadata;
        // The ids are final only once built: the name mapping names them.
        let mapping = schema::name_mapping_property(built.current_schema());
        let metadata = TableMetadataBuilder::new_from_metadata(built, None)
            .set_properties(mapping)?
            .build()?
            .metadata;
        match self.put_version(&def.location, 1, &metadata).await? {
            true => Ok(Table {
                version: 1,
                metadata,
                loaded_at: Instant::now(),
            }),
            // Another writer created it first: theirs is the table.
            false => self
                .load(&def.location)
                .await?
                .ok_or_else(|| Error::Schema {
                    table: def.name.clone(),
                    reason: "created by another writer, then not found".into(),
                }),
        }
    }

    /// The table as `def` describes it now, created if it does not exist:
    /// a column of `def` the table lacks is added (optional: older files do
    /// not have it), a column whose type Iceberg can widen in place (int to
    /// long, float to double, a decimal to more digits) is widened, and a
    /// required column `def` lets be NULL becomes optional, as one new table
    /// version. Columns the table has and `def` lacks stay (readers see
    /// NULL in files without them). Any other type change, or partitioning
    /// other than the table's, is refused naming the column: a table keeps
    /// what it was created with.
    pub async fn evolve(&self, def: &TableDef) -> Result<Table> {
        for _ in 0..COMMIT_ATTEMPTS {
            let table = self.load_or_create(def).await?;
            let current = table.metadata.current_schema();
            let refuse = |reason: String| Error::Schema {
                table: def.name.clone(),
                reason,
            };
            let have = table.partitioning();
            let want = &def.partitioning;
            if have != *want {
                let show = |p: &Partitioning| match p {
                    Partitioning::None => "nothing".to_string(),
                    Partitioning::Month(c) => format!("month({c})"),
                    Partitioning::Day(c) => format!("day({c})"),
                };
                return Err(refuse(format!(
                    "the table is partitioned by {}, and now should be by {}: a table keeps the \
                     partitioning it was created with; delete its folder {} for the next \
                     publication to create it anew from the raw lake",
                    show(&have),
                    show(want),
                    def.location
                )));
            }
            let mut fields: Vec<NestedFieldRef> = current.as_struct().fields().to_vec();
            let mut next_id = table.metadata.last_column_id();
            let mut changed = false;
            for column in def.schema.fields() {
                let ty = schema::primitive(&def.name, column.name(), column.data_type())?;
                let Some(at) = fields.iter().position(|f| f.name == *column.name()) else {
                    next_id += 1;
                    fields.push(Arc::new(NestedField::optional(
                        next_id,
                        column.name(),
                        Type::Primitive(ty),
                    )));
                    changed = true;
                    continue;
                };
                let old = fields[at].clone();
                let Type::Primitive(old_ty) = old.field_type.as_ref() else {
                    return Err(refuse(format!("column {} is not a primitive", old.name)));
                };
                let widened = *old_ty != ty;
                if widened && !schema::promotes(old_ty, &ty) {
                    return Err(refuse(format!(
                        "column {} is {old_ty} in the table and {ty} now: Iceberg cannot change it \
                         in place; delete the table's folder {} for the next publication to \
                         create it anew from the raw lake, or keep the old type",
                        old.name, def.location
                    )));
                }
                let loosened = old.required && column.is_nullable();
                if widened || loosened {
                    fields[at] = Arc::new(NestedField::new(
                        old.id,
                        old.name.clone(),
                        Type::Primitive(ty),
                        old.required && !loosened,
                    ));
                    changed = true;
                }
            }
            if !changed {
                return Ok(table);
            }
            let evolved = Schema::builder().with_fields(fields).build()?;
            let mapping = schema::name_mapping_property(&evolved);
            let next = TableMetadataBuilder::new_from_metadata(
                table.metadata.clone(),
                Some(self.url_of(&version_key(&def.location, table.version))),
            )
            .add_current_schema(evolved)?
            .set_properties(mapping)?
            .build()?
            .metadata;
            if self
                .put_version(&def.location, table.version + 1, &next)
                .await?
            {
                tracing::info!(table = %def.name, version = table.version + 1, "iceberg schema evolved");
                return Ok(Table {
                    version: table.version + 1,
                    metadata: next,
                    loaded_at: Instant::now(),
                });
            }
        }
        Err(Error::Contention {
            table: def.name.clone(),
            attempts: COMMIT_ATTEMPTS,
        })
    }

    /// The Arrow schema of the table's current version: what files offered
    /// to it must have, column for column.
    pub fn arrow_schema(&self, def: &TableDef, table: &Table) -> Result<SchemaRef> {
        Ok(Arc::new(schema::to_arrow(
            &def.name,
            table.metadata.current_schema(),
        )?))
    }

    /// Writes `batch` under the table's `data/` as one file per partition
    /// (`<name>-<n>.parquet`), ready to be offered in a [`Change`].
    pub async fn write_rows(
        &self,
        def: &TableDef,
        name: &str,
        batch: &RecordBatch,
    ) -> Result<Vec<NewFile>> {
        let mut writer = self.row_writer(def, name, usize::MAX);
        writer.push(batch).await?;
        writer.finish().await
    }

    /// A writer of rows into the table's `data/`, one file per partition,
    /// holding at most `limit` rows (see [`RowWriter`]).
    pub fn row_writer<'a>(&'a self, def: &'a TableDef, name: &str, limit: usize) -> RowWriter<'a> {
        RowWriter {
            catalog: self,
            def,
            name: name.to_string(),
            limit,
            held: BTreeMap::new(),
            total: 0,
            files: Vec::new(),
        }
    }

    /// Writes version `version` put-if-absent; `false` when it exists.
    pub(crate) async fn put_version(
        &self,
        location: &str,
        version: u64,
        metadata: &TableMetadata,
    ) -> Result<bool> {
        let json = serde_json::to_vec(metadata).map_err(|source| Error::Metadata {
            key: version_key(location, version),
            source,
        })?;
        match self
            .lake
            .put_once(&version_key(location, version), Bytes::from(json))
            .await
        {
            Ok(PutOutcome::Created | PutOutcome::AlreadyPresent) => {}
            Err(tributary_lake::Error::ConflictingObject { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.lake
            .put_replace(
                &format!("{location}/metadata/version-hint.text"),
                Bytes::from(version.to_string()),
            )
            .await?;
        Ok(true)
    }

    /// The manifest list of the current snapshot.
    pub(crate) async fn manifests(&self, table: &Table) -> Result<Vec<ManifestFile>> {
        let Some(snapshot) = table.metadata.current_snapshot() else {
            return Ok(Vec::new());
        };
        self.manifests_of(snapshot).await
    }

    pub(crate) async fn manifests_of(&self, snapshot: &Snapshot) -> Result<Vec<ManifestFile>> {
        let bytes = self
            .lake
            .get(&self.key_of(snapshot.manifest_list())?)
            .await?;
        Ok(ManifestList::parse_with_version(&bytes, FormatVersion::V2)?
            .consume_entries()
            .into_iter()
            .collect())
    }

    /// The live data files of one manifest, with inherited sequence numbers.
    pub(crate) async fn live_files(&self, manifest: &ManifestFile) -> Result<Vec<LiveFile>> {
        let bytes = self
            .lake
            .get(&self.key_of(&manifest.manifest_path)?)
            .await?;
        let parsed = Manifest::parse_avro(&bytes)?;
        Ok(parsed
            .entries()
            .iter()
            .filter(|e| e.status() != ManifestStatus::Deleted)
            .map(|e| LiveFile {
                file: e.data_file().clone(),
                snapshot_id: e.snapshot_id().unwrap_or(manifest.added_snapshot_id),
                sequence: e.sequence_number().unwrap_or(manifest.sequence_number),
            })
            .collect())
    }

    /// Every live data file of the current snapshot.
    pub async fn data_files(&self, table: &Table) -> Result<Vec<DataFile>> {
        let mut out = Vec::new();
        for manifest in &self.manifests(table).await? {
            out.extend(self.live_files(manifest).await?.into_iter().map(|l| l.file));
        }
        Ok(out)
    }

    /// Describes lake files for the table: counts, bounds, and partition;
    /// a file whose rows span partitions is split into new files first.
    async fn describe(
        &self,
        def: &TableDef,
        table: &Table,
        files: &[NewFile],
    ) -> Result<Vec<DataFile>> {
        let metadata = &table.metadata;
        let schema = metadata.current_schema();
        let spec_id = metadata.default_partition_spec_id();
        let mut out = Vec::with_capacity(files.len());
        for file in files {
            let footer = lake_parquet::read_footer(&self.lake, &file.key).await?;
            let arrow = parquet::arrow::parquet_to_arrow_schema(
                footer.file_metadata().schema_descr(),
                footer.file_metadata().key_value_metadata(),
            )?;
            schema::check_fits(&def.name, schema, &arrow)?;
            let stats = files::stats(schema, &arrow, &footer);
            match files::partition_of(schema, &def.partitioning, &stats) {
                Ok(partition) => out.push(files::data_file(
                    self.url_of(&file.key),
                    file.bytes,
                    &stats,
                    files::partition_struct(partition),
                    spec_id,
                )?),
                Err(()) => {
                    for (key, bytes, stats, partition) in self.split(def, table, file).await? {
                        out.push(files::data_file(
                            self.url_of(&key),
                            bytes,
                            &stats,
                            files::partition_struct(Some(partition)),
                            spec_id,
                        )?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Rewrites a file whose rows span partitions as one file per partition
    /// under the table's `data/`.
    async fn split(
        &self,
        def: &TableDef,
        table: &Table,
        file: &NewFile,
    ) -> Result<Vec<(String, u64, FileStats, Option<i32>)>> {
        let column = def.partitioning.column().unwrap_or_default().to_string();
        let (arrow, batches) = lake_parquet::decode(self.lake.get(&file.key).await?)?;
        let mut groups: BTreeMap<Option<i32>, Vec<RecordBatch>> = BTreeMap::new();
        for batch in batches {
            let values = partition_values(&def.partitioning, &batch, &column).ok_or_else(|| {
                Error::Schema {
                    table: def.name.clone(),
                    reason: format!(
                        "{}: partition column {column} is missing or not a date or timestamp",
                        file.key
                    ),
                }
            })?;
            let distinct: BTreeSet<Option<i32>> = values.iter().copied().collect();
            for value in distinct {
                let mask =
                    BooleanArray::from(values.iter().map(|v| *v == value).collect::<Vec<_>>());
                groups
                    .entry(value)
                    .or_default()
                    .push(arrow_select::filter::filter_record_batch(&batch, &mask)?);
            }
        }
        let token = random_token();
        let mut out = Vec::new();
        for (index, (value, batches)) in groups.into_iter().enumerate() {
            let batch = arrow_select::concat::concat_batches(&arrow, &batches)?;
            let key = format!("{}/data/split-{token}-{index}.parquet", def.location);
            let entry = self.lake.put_batch(&key, &def.name, &batch).await?;
            let footer = lake_parquet::read_footer(&self.lake, &key).await?;
            let stats = files::stats(table.metadata.current_schema(), &arrow, &footer);
            out.push((key, entry.bytes, stats, value));
        }
        tracing::info!(table = %def.name, file = %file.key, parts = out.len(), "file spanning partitions split");
        Ok(out)
    }

    /// Applies `change` to the table as one new snapshot, retrying on a
    /// newer version written by someone else.
    pub async fn commit(&self, def: &TableDef, change: &Change) -> Result<Outcome> {
        if change.files.is_empty() {
            return Ok(Outcome::Empty);
        }
        let started = Instant::now();
        let mut described: Option<Vec<DataFile>> = None;
        for attempt in 1..=COMMIT_ATTEMPTS {
            let table = self.load_or_create(def).await?;
            if let (Some(wanted), Some(have)) = (change.watermark, table.watermark())
                && have >= wanted
            {
                return Ok(Outcome::AlreadyCommitted);
            }
            if let Some(after) = change.after
                && let Some(have) = table.watermark()
                && have > after
            {
                return Ok(Outcome::Overlap(have));
            }
            let added = match &described {
                Some(files) => files.clone(),
                None => described
                    .insert(self.describe(def, &table, &change.files).await?)
                    .clone(),
            };
            let plan = match &def.rows {
                Rows::Append => Plan::append(self.manifests(&table).await?, added),
                Rows::ReplaceByKey(key) => self.plan_replace(def, &table, key, added).await?,
                Rows::Snapshot => {
                    let mut plan = Plan::append(Vec::new(), added);
                    for manifest in &self.manifests(&table).await? {
                        for live in self.live_files(manifest).await? {
                            plan.removed += 1;
                            plan.removed_rows += live.file.record_count();
                            plan.removed_bytes += live.file.file_size_in_bytes();
                        }
                    }
                    plan
                }
            };
            let mut properties = change.properties.clone();
            if let Some(w) = change.watermark.or(table.watermark()) {
                properties.insert(WATERMARK.into(), w.to_string());
            }
            if let Some(mut done) = self.write_snapshot(def, &table, plan, properties).await? {
                done.attempts = attempt;
                done.millis = started.elapsed().as_millis() as u64;
                tracing::debug!(table = %def.name, version = done.version, added = done.added_files, removed = done.removed_files, ms = done.millis, "iceberg commit");
                return Ok(Outcome::Committed(done));
            }
            tracing::info!(table = %def.name, attempt, "iceberg commit lost to a concurrent writer; retrying");
        }
        Err(Error::Contention {
            table: def.name.clone(),
            attempts: COMMIT_ATTEMPTS,
        })
    }

    /// Copy-on-write: files holding any key of the new files are rewritten
    /// without those keys.
    async fn plan_replace(
        &self,
        def: &TableDef,
        table: &Table,
        columns: &[String],
        added: Vec<DataFile>,
    ) -> Result<Plan> {
        let manifests = self.manifests(table).await?;
        let key = columns
            .first()
            .map(String::as_str)
            .ok_or_else(|| Error::Schema {
                table: def.name.clone(),
                reason: "a replace by key needs a key column".into(),
            })?;
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        let mut incoming = KeySet::default();
        for file in &added {
            let (_, batches) = lake_parquet::decode_columns(
                self.lake.get(&self.key_of(file.file_path())?).await?,
                &names,
            )?;
            for batch in &batches {
                incoming.extend(def, columns, batch)?;
            }
        }
        let field_id = table
            .metadata
            .current_schema()
            .field_by_name(key)
            .map(|f| f.id)
            .ok_or_else(|| Error::Schema {
                table: def.name.clone(),
                reason: format!("key column {key} is not a column"),
            })?;
        // When the key holds the partition column, a replaced row lives in
        // the partition of the row replacing it: other partitions' files
        // are left unread.
        let by_partition = def
            .partitioning
            .column()
            .is_some_and(|c| columns.iter().any(|k| k == c));
        let partitions: HashSet<String> = added
            .iter()
            .map(|f| format!("{:?}", f.partition()))
            .collect();
        let mut plan = Plan::append(Vec::new(), added);
        let token = random_token();
        for manifest in &manifests {
            let live = self.live_files(manifest).await?;
            let mut touched = false;
            let mut kept = Vec::new();
            for file in live {
                if by_partition && !partitions.contains(&format!("{:?}", file.file.partition())) {
                    kept.push(file);
                    continue;
                }
                let may_hold = incoming.may_overlap(
                    file.file.lower_bounds().get(&field_id),
                    file.file.upper_bounds().get(&field_id),
                );
                if !may_hold {
                    kept.push(file);
                    continue;
                }
                let bytes = self.lake.get(&self.key_of(file.file.file_path())?).await?;
                let (arrow, batches) = lake_parquet::decode(bytes)?;
                let mut survivors = Vec::new();
                let mut dropped = 0usize;
                for batch in batches {
                    let keep = incoming.keep_mask(&def.name, columns, &batch)?;
                    dropped += keep.iter().filter(|k| !k.unwrap_or(true)).count();
                    survivors.push(arrow_select::filter::filter_record_batch(&batch, &keep)?);
                }
                if dropped == 0 {
                    kept.push(file);
                    continue;
                }
                touched = true;
                plan.removed += 1;
                plan.removed_rows += file.file.record_count();
                plan.removed_bytes += file.file.file_size_in_bytes();
                let batch = arrow_select::concat::concat_batches(&arrow, &survivors)?;
                if batch.num_rows() > 0 {
                    let new_key = format!(
                        "{}/data/cow-{token}-{}.parquet",
                        def.location,
                        plan.added.len()
                    );
                    let entry = self.lake.put_batch(&new_key, &def.name, &batch).await?;
                    plan.rewritten_rows += batch.num_rows() as u64;
                    let footer = lake_parquet::read_footer(&self.lake, &new_key).await?;
                    let stats = files::stats(table.metadata.current_schema(), &arrow, &footer);
                    plan.added.push(files::data_file(
                        self.url_of(&new_key),
                        entry.bytes,
                        &stats,
                        file.file.partition().clone(),
                        table.metadata.default_partition_spec_id(),
                    )?);
                }
            }
            if touched {
                plan.rewrite.push(kept);
            } else {
                plan.keep.push(manifest.clone());
            }
        }
        Ok(plan)
    }

    /// Writes the manifests, the manifest list and the next metadata
    /// version; `None` when another writer took that version first.
    pub(crate) async fn write_snapshot(
        &self,
        def: &TableDef,
        table: &Table,
        plan: Plan,
        properties: BTreeMap<String, String>,
    ) -> Result<Option<Committed>> {
        if table.loaded_at.elapsed() > MAX_BASE_AGE {
            // Too old a base to trust put-if-absent on the next version
            // (expiry may have deleted it): reload and try again.
            return Ok(None);
        }
        let metadata = &table.metadata;
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().as_ref().clone();
        let snapshot_id = (rand::random::<u64>() >> 1) as i64;
        let sequence = metadata.last_sequence_number() + 1;
        let parent = metadata.current_snapshot_id();
        let token = random_token();
        let memory: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let mut manifests = plan.keep;
        let mut to_write: Vec<(Vec<DataFile>, Vec<LiveFile>)> = Vec::new();
        if !plan.added.is_empty() {
            to_write.push((plan.added.clone(), Vec::new()));
        }
        for existing in plan.rewrite {
            if !existing.is_empty() {
                to_write.push((Vec::new(), existing));
            }
        }
        for (index, (added, existing)) in to_write.into_iter().enumerate() {
            let path = format!("memory:///m{index}.avro");
            let mut writer = ManifestWriterBuilder::new(
                OutputFile::new(memory.clone(), path.clone()),
                Some(snapshot_id),
                schema.clone(),
                spec.clone(),
            )
            .build_v2_data();
            for file in added {
                writer.add_file(file, -1)?;
            }
            for live in existing {
                writer.add_existing_file(
                    live.file,
                    live.snapshot_id,
                    live.sequence,
                    Some(live.sequence),
                )?;
            }
            let mut manifest = writer.write_manifest_file().await?;
            let key = format!("{}/metadata/{token}-m{index}.avro", def.location);
            self.lake.put_once(&key, memory.read(&path).await?).await?;
            manifest.manifest_path = self.url_of(&key);
            manifests.push(manifest);
        }
        let list_path = "memory:///list.avro".to_string();
        let mut list = ManifestListWriter::v2(
            OutputFile::new(memory.clone(), list_path.clone())
                .writer()
                .await?,
            snapshot_id,
            parent,
            sequence,
        );
        list.add_manifests(manifests.clone().into_iter())?;
        list.close().await?;
        let list_key = format!("{}/metadata/snap-{snapshot_id}-{token}.avro", def.location);
        self.lake
            .put_once(&list_key, memory.read(&list_path).await?)
            .await?;

        let total_files: u64 = manifests
            .iter()
            .map(|m| {
                u64::from(m.added_files_count.unwrap_or(0) + m.existing_files_count.unwrap_or(0))
            })
            .sum();
        let total_rows: u64 = manifests
            .iter()
            .map(|m| m.added_rows_count.unwrap_or(0) + m.existing_rows_count.unwrap_or(0))
            .sum();
        let added_rows: u64 = plan.added.iter().map(|f| f.record_count()).sum();
        let added_bytes: u64 = plan.added.iter().map(|f| f.file_size_in_bytes()).sum();
        let mut summary: HashMap<String, String> = properties.into_iter().collect();
        summary.extend([
            ("added-data-files".to_string(), plan.added.len().to_string()),
            ("added-records".to_string(), added_rows.to_string()),
            ("added-files-size".to_string(), added_bytes.to_string()),
            ("deleted-data-files".to_string(), plan.removed.to_string()),
            ("deleted-records".to_string(), plan.removed_rows.to_string()),
            (
                "removed-files-size".to_string(),
                plan.removed_bytes.to_string(),
            ),
            ("total-data-files".to_string(), total_files.to_string()),
            ("total-records".to_string(), total_rows.to_string()),
            ("total-delete-files".to_string(), "0".to_string()),
            ("total-position-deletes".to_string(), "0".to_string()),
            ("total-equality-deletes".to_string(), "0".to_string()),
        ]);
        let operation = plan.operation.unwrap_or(if plan.removed > 0 {
            Operation::Overwrite
        } else {
            Operation::Append
        });
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(parent)
            .with_sequence_number(sequence)
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
            .with_manifest_list(self.url_of(&list_key))
            .with_summary(Summary {
                operation,
                additional_properties: summary,
            })
            .with_schema_id(metadata.current_schema_id())
            .build();
        let next = TableMetadataBuilder::new_from_metadata(
            metadata.clone(),
            Some(self.url_of(&version_key(&def.location, table.version))),
        )
        .set_branch_snapshot(snapshot, "main")?
        .build()?
        .metadata;
        if !self
            .put_version(&def.location, table.version + 1, &next)
            .await?
        {
            return Ok(None);
        }
        Ok(Some(Committed {
            version: table.version + 1,
            snapshot_id,
            added_files: plan.added.len() as u64,
            removed_files: plan.removed,
            rewritten_rows: plan.rewritten_rows,
            attempts: 1,
            millis: 0,
        }))
    }
}

/// Rows written into a table's `data/` as files of one partition each
/// (`<name>-<n>.parquet`), ready to be offered in a [`Change`]: a fan-out
/// writer. Rows wait by partition; when more than its limit wait, the
/// partition holding most is written, so memory stays bounded however the
/// rows spread over partitions, and a partition's rows go out together.
pub struct RowWriter<'a> {
    catalog: &'a Catalog,
    def: &'a TableDef,
    name: String,
    limit: usize,
    held: BTreeMap<Option<i32>, (Vec<RecordBatch>, usize)>,
    total: usize,
    files: Vec<NewFile>,
}

impl RowWriter<'_> {
    /// Takes `batch`'s rows (in the table's file schema).
    pub async fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let def = self.def;
        match def.partitioning.column() {
            None => self.hold(None, batch.clone()),
            Some(column) => {
                let values =
                    partition_values(&def.partitioning, batch, column).ok_or_else(|| {
                        Error::Schema {
                            table: def.name.clone(),
                            reason: format!(
                                "partition column {column} is missing or not a date or timestamp"
                            ),
                        }
                    })?;
                let distinct: BTreeSet<Option<i32>> = values.iter().copied().collect();
                if distinct.len() == 1 {
                    self.hold(values[0], batch.clone());
                } else {
                    for value in distinct {
                        let mask = BooleanArray::from(
                            values.iter().map(|v| *v == value).collect::<Vec<_>>(),
                        );
                        let part = arrow_select::filter::filter_record_batch(batch, &mask)?;
                        self.hold(value, part);
                    }
                }
            }
        }
        while self.total > self.limit {
            let Some(largest) = self
                .held
                .iter()
                .max_by_key(|(_, (_, rows))| *rows)
                .map(|(value, _)| *value)
            else {
                break;
            };
            self.write(largest).await?;
        }
        Ok(())
    }

    fn hold(&mut self, value: Option<i32>, part: RecordBatch) {
        let rows = part.num_rows();
        let entry = self.held.entry(value).or_default();
        entry.0.push(part);
        entry.1 += rows;
        self.total += rows;
    }

    async fn write(&mut self, value: Option<i32>) -> Result<()> {
        let Some((batches, rows)) = self.held.remove(&value) else {
            return Ok(());
        };
        self.total -= rows;
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let batch = arrow_select::concat::concat_batches(&first.schema(), &batches)?;
        drop(batches);
        let key = format!(
            "{}/data/{}-{}.parquet",
            self.def.location,
            self.name,
            self.files.len()
        );
        let entry = self
            .catalog
            .lake
            .put_batch(&key, &self.def.name, &batch)
            .await?;
        self.files.push(NewFile {
            key,
            bytes: entry.bytes,
        });
        Ok(())
    }

    /// Writes what waits, and names every file written.
    pub async fn finish(mut self) -> Result<Vec<NewFile>> {
        let values: Vec<Option<i32>> = self.held.keys().copied().collect();
        for value in values {
            self.write(value).await?;
        }
        Ok(self.files)
    }
}

/// The files of a new snapshot.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Manifests carried over unchanged.
    pub(crate) keep: Vec<ManifestFile>,
    /// Manifests to write again with these files as existing.
    pub(crate) rewrite: Vec<Vec<LiveFile>>,
    /// New data files.
    pub(crate) added: Vec<DataFile>,
    /// Data files dropped, their rows and bytes.
    pub(crate) removed: u64,
    pub(crate) removed_rows: u64,
    pub(crate) removed_bytes: u64,
    /// Rows copied into new files.
    pub(crate) rewritten_rows: u64,
    /// The operation, when not implied (compaction is a replace).
    pub(crate) operation: Option<Operation>,
}

impl Plan {
    pub(crate) fn append(keep: Vec<ManifestFile>, added: Vec<DataFile>) -> Self {
        Plan {
            keep,
            added,
            ..Plan::default()
        }
    }
}

/// The per-row partition values of `column` in `batch`.
fn partition_values(
    partitioning: &Partitioning,
    batch: &RecordBatch,
    column: &str,
) -> Option<Vec<Option<i32>>> {
    use arrow_array::{TimestampMicrosecondArray, TimestampMillisecondArray};
    use files::TemporalValue::{Days, Micros};
    let array = batch.column_by_name(column)?;
    let any = array.as_any();
    let values: Vec<Option<files::TemporalValue>> = match array.data_type() {
        DataType::Date32 => any
            .downcast_ref::<Date32Array>()?
            .iter()
            .map(|v| v.map(Days))
            .collect(),
        DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, _) => any
            .downcast_ref::<TimestampMillisecondArray>()?
            .iter()
            .map(|v| v.map(|ms| Micros(ms * 1000)))
            .collect(),
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => any
            .downcast_ref::<TimestampMicrosecondArray>()?
            .iter()
            .map(|v| v.map(Micros))
            .collect(),
        _ => return None,
    };
    Some(
        values
            .into_iter()
            .map(|v| v.and_then(|v| partitioning.value_of(v)))
            .collect(),
    )
}

/// The keys a change brings, to find the rows it replaces: the first key
/// column's values (to skip files by their bounds) and, for a composite
/// key, every whole key.
#[derive(Debug, Default)]
struct KeySet {
    ints: BTreeSet<i64>,
    strings: BTreeSet<String>,
    composite: HashSet<String>,
}

fn int_keys(array: &dyn Array) -> Option<Vec<Option<i64>>> {
    let any = array.as_any();
    Some(match array.data_type() {
        DataType::Int32 => any
            .downcast_ref::<Int32Array>()?
            .iter()
            .map(|v| v.map(i64::from))
            .collect(),
        DataType::Date32 => any
            .downcast_ref::<Date32Array>()?
            .iter()
            .map(|v| v.map(i64::from))
            .collect(),
        DataType::Int64 => any.downcast_ref::<Int64Array>()?.iter().collect(),
        _ => return None,
    })
}

fn string_keys(array: &dyn Array) -> Option<Vec<Option<String>>> {
    let any = array.as_any();
    Some(match array.data_type() {
        DataType::Utf8 => any
            .downcast_ref::<StringArray>()?
            .iter()
            .map(|v| v.map(str::to_string))
            .collect(),
        DataType::LargeUtf8 => any
            .downcast_ref::<LargeStringArray>()?
            .iter()
            .map(|v| v.map(str::to_string))
            .collect(),
        _ => return None,
    })
}

/// One column's keys as text (for composite keys).
fn text_keys(table: &str, column: &str, array: &dyn Array) -> Result<Vec<Option<String>>> {
    if let Some(ints) = int_keys(array) {
        return Ok(ints.into_iter().map(|v| v.map(|v| v.to_string())).collect());
    }
    string_keys(array).ok_or_else(|| Error::Schema {
        table: table.to_string(),
        reason: format!(
            "key column {column} is {}; keys must be integers, dates or text",
            array.data_type()
        ),
    })
}

/// Every row's whole key (`None` when a part is NULL).
fn composite_keys(
    table: &str,
    columns: &[String],
    batch: &RecordBatch,
) -> Result<Vec<Option<String>>> {
    let mut parts = Vec::with_capacity(columns.len());
    for column in columns {
        let array = batch.column_by_name(column).ok_or_else(|| Error::Schema {
            table: table.to_string(),
            reason: format!("key column {column} is not in the file"),
        })?;
        parts.push(text_keys(table, column, array.as_ref())?);
    }
    Ok((0..batch.num_rows())
        .map(|row| {
            // Each part prefixed with its length: no two keys share a text.
            let mut key = String::new();
            for part in &parts {
                let value = part[row].as_deref()?;
                key.push_str(&value.len().to_string());
                key.push(':');
                key.push_str(value);
            }
            Some(key)
        })
        .collect())
}

impl KeySet {
    fn extend(&mut self, def: &TableDef, columns: &[String], batch: &RecordBatch) -> Result<()> {
        let first = batch
            .column_by_name(&columns[0])
            .ok_or_else(|| Error::Schema {
                table: def.name.clone(),
                reason: format!("key column {} is not in the file", columns[0]),
            })?;
        if let Some(ints) = int_keys(first.as_ref()) {
            self.ints.extend(ints.into_iter().flatten());
        } else {
            self.strings.extend(
                text_keys(&def.name, &columns[0], first.as_ref())?
                    .into_iter()
                    .flatten(),
            );
        }
        if columns.len() > 1 {
            self.composite.extend(
                composite_keys(&def.name, columns, batch)?
                    .into_iter()
                    .flatten(),
            );
        }
        Ok(())
    }

    /// Whether a file with these bounds of the first key column may hold
    /// one of the keys (unknown bounds: it may).
    fn may_overlap(
        &self,
        low: Option<&iceberg::spec::Datum>,
        high: Option<&iceberg::spec::Datum>,
    ) -> bool {
        let as_int = |d: Option<&iceberg::spec::Datum>| match d.map(|d| d.literal()) {
            Some(PrimitiveLiteral::Int(i)) => Some(i64::from(*i)),
            Some(PrimitiveLiteral::Long(l)) => Some(*l),
            _ => None,
        };
        let as_string = |d: Option<&iceberg::spec::Datum>| match d.map(|d| d.literal()) {
            Some(PrimitiveLiteral::String(s)) => Some(s.clone()),
            _ => None,
        };
        if !self.ints.is_empty() {
            return match (as_int(low), as_int(high)) {
                (Some(l), Some(h)) => self.ints.range(l..=h).next().is_some(),
                _ => true,
            };
        }
        if !self.strings.is_empty() {
            return match (as_string(low), as_string(high)) {
                (Some(l), Some(h)) => self.strings.range(l..=h).next().is_some(),
                _ => true,
            };
        }
        false
    }

    /// `true` for rows whose key is not replaced.
    fn keep_mask(
        &self,
        table: &str,
        columns: &[String],
        batch: &RecordBatch,
    ) -> Result<BooleanArray> {
        if columns.len() > 1 {
            return Ok(composite_keys(table, columns, batch)?
                .into_iter()
                .map(|k| Some(k.is_none_or(|k| !self.composite.contains(&k))))
                .collect());
        }
        let Some(array) = batch.column_by_name(&columns[0]) else {
            return Ok(BooleanArray::from(vec![true; batch.num_rows()]));
        };
        if let Some(ints) = int_keys(array.as_ref()) {
            return Ok(ints
                .into_iter()
                .map(|k| Some(k.is_none_or(|k| !self.ints.contains(&k))))
                .collect());
        }
        if let Some(strings) = string_keys(array.as_ref()) {
            return Ok(strings
                .into_iter()
                .map(|k| Some(k.is_none_or(|k| !self.strings.contains(&k))))
                .collect());
        }
        Ok(BooleanArray::from(vec![true; batch.num_rows()]))
    }
}
