//! What a function builds once per cold start and reuses while warm: the
//! settings (database URLs resolved from Secrets Manager), the lakes, the
//! AWS clients behind the pipeline's traits, and database connections that
//! are re-opened when they die.

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::Client;
use tributary_aws::{
    emf::EmfMetrics, glue::GlueCatalog, kinesis::KinesisStream, secrets, sns::SnsAlerts,
};
use tributary_lake::Lake;
use tributary_markets::{coincap::CoinCap, http::RetryPolicy, mercado::MercadoBitcoin};
use tributary_pipeline::{
    Settings,
    alerts::{Alerts, LogAlerts},
    catalog::{Catalog, NoCatalog},
    metrics::Metrics,
    settings::{TOTESYS_DATABASE_URL, WAREHOUSE_DATABASE_URL},
    stream::TradeStream,
};

use crate::Failure;

/// Secrets Manager secret of the source database (RDS JSON shape).
pub const TOTESYS_SECRET_ARN: &str = "TOTESYS_SECRET_ARN";
/// Secrets Manager secret of the warehouse database (RDS JSON shape).
pub const WAREHOUSE_SECRET_ARN: &str = "WAREHOUSE_SECRET_ARN";
/// SNS topic for alerts; absent: alerts go to the log.
pub const TRIBUTARY_ALERT_TOPIC_ARN: &str = "TRIBUTARY_ALERT_TOPIC_ARN";
/// Kinesis stream for market data; absent: the ingest function does not poll markets.
pub const TRIBUTARY_STREAM_NAME: &str = "TRIBUTARY_STREAM_NAME";
/// Glue database the transform registers its tables in; absent: no catalog.
pub const TRIBUTARY_GLUE_DATABASE: &str = "TRIBUTARY_GLUE_DATABASE";
/// Mercado Bitcoin API base URL.
pub const TRIBUTARY_MERCADO_URL: &str = "TRIBUTARY_MERCADO_URL";
/// CoinCap v3 API base URL.
pub const TRIBUTARY_COINCAP_URL: &str = "TRIBUTARY_COINCAP_URL";
/// CoinCap key, or the secret holding it.
pub const COINCAP_API_KEY: &str = "COINCAP_API_KEY";
/// Secret holding the CoinCap key (the bare key, or JSON with `api_key`).
pub const COINCAP_SECRET_ARN: &str = "COINCAP_SECRET_ARN";
/// The period of the ingest schedule: market polling ends before the next run.
pub const TRIBUTARY_SCHEDULE_PERIOD: &str = "TRIBUTARY_SCHEDULE_PERIOD";

/// Which of the four functions this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Extracts totesys (and polls the markets into Kinesis).
    Ingest,
    /// Raw → processed, and the Glue catalog.
    Transform,
    /// Processed → warehouse.
    Load,
    /// Kinesis → raw.
    StreamSink,
}

impl Function {
    /// The binary's name.
    pub fn name(self) -> &'static str {
        match self {
            Function::Ingest => "ingest",
            Function::Transform => "transform",
            Function::Load => "load",
            Function::StreamSink => "stream-sink",
        }
    }
}

/// The market clients of the ingest function.
pub struct Markets {
    /// Mercado Bitcoin.
    pub mercado: MercadoBitcoin,
    /// CoinCap, when a key is configured.
    pub coincap: Option<CoinCap>,
    /// The Kinesis producer.
    pub stream: Arc<dyn TradeStream>,
}

/// Everything a warm function reuses.
pub struct Context {
    /// Which function.
    pub function: Function,
    /// Settings, with database URLs resolved from secrets.
    pub settings: Settings,
    /// Raw lake.
    pub raw: Lake,
    /// Processed lake.
    pub processed: Lake,
    /// Where alerts go.
    pub alerts: Arc<dyn Alerts>,
    /// Where figures go.
    pub metrics: Arc<dyn Metrics>,
    /// The catalog the transform registers tables in.
    pub catalog: Arc<dyn Catalog>,
    /// Market polling (ingest, when a stream is configured).
    pub markets: Option<Markets>,
    /// Whether a real catalog is configured (the transform keeps a log of
    /// what it registered only then).
    pub catalog_enabled: bool,
    /// The period of the ingest schedule.
    pub schedule_period: std::time::Duration,
    totesys: Mutex<Option<Client>>,
    warehouse: Mutex<Option<Client>>,
}

/// A guard on a live connection.
pub type Connection<'a> = MutexGuard<'a, Option<Client>>;

