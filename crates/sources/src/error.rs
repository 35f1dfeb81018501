//! Errors of the configured sources.

/// What can go wrong reading a configured source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A source file that cannot be used, with the reason.
    #[error("source configuration {file}: {reason}")]
    Config {
        /// The file (or source name).
        file: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A column of a type Tributary does not map, and how to fix it.
    #[error(
        "{table}.{column}: type {pg_type} is not supported; declare an override in the source file, e.g. [tables.{table}.types] {column} = \"text\""
    )]
    UnsupportedType {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The type as PostgreSQL names it.
        pg_type: String,
    },
    /// Binary COPY data that does not decode.
    #[error("COPY data of {table}: {reason}")]
    Decode {
        /// The table.
        table: String,
        /// What was wrong.
        reason: String,
    },
    /// The database.
    #[error("source database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Opening the source's snapshot.
    #[error(transparent)]
    Snapshot(#[from] tributary_totesys::Error),
    /// The lake.
    #[error(transparent)]
    Lake(#[from] tributary_lake::Error),
    /// Arrow.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
