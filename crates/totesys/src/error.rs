//! The totesys crate's error type.

/// What can go wrong talking to the source or decoding what it sends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database refused or dropped the connection, or a query failed.
    #[error("source database: {0}")]
    Postgres(#[from] tokio_postgres::Error),

    /// Binary COPY output did not match the table definition.
    #[error("malformed COPY data for {table} at row {row}: {reason}")]
    MalformedCopy {
        /// The table being read.
        table: String,
        /// 1-based row number within this extract.
        row: u64,
        /// What was wrong.
        reason: String,
    },

    /// The receiving side of an extract went away (its writer failed).
    #[error("extract of {table} stopped: the batch receiver closed")]
    ReceiverClosed {
        /// The table being read.
        table: String,
    },

    /// Building an Arrow batch failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    /// The generator or simulator was asked for something impossible.
    #[error("{0}")]
    InvalidRequest(String),
}

/// Result with the totesys [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
