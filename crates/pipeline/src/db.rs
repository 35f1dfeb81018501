//! Database connections with errors that say where and why, never the password.
//!
//! A database on this machine (loopback or a Unix socket) may be reached in
//! plain text, as the local stack is. Anything else is reached only over TLS
//! (rustls), verified against the system's roots plus the PEM bundle named
//! by `TRIBUTARY_PG_CA_FILE` (e.g. the Amazon RDS CA bundle).

use std::{net::IpAddr, path::Path, sync::Arc};

use rustls_pki_types::{CertificateDer, pem::PemObject};
use tokio_postgres::{
    Client, Config, NoTls,
    config::{Host, SslMode},
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Error, Result, config::TRIBUTARY_PG_CA_FILE};

/// host:port/dbname of a connection string, for messages.
pub fn describe(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_string());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config.get_dbname().unwrap_or("(default)");
    format!("{host}:{port}/{dbname}")
}

/// Whether every host of `config` is on this machine.
fn on_this_machine(config: &Config) -> bool {
    config.get_hosts().iter().all(|host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    })
}

/// How a connection travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

fn transport(config: &Config, variable: &'static str) -> Result<Transport> {
    match (config.get_ssl_mode(), on_this_machine(config)) {
        (SslMode::Disable, false) => Err(Error::Setting {
            variable,
            problem: format!(
                "points at {} with sslmode=disable, but a database off this machine is reached only over TLS",
                describe(config)
            ),
            example: "postgres://user:password@db.example.com:5432/totesys?sslmode=require",
        }),
        (SslMode::Disable | SslMode::Prefer, true) => Ok(Transport::Plain),
        _ => Ok(Transport::Tls),
    }
}

/// rustls with the system roots and the optional extra CA bundle.
fn tls_connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<_, _>>())
            .map_err(|e| Error::Setting {
                variable: TRIBUTARY_PG_CA_FILE,
                problem: format!(
                    "cannot be read as PEM certificates from {} ({e})",
                    path.display()
                ),
                example: "/opt/rds/global-bundle.pem",
            })?;
        if certs.is_empty() {
            return Err(Error::Setting {
                variable: TRIBUTARY_PG_CA_FILE,
                problem: format!("holds no certificate ({})", path.display()),
                example: "/opt/rds/global-bundle.pem",
            });
        }
        roots.add_parsable_certificates(certs);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Setting {
            variable: TRIBUTARY_PG_CA_FILE,
            problem: format!("TLS could not be set up ({e})"),
            example: "/opt/rds/global-bundle.pem",
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Connects to `url` (taken from `variable`), spawning the connection task.
/// `ca_file` adds trusted CAs for TLS.
pub async fn connect(
    url: &str,
    database: &'static str,
    variable: &'static str,
    ca_file: Option<&Path>,
) -> Result<Client> {
    let mut config: Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| Error::Setting {
            variable,
            problem: format!("is not a valid PostgreSQL URL ({e})"),
            example: "postgres://user:password@localhost:5432/totesys",
        })?;
    let target = describe(&config);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.application_name("tributary");
    let unreachable = |e: tokio_postgres::Error| {
        let refused = e.code().is_some_and(|code| {
            *code == tokio_postgres::error::SqlState::INVALID_PASSWORD
                || *code == tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        });
        if refused {
            Error::Authentication {
                database,
                target: target.clone(),
                variable,
                reason: root_cause(&e),
            }
        } else {
            Error::Unreachable {
                database,
                target: target.clone(),
                variable,
                reason: root_cause(&e),
            }
        }
    };
    let client = match transport(&config, variable)? {
        Transport::Plain => {
            let (client, connection) = config.connect(NoTls).await.map_err(unreachable)?;
            spawn_connection(connection, database, target.clone());
            client
        }
        Transport::Tls => {
            // Never fall back to plain text once TLS is required.
            config.ssl_mode(SslMode::Require);
            let (client, connection) = config
                .connect(tls_connector(ca_file)?)
                .await
                .map_err(unreachable)?;
            spawn_connection(connection, database, target.clone());
            client
        }
    };
    // A client that goes away mid-query (a killed CLI, a Lambda timeout)
    // otherwise leaves its query running until the server next writes to
    // the socket: a half-done load holding its locks and a core for
    // minutes. PostgreSQL 14 and later check the socket while a query runs.
    client
        .batch_execute(&format!(
            "DO $$ BEGIN \
                IF current_setting('server_version_num')::int >= 140000 THEN \
                    PERFORM set_config('client_connection_check_interval', '{CLIENT_CHECK_INTERVAL}', false); \
                END IF; END $$"
        ))
        .await
        .map_err(unreachable)?;
    Ok(client)
}

