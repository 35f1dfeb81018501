//! Sources by configuration: any PostgreSQL database, declared in a file.
//!
//! - [`config`]: the source files (`sources/<name>.toml`) and what they may say.
//! - [`types`]: PostgreSQL column types as the catalog reports them, and the
//!   Arrow type each becomes in the lake.
//! - [`dbt`]: dbt `sources:` files written from the schema a run recorded.
//! - [`decode`]: PostgreSQL's binary COPY into Arrow batches, any column types.
//! - [`files`]: file drops (CSV, JSON lines) as a source: received as is,
//!   parsed against a declared schema, bad rows quarantined.
//! - [`ingest`]: one run of a source into the raw lake: changes by
//!   transaction id (or a cursor), deletes by key comparison, the schema
//!   contract.
//! - [`keyset`]: key sets and their differences, for deletes.
//! - [`load`]: a source's manifests applied to its warehouse schema.
//! - [`olist`]: Olist-shaped tables and monthly changes that fit the real
//!   Olist data, for tests and demos.
//! - [`text`]: Arrow values back into PostgreSQL's COPY text format, for the
//!   warehouse.

pub mod config;
pub mod dbt;
pub mod decode;
mod error;
pub mod files;
pub mod ingest;
pub mod keyset;
pub mod load;
pub mod olist;
pub mod text;
pub mod types;

pub use error::{Error, Result};
