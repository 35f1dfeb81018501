//! Alerts published to an SNS topic (email subscribers read them).

use std::{future::Future, pin::Pin};

use tributary_pipeline::alerts::{Alert, Alerts};

use crate::describe;

/// SNS subjects: ASCII, no line breaks, at most 100 characters.
const MAX_SUBJECT: usize = 100;

/// Publishes each alert to one topic. A publish that fails is logged at
/// ERROR (which the ERROR-log alarm also catches) and never fails the stage.
#[derive(Debug, Clone)]
pub struct SnsAlerts {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsAlerts {
    /// Alerts to `topic_arn`.
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

/// The subject line: stage, table and the start of the message, made safe
/// for SNS (ASCII printable, single line, ≤ 100 characters).
pub fn subject(alert: &Alert) -> String {
    let mut text = format!("Tributary {}", alert.stage);
    if let Some(table) = &alert.table {
        text.push_str(&format!(" {table}"));
    }
    text.push_str(": ");
    text.push_str(&alert.message);
    let mut safe: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    if safe.len() > MAX_SUBJECT {
        safe.truncate(MAX_SUBJECT - 3);
        safe.push_str("...");
    }
    safe
}

/// The message body: everything a person needs to act without opening logs.
pub fn body(alert: &Alert) -> String {
    format!(
        "Stage:   {}\nRun:     {}\nTable:   {}\n\nWhat happened:\n{}\n\nWhat to do:\n{}\n\n\
         Logs: CloudWatch log group of the {} function, filtered on run_id {}.\n",
        alert.stage,
        alert.run_id,
        alert.table.as_deref().unwrap_or("-"),
        alert.message,
        alert.action,
        alert.stage,
        alert.run_id,
    )
}

impl Alerts for SnsAlerts {
    fn send<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            tracing::warn!(
                stage = alert.stage,
                run_id = %alert.run_id,
                table = alert.table.as_deref().unwrap_or("-"),
                action = %alert.action,
                "ALERT {}",
                alert.message
            );
            let published = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .subject(subject(alert))
                .message(body(alert))
                .send()
                .await;
            if let Err(error) = published {
                tracing::error!(
                    topic = %self.topic_arn,
                    error = %describe(&error),
                    "the alert above could not be published to SNS"
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(message: &str) -> Alert {
        Alert {
            stage: "load",
            run_id: "20261122T050000000Z-abcdef".into(),
            table: Some("fact_payment".into()),
            message: message.into(),
            action: "the next run retries".into(),
        }
    }

    #[test]
    fn subject_is_short_ascii_and_names_stage_table_and_error() {
        let s = subject(&alert(
            "load failed: cannot connect — “refused”\nsecond line",
        ));
        assert!(
            s.starts_with("Tributary load fact_payment: load failed: cannot connect"),
            "{s}"
        );
        assert!(s.is_ascii() && !s.contains('\n'), "{s}");
        let long = subject(&alert(&"x".repeat(300)));
        assert_eq!(long.len(), MAX_SUBJECT);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn body_names_run_error_and_next_step() {
        let b = body(&alert("load failed: connection refused"));
        for part in [
            "Stage:   load",
            "Run:     20261122T050000000Z-abcdef",
            "Table:   fact_payment",
            "load failed: connection refused",
            "the next run retries",
        ] {
            assert!(b.contains(part), "{part} missing from {b}");
        }
    }
}
