//! Settings from the environment (the same names locally and in Lambda).
//!
//! Everything is parsed here, once; a missing or malformed value fails with
//! one line naming the variable and an example. Flags override variables by
//! supplying the same names through [`Settings::from_lookup`].

use std::time::Duration;

use tributary_lake::Lake;

use crate::{Error, Result};

/// Source database URL.
pub const TOTESYS_DATABASE_URL: &str = "TOTESYS_DATABASE_URL";
/// Warehouse database URL.
pub const WAREHOUSE_DATABASE_URL: &str = "WAREHOUSE_DATABASE_URL";
/// Raw lake root.
pub const TRIBUTARY_RAW_URL: &str = "TRIBUTARY_RAW_URL";
/// Processed lake root.
pub const TRIBUTARY_PROCESSED_URL: &str = "TRIBUTARY_PROCESSED_URL";
/// How far before the watermark each run re-reads.
pub const TRIBUTARY_LOOKBACK: &str = "TRIBUTARY_LOOKBACK";
/// Extra CA certificates (PEM) for TLS to PostgreSQL, e.g. the RDS bundle.
pub const TRIBUTARY_PG_CA_FILE: &str = "TRIBUTARY_PG_CA_FILE";
/// How often ingest runs the late-commit check.
pub const TRIBUTARY_LATE_CHECK_EVERY: &str = "TRIBUTARY_LATE_CHECK_EVERY";
/// Rows per Arrow batch while extracting.
pub const TRIBUTARY_BATCH_ROWS: &str = "TRIBUTARY_BATCH_ROWS";
/// Rows per raw Parquet file before it rolls.
pub const TRIBUTARY_FILE_ROWS: &str = "TRIBUTARY_FILE_ROWS";

/// Where the local lake lives when no URL is given (relative to the working
/// directory): the embedded default, no AWS needed.
pub const LOCAL_LAKE_DIR: &str = ".tributary/lake";

/// Typed settings for every stage.
#[derive(Debug, Clone)]
pub struct Settings {
    totesys_database_url: Option<String>,
    warehouse_database_url: Option<String>,
    /// Where each database URL came from, for errors (a variable's name).
    pub(crate) totesys_from: &'static str,
    pub(crate) warehouse_from: &'static str,
    /// Raw lake root URL.
    pub raw_url: String,
    /// Processed lake root URL.
    pub processed_url: String,
    /// Lookback window of incremental extracts.
    pub lookback: Duration,
    /// How often the late-commit check runs (zero: every run).
    pub late_check_every: Duration,
    /// Rows per Arrow batch.
    pub batch_rows: usize,
    /// Rows per raw Parquet file.
    pub file_rows: u64,
    /// Extra CA certificates for TLS to PostgreSQL.
    pub pg_ca_file: Option<std::path::PathBuf>,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (a flag value, else the environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let local_root = || {
            std::env::current_dir()
                .map(|dir| dir.join(LOCAL_LAKE_DIR))
                .unwrap_or_else(|_| std::path::PathBuf::from("/tmp/tributary/lake"))
        };
        let raw_url = match get(TRIBUTARY_RAW_URL) {
            Some(url) => lake_url(TRIBUTARY_RAW_URL, url, "s3://my-lake/raw")?,
            None => format!("file://{}", local_root().join("raw").display()),
        };
        let processed_url = match get(TRIBUTARY_PROCESSED_URL) {
            Some(url) => lake_url(TRIBUTARY_PROCESSED_URL, url, "s3://my-lake/processed")?,
            None => format!("file://{}", local_root().join("processed").display()),
        };
        let lookback = match get(TRIBUTARY_LOOKBACK) {
            Some(text) => humantime::parse_duration(text.trim()).map_err(|e| Error::Setting {
                variable: TRIBUTARY_LOOKBACK,
                problem: format!("is not a duration ({e})"),
                example: "10m",
            })?,
            None => Duration::from_secs(600),
        };
        let late_check_every = match get(TRIBUTARY_LATE_CHECK_EVERY) {
            Some(text) => humantime::parse_duration(text.trim()).map_err(|e| Error::Setting {
                variable: TRIBUTARY_LATE_CHECK_EVERY,
                problem: format!("is not a duration ({e})"),
                example: "10m",
            })?,
            None => Duration::from_secs(600),
        };
        Ok(Self {
            totesys_database_url: get(TOTESYS_DATABASE_URL),
            warehouse_database_url: get(WAREHOUSE_DATABASE_URL),
            totesys_from: TOTESYS_DATABASE_URL,
            warehouse_from: WAREHOUSE_DATABASE_URL,
            raw_url,
            processed_url,
            lookback,
            late_check_every,
            pg_ca_file: get(TRIBUTARY_PG_CA_FILE).map(std::path::PathBuf::from),
            batch_rows: positive(
                TRIBUTARY_BATCH_ROWS,
                get(TRIBUTARY_BATCH_ROWS),
                65_536,
                "65536",
            )?,
            file_rows: positive(
                TRIBUTARY_FILE_ROWS,
                get(TRIBUTARY_FILE_ROWS),
                524_288,
                "524288",
            )? as u64,
        })
    }

    /// Sets the source database URL read from elsewhere than its variable
    /// (a Secrets Manager secret): connection errors then name `from`.
    pub fn with_totesys_url(mut self, url: String, from: &'static str) -> Self {
        self.totesys_database_url = Some(url);
        self.totesys_from = from;
        self
    }

    /// Sets the warehouse URL read from elsewhere than its variable.
    pub fn with_warehouse_url(mut self, url: String, from: &'static str) -> Self {
        self.warehouse_database_url = Some(url);
        self.warehouse_from = from;
        self
    }

