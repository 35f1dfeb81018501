//! The totesys source: its 11 tables, the incremental extractor, and a data
//! generator and change simulator for demos and benchmarks.
//!
//! - [`tables`]: what the star schema reads (the model's contract).
//! - [`source`]: the configured tables, as the catalog describes them at run time.
//! - [`copy_binary`]: binary COPY → Arrow batches, streaming.
//! - [`extract`]: one table's incremental extract inside a snapshot.
//! - [`generate`] / [`simulate`]: realistic data shaped like the real system.

pub mod copy_binary;
mod error;
pub mod extract;
pub mod generate;
pub mod simulate;
pub mod source;
pub mod tables;
pub mod watermark;

pub use error::{Error, Result};
pub use extract::{
    ExtractPlan, ExtractStats, KeyRange, RowVersion, SnapshotInfo, extract_table, open_snapshot,
    row_fingerprint,
};
pub use source::{SourceSpec, SourceTable, TableStop};
pub use tables::{Column, LAST_UPDATED, MODEL_INPUTS, PgType, TableDef};
