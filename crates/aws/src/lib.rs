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
        /// Whether reading it again may succeed.
        retryable: bool,
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
        /// Whether the same call may succeed later.
        retryable: bool,
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
            Error::Secret { retryable, .. } | Error::Call { retryable, .. } => *retryable,
        }
    }
}

/// Error codes (or their stems) of AWS services that no retry can fix.
const PERMANENT: [&str; 11] = [
    "AccessDenied",
    "UnrecognizedClient",
    "InvalidClientTokenId",
    "AuthorizationError",
    "ResourceNotFound",
    "EntityNotFound",
    "NotFound",
    "ValidationException",
    "InvalidParameter",
    "InvalidRequest",
    "InvalidInput",
];

/// Whether a failed SDK call may succeed later: judged by the service's
/// error code, not by the message text; no response at all (timeout,
/// connection) is retryable, a request that could not be built is not.
pub(crate) fn sdk_retryable<E, R>(error: &aws_sdk_glue::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_glue::error::ProvideErrorMetadata,
{
    use aws_sdk_glue::error::SdkError;
    match error {
        SdkError::ServiceError(service) => !service.err().code().is_some_and(|code| {
            PERMANENT
                .iter()
                .any(|p| code.starts_with(p) || code.ends_with(p))
        }),
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

/// A failed SDK call of `service`.
pub(crate) fn sdk_error<E, R>(
    service: &'static str,
    operation: &'static str,
    error: &aws_sdk_glue::error::SdkError<E, R>,
) -> Error
where
    E: aws_sdk_glue::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    Error::Call {
        service,
        operation,
        reason: describe(error),
        retryable: sdk_retryable(error),
    }
}

impl From<Error> for tributary_pipeline::Error {
    fn from(error: Error) -> Self {
        tributary_pipeline::Error::Aws {
            retryable: error.is_retryable(),
            source: Box::new(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_decide_whether_a_retry_can_help() {
        use aws_sdk_glue::{error::SdkError, operation::get_table::GetTableError};
        use aws_smithy_types::error::ErrorMetadata;
        let service = |code: &str| {
            let error =
                GetTableError::generic(ErrorMetadata::builder().code(code).message("m").build());
            let raw = aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            );
            SdkError::service_error(error, raw)
        };
        assert!(!sdk_retryable(&service("AccessDeniedException")));
        assert!(!sdk_retryable(&service("EntityNotFoundException")));
        assert!(!sdk_retryable(&service("InvalidInputException")));
        assert!(sdk_retryable(&service("ThrottlingException")));
        assert!(sdk_retryable(&service("InternalServiceException")));
        let malformed = Error::Secret {
            secret: "s".into(),
            reason: "is not an RDS-shaped JSON secret".into(),
            retryable: false,
        };
        let pipeline: tributary_pipeline::Error = malformed.into();
        assert!(!pipeline.is_retryable());
    }
}
