//! Manifests: the numbered commit records of a stage.
//!
//! A stage writes its data files first and its manifest last. Manifest numbers
//! are contiguous and each is written put-if-absent, so two racing runs cannot
//! both commit the same number, and a run that crashed before its manifest left
//! nothing a reader trusts.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Error, Lake, PutOutcome, Result, RunId, keys::Log};

/// The manifest layout version written by this code.
pub const MANIFEST_FORMAT: u32 = 1;

/// One data file a run wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Key relative to the lake root.
    pub key: String,
    /// The dataset (table) the file belongs to.
    pub table: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size of the object.
    pub bytes: u64,
    /// Lower-case hex sha256 of the object.
    pub sha256: String,
}

/// The commit record of one stage run; `S` is the stage's own state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest<S> {
    /// Layout version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// The log this manifest belongs to (`totesys`, `transform`, …).
    pub source: String,
    /// Position in that log, from 1.
    pub seq: u64,
    /// The run that committed it.
    pub run_id: RunId,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the manifest was written.
    pub committed_at: DateTime<Utc>,
    /// Data files written by the run, all already in the lake.
    pub files: Vec<FileEntry>,
    /// Stage-specific state carried forward (watermarks and the like).
    pub state: S,
}

/// The numbered manifests of one source or stage in a lake.
#[derive(Debug, Clone)]
pub struct ManifestLog {
    lake: Lake,
    log: Log,
}

impl ManifestLog {
    /// The log `_manifests/<name>/` in `lake`.
    pub fn new(lake: Lake, log: Log) -> Self {
        Self { lake, log }
    }

    /// Which log this is.
    pub fn log(&self) -> Log {
        self.log
    }

    /// The highest committed sequence number, 0 when the log is empty.
    ///
    /// Numbers are contiguous, so this probes with HEAD requests (doubling,
    /// then bisecting): O(log n) requests instead of listing every manifest.
    pub async fn latest_seq(&self) -> Result<u64> {
        let mut present = 0u64;
        let mut probe = 1u64;
        while self.lake.exists(&self.log.manifest(probe)).await? {
            present = probe;
            probe = probe.saturating_mul(2);
        }
        // Invariant: `present` exists (or is 0), `probe` does not.
        while probe - present > 1 {
            let mid = present + (probe - present) / 2;
            if self.lake.exists(&self.log.manifest(mid)).await? {
                present = mid;
            } else {
                probe = mid;
            }
        }
        Ok(present)
    }

    /// Reads manifest `seq`, or `None` if it does not exist.
    pub async fn read<S: DeserializeOwned>(&self, seq: u64) -> Result<Option<Manifest<S>>> {
        let key = self.log.manifest(seq);
        let Some(bytes) = self.lake.get_opt(&key).await? else {
            return Ok(None);
        };
        let manifest: Manifest<S> =
            serde_json::from_slice(&bytes).map_err(|e| Error::CorruptManifest {
                key: key.clone(),
                reason: e.to_string(),
            })?;
        if manifest.format != MANIFEST_FORMAT
            || manifest.seq != seq
            || manifest.source != self.log.name()
        {
            return Err(Error::CorruptManifest {
                key,
                reason: format!(
                    "header says format {} source {:?} seq {}, expected format {MANIFEST_FORMAT} source {:?} seq {seq}",
                    manifest.format,
                    manifest.source,
                    manifest.seq,
                    self.log.name()
                ),
            });
        }
        Ok(Some(manifest))
    }

    /// The files of manifests 1..=`upto`, in manifest order: the files a
    /// reader of this log sees. Only their file lists are decoded (states
    /// can be large).
    pub async fn committed_files(&self, upto: u64) -> Result<Vec<FileEntry>> {
        Ok(self
            .read_range::<serde::de::IgnoredAny>(1..=upto)
            .await?
            .into_iter()
            .flat_map(|m| m.files)
            .collect())
    }

