//! moto_server helpers for the Lambda tests: buckets (with Object Lock),
//! an SQS queue subscribed to the alert topic, secrets, SDK configuration.
//!
//! S3 and SQS are reached with plain HTTP (moto does not check signatures;
//! a credential scope in the Authorization header routes the request), so
//! the tests need no SDK crates beyond the ones the functions use.

use std::collections::HashMap;

use crate::skip;

/// moto_server's endpoint, or `None` after a skip message.
pub fn moto_endpoint() -> Option<String> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(endpoint) if std::env::var("AWS_ALLOW_HTTP").is_ok() => Some(endpoint),
        _ => {
            skip(
                "no moto_server: AWS_ENDPOINT_URL and AWS_ALLOW_HTTP unset (scripts/local-stack.sh env)",
            );
            None
        }
    }
}

fn region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "eu-west-2".into())
}

/// A fake SigV4 header naming `service`: moto routes by its credential scope.
fn auth(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=testing/20261122/{}/{service}/aws4_request, SignedHeaders=host, Signature=00",
        region()
    )
}

/// A unique name with `prefix`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Creates a bucket; with `object_lock`, versioned and Object Lock enabled
/// (as Terraform creates the raw bucket).
pub async fn create_bucket(endpoint: &str, bucket: &str, object_lock: bool) {
    let client = reqwest::Client::new();
    let mut request = client
        .put(format!("{endpoint}/{bucket}"))
        .header("authorization", auth("s3"))
        .body(format!(
            "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
            region()
        ));
    if object_lock {
        request = request.header("x-amz-bucket-object-lock-enabled", "true");
    }
    let response = request.send().await.expect("create bucket");
    assert!(
        response.status().is_success(),
        "create bucket {bucket}: {:?}",
        response.text().await
    );
}

/// The headers S3 returns for an object, asking for its checksum.
pub async fn head_object(endpoint: &str, bucket: &str, key: &str) -> HashMap<String, String> {
    let response = reqwest::Client::new()
        .head(format!("{endpoint}/{bucket}/{key}"))
        .header("authorization", auth("s3"))
        .header("x-amz-checksum-mode", "ENABLED")
        .send()
        .await
        .expect("head object");
    assert!(
        response.status().is_success(),
        "head {bucket}/{key}: {}",
        response.status()
    );
    response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect()
}

async fn sqs(endpoint: &str, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2012-11-05")];
    form.extend_from_slice(params);
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header("authorization", auth("sqs"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form.iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect::<Vec<_>>()
                .join("&"),
        )
        .send()
        .await
        .expect("sqs call");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "sqs {params:?}: {status} {text}");
    text
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

fn unescape_xml(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#xD;", "\r")
        .replace("&#xA;", "\n")
        .replace("&amp;", "&")
}

/// An SQS queue subscribed to an SNS topic: the test's inbox for alerts.
pub struct AlertInbox {
    endpoint: String,
    queue_url: String,
}

/// One alert as SNS delivered it.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The SNS subject.
    pub subject: String,
    /// The SNS message.
    pub message: String,
}

impl AlertInbox {
    /// Creates a topic and a queue subscribed to it; returns the topic ARN too.
    pub async fn create(endpoint: &str, sdk: &aws_config::SdkConfig) -> (AlertInbox, String) {
        let sns = aws_sdk_sns::Client::new(sdk);
        let topic = sns
            .create_topic()
            .name(unique("tributary-alerts"))
            .send()
            .await
            .expect("create topic")
            .topic_arn
            .expect("topic arn");
        let queue_name = unique("alert-inbox");
        let created = sqs(
            endpoint,
            &[("Action", "CreateQueue"), ("QueueName", &queue_name)],
        )
        .await;
        let queue_url = between(&created, "<QueueUrl>", "</QueueUrl>")
            .first()
            .map(|s| s.to_string())
            .unwrap_or_else(|| panic!("no QueueUrl in {created}"));
        let queue_arn = format!("arn:aws:sqs:{}:123456789012:{queue_name}", region());
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .expect("subscribe queue");
        (
            AlertInbox {
                endpoint: endpoint.to_string(),
                queue_url,
            },
            topic,
        )
    }

    /// Every alert delivered since the last call.
    pub async fn drain(&self) -> Vec<Delivered> {
        let mut out = Vec::new();
        loop {
            let text = sqs(
                &self.endpoint,
                &[
                    ("Action", "ReceiveMessage"),
                    ("QueueUrl", &self.queue_url),
                    ("MaxNumberOfMessages", "10"),
                ],
            )
            .await;
            let messages = between(&text, "<Message>", "</Message>");
            if messages.is_empty() {
                return out;
            }
            for message in messages {
                let body = between(message, "<Body>", "</Body>");
                let handle = between(message, "<ReceiptHandle>", "</ReceiptHandle>");
                let envelope: serde_json::Value =
                    serde_json::from_str(&unescape_xml(body.first().expect("message body")))
                        .expect("SNS envelope");
                out.push(Delivered {
                    subject: envelope["Subject"].as_str().unwrap_or_default().to_string(),
                    message: envelope["Message"].as_str().unwrap_or_default().to_string(),
                });
                if let Some(handle) = handle.first() {
                    sqs(
                        &self.endpoint,
                        &[
                            ("Action", "DeleteMessage"),
                            ("QueueUrl", &self.queue_url),
                            ("ReceiptHandle", &unescape_xml(handle)),
                        ],
                    )
                    .await;
                }
            }
        }
    }
}

/// Stores an RDS-shaped secret for the database at `url`; returns its ARN.
pub async fn rds_secret(sdk: &aws_config::SdkConfig, name: &str, url: &str) -> String {
    let parsed: tokio_postgres::Config = url.parse().expect("database url");
    let host = match &parsed.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let secret = serde_json::json!({
        "engine": "postgres",
        "host": host,
        "port": parsed.get_ports().first().copied().unwrap_or(5432),
        "username": parsed.get_user().unwrap_or("postgres"),
        "password": parsed.get_password().map(|p| String::from_utf8_lossy(p).to_string()).unwrap_or_default(),
        "dbname": parsed.get_dbname().unwrap_or_default(),
    });
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(unique(name))
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("secret arn")
}