    /// The source database URL, or the error a user needs to fix it.
    pub fn totesys_database_url(&self) -> Result<&str> {
        self.totesys_database_url.as_deref().ok_or(Error::Setting {
            variable: TOTESYS_DATABASE_URL,
            problem: "is not set".to_string(),
            example: "postgres://user:password@localhost:5432/totesys",
        })
    }

    /// The warehouse database URL, or the error a user needs to fix it.
    pub fn warehouse_database_url(&self) -> Result<&str> {
        self.warehouse_database_url
            .as_deref()
            .ok_or(Error::Setting {
                variable: WAREHOUSE_DATABASE_URL,
                problem: "is not set".to_string(),
                example: "postgres://user:password@localhost:5432/warehouse",
            })
    }

    /// Opens the raw lake.
    pub fn raw_lake(&self) -> Result<Lake> {
        open_lake(TRIBUTARY_RAW_URL, &self.raw_url, "s3://my-lake/raw")
    }

    /// Opens the processed lake.
    pub fn processed_lake(&self) -> Result<Lake> {
        open_lake(
            TRIBUTARY_PROCESSED_URL,
            &self.processed_url,
            "s3://my-lake/processed",
        )
    }
}

fn lake_url(variable: &'static str, url: String, example: &'static str) -> Result<String> {
    let parsed = url::Url::parse(url.trim()).map_err(|e| Error::Setting {
        variable,
        problem: format!("is not a URL ({e})"),
        example,
    })?;
    match parsed.scheme() {
        "s3" | "file" | "memory" => Ok(url.trim().to_string()),
        other => Err(Error::Setting {
            variable,
            problem: format!("has unsupported scheme {other:?} (use s3://, file:/// or memory://)"),
            example,
        }),
    }
}

fn open_lake(variable: &'static str, url: &str, example: &'static str) -> Result<Lake> {
    Lake::from_url(url).map_err(|e| Error::Setting {
        variable,
        problem: format!("cannot be opened: {e}"),
        example,
    })
}

fn positive(
    variable: &'static str,
    value: Option<String>,
    default: usize,
    example: &'static str,
) -> Result<usize> {
    match value {
        None => Ok(default),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::Setting {
                variable,
                problem: format!("must be a positive whole number, not {text:?}"),
                example,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_a_local_lake_and_a_ten_minute_lookback() {
        let s = settings(&[]).unwrap();
        assert!(s.raw_url.starts_with("file:///") && s.raw_url.ends_with(".tributary/lake/raw"));
        assert_eq!(s.lookback, Duration::from_secs(600));
        let missing = s.totesys_database_url().unwrap_err().to_string();
        assert!(
            missing.starts_with("TOTESYS_DATABASE_URL is not set"),
            "{missing}"
        );
        assert!(missing.contains("example: TOTESYS_DATABASE_URL=postgres://"));
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (pairs, variable) in [
            (vec![(TRIBUTARY_RAW_URL, "bucket/raw")], TRIBUTARY_RAW_URL),
            (
                vec![(TRIBUTARY_PROCESSED_URL, "ftp://x/y")],
                TRIBUTARY_PROCESSED_URL,
            ),
            (
                vec![(TRIBUTARY_LOOKBACK, "ten minutes")],
                TRIBUTARY_LOOKBACK,
            ),
            (vec![(TRIBUTARY_BATCH_ROWS, "0")], TRIBUTARY_BATCH_ROWS),
        ] {
            let err = settings(&pairs).unwrap_err().to_string();
            assert!(err.starts_with(variable), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn the_warehouse_url_and_lakes_fail_clearly() {
        let s = settings(&[
            (TRIBUTARY_LATE_CHECK_EVERY, "0s"),
            (TRIBUTARY_PG_CA_FILE, "/etc/ca.pem"),
        ])
        .unwrap();
        assert_eq!(s.late_check_every, Duration::ZERO);
        assert_eq!(
            s.pg_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        let err = s.warehouse_database_url().unwrap_err().to_string();
        assert!(
            err.starts_with("WAREHOUSE_DATABASE_URL is not set"),
            "{err}"
        );
        let memory = settings(&[
            (TRIBUTARY_RAW_URL, "memory://"),
            (TRIBUTARY_PROCESSED_URL, "memory://x"),
        ])
        .unwrap();
        assert!(memory.raw_lake().is_ok() && memory.processed_lake().is_ok());
        let err = settings(&[(TRIBUTARY_LATE_CHECK_EVERY, "often")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("TRIBUTARY_LATE_CHECK_EVERY is not a duration"),
            "{err}"
        );
        let err = settings(&[(TRIBUTARY_FILE_ROWS, "-3")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("TRIBUTARY_FILE_ROWS must be a positive whole number"),
            "{err}"
        );
        let s3 = settings(&[(TRIBUTARY_RAW_URL, "s3:///no-bucket")]).unwrap();
        let err = s3.raw_lake().unwrap_err().to_string();
        assert!(
            err.starts_with("TRIBUTARY_RAW_URL cannot be opened"),
            "{err}"
        );
    }

    #[test]
    fn values_parse_into_types() {
        let s = settings(&[
            (TRIBUTARY_RAW_URL, "s3://lake/raw"),
            (TRIBUTARY_LOOKBACK, "90s"),
            (TRIBUTARY_FILE_ROWS, "500"),
            (TOTESYS_DATABASE_URL, "postgres://u@h/db"),
        ])
        .unwrap();
        assert_eq!(s.raw_url, "s3://lake/raw");
        assert_eq!(s.lookback, Duration::from_secs(90));
        assert_eq!(s.file_rows, 500);
        assert_eq!(s.totesys_database_url().unwrap(), "postgres://u@h/db");
    }
}
