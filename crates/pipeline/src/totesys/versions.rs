//! The version index: which fact versions the processed lake already has,
//! so a backfill, a late commit or a rebuild never writes one twice.
//!
//! Per fact table the transform manifest carries a high-water mark (the
//! newest `last_updated` ever emitted), the fact files written since the
//! last compaction (segments, each with its `last_updated` range), and one
//! sorted version file per id bucket under `_state/versions/<fact>/`.
//!
//! A version newer than the high-water mark cannot be in the lake and is
//! emitted without a lookup: that is every ordinary change. Only older ones
//! (a backfill re-reading, a commit that arrived late, a rebuild) are looked
//! up, in the buckets of their ids and the segments whose range holds them.
//! Every so many runs the segments are folded into the buckets.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tributary_lake::{FileEntry, Lake, RunId, parquet::decode_columns};
use tributary_warehouse::transform::{
    Version, bucket_of, decode_versions, encode_versions, fact_version_columns, fact_versions,
};

use crate::Result;

/// Segments kept before they are folded into the buckets.
const SEGMENTS_BEFORE_COMPACTION: usize = 32;

/// Fact rows in segments before they are folded into the buckets.
const SEGMENT_ROWS_BEFORE_COMPACTION: u64 = 16_000_000;

/// Versions held in memory by a compaction before they are folded into
/// their buckets (16 bytes each: about 16 MB).
const VERSIONS_HELD_IN_COMPACTION: usize = 1_000_000;

/// One fact file not yet folded into the buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The fact file in the processed lake.
    pub key: String,
    /// The oldest `last_updated` in it (ms).
    pub min_ms: i64,
    /// The newest `last_updated` in it (ms).
    pub max_ms: i64,
    /// Its rows.
    pub rows: u64,
}

/// What the processed lake holds of one fact table's versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FactVersions {
    /// The newest `last_updated` (ms) emitted.
    pub high_water_ms: Option<i64>,
    /// Fact files written since the last compaction.
    pub segments: Vec<Segment>,
    /// Id bucket → its sorted version file.
    pub buckets: BTreeMap<u32, String>,
    /// Compactions so far: part of each bucket file's name, so two in one
    /// run (an upgrade, then a large first load) never write the same key.
    pub compactions: u64,
    /// The largest id the lake holds (an upper bound); `None` in manifests
    /// from before it was kept, until the next compaction sets it.
    pub max_id: Option<i32>,
}

impl FactVersions {
    /// Whether the lake may already hold version (`id`, `ms`): not when it
    /// is newer than every version written, nor when its id is above every
    /// id written (a new row, or the next part of a first load read in key
    /// order). Only the rest are looked up.
    pub fn may_hold(&self, id: i32, ms: i64) -> bool {
        self.high_water_ms.is_some_and(|hw| ms <= hw) && self.max_id.is_none_or(|max| id <= max)
    }

    /// Of `candidates`, the versions the processed lake already has.
    pub async fn present(
        &self,
        processed: &Lake,
        key: &str,
        candidates: &HashSet<Version>,
    ) -> Result<HashSet<Version>> {
        let mut found = HashSet::new();
        if candidates.is_empty() {
            return Ok(found);
        }
        let buckets: BTreeSet<u32> = candidates.iter().map(|(id, _)| bucket_of(*id)).collect();
        for bucket in buckets {
            if let Some(file) = self.buckets.get(&bucket) {
                let versions = decode_versions(file, processed.get(file).await?)?;
                found.extend(versions.into_iter().filter(|v| candidates.contains(v)));
            }
        }
        for segment in &self.segments {
            let in_range = candidates
                .iter()
                .any(|(_, ms)| (segment.min_ms..=segment.max_ms).contains(ms));
            if in_range {
                let versions = segment_versions(processed, &segment.key, key).await?;
                found.extend(versions.into_iter().filter(|v| candidates.contains(v)));
            }
        }
        Ok(found)
    }

    /// Records the fact files a run wrote, whose versions span `range`.
    pub fn record(&mut self, files: &[FileEntry], range: Option<(i64, i64)>, max_id: Option<i32>) {
        let Some((min_ms, max_ms)) = range else {
            return;
        };
        // An index from before ids were kept has an unknown largest id until
        // a compaction sees every bucket; a fresh one starts from this run.
        if self.max_id.is_some() || self.high_water_ms.is_none() {
            self.max_id = self.max_id.max(max_id);
        }
        self.high_water_ms = Some(self.high_water_ms.map_or(max_ms, |hw| hw.max(max_ms)));
        self.segments
            .extend(files.iter().filter(|f| f.rows > 0).map(|f| Segment {
                key: f.key.clone(),
                min_ms,
                max_ms,
                rows: f.rows,
            }));
    }