impl Context {
    /// Reads the process environment.
    pub async fn from_env(
        function: Function,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, Failure> {
        Self::from_lookup(function, sdk, |name| std::env::var(name).ok()).await
    }

    /// Builds the context from `lookup` (the environment, or a test's map).
    pub async fn from_lookup(
        function: Function,
        sdk: &aws_config::SdkConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Failure> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let secrets_client = aws_sdk_secretsmanager::Client::new(sdk);
        // Database URLs: the URL variable wins; else the secret, read once
        // here, and errors name the secret's variable.
        let mut settings = Settings::from_lookup(get)?;
        let needs = match function {
            Function::Ingest => Some((TOTESYS_DATABASE_URL, TOTESYS_SECRET_ARN, "totesys")),
            Function::Load => Some((WAREHOUSE_DATABASE_URL, WAREHOUSE_SECRET_ARN, "warehouse")),
            Function::Transform | Function::StreamSink => None,
        };
        if let Some((url_var, secret_var, db)) =
            needs.filter(|(url_var, ..)| get(url_var).is_none())
        {
            let Some(secret) = get(secret_var) else {
                return Err(Failure {
                    retryable: false,
                    kind: "Setting",
                    message: format!(
                        "neither {url_var} nor {secret_var} is set; example: {secret_var}=arn:aws:secretsmanager:eu-west-2:123456789012:secret:tributary/{db}"
                    ),
                });
            };
            let url = secrets::database_url(&secrets_client, &secret, db).await?;
            settings = match function {
                Function::Ingest => settings.with_totesys_url(url, secret_var),
                _ => settings.with_warehouse_url(url, secret_var),
            };
        }
        let raw = settings.raw_lake()?;
        let processed = settings.processed_lake()?;
        let alerts: Arc<dyn Alerts> = match get(TRIBUTARY_ALERT_TOPIC_ARN) {
            Some(topic) => Arc::new(SnsAlerts::new(aws_sdk_sns::Client::new(sdk), topic)),
            None => {
                tracing::warn!("{TRIBUTARY_ALERT_TOPIC_ARN} is not set: alerts go to the log only");
                Arc::new(LogAlerts)
            }
        };
        let schedule_period = match get(TRIBUTARY_SCHEDULE_PERIOD) {
            Some(text) => humantime::parse_duration(text.trim()).map_err(|e| Failure {
                retryable: false,
                kind: "Setting",
                message: format!(
                    "{TRIBUTARY_SCHEDULE_PERIOD} is not a duration ({e}); example: {TRIBUTARY_SCHEDULE_PERIOD}=60s"
                ),
            })?,
            None => std::time::Duration::from_secs(60),
        };
        let catalog_enabled =
            function == Function::Transform && get(TRIBUTARY_GLUE_DATABASE).is_some();
        let catalog: Arc<dyn Catalog> = match get(TRIBUTARY_GLUE_DATABASE) {
            Some(db) if function == Function::Transform => {
                Arc::new(GlueCatalog::new(aws_sdk_glue::Client::new(sdk), db))
            }
            _ => Arc::new(NoCatalog),
        };
        let markets = match (function, get(TRIBUTARY_STREAM_NAME)) {
            (Function::Ingest, Some(stream)) => {
                let mercado_url = get(TRIBUTARY_MERCADO_URL)
                    .unwrap_or_else(|| "https://api.mercadobitcoin.net/api/v4".to_string());
                let coincap_url = get(TRIBUTARY_COINCAP_URL)
                    .unwrap_or_else(|| "https://rest.coincap.io/v3".to_string());
                let key = match (get(COINCAP_API_KEY), get(COINCAP_SECRET_ARN)) {
                    (Some(key), _) => Some(key),
                    (None, Some(secret)) => Some(coincap_key(
                        &secrets::secret_string(&secrets_client, &secret).await?,
                    )),
                    (None, None) => {
                        tracing::warn!(
                            "neither {COINCAP_API_KEY} nor {COINCAP_SECRET_ARN} is set: CoinCap assets are skipped (trades are not affected)"
                        );
                        None
                    }
                };
                let coincap = match key {
                    Some(key) => Some(
                        CoinCap::new(&coincap_url, &key, RetryPolicy::default())
                            .map_err(tributary_pipeline::Error::from)?,
                    ),
                    None => None,
                };
                Some(Markets {
                    mercado: MercadoBitcoin::new(&mercado_url, RetryPolicy::default()),
                    coincap,
                    stream: Arc::new(KinesisStream::new(
                        aws_sdk_kinesis::Client::new(sdk),
                        stream,
                    )),
                })
            }
            _ => None,
        };
        Ok(Self {
            function,
            settings,
            raw,
            processed,
            alerts,
            metrics: Arc::new(EmfMetrics::default()),
            catalog,
            markets,
            catalog_enabled,
            schedule_period,
            totesys: Mutex::new(None),
            warehouse: Mutex::new(None),
        })
    }

    /// Replaces where figures go (tests record them).
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The source connection, opened now if there is none or it died.
    pub async fn totesys(&self) -> tributary_pipeline::Result<Connection<'_>> {
        let mut slot = self.totesys.lock().await;
        if !alive(slot.as_ref()).await {
            *slot = Some(self.settings.connect_totesys().await?);
        }
        Ok(slot)
    }

    /// The warehouse connection, opened now if there is none or it died.
    pub async fn warehouse(&self) -> tributary_pipeline::Result<Connection<'_>> {
        let mut slot = self.warehouse.lock().await;
        if !alive(slot.as_ref()).await {
            *slot = Some(self.settings.connect_warehouse().await?);
        }
        Ok(slot)
    }
}

/// Whether a kept connection still answers. A frozen Lambda environment
/// can thaw with a socket that a proxy or failover dropped silently, which
/// `is_closed` cannot see: an empty query (one round trip) does.
async fn alive(client: Option<&Client>) -> bool {
    let Some(client) = client else { return false };
    if client.is_closed() {
        return false;
    }
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), client.simple_query("")).await,
        Ok(Ok(_))
    )
}

/// The CoinCap key from a secret string: the bare key or `{"api_key": …}`.
fn coincap_key(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            v.get("api_key")
                .and_then(|k| k.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coincap_key_is_bare_or_json() {
        assert_eq!(coincap_key(" abc \n"), "abc");
        assert_eq!(coincap_key(r#"{"api_key":"xyz"}"#), "xyz");
    }
}
