//! AWS implementations of Tributary's side effects.
//!
//! The pipeline defines small traits for what differs between a laptop and
//! AWS; this crate implements them with the AWS SDK (the only crates that
//! build it are this one and `tributary-lambdas`):
//!
//! - [`secrets`]: database URLs from Secrets Manager secrets in the RDS shape;
//! - [`sns::SnsAlerts`]: alerts published to an SNS topic;
//! - [`emf::EmfMetrics`]: CloudWatch Embedded Metric Format log lines;
//! - [`glue::GlueCatalog`]: Glue Data Catalog tables and partitions for Athena;
//! - [`kinesis::KinesisStream`]: the market-data producer.
//!
//! Every client honours `AWS_ENDPOINT_URL`, which tests point at moto_server.

pub mod emf;
pub mod glue;
pub mod kinesis;
pub mod secrets;
pub mod sns;

/// What can fail here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A secret could not be read or is not in the expected shape.
    #[error("secret {secret}: {reason}")]
    Secret {
        /// The secret's id or ARN.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// An AWS call failed.
    #[error("{service} {operation}: {reason}")]
    Call {
        /// The service, e.g. `glue`.
        service: &'static str,
        /// The operation, e.g. `CreateTable`.
        operation: &'static str,
        /// The SDK's message, with its cause.
        reason: String,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The SDK configuration from the environment (region, credentials,
/// `AWS_ENDPOINT_URL`), loaded once per process.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// The full message of an SDK error: its display and every source.
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(source) = current {
        let next = source.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        current = source.source();
    }
    text
}

impl Error {
    /// Whether a later attempt may succeed unchanged: throttling, timeouts
    /// and 5xx yes; refusals a person must fix (access denied, not found,
    /// invalid input, a malformed secret) no.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Secret { reason, .. } => !reason.contains("RDS-shaped") && retryable(reason),
            Error::Call { reason, .. } => retryable(reason),
        }
    }
}

/// Error codes of AWS services that no retry can fix.
const PERMANENT: [&str; 12] = [
    "AccessDenied",
    "UnrecognizedClient",
    "InvalidClientTokenId",
    "AuthorizationError",
    "ResourceNotFound",
    "EntityNotFound",
    "NotFoundException",
    "ValidationException",
    "InvalidParameter",
    "InvalidRequest",
    "KMSInvalidState",
    "has no string value",
];

/// Judges an SDK error's full text (it carries the service's code).
fn retryable(reason: &str) -> bool {
    !PERMANENT.iter().any(|code| reason.contains(code))
}

impl From<Error> for tributary_pipeline::Error {
    fn from(error: Error) -> Self {
        tributary_pipeline::Error::Aws {
            retryable: error.is_retryable(),
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_not_retryable_and_throttling_is() {
        let call = |reason: &str| Error::Call {
            service: "glue",
            operation: "UpdatePartition",
            reason: reason.into(),
        };
        assert!(!call("service error: AccessDeniedException: not authorized").is_retryable());
        assert!(!call("service error: EntityNotFoundException: no table").is_retryable());
        assert!(call("service error: ThrottlingException: rate exceeded").is_retryable());
        assert!(call("dispatch failure: io error: connection reset").is_retryable());
        let malformed = Error::Secret {
            secret: "s".into(),
            reason: "is not an RDS-shaped JSON secret with host, …".into(),
        };
        assert!(!malformed.is_retryable());
        let pipeline: tributary_pipeline::Error = malformed.into();
        assert!(!pipeline.is_retryable());
    }
}
