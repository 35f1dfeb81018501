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

    /// A request named something that is not in the fixed table list.
    #[error("unknown table {0:?}; the totesys tables are: {1}")]
    UnknownTable(String, String),

    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] tributary_lake::Error),

    /// Transforming or loading the warehouse failed.
    #[error(transparent)]
    Warehouse(#[from] tributary_warehouse::Error),

    /// A JSON document could not be read.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// The trade stream refused records.
    #[error("trade stream: {0}")]
    Stream(String),

    /// A market API failed.
    #[error(transparent)]
    Market(#[from] tributary_markets::Error),

    /// The source failed.
    #[error(transparent)]
    Source(#[from] tributary_totesys::Error),

    /// An AWS service call failed (SNS, Glue, Kinesis, Secrets Manager).
    #[error("aws: {message}")]
    Aws {
        /// What failed, with the service's code and message.
        message: String,
        /// False when the service refused for a reason a retry cannot fix
        /// (access denied, not found, invalid request, a malformed secret).
        retryable: bool,
    },

    /// A database query failed.
    #[error("database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

impl Error {
    /// Whether running the stage again later may succeed without a change
    /// by a person (an unreachable database, a lost race, a store timeout).
    pub fn is_retryable(&self) -> bool {
        if let Error::Market(market) = self {
            return market.is_retryable();
        }
        if let Error::Aws { retryable, .. } = self {
            return *retryable;
        }
        !matches!(
            self,
            Error::Setting { .. }
                | Error::UnknownTable(..)
                | Error::Lake(tributary_lake::Error::ConflictingObject { .. })
                | Error::Lake(tributary_lake::Error::CorruptManifest { .. })
                | Error::Lake(tributary_lake::Error::InvalidUrl { .. })
                | Error::Warehouse(tributary_warehouse::Error::Orphans { .. })
                | Error::Warehouse(tributary_warehouse::Error::CorruptState { .. })
        )
    }
}

/// Result with the pipeline's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
