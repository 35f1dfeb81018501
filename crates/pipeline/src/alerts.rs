//! Alerts: what a person must hear about, and where it goes.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

/// One thing a person should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The stage that raised it (`ingest`, `transform`, `load`).
    pub stage: &'static str,
    /// The run it happened in.
    pub run_id: String,
    /// The table concerned, if one.
    pub table: Option<String>,
    /// What happened.
    pub message: String,
    /// What to do about it.
    pub action: String,
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} {}]", self.stage, self.run_id)?;
        if let Some(table) = &self.table {
            write!(f, " {table}:")?;
        }
        write!(f, " {} — {}", self.message, self.action)
    }
}

/// What to tell a person when a stage run fails, by whether retrying helps.
pub struct FailureAdvice {
    /// When the next run may succeed on its own.
    pub retryable: &'static str,
    /// When a person must act first.
    pub needs_fix: &'static str,
}

/// Sends the alert for a failed stage run.
pub async fn stage_failed(
    alerts: &dyn Alerts,
    stage: &'static str,
    run_id: &str,
    error: &crate::Error,
    advice: FailureAdvice,
) {
    let action = if error.is_retryable() {
        advice.retryable
    } else {
        advice.needs_fix
    };
    alerts
        .send(&Alert {
            stage,
            run_id: run_id.to_string(),
            table: None,
            message: format!("{stage} failed: {error}"),
            action: action.to_string(),
        })
        .await;
}

/// Sends the alert for a stage that could not start because its database
/// connection could not be opened (the stage functions take an open one).
pub async fn cannot_connect(alerts: &dyn Alerts, stage: &'static str, error: &crate::Error) {
    let advice = FailureAdvice {
        retryable: "nothing was done; the next scheduled run retries. Check the database and its network path if this repeats",
        needs_fix: "fix the setting or secret named above",
    };
    stage_failed(alerts, stage, "-", error, advice).await;
}

/// Where alerts are sent. Sending must not fail the stage: implementations
/// log their own delivery failures.
pub trait Alerts: Send + Sync {
    /// Delivers one alert.
    fn send<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Local runs: alerts become WARN log lines.
#[derive(Debug, Default, Clone)]
pub struct LogAlerts;

impl Alerts for LogAlerts {
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
        })
    }
}

/// Keeps alerts in memory (and logs them), for tests and for reports.
#[derive(Debug, Default, Clone)]
pub struct RecordedAlerts {
    sent: Arc<Mutex<Vec<Alert>>>,
}

impl RecordedAlerts {
    /// Everything sent so far.
    pub fn sent(&self) -> Vec<Alert> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Alerts for RecordedAlerts {
    fn send<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            LogAlerts.send(alert).await;
            if let Ok(mut sent) = self.sent.lock() {
                sent.push(alert.clone());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn alerts_name_stage_run_table_error_and_action() {
        let alert = Alert {
            stage: "load",
            run_id: "20260101T000000000Z-abcdef".into(),
            table: Some("fact_payment".into()),
            message: "load failed: connection reset".into(),
            action: "the next run retries".into(),
        };
        assert_eq!(
            alert.to_string(),
            "[load 20260101T000000000Z-abcdef] fact_payment: load failed: connection reset — the next run retries"
        );
        let recorded = RecordedAlerts::default();
        recorded.send(&alert).await;
        LogAlerts.send(&alert).await;
        assert_eq!(recorded.sent(), vec![alert]);
    }

    #[tokio::test]
    async fn failure_advice_depends_on_whether_a_retry_can_help() {
        let recorded = RecordedAlerts::default();
        let advice = || FailureAdvice {
            retryable: "retry later",
            needs_fix: "fix it",
        };
        let transient = crate::Error::Stream("timeout".into());
        let permanent = crate::Error::UnknownTable("x".into(), "a, b".into());
        stage_failed(&recorded, "ingest", "r1", &transient, advice()).await;
        stage_failed(&recorded, "ingest", "r2", &permanent, advice()).await;
        let sent = recorded.sent();
        assert_eq!(
            (sent[0].action.as_str(), sent[1].action.as_str()),
            ("retry later", "fix it")
        );
        assert!(
            sent[0]
                .message
                .starts_with("ingest failed: trade stream: timeout")
        );
    }
}
