//! The Tributary lake: where every stage's output lives, written once.
//!
//! - [`Lake`] wraps an object store opened from a URL and only ever writes with
//!   put-if-absent ([`Lake::put_once`]).
//! - [`keys`] holds the key layout of the raw and processed roots.
//! - [`RunId`] names a stage run so that keys sort by time.
//! - [`ManifestLog`] numbers the commit records of a stage; the manifest is
//!   the commit point, so files not named by one are invisible.
//! - [`parquet`] encodes Arrow batches (zstd) and decodes them back;
//!   [`write_dataset`] streams batches into size-bounded files.

mod error;
pub mod keys;
mod manifest;
pub mod parquet;
mod run_id;
mod store;
mod writer;

pub use error::{Error, Result};
pub use keys::{Flow, Log};
pub use manifest::{FileEntry, MANIFEST_FORMAT, Manifest, ManifestLog};
pub use run_id::RunId;
pub use store::{Lake, PutOutcome, payload_sha256_hex, sha256_hex};
pub use writer::{DatasetFiles, write_dataset, write_partitioned_dataset};

/// Re-exported so callers name store types without their own dependency.
pub use object_store;
