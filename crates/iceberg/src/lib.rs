//! Apache Iceberg tables over the Tributary lake.
//!
//! - [`Catalog`] keeps tables in the lake itself: versioned metadata files
//!   written put-if-absent, so no catalog server is needed and concurrent
//!   writers are safe (the loser of a race retries on the newer version).
//! - [`Catalog::commit`] adds a [`Change`] as one snapshot: appended files for
//!   append-only tables, copy-on-write replacement by key for tables of
//!   current rows. A change carries a watermark, so it is committed once.
//! - [`Catalog::compact`] merges small files and [`Catalog::expire`] drops old
//!   snapshots and the files only they reached; both are safe beside writers.
//! - Files are the lake's own Parquet; Iceberg metadata points at them, with
//!   counts, bounds and a partition value read from their footers.

mod error;
mod files;
mod maintain;
mod schema;
mod table;

pub use error::{Error, Result};
pub use files::Partitioning;
pub use maintain::{CompactReport, ExpireReport, MaintainOptions};
pub use table::{
    Catalog, Change, Committed, MAX_BASE_AGE, NewFile, Outcome, RowWriter, Rows, Table, TableDef,
    WATERMARK,
};

/// Re-exported so callers can read metadata without their own dependency.
pub use iceberg;
