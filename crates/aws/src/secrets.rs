//! Database URLs from Secrets Manager secrets in the shapes AWS hands out:
//! the full RDS JSON `{"host": …, "port": 5432, "username": …, "password":
//! …, "dbname": …}`, or the RDS-managed master secret, which holds only
//! `username` and `password` (host, port and database then come from
//! settings that Terraform fills in).

use serde::Deserialize;
use tributary_pipeline::config::DbEndpoint;

use crate::{Error, Result, describe};

/// The fields Tributary reads from an RDS-shaped secret.
#[derive(Deserialize)]
pub struct RdsSecret {
    #[serde(default)]
    host: Option<String>,
    #[serde(default, deserialize_with = "port_from_number_or_string")]
    port: Option<u16>,
    username: String,
    password: String,
    #[serde(default, alias = "database")]
    dbname: Option<String>,
}

// A secret that is printed must not show the password.
impl std::fmt::Debug for RdsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdsSecret")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"***")
            .field("dbname", &self.dbname)
            .finish()
    }
}

fn port_from_number_or_string<'de, D>(d: D) -> std::result::Result<Option<u16>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    match Option::<Port>::deserialize(d)? {
        None => Ok(None),
        Some(Port::Number(n)) => Ok(Some(n)),
        Some(Port::Text(t)) => t.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Characters kept as they are in a URL's user info; everything else is
/// percent-encoded (RFC 3986 unreserved).
fn encode_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What serde says about a secret, without any value from it: "missing
/// field" and "unknown field" name fields only; a wrong type or value would
/// quote the value (a numeric password), so it is said without it.
fn safe_reason(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = text.split(" at line").next().unwrap_or_default();
    if text.starts_with("missing field") || text.starts_with("unknown field") {
        text.to_string()
    } else if error.is_syntax() || error.is_eof() {
        "not valid JSON".to_string()
    } else {
        "a field has the wrong type, e.g. a number where text is expected".to_string()
    }
}

impl RdsSecret {
    /// Parses the secret string; `secret` names it in errors (never the value).
    pub fn parse(secret: &str, text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Secret {
            secret: secret.to_string(),
            reason: format!(
                "is not an RDS-shaped JSON secret with username and password (and optionally host, port, dbname) ({})",
                safe_reason(&e)
            ),
            retryable: false,
        })
    }

    /// A PostgreSQL URL. What the secret lacks comes from `endpoint`, then
    /// defaults (port 5432, database `default_db`); a host is required from
    /// one or the other. TLS is left to the connector, which requires it off
    /// loopback.
    pub fn database_url(
        &self,
        secret: &str,
        endpoint: &DbEndpoint,
        default_db: &str,
    ) -> Result<String> {
        let host = self
            .host
            .clone()
            .filter(|h| !h.trim().is_empty())
            .or_else(|| endpoint.host.clone())
            .ok_or_else(|| Error::Secret {
                secret: secret.to_string(),
                reason: format!(
                    "has no host (an RDS-managed secret holds only the username and password): set {} to the database's address (Terraform does this from its variables)",
                    endpoint.host_variable
                ),
                retryable: false,
            })?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let dbname = self
            .dbname
            .as_deref()
            .or(endpoint.dbname.as_deref())
            .unwrap_or(default_db);
        Ok(format!(
            "postgres://{}:{}@{}:{}/{}",
            encode_userinfo(&self.username),
            encode_userinfo(&self.password),
            host,
            self.port.or(endpoint.port).unwrap_or(5432),
            encode_userinfo(dbname),
        ))
    }
}

/// Reads a secret's string value.
pub async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> Result<String> {
    let output = client
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| Error::Secret {
            secret: secret.to_string(),
            reason: describe(&e),
            retryable: crate::sdk_retryable(&e),
        })?;
    output
        .secret_string()
        .map(str::to_string)
        .ok_or_else(|| Error::Secret {
            secret: secret.to_string(),
            reason: "has no string value (binary secrets are not supported)".to_string(),
            retryable: false,
        })
}

