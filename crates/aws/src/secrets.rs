//! Database URLs from Secrets Manager secrets in the shape RDS writes:
//! `{"host": …, "port": 5432, "username": …, "password": …, "dbname": …}`.

use serde::Deserialize;

use crate::{Error, Result, describe};

/// The fields Tributary reads from an RDS-shaped secret.
#[derive(Deserialize)]
pub struct RdsSecret {
    host: String,
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

impl RdsSecret {
    /// Parses the secret string; `secret` names it in errors (never the value).
    pub fn parse(secret: &str, text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Secret {
            secret: secret.to_string(),
            reason: format!(
                "is not an RDS-shaped JSON secret with host, port, username, password and dbname ({})",
                // serde's message names the field, not the value.
                e.to_string().split(" at line").next().unwrap_or_default()
            ),
            retryable: false,
        })
    }

    /// A PostgreSQL URL; `default_db` when the secret has no `dbname`.
    /// TLS is left to the connector, which requires it off loopback.
    pub fn database_url(&self, default_db: &str) -> String {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "postgres://{}:{}@{}:{}/{}",
            encode_userinfo(&self.username),
            encode_userinfo(&self.password),
            host,
            self.port.unwrap_or(5432),
            encode_userinfo(self.dbname.as_deref().unwrap_or(default_db)),
        )
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

/// The database URL held by an RDS-shaped secret.
pub async fn database_url(
    client: &aws_sdk_secretsmanager::Client,
    secret: &str,
    default_db: &str,
) -> Result<String> {
    let text = secret_string(client, secret).await?;
    Ok(RdsSecret::parse(secret, &text)?.database_url(default_db))
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
        let url = secret.database_url("ignored");
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
            secret.database_url("warehouse"),
            "postgres://u:p@[::1]:6543/warehouse"
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
    }
}