/// How often the server checks, while a query runs, that this client is
/// still there (PostgreSQL 14+; older servers skip it).
pub const CLIENT_CHECK_INTERVAL: &str = "2s";

fn spawn_connection<F>(connection: F, database: &'static str, target: String)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(database, target = %target, error = %e, "database connection closed");
        }
    });
}

/// The innermost message of an error chain: "Connection refused" rather
/// than "error connecting to server".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    let inner = current.to_string();
    let outer = error.to_string();
    if inner == outer {
        outer
    } else {
        format!("{outer}: {inner}")
    }
}

impl crate::Settings {
    /// Connects to the source database named by the settings.
    pub async fn connect_totesys(&self) -> Result<Client> {
        connect(
            self.totesys_database_url()?,
            "totesys",
            self.totesys_from,
            self.pg_ca_file.as_deref(),
        )
        .await
    }

    /// Connects to the warehouse database named by the settings.
    pub async fn connect_warehouse(&self) -> Result<Client> {
        connect(
            self.warehouse_database_url()?,
            "warehouse",
            self.warehouse_from,
            self.pg_ca_file.as_deref(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Config {
        url.parse().unwrap()
    }

    #[test]
    fn only_databases_on_this_machine_may_go_without_tls() {
        let local = config("postgres://u@127.0.0.1:5432/db");
        assert_eq!(transport(&local, "X").unwrap(), Transport::Plain);
        assert_eq!(
            transport(&config("postgres://u@localhost/db?sslmode=disable"), "X").unwrap(),
            Transport::Plain
        );
        assert_eq!(
            transport(&config("postgres://u@[::1]:5432/db"), "X").unwrap(),
            Transport::Plain
        );
        assert_eq!(
            transport(&config("postgres://u@127.0.0.1/db?sslmode=require"), "X").unwrap(),
            Transport::Tls
        );
        assert_eq!(
            transport(&config("postgres://u@db.example.com/db"), "X").unwrap(),
            Transport::Tls
        );
        let refused = transport(
            &config("postgres://u:pw@db.example.com/db?sslmode=disable"),
            "TOTESYS_DATABASE_URL",
        )
        .unwrap_err()
        .to_string();
        assert!(
            refused.starts_with(
                "TOTESYS_DATABASE_URL points at db.example.com:5432/db with sslmode=disable"
            ),
            "{refused}"
        );
        assert!(!refused.contains("pw@"), "{refused}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_setting_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = tls_connector(Some(&empty)).err().unwrap().to_string();
        assert!(
            err.starts_with("TRIBUTARY_PG_CA_FILE holds no certificate"),
            "{err}"
        );
        assert!(
            tls_connector(None).is_ok(),
            "system roots alone are enough to build a connector"
        );
    }

    #[tokio::test]
    async fn malformed_urls_and_unreachable_hosts_are_one_clear_line() {
        let err = connect(
            "postgresql://u@/db?port=notanumber",
            "totesys",
            "TOTESYS_DATABASE_URL",
            None,
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("TOTESYS_DATABASE_URL is not a valid PostgreSQL URL"),
            "{err}"
        );
        let err = connect(
            "postgres://u:pw@127.0.0.1:1/db?sslmode=require",
            "warehouse",
            "WAREHOUSE_DATABASE_URL",
            None,
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("cannot connect to the warehouse database at 127.0.0.1:1/db (from WAREHOUSE_DATABASE_URL)"), "{err}");
        assert!(!err.contains("pw"), "{err}");
    }

    #[test]
    fn a_missing_ca_file_is_a_setting_error() {
        let err = tls_connector(Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("TRIBUTARY_PG_CA_FILE cannot be read"),
            "{err}"
        );
    }
}