/// The database URL held by an RDS-shaped secret, completed by `endpoint`.
pub async fn database_url(
    client: &aws_sdk_secretsmanager::Client,
    secret: &str,
    endpoint: &DbEndpoint,
    default_db: &str,
) -> Result<String> {
    let text = secret_string(client, secret).await?;
    RdsSecret::parse(secret, &text)?.database_url(secret, endpoint, default_db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_secret_becomes_a_url_with_escaped_credentials() {
        let secret = RdsSecret::parse(
            "arn:x",
            r#"{"engine":"postgres","host":"db.example.internal","port":5432,
                "username":"tributary","password":"p@ss:w/rd%?","dbname":"totesys"}"#,
        )
        .unwrap();
        let url = secret
            .database_url("s", &DbEndpoint::default(), "ignored")
            .unwrap();
        assert_eq!(
            url,
            "postgres://tributary:p%40ss%3Aw%2Frd%25%3F@db.example.internal:5432/totesys"
        );
        // The driver reads the credentials back exactly.
        let config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"p@ss:w/rd%?"[..]));
        assert_eq!(config.get_dbname(), Some("totesys"));
        assert!(
            !format!("{secret:?}").contains("p@ss"),
            "Debug must hide the password"
        );
    }

    #[test]
    fn port_as_text_and_missing_dbname_are_accepted() {
        let secret = RdsSecret::parse(
            "s",
            r#"{"host":"::1","port":"6543","username":"u","password":"p"}"#,
        )
        .unwrap();
        assert_eq!(
            secret
                .database_url("s", &DbEndpoint::default(), "warehouse")
                .unwrap(),
            "postgres://u:p@[::1]:6543/warehouse"
        );
    }

    #[test]
    fn an_rds_managed_secret_takes_host_port_and_database_from_settings() {
        let managed =
            RdsSecret::parse("arn:m", r#"{"username":"admin","password":"x/y"}"#).unwrap();
        let endpoint = DbEndpoint {
            host: Some("db.cluster.eu-west-2.rds.amazonaws.com".to_string()),
            host_variable: "WAREHOUSE_DB_HOST",
            port: Some(5433),
            dbname: Some("dw".to_string()),
        };
        assert_eq!(
            managed
                .database_url("arn:m", &endpoint, "warehouse")
                .unwrap(),
            "postgres://admin:x%2Fy@db.cluster.eu-west-2.rds.amazonaws.com:5433/dw"
        );
        let err = managed
            .database_url(
                "arn:m",
                &DbEndpoint {
                    host_variable: "WAREHOUSE_DB_HOST",
                    ..DbEndpoint::default()
                },
                "warehouse",
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("arn:m") && err.contains("set WAREHOUSE_DB_HOST"),
            "{err}"
        );
        assert!(!err.contains("x/y"), "{err}");
        // The secret's own fields win over the settings.
        let full = RdsSecret::parse(
            "arn:f",
            r#"{"host":"h","port":6000,"username":"u","password":"p","dbname":"d"}"#,
        )
        .unwrap();
        assert_eq!(
            full.database_url("arn:f", &endpoint, "warehouse").unwrap(),
            "postgres://u:p@h:6000/d"
        );
    }

    #[test]
    fn a_secret_without_the_rds_fields_is_a_clear_error_without_its_value() {
        let err = RdsSecret::parse(
            "arn:aws:secretsmanager:eu-west-2:1:secret:wh",
            r#"{"user":"u","password":"hunter2"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("arn:aws:secretsmanager:eu-west-2:1:secret:wh"),
            "{err}"
        );
        assert!(err.contains("RDS-shaped"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        // A numeric password is never quoted back, whatever serde says.
        let err = RdsSecret::parse("s", r#"{"username":"u","password":98765432}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("98765432"), "{err}");
        assert!(err.contains("wrong type"), "{err}");
        let err = RdsSecret::parse("s", "{not json 98765432")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("98765432") && err.contains("not valid JSON"),
            "{err}"
        );
    }
}
