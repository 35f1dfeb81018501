//! Errors of the Iceberg layer.

/// What can go wrong reading or committing an Iceberg table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake (object store) failed.
    #[error(transparent)]
    Lake(#[from] tributary_lake::Error),
    /// The Iceberg library refused metadata or failed to encode it.
    #[error("iceberg: {0}")]
    Iceberg(#[from] iceberg::Error),
    /// A Parquet file could not be read.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// An Arrow operation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Table metadata is not valid JSON of the expected shape.
    #[error("table metadata {key}: {source}")]
    Metadata {
        /// The metadata file.
        key: String,
        /// Why it did not parse.
        source: serde_json::Error,
    },
    /// A column type has no Iceberg equivalent here.
    #[error("{table}.{column}: type {data_type} has no Iceberg type in Tributary")]
    Unsupported {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its Arrow type.
        data_type: String,
    },
    /// The table's schema and the files offered to it disagree.
    #[error("{table}: {reason}")]
    Schema {
        /// The table.
        table: String,
        /// What disagrees, and what to do.
        reason: String,
    },
    /// Other writers committed every time this one tried.
    #[error(
        "{table}: {attempts} commit attempts lost to concurrent writers; nothing was committed, run again"
    )]
    Contention {
        /// The table.
        table: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// The result of Iceberg operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
