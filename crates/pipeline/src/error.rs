//! The pipeline's error type.

/// What can stop a stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or malformed; the message names the variable.
    #[error("{variable} {problem}; example: {variable}={example}")]
    Setting {
        /// The environment variable (or flag) at fault.
        variable: &'static str,
        /// What is wrong with it.
        problem: String,
        /// A value that would work.
        example: &'static str,
    },

    /// A database could not be reached.
    #[error("cannot connect to the {database} database at {target} (from {variable}): {reason}")]
    Unreachable {
        /// Which database (`totesys`, `warehouse`).
        database: &'static str,
        /// host:port/dbname, without credentials.
        target: String,
        /// The setting it came from.
        variable: &'static str,
        /// The driver's reason.
        reason: String,
    },

    /// The database refused the credentials (SQLSTATE 28P01/28000).
    #[error(
        "the {database} database at {target} refused the credentials (from {variable}): {reason}; if the password was rotated, the secret is read again on the next connection"
    )]
    Authentication {
        /// Which database (`totesys`, `warehouse`).
        database: &'static str,
        /// host:port/dbname, without credentials.
        target: String,
        /// The setting it came from.
        variable: &'static str,
        /// The server's message.
        reason: String,
    },

    /// A request named a table the totesys source file does not configure.
    #[error("unknown table {0:?}; the configured totesys tables are: {1}")]
    UnknownTable(String, String),

    /// A configured totesys table no longer reads as the star schema needs
    /// it (a backfill of it cannot go on; a scheduled run leaves it out).
    #[error("{}: {}; {}", .0.table, .0.reason, .0.action)]
    TableStopped(tributary_totesys::TableStop),

    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] tributary_lake::Error),

    /// An Iceberg table of the processed lake could not be read or committed.
    #[error(transparent)]
    Iceberg(#[from] tributary_iceberg::Error),

    /// Some tables of a configured source could not be published to the
    /// processed lake; the others were. Retryable when every cause is.
    #[error("{0}")]
    Publication(String, bool),

    /// Maintenance failed for some tables; the others were maintained.
    #[error("iceberg maintenance failed for {0}")]
    Maintenance(String),

    /// Transforming or loading the warehouse failed.
    #[error(transparent)]
    Warehouse(#[from] tributary_warehouse::Error),

    /// A JSON document could not be read.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// The trade stream kept refusing some records (throttling, a shard
    /// over its limits) after every attempt.
    #[error(
        "trade stream: {failed} record(s) still refused after {attempts} attempts (first partition key {partition_key:?})"
    )]
    StreamRefused {
        /// Records still refused.
        failed: usize,
        /// Attempts made.
        attempts: u32,
        /// The partition key of the first refused record.
        partition_key: String,
    },

    /// Other runs kept committing the same manifest number first.
    #[error("could not commit a manifest of {log} after {attempts} races with other runs")]
    ManifestContention {
        /// The contended log.
        log: tributary_lake::Log,
        /// Commits tried.
        attempts: u32,
    },

    /// Trades could not be rolled up or written as Arrow (an inexact
    /// decimal, an overflowing volume).
    #[error("markets rollup: {0}")]
    Rollup(#[from] tributary_markets::rollup::RollupError),

    /// Compressing a raw object failed.
    #[error("compressing: {0}")]
    Compress(#[source] std::io::Error),

    /// A raw object that should be gzipped text is not.
    #[error("{key}: not gzip text: {source}")]
    NotGzip {
        /// The object read.
        key: String,
        /// What flate2 said.
        #[source]
        source: std::io::Error,
    },

    /// A market API failed.
    #[error(transparent)]
    Market(#[from] tributary_markets::Error),

    /// The source failed.
    #[error(transparent)]
    Source(#[from] tributary_totesys::Error),

    /// An AWS service call failed (SNS, Glue, Kinesis, Secrets Manager).
    /// The source is `tributary_aws::Error`, which this crate cannot name.
    #[error("aws: {source}")]
    Aws {
        /// What failed, with the service's code and message.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// False when the service refused for a reason a retry cannot fix
        /// (access denied, not found, invalid request, a malformed secret).
        retryable: bool,
    },

    /// A database query failed.
    #[error("database: {0}")]
    Postgres(#[from] tokio_postgres::Error),

    /// A configured source (`crates/sources`) cannot be read for a reason
    /// a retry cannot fix: its file, a column type, data that does not
    /// decode. The message names the source and the fix.
    #[error("{0}")]
    SourceConfig(String),
}

/// A configured source's error: its database and lake failures keep their
/// kind (retryable); anything else (its file, a type, data that does not
/// decode) is [`Error::SourceConfig`].
impl From<tributary_sources::Error> for Error {
    fn from(error: tributary_sources::Error) -> Self {
        use tributary_sources::Error as S;
        match error {
            S::Postgres(e) => Error::Postgres(e),
            S::Lake(e) => Error::Lake(e),
            S::Snapshot(e) => Error::Source(e),
            other => Error::SourceConfig(other.to_string()),
        }
    }
}

impl Error {
    /// Whether running the stage again later may succeed without a change
    /// by a person (an unreachable database, a lost race, a store timeout).
    pub fn is_retryable(&self) -> bool {
        if let Error::Market(market) = self {
            return market.is_retryable();
        }
        if let Error::Aws { retryable, .. } | Error::Publication(_, retryable) = self {
            return *retryable;
        }
        !matches!(
            self,
            Error::Setting { .. }
                | Error::SourceConfig(_)
                | Error::Authentication { .. }
                | Error::UnknownTable(..)
                | Error::TableStopped(..)
                | Error::Rollup(_)
                | Error::Compress(_)
                | Error::NotGzip { .. }
                | Error::Lake(tributary_lake::Error::ConflictingObject { .. })
                | Error::Lake(tributary_lake::Error::CorruptManifest { .. })
                | Error::Lake(tributary_lake::Error::InvalidUrl { .. })
                | Error::Iceberg(tributary_iceberg::Error::Schema { .. })
                | Error::Iceberg(tributary_iceberg::Error::Unsupported { .. })
                | Error::Iceberg(tributary_iceberg::Error::Metadata { .. })
                | Error::Warehouse(tributary_warehouse::Error::Orphans { .. })
                | Error::Warehouse(tributary_warehouse::Error::CorruptState { .. })
        )
    }
}

/// Result with the pipeline's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
