//! Every setting of the CLI and the Lambda functions, parsed here once.
//!
//! The same variable names serve locally and in Lambda. A missing or
//! malformed value fails with one line naming the variable and an example;
//! everything else receives typed values (durations, parsed lake roots).
//! Flags override variables by supplying the same names through
//! [`Settings::from_lookup`].

use std::time::Duration;

use tributary_lake::Lake;
use url::Url;

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
/// Rows one ingest run reads at most for first extracts (larger tables are
/// read in parts, one per run).
pub const TRIBUTARY_INGEST_MAX_ROWS: &str = "TRIBUTARY_INGEST_MAX_ROWS";
/// Mercado Bitcoin API v4 base URL.
pub const TRIBUTARY_MERCADO_URL: &str = "TRIBUTARY_MERCADO_URL";
/// CoinCap v3 API base URL.
pub const TRIBUTARY_COINCAP_URL: &str = "TRIBUTARY_COINCAP_URL";
/// CoinCap API key; without it (or its secret) CoinCap is skipped.
pub const COINCAP_API_KEY: &str = "COINCAP_API_KEY";
/// Exchange-rate API base URL (Frankfurter-style, ECB reference rates).
pub const TRIBUTARY_FX_URL: &str = "TRIBUTARY_FX_URL";
/// The currency the warehouse reports amounts in (ISO 4217, default GBP).
pub const TRIBUTARY_REPORTING_CURRENCY: &str = "TRIBUTARY_REPORTING_CURRENCY";
/// Folder of source files (`<name>.toml`, crates/sources): the configured
/// sources the ingest and load functions run (`/var/task/sources` on AWS).
pub const TRIBUTARY_SOURCES_DIR: &str = "TRIBUTARY_SOURCES_DIR";
/// Secrets Manager secret of the source database (RDS JSON shape).
pub const TOTESYS_SECRET_ARN: &str = "TOTESYS_SECRET_ARN";
/// Secrets Manager secret of the warehouse database (RDS JSON shape).
pub const WAREHOUSE_SECRET_ARN: &str = "WAREHOUSE_SECRET_ARN";
/// Host of the source database, for a secret without one (RDS-managed
/// secrets hold only the username and password).
pub const TOTESYS_DB_HOST: &str = "TOTESYS_DB_HOST";
/// Port of the source database, for a secret without one (default 5432).
pub const TOTESYS_DB_PORT: &str = "TOTESYS_DB_PORT";
/// Database name of the source, for a secret without one (default `totesys`).
pub const TOTESYS_DB_NAME: &str = "TOTESYS_DB_NAME";
/// Host of the warehouse database, for a secret without one.
pub const WAREHOUSE_DB_HOST: &str = "WAREHOUSE_DB_HOST";
/// Port of the warehouse database, for a secret without one (default 5432).
pub const WAREHOUSE_DB_PORT: &str = "WAREHOUSE_DB_PORT";
/// Database name of the warehouse, for a secret without one (default `warehouse`).
pub const WAREHOUSE_DB_NAME: &str = "WAREHOUSE_DB_NAME";
/// Secret holding the CoinCap key (the bare key, or JSON with `api_key`).
pub const COINCAP_SECRET_ARN: &str = "COINCAP_SECRET_ARN";
/// SNS topic for alerts; absent: alerts go to the log.
pub const TRIBUTARY_ALERT_TOPIC_ARN: &str = "TRIBUTARY_ALERT_TOPIC_ARN";
/// Kinesis stream for market data; absent: the ingest function does not poll markets.
pub const TRIBUTARY_STREAM_NAME: &str = "TRIBUTARY_STREAM_NAME";
/// Glue database the transform registers its tables in; absent: no catalog.
pub const TRIBUTARY_GLUE_DATABASE: &str = "TRIBUTARY_GLUE_DATABASE";
/// The period of the ingest schedule: market polling ends before the next run.
pub const TRIBUTARY_SCHEDULE_PERIOD: &str = "TRIBUTARY_SCHEDULE_PERIOD";

/// Where the local lake lives when no URL is given (relative to the working
/// directory): the embedded default, no AWS needed.
pub const LOCAL_LAKE_DIR: &str = ".tributary/lake";

/// The public Mercado Bitcoin API v4.
pub const DEFAULT_MERCADO_URL: &str = "https://api.mercadobitcoin.net/api/v4";
/// The public CoinCap v3 API.
pub const DEFAULT_COINCAP_URL: &str = "https://rest.coincap.io/v3";