    /// Whether the segments should be folded into the buckets now.
    pub fn needs_compaction(&self) -> bool {
        self.segments.len() > SEGMENTS_BEFORE_COMPACTION
            || self.segments.iter().map(|s| s.rows).sum::<u64>() > SEGMENT_ROWS_BEFORE_COMPACTION
    }

    /// Folds every segment into the buckets it touches: each touched bucket
    /// is read, merged and written again as a new object.
    pub async fn compact(
        &mut self,
        processed: &Lake,
        fact: &str,
        key: &str,
        run_id: &RunId,
    ) -> Result<()> {
        self.compact_holding(processed, (fact, key, run_id), VERSIONS_HELD_IN_COMPACTION)
            .await
    }

    /// [`Self::compact`], folding whenever more than `limit` versions are held.
    async fn compact_holding(
        &mut self,
        processed: &Lake,
        (fact, key, run_id): (&str, &str, &RunId),
        limit: usize,
    ) -> Result<()> {
        use futures_util::{StreamExt, TryStreamExt};
        let mut by_bucket: HashMap<u32, Vec<Version>> = HashMap::new();
        let (mut held, mut folds) = (0usize, 0u64);
        let segments = std::mem::take(&mut self.segments);
        let mut read = futures_util::stream::iter(&segments)
            .map(|segment| segment_versions(processed, &segment.key, key))
            .buffered(2);
        while let Some(versions) = read.try_next().await? {
            held += versions.len();
            for version in versions {
                by_bucket
                    .entry(bucket_of(version.0))
                    .or_default()
                    .push(version);
            }
            if held > limit {
                // Memory stays bounded at any table size: fold what is held
                // into its buckets now (ids mostly rise from file to file,
                // so a bucket is seldom written twice in one compaction).
                self.fold(processed, (fact, run_id, &mut folds), &mut by_bucket)
                    .await?;
                held = 0;
            }
        }
        drop(read);
        self.fold(processed, (fact, run_id, &mut folds), &mut by_bucket)
            .await?;
        if self.max_id.is_none() {
            // Every id is in a bucket now: the top of the highest bucket
            // bounds them (ids map to buckets as unsigned numbers).
            self.max_id = self
                .buckets
                .keys()
                .map(|b| ((((u64::from(*b) + 1) << 16) - 1) as u32) as i32)
                .max();
        }
        self.compactions += 1;
        Ok(())
    }

    /// Merges the versions held per bucket into the bucket files (each read,
    /// merged and written again under a new key), raising the high-water
    /// mark to the newest `last_updated` in them. `folds` numbers the files
    /// written in this compaction, so each has its own key.
    async fn fold(
        &mut self,
        processed: &Lake,
        (fact, run_id, folds): (&str, &RunId, &mut u64),
        by_bucket: &mut HashMap<u32, Vec<Version>>,
    ) -> Result<()> {
        for (bucket, mut versions) in by_bucket.drain() {
            if let Some(old) = self.buckets.get(&bucket) {
                versions.extend(decode_versions(old, processed.get(old).await?)?);
            }
            self.high_water_ms = versions.iter().map(|v| v.1).chain(self.high_water_ms).max();
            *folds += 1;
            let file = bucket_key(fact, bucket, run_id, self.compactions, *folds);
            processed
                .put_once(&file, encode_versions(&mut versions)?)
                .await?;
            self.buckets.insert(bucket, file);
        }
        Ok(())
    }
}

/// `_state/versions/<fact>/bucket=<b>/<run_id>-<compaction>.parquet`.
fn bucket_key(fact: &str, bucket: u32, run_id: &RunId, compaction: u64, fold: u64) -> String {
    format!("_state/versions/{fact}/bucket={bucket:05}/{run_id}-{compaction}-{fold}.parquet")
}

