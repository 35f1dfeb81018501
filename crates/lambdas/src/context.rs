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
    alert_gate::{self, AlertGate, GateStore},
    alerts::{Alerts, LogAlerts},
    catalog::{Catalog, NoCatalog},
    config::{
        COINCAP_API_KEY, COINCAP_SECRET_ARN, DbEndpoint, TOTESYS_DATABASE_URL, TOTESYS_SECRET_ARN,
        TRIBUTARY_ALERT_TOPIC_ARN, WAREHOUSE_DATABASE_URL, WAREHOUSE_SECRET_ARN,
    },
    markets::stream::TradeStream,
    metrics::Metrics,
};

use crate::{Failure, sources::Sources};

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
    /// The configured sources deployed with the code (ingest and load).
    pub sources: Sources,
    totesys: Mutex<Option<Client>>,
    warehouse: Mutex<Option<Client>>,
    pub(crate) secrets_client: aws_sdk_secretsmanager::Client,
    /// The secret the database URL came from, read again when the database
    /// refuses the credentials (a rotated password).
    db_secret: Option<DbSecret>,
    /// Settings with the URL from the secret as read again, once it was.
    reread: Mutex<Option<Settings>>,
}

/// Where a function's database URL came from.
struct DbSecret {
    arn: String,
    variable: &'static str,
    endpoint: DbEndpoint,
    default_db: &'static str,
}