/// The public Frankfurter API of the ECB's reference rates.
pub const DEFAULT_FX_URL: &str = "https://api.frankfurter.dev/v1";
/// The reporting currency when none is set.
pub const DEFAULT_REPORTING_CURRENCY: &str = "GBP";

/// A lake root, parsed once: `s3://bucket/prefix`, `file:///abs/path` or
/// `memory://`, with the variable it came from for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeRoot {
    variable: &'static str,
    example: &'static str,
    url: Url,
}

impl LakeRoot {
    fn parse(variable: &'static str, text: &str, example: &'static str) -> Result<Self> {
        let url = Url::parse(text.trim()).map_err(|e| Error::Setting {
            variable,
            problem: format!("is not a URL ({e})"),
            example,
        })?;
        match url.scheme() {
            "s3" | "file" | "memory" => Ok(Self {
                variable,
                example,
                url,
            }),
            other => Err(Error::Setting {
                variable,
                problem: format!(
                    "has unsupported scheme {other:?} (use s3://, file:/// or memory://)"
                ),
                example,
            }),
        }
    }

    /// The root as a URL string.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The key prefix of an S3 root inside its bucket (`s3://b/p/q` →
    /// `p/q`), which S3 event keys carry; empty for other roots, whose
    /// event keys are relative to the root.
    pub fn key_prefix(&self) -> &str {
        if self.url.scheme() == "s3" {
            self.url.path().trim_matches('/')
        } else {
            ""
        }
    }

    /// Opens the lake; an error names the variable.
    pub fn open(&self) -> Result<Lake> {
        Lake::from_url(self.url.as_str()).map_err(|e| Error::Setting {
            variable: self.variable,
            problem: format!("cannot be opened: {e}"),
            example: self.example,
        })
    }
}

impl std::fmt::Display for LakeRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The market APIs.
#[derive(Debug, Clone)]
pub struct MarketSettings {
    /// Mercado Bitcoin API v4 base URL.
    pub mercado_url: String,
    /// CoinCap v3 base URL.
    pub coincap_url: String,
    /// CoinCap key, when given directly.
    pub coincap_api_key: Option<String>,
}

/// Exchange rates.
#[derive(Debug, Clone)]
pub struct FxSettings {
    /// Exchange-rate API base URL.
    pub url: String,
    /// The currency amounts are converted into (three capital letters).
    pub reporting_currency: String,
}

/// What only the Lambda functions read: secrets, the AWS resources they
/// talk to, and the schedule they run on.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// Secret of the source database, used when its URL variable is absent.
    pub totesys_secret_arn: Option<String>,
    /// Secret of the warehouse database, used when its URL variable is absent.
    pub warehouse_secret_arn: Option<String>,
    /// Secret holding the CoinCap key, used when the key is absent.
    pub coincap_secret_arn: Option<String>,
    /// Where the source database is when its secret does not say.
    pub totesys_endpoint: DbEndpoint,
    /// Where the warehouse database is when its secret does not say.
    pub warehouse_endpoint: DbEndpoint,
    /// SNS topic for alerts.
    pub alert_topic_arn: Option<String>,
    /// Kinesis stream of market data.
    pub stream_name: Option<String>,
    /// Glue database of the processed lake's tables.
    pub glue_database: Option<String>,
    /// The period of the ingest schedule.
    pub schedule_period: Duration,
    /// The folder of source files deployed with the functions; none: no
    /// configured sources.
    pub sources_dir: Option<std::path::PathBuf>,
}

/// A database's address from settings, filling in what a secret lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbEndpoint {
    /// Host name.
    pub host: Option<String>,
    /// The variable that names the host, for errors.
    pub host_variable: &'static str,
    /// Port.
    pub port: Option<u16>,
    /// Database name.
    pub dbname: Option<String>,
}

