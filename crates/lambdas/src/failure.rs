//! Errors at the Lambda edge: a Diagnostic whose type says whether running
//! again may help (`Retryable.*`) or a person must act (`NonRetryable.*`).

use lambda_runtime::Diagnostic;

/// A failed invocation.
#[derive(Debug)]
pub struct Failure {
    /// Whether a later attempt may succeed unchanged.
    pub retryable: bool,
    /// A short kind, e.g. `Setting`, `Unreachable`, `Event`.
    pub kind: &'static str,
    /// The full message.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// An event that can never be handled (retrying it cannot help).
    pub fn bad_event(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            kind: "Event",
            message: message.into(),
        }
    }

    /// The Diagnostic's error type, e.g. `Retryable.Unreachable`.
    pub fn error_type(&self) -> String {
        let class = if self.retryable {
            "Retryable"
        } else {
            "NonRetryable"
        };
        format!("{class}.{}", self.kind)
    }
}

fn kind_of(error: &tributary_pipeline::Error) -> &'static str {
    use tributary_pipeline::Error as E;
    match error {
        E::Setting { .. } => "Setting",
        E::Unreachable { .. } => "Unreachable",
        E::Authentication { .. } => "Authentication",
        E::UnknownTable(..) => "Request",
        E::Lake(_) => "Lake",
        E::Warehouse(_) => "Warehouse",
        E::Json(_) => "Json",
        E::StreamRefused { .. } => "Stream",
        E::ManifestContention { .. } => "Contention",
        E::Rollup(_) => "Rollup",
        E::Compress(_) | E::NotGzip { .. } => "Gzip",
        E::Market(_) => "Market",
        E::Source(_) | E::SourceConfig(_) | E::TableStopped(_) => "Source",
        E::Postgres(_) => "Database",
        E::Aws { .. } => "Aws",
        _ => "Other",
    }
}

impl From<tributary_pipeline::Error> for Failure {
    fn from(error: tributary_pipeline::Error) -> Self {
        Self {
            retryable: error.is_retryable(),
            kind: kind_of(&error),
            message: error.to_string(),
        }
    }
}

impl From<tributary_aws::Error> for Failure {
    fn from(error: tributary_aws::Error) -> Self {
        tributary_pipeline::Error::from(error).into()
    }
}

impl From<Failure> for Diagnostic {
    fn from(failure: Failure) -> Self {
        Diagnostic {
            error_type: failure.error_type(),
            error_message: failure.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_say_whether_a_retry_can_help() {
        let unreachable = tributary_pipeline::Error::Unreachable {
            database: "warehouse",
            target: "db:5432/warehouse".into(),
            variable: "WAREHOUSE_SECRET_ARN",
            reason: "Connection refused".into(),
        };
        let d: Diagnostic = Failure::from(unreachable).into();
        assert_eq!(d.error_type, "Retryable.Unreachable");
        assert!(d.error_message.contains("Connection refused"));
        let unknown = tributary_pipeline::Error::UnknownTable("payments".into(), "payment".into());
        let d: Diagnostic = Failure::from(unknown).into();
        assert_eq!(d.error_type, "NonRetryable.Request");
        let d: Diagnostic = Failure::bad_event("not an S3 event").into();
        assert_eq!(d.error_type, "NonRetryable.Event");
    }
}