/// The versions of one fact file, reading only the columns that make them.
async fn segment_versions(processed: &Lake, file: &str, key: &str) -> Result<Vec<Version>> {
    let (_, batches) = decode_columns(processed.get(file).await?, &fact_version_columns(key))?;
    let mut out = Vec::new();
    for batch in &batches {
        out.extend(fact_versions(batch, key)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, rows: u64) -> FileEntry {
        FileEntry {
            key: key.to_string(),
            table: "fact_payment".to_string(),
            rows,
            bytes: 0,
            sha256: String::new(),
        }
    }

    #[test]
    fn the_high_water_mark_follows_what_was_emitted() {
        let mut index = FactVersions::default();
        assert!(!index.may_hold(1, 0), "an empty lake holds nothing");
        index.record(&[entry("a", 2)], Some((100, 200)), Some(10));
        assert!(index.may_hold(10, 200));
        assert!(index.may_hold(3, 150));
        assert!(!index.may_hold(3, 201));
        assert!(
            !index.may_hold(11, 150),
            "an id above every id written is new"
        );
        index.record(&[entry("b", 1)], Some((50, 120)), Some(7));
        assert!(
            !index.may_hold(3, 201),
            "an older run does not lower the mark"
        );
        assert!(index.may_hold(10, 100), "nor the largest id");
        let mut old = FactVersions {
            high_water_ms: Some(500),
            ..FactVersions::default()
        };
        old.record(&[entry("c", 1)], Some((600, 600)), Some(3));
        assert!(
            old.may_hold(1_000, 550),
            "an index from before ids were kept cannot rule an id out"
        );
        index.record(&[entry("empty", 0)], None, None);
        assert_eq!(
            index.segments.len(),
            2,
            "a run that emitted nothing adds no segment"
        );
    }

    /// A fact file with only the columns the index reads.
    async fn segment(lake: &Lake, key: &str, versions: &[(i32, i64)]) -> FileEntry {
        use arrow_array::{Date32Array, Int32Array, Int64Array, RecordBatch};
        use arrow_schema::{DataType, Field, Schema};
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("payment_id", DataType::Int32, false),
            Field::new("last_updated_date", DataType::Date32, false),
            // Microseconds since midnight, as the transform writes it.
            Field::new("last_updated_time", DataType::Int64, false),
        ]));
        let day = 86_400_000;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                std::sync::Arc::new(Int32Array::from_iter_values(versions.iter().map(|v| v.0))),
                std::sync::Arc::new(Date32Array::from_iter_values(
                    versions.iter().map(|v| (v.1 / day) as i32),
                )),
                std::sync::Arc::new(Int64Array::from_iter_values(
                    versions.iter().map(|v| v.1 % day * 1000),
                )),
            ],
        )
        .unwrap();
        let written = lake.put_batch(key, "fact_payment", &batch).await.unwrap();
        FileEntry {
            rows: versions.len() as u64,
            ..written
        }
    }

    #[tokio::test]
    async fn a_compaction_holding_little_folds_often_and_loses_nothing() {
        let lake = Lake::from_url("memory://").unwrap();
        let run = RunId::new(chrono::Utc::now());
        // Ids in three buckets, spread over four files, one version repeated.
        let b = 65_536;
        let files = [
            vec![(1, 10), (2, 20), (b + 1, 30)],
            vec![(b + 2, 40), (2 * b, 50), (1, 60)],
            vec![(2, 20), (3, 70)],
            vec![(2 * b + 5, 80), (b + 1, 90)],
        ];
        let mut index = FactVersions::default();
        for (n, versions) in files.iter().enumerate() {
            let file = segment(&lake, &format!("f{n}.parquet"), versions).await;
            let (lo, hi) = (
                versions.iter().map(|v| v.1).min(),
                versions.iter().map(|v| v.1).max(),
            );
            index.record(&[file], lo.zip(hi), versions.iter().map(|v| v.0).max());
        }
        index
            .compact_holding(&lake, ("fact_payment", "payment_id", &run), 2)
            .await
            .unwrap();
        assert!(index.segments.is_empty());
        assert_eq!(
            index.buckets.len(),
            3,
            "ids 1-3, 65537-65538, 131072-131077"
        );
        assert_eq!(index.high_water_ms, Some(90));
        assert_eq!(index.max_id, Some(2 * b + 5));
        let mut all: Vec<Version> = Vec::new();
        for file in index.buckets.values() {
            all.extend(decode_versions(file, lake.get(file).await.unwrap()).unwrap());
        }
        all.sort_unstable();
        let mut expected: Vec<Version> = files.iter().flatten().copied().collect();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(all, expected, "every version once, across repeated folds");
        let candidates: HashSet<Version> = [(1, 60), (b + 1, 30), (4, 1)].into();
        let present = index
            .present(&lake, "payment_id", &candidates)
            .await
            .unwrap();
        assert_eq!(present, [(1, 60), (b + 1, 30)].into());
    }

    #[test]
    fn many_segments_or_many_rows_ask_for_compaction() {
        let mut index = FactVersions::default();
        for n in 0..=SEGMENTS_BEFORE_COMPACTION {
            assert!(!index.needs_compaction());
            index.record(&[entry(&format!("f{n}"), 1)], Some((1, 1)), Some(1));
        }
        assert!(index.needs_compaction());
        let mut big = FactVersions::default();
        big.record(
            &[entry("huge", SEGMENT_ROWS_BEFORE_COMPACTION + 1)],
            Some((1, 1)),
            Some(1),
        );
        assert!(big.needs_compaction());
    }
}