/// Typed settings for every stage.
#[derive(Debug, Clone)]
pub struct Settings {
    totesys_database_url: Option<String>,
    warehouse_database_url: Option<String>,
    /// Where each database URL came from, for errors (a variable's name).
    pub(crate) totesys_from: &'static str,
    pub(crate) warehouse_from: &'static str,
    /// Raw lake root.
    pub raw_root: LakeRoot,
    /// Processed lake root.
    pub processed_root: LakeRoot,
    /// Lookback window of incremental extracts.
    pub lookback: Duration,
    /// How often the late-commit check runs (zero: every run).
    pub late_check_every: Duration,
    /// Rows per Arrow batch.
    pub batch_rows: usize,
    /// Rows per raw Parquet file.
    pub file_rows: u64,
    /// Rows one ingest run reads at most for first extracts.
    pub ingest_max_rows: u64,
    /// Extra CA certificates for TLS to PostgreSQL.
    pub pg_ca_file: Option<std::path::PathBuf>,
    /// The market APIs.
    pub markets: MarketSettings,
    /// Exchange rates.
    pub fx: FxSettings,
    /// What the Lambda functions read besides.
    pub aws: AwsSettings,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (a flag value, else the environment).
    /// Blank values count as absent.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let local_root = || {
            std::env::current_dir()
                .map(|dir| dir.join(LOCAL_LAKE_DIR))
                .unwrap_or_else(|_| std::path::PathBuf::from("/tmp/tributary/lake"))
        };
        let root = |variable: &'static str, zone: &str, example: &'static str| {
            let text = get(variable)
                .unwrap_or_else(|| format!("file://{}", local_root().join(zone).display()));
            LakeRoot::parse(variable, &text, example)
        };
        Ok(Self {
            totesys_database_url: get(TOTESYS_DATABASE_URL),
            warehouse_database_url: get(WAREHOUSE_DATABASE_URL),
            totesys_from: TOTESYS_DATABASE_URL,
            warehouse_from: WAREHOUSE_DATABASE_URL,
            raw_root: root(TRIBUTARY_RAW_URL, "raw", "s3://my-lake/raw")?,
            processed_root: root(
                TRIBUTARY_PROCESSED_URL,
                "processed",
                "s3://my-lake/processed",
            )?,
            lookback: duration(TRIBUTARY_LOOKBACK, get(TRIBUTARY_LOOKBACK), 600, "10m")?,
            late_check_every: duration(
                TRIBUTARY_LATE_CHECK_EVERY,
                get(TRIBUTARY_LATE_CHECK_EVERY),
                600,
                "10m",
            )?,
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
            ingest_max_rows: positive(
                TRIBUTARY_INGEST_MAX_ROWS,
                get(TRIBUTARY_INGEST_MAX_ROWS),
                5_000_000,
                "5000000",
            )? as u64,
            markets: MarketSettings {
                mercado_url: get(TRIBUTARY_MERCADO_URL)
                    .unwrap_or_else(|| DEFAULT_MERCADO_URL.to_string()),
                coincap_url: get(TRIBUTARY_COINCAP_URL)
                    .unwrap_or_else(|| DEFAULT_COINCAP_URL.to_string()),
                coincap_api_key: get(COINCAP_API_KEY),
            },
            fx: FxSettings {
                url: get(TRIBUTARY_FX_URL).unwrap_or_else(|| DEFAULT_FX_URL.to_string()),
                reporting_currency: currency(
                    TRIBUTARY_REPORTING_CURRENCY,
                    get(TRIBUTARY_REPORTING_CURRENCY),
                )?,
            },
            aws: AwsSettings {
                totesys_secret_arn: get(TOTESYS_SECRET_ARN),
                warehouse_secret_arn: get(WAREHOUSE_SECRET_ARN),
                coincap_secret_arn: get(COINCAP_SECRET_ARN),
                totesys_endpoint: DbEndpoint {
                    host: get(TOTESYS_DB_HOST),
                    host_variable: TOTESYS_DB_HOST,
                    port: port(TOTESYS_DB_PORT, get(TOTESYS_DB_PORT))?,
                    dbname: get(TOTESYS_DB_NAME),
                },
                warehouse_endpoint: DbEndpoint {
                    host: get(WAREHOUSE_DB_HOST),
                    host_variable: WAREHOUSE_DB_HOST,
                    port: port(WAREHOUSE_DB_PORT, get(WAREHOUSE_DB_PORT))?,
                    dbname: get(WAREHOUSE_DB_NAME),
                },
                alert_topic_arn: get(TRIBUTARY_ALERT_TOPIC_ARN),
                stream_name: get(TRIBUTARY_STREAM_NAME),
                glue_database: get(TRIBUTARY_GLUE_DATABASE),
                schedule_period: duration(
                    TRIBUTARY_SCHEDULE_PERIOD,
                    get(TRIBUTARY_SCHEDULE_PERIOD),
                    60,
                    "60s",
                )?,
                sources_dir: get(TRIBUTARY_SOURCES_DIR).map(std::path::PathBuf::from),
            },
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

    /// Whether the source database URL was given (rather than a secret).
    pub fn has_totesys_url(&self) -> bool {
        self.totesys_database_url.is_some()
    }

    /// Whether the warehouse URL was given (rather than a secret).
    pub fn has_warehouse_url(&self) -> bool {
        self.warehouse_database_url.is_some()
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
        self.raw_root.open()
    }

    /// Opens the processed lake.
    pub fn processed_lake(&self) -> Result<Lake> {
        self.processed_root.open()
    }
}

/// An ISO 4217 code (case-insensitive); [`DEFAULT_REPORTING_CURRENCY`] when absent.
fn currency(variable: &'static str, value: Option<String>) -> Result<String> {
    let Some(text) = value else {
        return Ok(DEFAULT_REPORTING_CURRENCY.to_string());
    };
    let code = text.to_ascii_uppercase();
    if tributary_markets::fx::is_currency_code(&code) {
        Ok(code)
    } else {
        Err(Error::Setting {
            variable,
            problem: format!("{text:?} is not a currency code (three letters)"),
            example: "GBP",
        })
    }
}

/// A duration such as `90s` or `10m`; `default_secs` when absent.
fn duration(
    variable: &'static str,
    value: Option<String>,
    default_secs: u64,
    example: &'static str,
) -> Result<Duration> {
    match value {
        None => Ok(Duration::from_secs(default_secs)),
        Some(text) => humantime::parse_duration(&text).map_err(|e| Error::Setting {
            variable,
            problem: format!("is not a duration ({e})"),
            example,
        }),
    }
}

fn positive(
    variable: &'static str,
    value: Option<String>,
    default: usize,
    example: &'static str,
) -> Result<usize> {
    match value {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::Setting {
                variable,
                problem: format!("must be a positive whole number, not {text:?}"),
                example,
            }),
        },
    }
}

