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

/// Where alerts are sent. Sending must not fail the stage: implementations
/// log their own delivery failures.
pub trait Alerts: Send + Sync {
    /// Delivers one alert: a notice within a run (rows quarantined, a market
    /// symbol that failed) that does not fail the run.
    fn send<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    /// Delivers the alert of a failed run; it stays open until the stage
    /// next succeeds (see [`Alerts::recovered`]).
    fn failed<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        self.send(alert)
    }

    /// A run of `stage` succeeded: failures still open are over.
    fn recovered<'a>(&'a self, stage: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let _ = stage;
        Box::pin(async {})
    }
}

impl<A: Alerts + ?Sized> Alerts for std::sync::Arc<A> {
    fn send<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        (**self).send(alert)
    }
    fn failed<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        (**self).failed(alert)
    }
    fn recovered<'a>(&'a self, stage: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        (**self).recovered(stage)
    }
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
}