    /// The manifests numbered `seqs` that exist, in order, read 16 at a
    /// time.
    pub async fn read_range<S: DeserializeOwned>(
        &self,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<Manifest<S>>> {
        use futures_util::{StreamExt, TryStreamExt};
        let manifests: Vec<Option<Manifest<S>>> = futures_util::stream::iter(seqs)
            .map(|seq| self.read::<S>(seq))
            .buffered(16)
            .try_collect()
            .await?;
        Ok(manifests.into_iter().flatten().collect())
    }

    /// The latest manifest, or `None` when nothing was committed yet.
    pub async fn latest<S: DeserializeOwned>(&self) -> Result<Option<Manifest<S>>> {
        match self.latest_seq().await? {
            0 => Ok(None),
            seq => self.read(seq).await,
        }
    }

    /// Commits a run as manifest `previous + 1`, where `previous` is the
    /// number the run read its state from. Fails with [`Error::ManifestRace`]
    /// if another run took that number meanwhile.
    pub async fn commit<S: Serialize>(
        &self,
        previous: u64,
        run_id: &RunId,
        started_at: DateTime<Utc>,
        files: Vec<FileEntry>,
        state: S,
    ) -> Result<Manifest<S>> {
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            source: self.log.name().to_string(),
            seq: previous + 1,
            run_id: run_id.clone(),
            started_at,
            committed_at: Utc::now(),
            files,
            state,
        };
        let bytes = Bytes::from(serde_json::to_vec_pretty(&manifest)?);
        let key = self.log.manifest(manifest.seq);
        match self.lake.put_once(&key, bytes).await {
            Ok(PutOutcome::Created | PutOutcome::AlreadyPresent) => Ok(manifest),
            Err(Error::ConflictingObject { .. }) => Err(Error::ManifestRace {
                source_name: self.log.name().to_string(),
                seq: manifest.seq,
            }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Watermark {
        value: u64,
    }

    #[tokio::test]
    async fn commits_are_numbered_and_the_latest_is_found() {
        let log = ManifestLog::new(Lake::from_url("memory://").unwrap(), Log::Totesys);
        assert_eq!(log.latest_seq().await.unwrap(), 0);
        assert!(log.latest::<Watermark>().await.unwrap().is_none());
        for n in 0..37u64 {
            let run = RunId::now();
            let committed = log
                .commit(n, &run, Utc::now(), vec![], Watermark { value: n })
                .await
                .unwrap();
            assert_eq!(committed.seq, n + 1);
            assert_eq!(log.latest_seq().await.unwrap(), n + 1);
        }
        let latest = log.latest::<Watermark>().await.unwrap().unwrap();
        assert_eq!(latest.state, Watermark { value: 36 });
        assert_eq!(latest.seq, 37);
    }

    #[tokio::test]
    async fn committed_files_come_in_manifest_order_up_to_a_number() {
        let log = ManifestLog::new(Lake::from_url("memory://").unwrap(), Log::Totesys);
        let entry = |key: &str| FileEntry {
            key: key.to_string(),
            table: "t".to_string(),
            rows: 1,
            bytes: 1,
            sha256: String::new(),
        };
        for n in 0..40u64 {
            let files = vec![entry(&format!("a{n}")), entry(&format!("b{n}"))];
            log.commit(n, &RunId::now(), Utc::now(), files, Watermark { value: n })
                .await
                .unwrap();
        }
        let keys: Vec<String> = log
            .committed_files(35)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.key)
            .collect();
        let expected: Vec<String> = (0..35u64)
            .flat_map(|n| [format!("a{n}"), format!("b{n}")])
            .collect();
        assert_eq!(keys, expected);
    }

    #[tokio::test]
    async fn two_runs_cannot_commit_the_same_number() {
        let log = ManifestLog::new(Lake::from_url("memory://").unwrap(), Log::Totesys);
        let (run_a, run_b) = (RunId::now(), RunId::now());
        let (a, b) = tokio::join!(
            log.commit(0, &run_a, Utc::now(), vec![], Watermark { value: 1 }),
            log.commit(0, &run_b, Utc::now(), vec![], Watermark { value: 2 }),
        );
        let outcomes = [a.is_ok(), b.is_ok()];
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
        let loser = a.err().or(b.err()).unwrap();
        assert!(
            matches!(loser, Error::ManifestRace { seq: 1, .. }),
            "{loser}"
        );
        assert_eq!(log.latest_seq().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_corrupt_manifest_is_a_clear_error() {
        let lake = Lake::from_url("memory://").unwrap();
        lake.put_once(&Log::Totesys.manifest(1), Bytes::from_static(b"{not json"))
            .await
            .unwrap();
        let log = ManifestLog::new(lake, Log::Totesys);
        let err = log.latest::<Watermark>().await.unwrap_err();
        assert!(matches!(err, Error::CorruptManifest { .. }), "{err}");
        assert!(
            err.to_string().contains("00000000000000000001.json"),
            "{err}"
        );
    }
}
