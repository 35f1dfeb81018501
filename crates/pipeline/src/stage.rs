//! The stage runner: every stage run gets a run id, and a failed run alerts
//! once, naming the stage, the run and the error, with the stage's own
//! advice for a person. Stages are only their work: they call
//! [`Stage::run`] and never build a failure alert themselves.

use std::future::Future;

use tributary_lake::RunId;

use crate::{
    Error, Result,
    alerts::{Alert, Alerts},
};

/// Processed rows one load run takes on when more are pending: it stops
/// after the manifest that reaches this, and the rest is left for the next
/// run, so every run fits its function's time however large a first load or
/// backfill is (the ingest bounds its manifests with
/// `TRIBUTARY_INGEST_MAX_ROWS`, the transform its runs with
/// `SEVERAL_MANIFESTS_ROWS`).
pub const ROWS_PER_RUN: u64 = 5_000_000;

/// A name for the life of the process: stage names of things configured
/// at run time (a source's), and the variable and database names
/// connection errors quote, are `&'static str`. Each distinct name is kept
/// once (a handful per deployment).
pub fn intern(text: &str) -> &'static str {
    static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(name) = names.get(text) {
        return name;
    }
    let name: &'static str = Box::leak(text.to_string().into_boxed_str());
    names.insert(name);
    name
}

/// A stage: its name in logs, alerts and metrics, and what a person should
/// do when a run fails, by whether the next run can succeed on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// `ingest`, `transform`, `load`, `stream-sink`.
    pub name: &'static str,
    /// Advice when a retry may help (the error is retryable).
    pub retryable: &'static str,
    /// Advice when a person must act first.
    pub needs_fix: &'static str,
}

/// Advice when a stage could not open its database connection.
const CANNOT_CONNECT_RETRYABLE: &str = "nothing was done; the next scheduled run retries. Check the database and its network path if this repeats";
const CANNOT_CONNECT_NEEDS_FIX: &str = "fix the setting or secret named above";

impl Stage {
    /// Runs `work` under a new run id; a failure is alerted before it is
    /// returned.
    pub async fn run<T, F, Fut>(&self, alerts: &dyn Alerts, work: F) -> Result<T>
    where
        F: FnOnce(RunId) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let run_id = RunId::now();
        let result = work(run_id.clone()).await;
        match &result {
            Ok(_) => alerts.recovered(self.name).await,
            Err(error) => self.failed(alerts, run_id.as_str(), error).await,
        }
        result
    }

    /// Logs a failed run of this stage at ERROR (one line: stage, run, cause,
    /// advice) and alerts it (`run_id` is `-` when no run began).
    pub async fn failed(&self, alerts: &dyn Alerts, run_id: &str, error: &Error) {
        let action = if error.is_retryable() {
            self.retryable
        } else {
            self.needs_fix
        };
        tracing::error!(
            stage = self.name,
            run_id,
            retryable = error.is_retryable(),
            advice = action,
            "{} failed: {error}",
            self.name
        );
        note_failure_logged();
        alerts
            .failed(&Alert {
                stage: self.name,
                run_id: run_id.to_string(),
                table: None,
                message: format!("{} failed: {error}", self.name),
                action: action.to_string(),
            })
            .await;
    }

    /// Alerts a run of this stage that could not start because its database
    /// connection could not be opened (stages take an open connection).
    pub async fn cannot_connect(&self, alerts: &dyn Alerts, error: &Error) {
        let stage = Stage {
            retryable: CANNOT_CONNECT_RETRYABLE,
            needs_fix: CANNOT_CONNECT_NEEDS_FIX,
            ..*self
        };
        stage.failed(alerts, "-", error).await;
    }
}

tokio::task_local! {
    static FAILURES_LOGGED: std::cell::Cell<u32>;
}

fn note_failure_logged() {
    let _ = FAILURES_LOGGED.try_with(|n| n.set(n.get() + 1));
}

/// Runs `work` (one invocation) and tells whether a stage inside it already
/// logged its failure at ERROR, so the caller logs a failure only once.
pub async fn logging_failures<T>(work: impl Future<Output = T>) -> (T, bool) {
    FAILURES_LOGGED
        .scope(std::cell::Cell::new(0), async {
            let out = work.await;
            let logged = FAILURES_LOGGED.with(|n| n.get() > 0);
            (out, logged)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::RecordedAlerts;

    const STAGE: Stage = Stage {
        name: "ingest",
        retryable: "retry later",
        needs_fix: "fix it",
    };

    #[tokio::test]
    async fn a_failed_run_alerts_once_with_advice_by_whether_a_retry_can_help() {
        let recorded = RecordedAlerts::default();
        let transient = STAGE
            .run(&recorded, |_| async {
                Err::<(), _>(Error::Unreachable {
                    database: "totesys",
                    target: "db:5432/totesys".into(),
                    variable: "TOTESYS_DATABASE_URL",
                    reason: "timed out".into(),
                })
            })
            .await;
        assert!(transient.is_err());
        let permanent = STAGE
            .run(&recorded, |_| async {
                Err::<(), _>(Error::UnknownTable("x".into(), "a, b".into()))
            })
            .await;
        assert!(permanent.is_err());
        let ok = STAGE
            .run(&recorded, |run_id| async move { Ok(run_id) })
            .await;
        assert!(ok.is_ok());
        let sent = recorded.sent();
        assert_eq!(sent.len(), 2, "one alert per failed run, none for success");
        assert_eq!(
            (sent[0].action.as_str(), sent[1].action.as_str()),
            ("retry later", "fix it")
        );
        assert!(
            sent[0]
                .message
                .starts_with("ingest failed: cannot connect to the totesys database"),
            "{}",
            sent[0].message
        );
        assert_ne!(sent[0].run_id, sent[1].run_id, "each run has its own id");
    }

    #[tokio::test]
    async fn a_failure_is_noted_as_logged_once_and_a_success_recovers() {
        let recorded = RecordedAlerts::default();
        let (result, logged) = logging_failures(STAGE.run(&recorded, |_| async {
            Err::<(), _>(Error::UnknownTable("x".into(), "a".into()))
        }))
        .await;
        assert!(result.is_err());
        assert!(
            logged,
            "the stage logged its failure: the edge must not log it again"
        );
        let (result, logged) =
            logging_failures(STAGE.run(&recorded, |_| async { Ok::<_, Error>(()) })).await;
        assert!(result.is_ok());
        assert!(!logged);
        let (_, logged) = logging_failures(async { Err::<(), &str>("bad event") }).await;
        assert!(!logged, "a failure outside a stage is for the edge to log");
    }

    #[tokio::test]
    async fn cannot_connect_alerts_without_a_run_and_says_the_next_run_retries() {
        let recorded = RecordedAlerts::default();
        let error = Error::Unreachable {
            database: "warehouse",
            target: "db:5432/warehouse".into(),
            variable: "WAREHOUSE_DATABASE_URL",
            reason: "refused".into(),
        };
        STAGE.cannot_connect(&recorded, &error).await;
        let sent = recorded.sent();
        assert_eq!(sent[0].run_id, "-");
        assert!(sent[0].action.contains("the next scheduled run retries"));
    }
}