fn port(variable: &'static str, value: Option<String>) -> Result<Option<u16>> {
    value
        .map(|text| {
            text.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| Error::Setting {
                    variable,
                    problem: format!("must be a TCP port, not {text:?}"),
                    example: "5432",
                })
        })
        .transpose()
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
        let raw = s.raw_root.as_str();
        assert!(
            raw.starts_with("file:///") && raw.ends_with(".tributary/lake/raw"),
            "{raw}"
        );
        assert_eq!(s.raw_root.key_prefix(), "");
        assert_eq!(s.markets.mercado_url, DEFAULT_MERCADO_URL);
        assert_eq!(s.aws.schedule_period, Duration::from_secs(60));
        assert!(s.aws.stream_name.is_none() && s.markets.coincap_api_key.is_none());
        assert_eq!(s.lookback, Duration::from_secs(600));
        assert_eq!(s.fx.url, DEFAULT_FX_URL);
        assert_eq!(s.fx.reporting_currency, "GBP");
        let usd = settings(&[(TRIBUTARY_REPORTING_CURRENCY, " usd ")]).unwrap();
        assert_eq!(usd.fx.reporting_currency, "USD");
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
            (
                vec![(TRIBUTARY_REPORTING_CURRENCY, "pounds")],
                TRIBUTARY_REPORTING_CURRENCY,
            ),
            (
                vec![(TRIBUTARY_SCHEDULE_PERIOD, "a minute")],
                TRIBUTARY_SCHEDULE_PERIOD,
            ),
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
            (TRIBUTARY_RAW_URL, " s3://lake/raw/prefix "),
            (TRIBUTARY_STREAM_NAME, "trades"),
            (TRIBUTARY_SCHEDULE_PERIOD, "5m"),
            (TRIBUTARY_LOOKBACK, "90s"),
            (TRIBUTARY_FILE_ROWS, "500"),
            (TOTESYS_DATABASE_URL, "postgres://u@h/db"),
        ])
        .unwrap();
        assert_eq!(s.raw_root.as_str(), "s3://lake/raw/prefix");
        assert_eq!(s.raw_root.key_prefix(), "raw/prefix");
        let bucket_root = settings(&[(TRIBUTARY_PROCESSED_URL, "s3://bucket")]).unwrap();
        assert_eq!(bucket_root.processed_root.key_prefix(), "");
        assert_eq!(s.aws.stream_name.as_deref(), Some("trades"));
        assert_eq!(s.aws.schedule_period, Duration::from_secs(300));
        assert_eq!(s.lookback, Duration::from_secs(90));
        assert_eq!(s.file_rows, 500);
        assert_eq!(s.totesys_database_url().unwrap(), "postgres://u@h/db");
    }
}
