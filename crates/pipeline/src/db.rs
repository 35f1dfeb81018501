//! Database connections with errors that say where and why, never the password.

use tokio_postgres::{Client, Config, NoTls, config::Host};

use crate::{Error, Result};

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

/// Connects to `url` (taken from `variable`), spawning the connection task.
pub async fn connect(url: &str, database: &'static str, variable: &'static str) -> Result<Client> {
    let config: Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| Error::Setting {
            variable,
            problem: format!("is not a valid PostgreSQL URL ({e})"),
            example: "postgres://user:password@localhost:5432/totesys",
        })?;
    let target = describe(&config);
    let mut config = config;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.application_name("tributary");
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| Error::Unreachable {
            database,
            target: target.clone(),
            variable,
            reason: root_cause(&e),
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(database, target = %target, error = %e, "database connection closed");
        }
    });
    Ok(client)
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
