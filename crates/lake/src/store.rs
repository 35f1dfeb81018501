//! [`Lake`]: an object store opened from a URL, written only with put-if-absent.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, aws::AmazonS3Builder,
    local::LocalFileSystem, memory::InMemory, path::Path,
};
use sha2::{Digest, Sha256};
use url::Url;

use crate::{Error, Result};

/// What [`Lake::put_once`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object did not exist and now holds the bytes.
    Created,
    /// The object already held exactly these bytes (a retry): nothing written.
    AlreadyPresent,
}

/// One lake root (raw or processed) in an object store.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
}

impl Lake {
    /// Opens `s3://bucket/prefix`, `file:///abs/path` or `memory://` (a fresh,
    /// empty in-process store). S3 settings come from the standard `AWS_*`
    /// variables, including `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP`.
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let (store, root): (Arc<dyn ObjectStore>, Path) = match parsed.scheme() {
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| invalid("no bucket name"))?;
                // Every put carries its SHA-256 (x-amz-checksum-sha256) and
                // names the algorithm as the AWS SDKs do: S3 verifies the body,
                // keeps the checksum, and Object Lock buckets require one.
                let mut headers = http::HeaderMap::new();
                headers.insert(
                    "x-amz-sdk-checksum-algorithm",
                    http::HeaderValue::from_static("SHA256"),
                );
                let allow_http = std::env::var("AWS_ALLOW_HTTP")
                    .is_ok_and(|v| matches!(v.trim(), "true" | "1" | "TRUE" | "True"));
                let store = AmazonS3Builder::from_env()
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_default_headers(headers)
                            .with_allow_http(allow_http),
                    )
                    .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| invalid(&e.to_string()))?;
                let root = Path::parse(parsed.path().trim_matches('/'))
                    .map_err(|e| invalid(&e.to_string()))?;
                (Arc::new(store), root)
            }
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|_| invalid("a file URL needs an absolute path"))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| invalid(&format!("cannot create {}: {e}", dir.display())))?;
                let store =
                    LocalFileSystem::new_with_prefix(&dir).map_err(|e| invalid(&e.to_string()))?;
                (Arc::new(store), Path::default())
            }
            "memory" => {
                let root = Path::parse(parsed.path().trim_matches('/'))
                    .map_err(|e| invalid(&e.to_string()))?;
                (Arc::new(InMemory::new()), root)
            }
            other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
        };
        Ok(Self {
            store,
            root,
            url: url.to_string(),
        })
    }

    /// A lake over an existing store, for wrappers (fault injection, throttling).
    pub fn with_store(store: Arc<dyn ObjectStore>, root: &str, url: &str) -> Result<Self> {
        let root = Path::parse(root.trim_matches('/')).map_err(|e| Error::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            store,
            root,
            url: url.to_string(),
        })
    }

    /// The lake under `prefix` of this one: same store, keys relative to
    /// `<root>/<prefix>` (a configured source's own folder, say).
    pub fn child(&self, prefix: &str) -> Lake {
        Lake {
            store: self.store.clone(),
            root: self.path(prefix),
            url: format!(
                "{}/{}",
                self.url.trim_end_matches('/'),
                prefix.trim_matches('/')
            ),
        }
    }

    /// The URL the lake was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying store, for readers that need more than this type offers.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn path(&self, key: &str) -> Path {
        let mut path = self.root.clone();
        path.extend(key.split('/').filter(|part| !part.is_empty()));
        path
    }

    /// Writes `bytes` at `key` only if nothing is there. A retry that finds the
    /// same bytes succeeds; different bytes are [`Error::ConflictingObject`].
    pub async fn put_once(&self, key: &str, payload: impl Into<PutPayload>) -> Result<PutOutcome> {
        let payload = payload.into();
        let path = self.path(key);
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.store.put_opts(&path, payload.clone(), options).await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                let existing = self.store.get(&path).await?.bytes().await?;
                if same_bytes(&existing, &payload) {
                    Ok(PutOutcome::AlreadyPresent)
                } else {
                    Err(Error::ConflictingObject {
                        key: key.to_string(),
                        existing: sha256_hex(&existing),
                        new: payload_sha256_hex(&payload),
                    })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `bytes` at `key`, replacing what is there. Only for small
    /// bookkeeping objects outside the lake's contract (e.g. `_alerts/`):
    /// data and manifests are written once.
    pub async fn put_replace(&self, key: &str, payload: impl Into<PutPayload>) -> Result<()> {
        self.store.put(&self.path(key), payload.into()).await?;
        Ok(())
    }

    /// Writes a data file once (see [`Lake::put_once`]) and describes it as a
    /// manifest entry of `rows` rows of `table`.
    pub async fn put_file(
        &self,
        key: &str,
        table: &str,
        rows: u64,
        payload: impl Into<PutPayload>,
    ) -> Result<crate::FileEntry> {
        let payload = payload.into();
        let entry = crate::FileEntry {
            key: key.to_string(),
            table: table.to_string(),
            rows,
            bytes: payload.content_length() as u64,
            sha256: payload_sha256_hex(&payload),
        };
        self.put_once(key, payload).await?;
        Ok(entry)
    }

    /// Writes one batch as one Parquet file (small outputs: dimensions,
    /// calendars, bars; large ones stream through [`crate::write_dataset`]).
    pub async fn put_batch(
        &self,
        key: &str,
        table: &str,
        batch: &arrow_array::RecordBatch,
    ) -> Result<crate::FileEntry> {
        let bytes = crate::parquet::encode(batch.schema(), std::slice::from_ref(batch))?;
        self.put_file(key, table, batch.num_rows() as u64, bytes)
            .await
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        Ok(self.store.get(&self.path(key)).await?.bytes().await?)
    }

    /// Reads the last `n` bytes of an object (all of it when it is smaller).
    pub async fn get_tail(&self, key: &str, n: u64) -> Result<Bytes> {
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Suffix(n)),
            ..Default::default()
        };
        Ok(self
            .store
            .get_opts(&self.path(key), options)
            .await?
            .bytes()
            .await?)
    }

    /// Reads a whole object, or `None` when it does not exist.
    pub async fn get_opt(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(key)).await {
            Ok(found) => Ok(Some(found.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an object exists at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every key under `prefix`, relative to the lake root, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .list_with_versions(prefix)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    /// The names of the folders directly under `prefix` (one listing with a
    /// delimiter: the objects inside them are not listed), sorted.
    pub async fn folders(&self, prefix: &str) -> Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.path(prefix)))
            .await?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// [`Lake::list`], each key with the time its object was last written.
    pub async fn list_modified(&self, prefix: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
        Ok(self
            .list_meta(prefix)
            .await?
            .into_iter()
            .map(|(key, meta)| (key, meta.last_modified))
            .collect())
    }

    /// Deletes the object at `key` (absent is fine). Only for bookkeeping
    /// that owns its objects, such as Iceberg table maintenance removing
    /// files no snapshot references: data named by a manifest is never
    /// deleted.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Lake::list`], each key with a version tag of its object (size, last
    /// modified time and entity tag where the store has one): an object
    /// whose tag did not change need not be read again to know it.
    pub async fn list_with_versions(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        Ok(self
            .list_meta(prefix)
            .await?
            .into_iter()
            .map(|(key, meta)| {
                let version = format!(
                    "{}:{}:{}",
                    meta.size,
                    meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
                    meta.e_tag.unwrap_or_default()
                );
                (key, version)
            })
            .collect())
    }

    /// Every object under `prefix` with its metadata, keyed relative to the
    /// lake root, sorted by key.
    async fn list_meta(&self, prefix: &str) -> Result<Vec<(String, object_store::ObjectMeta)>> {
        let prefix_path = self.path(prefix);
        let metas: Vec<_> = self.store.list(Some(&prefix_path)).try_collect().await?;
        let root_parts = self.root.parts().count();
        let mut keys: Vec<(String, object_store::ObjectMeta)> = metas
            .into_iter()
            .map(|meta| {
                let key = meta
                    .location
                    .parts()
                    .skip(root_parts)
                    .map(|part| part.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/");
                (key, meta)
            })
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(keys)
    }
}

/// Lower-case hex sha256 of `bytes`, as recorded in manifests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// [`sha256_hex`] of a payload made of blocks.
pub fn payload_sha256_hex(payload: &PutPayload) -> String {
    let mut hasher = Sha256::new();
    for block in payload.iter() {
        hasher.update(block);
    }
    hex::encode(hasher.finalize())
}

fn same_bytes(existing: &[u8], payload: &PutPayload) -> bool {
    if existing.len() != payload.content_length() {
        return false;
    }
    let mut rest = existing;
    payload.iter().all(|block| {
        let (head, tail) = rest.split_at(block.len());
        rest = tail;
        head == block.as_ref()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rewriting_with_identical_bytes_succeeds_and_with_other_bytes_fails() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let lake = Lake::from_url(&url).unwrap();
        let key = "totesys/payment/date=2024-01-01/a.parquet";
        assert_eq!(
            lake.put_once(key, Bytes::from_static(b"first"))
                .await
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            lake.put_once(key, Bytes::from_static(b"first"))
                .await
                .unwrap(),
            PutOutcome::AlreadyPresent
        );
        let err = lake
            .put_once(key, Bytes::from_static(b"second"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ConflictingObject { .. }), "{err}");
        assert!(err.to_string().contains(key));
        assert_eq!(lake.get(key).await.unwrap(), Bytes::from_static(b"first"));
    }

    #[test]
    fn block_payloads_compare_and_hash_like_their_bytes() {
        let payload: PutPayload = [Bytes::from_static(b"ab"), Bytes::from_static(b"cde")]
            .into_iter()
            .collect();
        assert!(same_bytes(b"abcde", &payload));
        assert!(!same_bytes(b"abcdf", &payload));
        assert!(!same_bytes(b"abcd", &payload));
        assert_eq!(payload_sha256_hex(&payload), sha256_hex(b"abcde"));
    }

    #[tokio::test]
    async fn folders_are_the_names_directly_under_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for url in [
            "memory://bucket/raw".to_string(),
            format!("file://{}/raw", dir.path().display()),
        ] {
            let lake = Lake::from_url(&url).unwrap();
            for key in [
                "sources/shop/_manifests/source/1.json",
                "sources/olist/orders/date=2026-12-01/a.parquet",
                "sources/README",
                "totesys/payment/x.parquet",
            ] {
                lake.put_once(key, Bytes::from_static(b"1")).await.unwrap();
            }
            assert_eq!(
                lake.folders("sources").await.unwrap(),
                ["olist", "shop"],
                "{url}"
            );
            assert!(lake.folders("absent").await.unwrap().is_empty(), "{url}");
        }
    }

    #[tokio::test]
    async fn memory_lake_lists_keys_relative_to_its_root() {
        let lake = Lake::from_url("memory://bucket/raw").unwrap();
        lake.put_once("a/b/1.json", Bytes::from_static(b"1"))
            .await
            .unwrap();
        lake.put_once("a/2.json", Bytes::from_static(b"2"))
            .await
            .unwrap();
        lake.put_once("c/3.json", Bytes::from_static(b"3"))
            .await
            .unwrap();
        assert_eq!(
            lake.list("a").await.unwrap(),
            vec!["a/2.json", "a/b/1.json"]
        );
        assert!(lake.exists("c/3.json").await.unwrap());
        assert!(!lake.exists("c/4.json").await.unwrap());
        assert_eq!(lake.get_opt("c/4.json").await.unwrap(), None);
    }

    #[test]
    fn bad_urls_name_the_problem() {
        for (url, needle) in [
            ("not a url", "invalid lake URL"),
            ("ftp://host/x", "unsupported scheme"),
            ("file://relative", "absolute path"),
        ] {
            let err = Lake::from_url(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