/// Which database a connection goes to.
#[derive(Debug, Clone, Copy)]
enum Database {
    Totesys,
    Warehouse,
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
        let secrets_client = aws_sdk_secretsmanager::Client::new(sdk);
        let mut settings = Settings::from_lookup(&lookup)?;
        // The source files, and the variables they name, as deployed.
        let sources = match function {
            Function::Ingest | Function::Load => {
                Sources::read(settings.aws.sources_dir.as_deref(), &lookup)
            }
            Function::Transform | Function::StreamSink => Sources::default(),
        };
        // Database URLs: the URL variable wins; else the secret, read once
        // here, and errors name the secret's variable.
        let aws = settings.aws.clone();
        let needs = match function {
            Function::Ingest => Some((
                TOTESYS_DATABASE_URL,
                settings.has_totesys_url(),
                TOTESYS_SECRET_ARN,
                aws.totesys_secret_arn.as_deref(),
                "totesys",
                &aws.totesys_endpoint,
            )),
            Function::Load => Some((
                WAREHOUSE_DATABASE_URL,
                settings.has_warehouse_url(),
                WAREHOUSE_SECRET_ARN,
                aws.warehouse_secret_arn.as_deref(),
                "warehouse",
                &aws.warehouse_endpoint,
            )),
            Function::Transform | Function::StreamSink => None,
        };
        let mut db_secret = None;
        if let Some((url_var, false, secret_var, secret, db, endpoint)) = needs {
            let Some(secret) = secret else {
                return Err(Failure {
                    retryable: false,
                    kind: "Setting",
                    message: format!(
                        "neither {url_var} nor {secret_var} is set; example: {secret_var}=arn:aws:secretsmanager:eu-west-2:123456789012:secret:tributary/{db}"
                    ),
                });
            };
            let url = secrets::database_url(&secrets_client, secret, endpoint, db).await?;
            settings = match function {
                Function::Ingest => settings.with_totesys_url(url, secret_var),
                _ => settings.with_warehouse_url(url, secret_var),
            };
            db_secret = Some(DbSecret {
                arn: secret.to_string(),
                variable: secret_var,
                endpoint: endpoint.clone(),
                default_db: db,
            });
        }
        let raw = settings.raw_lake()?;
        let processed = settings.processed_lake()?;
        let alerts: Arc<dyn Alerts> = match &aws.alert_topic_arn {
            // One email per cause, an hourly summary while it lasts, and a
            // recovery notice; the memory of what was sent is in the lake.
            Some(topic) => Arc::new(AlertGate::new(
                SnsAlerts::new(aws_sdk_sns::Client::new(sdk), topic),
                GateStore::new(processed.clone(), function.name()),
                alert_gate::DEFAULT_WINDOW,
            )),
            None => {
                tracing::warn!("{TRIBUTARY_ALERT_TOPIC_ARN} is not set: alerts go to the log only");
                Arc::new(LogAlerts)
            }
        };
        let catalog_enabled = function == Function::Transform && aws.glue_database.is_some();
        let catalog: Arc<dyn Catalog> = match &aws.glue_database {
            Some(db) if function == Function::Transform => {
                Arc::new(GlueCatalog::new(aws_sdk_glue::Client::new(sdk), db))
            }
            _ => Arc::new(NoCatalog),
        };
        let markets = match (function, &aws.stream_name) {
            (Function::Ingest, Some(stream)) => {
                let market_settings = &settings.markets;
                let key = match (&market_settings.coincap_api_key, &aws.coincap_secret_arn) {
                    (Some(key), _) => Some(key.clone()),
                    // CoinCap is optional: a secret not yet filled in (as
                    // every secret is straight after `terraform apply`), or
                    // unreadable, skips CoinCap with a warning instead of
                    // stopping the whole ingest.
                    (None, Some(secret)) => {
                        match secrets::secret_string(&secrets_client, secret).await {
                            Ok(text) => Some(coincap_key(&text)).filter(|k| !k.is_empty()),
                            Err(error) => {
                                tracing::warn!(
                                    %error,
                                    "the CoinCap key cannot be read from {COINCAP_SECRET_ARN}: CoinCap assets are skipped (totesys and trades are not affected)"
                                );
                                None
                            }
                        }
                    }
                    (None, None) => {
                        tracing::warn!(
                            "neither {COINCAP_API_KEY} nor {COINCAP_SECRET_ARN} is set: CoinCap assets are skipped (trades are not affected)"
                        );
                        None
                    }
                };
                let coincap = match key {
                    Some(key) => Some(
                        CoinCap::new(&market_settings.coincap_url, &key, RetryPolicy::default())
                            .map_err(tributary_pipeline::Error::from)?,
                    ),
                    None => None,
                };
                Some(Markets {
                    mercado: MercadoBitcoin::new(
                        &market_settings.mercado_url,
                        RetryPolicy::default(),
                    ),
                    coincap,
                    stream: Arc::new(KinesisStream::new(
                        aws_sdk_kinesis::Client::new(sdk),
                        stream.clone(),
                    )),
                })
            }
            _ => None,
        };
        let schedule_period = aws.schedule_period;
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
            sources,
            totesys: Mutex::new(None),
            warehouse: Mutex::new(None),
            secrets_client,
            db_secret,
            reread: Mutex::new(None),
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
            *slot = Some(self.open(Database::Totesys).await?);
        }
        Ok(slot)
    }

    /// The warehouse connection, opened now if there is none or it died.
    pub async fn warehouse(&self) -> tributary_pipeline::Result<Connection<'_>> {
        let mut slot = self.warehouse.lock().await;
        if !alive(slot.as_ref()).await {
            *slot = Some(self.open(Database::Warehouse).await?);
        }
        Ok(slot)
    }

    /// Opens a connection; when the database refuses the credentials and
    /// they came from a secret, reads the secret again (its password may
    /// have been rotated) and tries once more.
    async fn open(&self, database: Database) -> tributary_pipeline::Result<Client> {
        let current = match self.reread.lock().await.clone() {
            Some(settings) => settings,
            None => self.settings.clone(),
        };
        let connect = |settings: Settings| async move {
            match database {
                Database::Totesys => settings.connect_totesys().await,
                Database::Warehouse => settings.connect_warehouse().await,
            }
        };
        let first = connect(current.clone()).await;
        let (Err(tributary_pipeline::Error::Authentication { .. }), Some(secret)) =
            (&first, &self.db_secret)
        else {
            return first;
        };
        tracing::warn!(
            secret = %secret.arn,
            "the database refused the credentials; reading the secret again (rotated password?)"
        );
        let url = secrets::database_url(
            &self.secrets_client,
            &secret.arn,
            &secret.endpoint,
            secret.default_db,
        )
        .await?;
        let settings = match database {
            Database::Totesys => current.with_totesys_url(url, secret.variable),
            Database::Warehouse => current.with_warehouse_url(url, secret.variable),
        };
        let client = connect(settings.clone()).await?;
        *self.reread.lock().await = Some(settings);
        Ok(client)
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
