//! The warehouse crate's error type.

/// What can go wrong transforming or loading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The warehouse database failed.
    #[error("warehouse database: {0}")]
    Postgres(#[from] tokio_postgres::Error),

    /// Rows reference dimension rows the warehouse does not have.
    #[error(
        "{table}: {rows} row(s) reference {column} values missing from {dimension} (e.g. {example}); the load was rolled back"
    )]
    Orphans {
        /// The fact table.
        table: &'static str,
        /// The foreign key column.
        column: &'static str,
        /// The dimension it references.
        dimension: &'static str,
        /// How many rows.
        rows: i64,
        /// One missing value.
        example: String,
    },

    /// Reading or writing the lake failed.
    #[error(transparent)]
    Lake(#[from] tributary_lake::Error),

    /// Arrow failed (a schema that does not match its definition).
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    /// A state file could not be read.
    #[error("corrupt transform state {key}: {reason}")]
    CorruptState {
        /// The object.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Result with the warehouse [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
