//! The lake's error type.

/// Everything that can go wrong reading or writing the lake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lake URL could not be understood.
    #[error(
        "invalid lake URL {url:?}: {reason} (expected s3://bucket/prefix, file:///abs/path or memory://)"
    )]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An object already exists with other bytes than the ones being written.
    #[error(
        "refusing to overwrite {key}: it already exists with different content (existing sha256 {existing}, new sha256 {new})"
    )]
    ConflictingObject {
        /// The key of the object.
        key: String,
        /// sha256 of the bytes in the store.
        existing: String,
        /// sha256 of the bytes the caller tried to write.
        new: String,
    },

    /// Another run committed this manifest number first.
    #[error(
        "manifest {seq} of {source_name} was committed by another run; this run's files stay invisible and the next run redoes its work"
    )]
    ManifestRace {
        /// The source or stage whose log this is.
        source_name: String,
        /// The contested sequence number.
        seq: u64,
    },

    /// A manifest object exists but cannot be parsed.
    #[error("manifest {key} is corrupt: {reason}")]
    CorruptManifest {
        /// The key of the manifest.
        key: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The object store failed.
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),

    /// Parquet encoding or decoding failed.
    #[error("parquet error: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),

    /// Arrow failed (schema mismatch and the like).
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    /// A background writer task died (panicked or was cancelled).
    #[error("background writer failed: {0}")]
    Task(#[source] tokio::task::JoinError),

    /// JSON encoding failed.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result with the lake's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
