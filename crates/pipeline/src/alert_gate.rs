//! Alerts that arrive once, not a thousand times.
//!
//! [`AlertGate`] stands in front of the real channel (SNS) and remembers, in
//! one small object of the lake, which causes it has already told a person
//! about. Per cause (stage, table and the message with its numbers blanked):
//!
//! - the first alert goes out at once;
//! - repeats within the window are counted, not sent;
//! - the first repeat after the window goes out as a summary with the count;
//! - a failed run's cause stays open until the stage next succeeds, which
//!   sends one recovery notice; a notice (rows quarantined, a market symbol
//!   that failed) closes by itself when it stops repeating for a window.
//!
//! The state lives where a Lambda can keep it between invocations: the lake.
//! Two invocations racing on it can at worst send one alert twice; nothing
//! is lost. If the state cannot be read or written the alert is sent anyway.

use std::{collections::BTreeMap, future::Future, pin::Pin, time::Duration};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tributary_lake::Lake;

use crate::alerts::{Alert, Alerts};

/// Default quiet window per cause.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// Characters of a message that make its cause (the rest is detail).
const CAUSE_CHARS: usize = 240;

/// One cause a person has been told about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OpenCause {
    stage: String,
    table: Option<String>,
    /// Whether it is a failed run (closed by the stage's next success).
    failure: bool,
    first_at: DateTime<Utc>,
    last_sent_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    /// Occurrences since the last alert sent.
    unsent: u64,
    /// Occurrences since the first.
    total: u64,
    first_message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct GateState {
    open: BTreeMap<String, OpenCause>,
}

/// Where [`AlertGate`] keeps its state, and its clock.
pub struct GateStore {
    lake: Lake,
    key: String,
    now: Box<dyn Fn() -> DateTime<Utc> + Send + Sync>,
}

impl GateStore {
    /// State at `_alerts/<owner>.json` in `lake` (one object per function).
    pub fn new(lake: Lake, owner: &str) -> Self {
        Self {
            lake,
            key: format!("_alerts/{owner}.json"),
            now: Box::new(Utc::now),
        }
    }

    /// The same with another clock (tests).
    pub fn with_clock(mut self, now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.now = Box::new(now);
        self
    }
}

/// De-duplicates alerts per cause in front of `inner` (see the module docs).
pub struct AlertGate<A> {
    inner: A,
    store: GateStore,
    window: chrono::Duration,
    /// One change to the state at a time within this process.
    lock: Mutex<()>,
}

impl<A: Alerts> AlertGate<A> {
    /// A gate with a quiet window per cause.
    pub fn new(inner: A, store: GateStore, window: Duration) -> Self {
        Self {
            inner,
            store,
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::hours(1)),
            lock: Mutex::new(()),
        }
    }

    async fn load(&self) -> Option<GateState> {
        match self.store.lake.get_opt(&self.store.key).await {
            Ok(None) => Some(GateState::default()),
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(state) => Some(state),
                Err(e) => {
                    tracing::warn!(key = %self.store.key, error = %e, "alert state unreadable; starting afresh");
                    Some(GateState::default())
                }
            },
            Err(e) => {
                tracing::warn!(key = %self.store.key, error = %e, "alert state cannot be read; alerts are sent without de-duplication");
                None
            }
        }
    }

    async fn save(&self, state: &GateState) {
        let bytes = match serde_json::to_vec_pretty(state) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(error = %e, "alert state cannot be encoded");
                return;
            }
        };
        if let Err(e) = self.store.lake.put_replace(&self.store.key, bytes).await {
            tracing::warn!(key = %self.store.key, error = %e, "alert state cannot be written; the next repeat may alert again");
        }
    }

    async fn gate(&self, alert: &Alert, failure: bool) {
        let _one_at_a_time = self.lock.lock().await;
        let Some(mut state) = self.load().await else {
            self.deliver(alert, failure).await;
            return;
        };
        let now = (self.store.now)();
        let cause = cause_of(alert);
        // A notice that stopped repeating for a window is over.
        state
            .open
            .retain(|_, c| c.failure || now - c.last_seen_at < self.window);
        match state.open.get_mut(&cause) {
            None => {
                self.deliver(alert, failure).await;
                state.open.insert(
                    cause,
                    OpenCause {
                        stage: alert.stage.to_string(),
                        table: alert.table.clone(),
                        failure,
                        first_at: now,
                        last_sent_at: now,
                        last_seen_at: now,
                        unsent: 0,
                        total: 1,
                        first_message: alert.message.clone(),
                    },
                );
            }
            Some(open) => {
                open.total += 1;
                open.last_seen_at = now;
                if now - open.last_sent_at >= self.window {
                    let summary = Alert {
                        message: format!(
                            "{} (still happening: {} time(s) since {}, {} since the last alert)",
                            alert.message,
                            open.total,
                            open.first_at.format("%Y-%m-%d %H:%M UTC"),
                            open.unsent + 1
                        ),
                        ..alert.clone()
                    };
                    self.deliver(&summary, failure).await;
                    open.last_sent_at = now;
                    open.unsent = 0;
                } else {
                    open.unsent += 1;
                    tracing::info!(stage = alert.stage, run_id = %alert.run_id, repeats = open.total, "alert held back: already sent within the quiet window");
                }
            }
        }
        self.save(&state).await;
    }

    async fn deliver(&self, alert: &Alert, failure: bool) {
        if failure {
            self.inner.failed(alert).await;
        } else {
            self.inner.send(alert).await;
        }
    }

    async fn close(&self, stage: &str) {
        let _one_at_a_time = self.lock.lock().await;
        let Some(mut state) = self.load().await else {
            return;
        };
        let (over, open): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut state.open)
            .into_iter()
            .partition(|(_, c)| c.failure && c.stage == stage);
        if over.is_empty() {
            return;
        }
        state.open = open;
        let now = (self.store.now)();
        for cause in over.values() {
            self.inner
                .send(&Alert {
                    stage: static_stage(stage),
                    run_id: "-".to_string(),
                    table: cause.table.clone(),
                    message: format!(
                        "{stage} recovered: it ran successfully after failing {} time(s) since {} ({} min); the failure was: {}",
                        cause.total,
                        cause.first_at.format("%Y-%m-%d %H:%M UTC"),
                        (now - cause.first_at).num_minutes(),
                        cause.first_message
                    ),
                    action: "nothing to do; the next runs catch up on their own".to_string(),
                })
                .await;
        }
        self.save(&state).await;
    }
}

/// Stage names are static everywhere but arrive here as `&str` (the
/// recovered stage's own name, so a configured source's stage, `source
/// olist` or `publish olist`, is named in its recovery notice too).
fn static_stage(stage: &str) -> &'static str {
    crate::stage::intern(stage)
}

/// Stage, table and message with every word holding a digit blanked: run
/// ids, counts, times and hashes differ between repeats of one cause.
fn cause_of(alert: &Alert) -> String {
    // Every word with a digit in it (a count, a time, a run id, a hash, a
    // port) becomes `#`; the words around it make the cause.
    let mut message = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, message: &mut String| {
        if word.chars().any(|c| c.is_ascii_digit()) {
            message.push('#');
        } else {
            message.push_str(word);
        }
        word.clear();
    };
    for c in alert.message.chars().take(CAUSE_CHARS) {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut message);
            message.push(c);
        }
    }
    flush(&mut word, &mut message);
    format!(
        "{}|{}|{}",
        alert.stage,
        alert.table.as_deref().unwrap_or("-"),
        message
    )
}

impl<A: Alerts> Alerts for AlertGate<A> {
    fn send<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.gate(alert, false))
    }

    fn failed<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.gate(alert, true))
    }

    fn recovered<'a>(&'a self, stage: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.close(stage))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex as StdMutex};

    use super::*;
    use crate::alerts::RecordedAlerts;

    fn failure(run: u32) -> Alert {
        Alert {
            stage: "ingest",
            run_id: format!("run-{run}"),
            table: None,
            message: format!(
                "ingest failed: cannot connect to the totesys database: timed out after {run} ms"
            ),
            action: "the next scheduled run retries".to_string(),
        }
    }

    fn gate(
        lake: &Lake,
        clock: &Arc<StdMutex<DateTime<Utc>>>,
    ) -> (AlertGate<RecordedAlerts>, RecordedAlerts) {
        let recorded = RecordedAlerts::default();
        let clock = clock.clone();
        let store =
            GateStore::new(lake.clone(), "ingest").with_clock(move || *clock.lock().unwrap());
        (
            AlertGate::new(recorded.clone(), store, Duration::from_secs(3600)),
            recorded,
        )
    }

    fn lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::from_url(&format!("file://{}", dir.path().display())).unwrap();
        (dir, lake)
    }

    #[tokio::test]
    async fn a_configured_sources_recovery_names_its_own_stage() {
        let (_dir, lake) = lake();
        let clock = Arc::new(StdMutex::new(
            "2026-11-30T10:00:00Z".parse::<DateTime<Utc>>().unwrap(),
        ));
        let (gate, recorded) = gate(&lake, &clock);
        let failed = Alert {
            stage: "publish olist",
            ..failure(1)
        };
        gate.failed(&failed).await;
        gate.recovered("publish shop").await;
        assert_eq!(
            recorded.sent().len(),
            1,
            "another source's success closes nothing"
        );
        gate.recovered("publish olist").await;
        let sent = recorded.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].stage, "publish olist");
        assert!(sent[1].message.contains("recovered"), "{}", sent[1].message);
    }

    #[tokio::test]
    async fn a_failure_every_minute_mails_once_an_hour_then_a_recovery() {
        let (_dir, lake) = lake();
        let start: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
        let clock = Arc::new(StdMutex::new(start));
        for minute in 0..90u32 {
            *clock.lock().unwrap() = start + chrono::Duration::minutes(minute.into());
            // A new gate per invocation: the state must come from the lake.
            let (gate, _) = gate(&lake, &clock);
            gate.failed(&failure(minute)).await;
        }
        let (gate, recorded) = gate(&lake, &clock);
        gate.failed(&failure(90)).await;
        gate.recovered("ingest").await;
        gate.recovered("ingest").await;
        let sent = recorded.sent();
        assert_eq!(
            sent.len(),
            1,
            "minute 90 is within the hour after the summary at 60: {sent:#?}"
        );
        assert!(sent[0].message.contains("recovered"), "{}", sent[0].message);
        assert!(
            sent[0].message.contains("92 time(s)") || sent[0].message.contains("91 time(s)"),
            "{}",
            sent[0].message
        );
    }

    #[tokio::test]
    async fn the_first_alert_and_the_hourly_summary_carry_the_count() {
        let (_dir, lake) = lake();
        let start: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
        let clock = Arc::new(StdMutex::new(start));
        let (gate, recorded) = gate(&lake, &clock);
        for minute in 0..=60u32 {
            *clock.lock().unwrap() = start + chrono::Duration::minutes(minute.into());
            gate.failed(&failure(minute)).await;
        }
        let sent = recorded.sent();
        assert_eq!(sent.len(), 2, "{sent:#?}");
        assert_eq!(
            sent[0].message,
            failure(0).message,
            "the first goes out as it is"
        );
        assert!(
            sent[1]
                .message
                .contains("61 time(s) since 2026-11-30 10:00 UTC, 60 since the last alert"),
            "{}",
            sent[1].message
        );
        gate.recovered("ingest").await;
        *clock.lock().unwrap() = start + chrono::Duration::minutes(61);
        gate.failed(&failure(61)).await;
        assert_eq!(
            recorded.sent().len(),
            4,
            "recovery, then a new failure is news again"
        );
    }

    #[tokio::test]
    async fn causes_are_told_apart_and_notices_close_by_themselves() {
        let (_dir, lake) = lake();
        let start: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
        let clock = Arc::new(StdMutex::new(start));
        let (gate, recorded) = gate(&lake, &clock);
        let symbol = |s: &str| Alert {
            stage: "ingest",
            run_id: "r".to_string(),
            table: Some(s.to_string()),
            message: "poll failed: HTTP 503".to_string(),
            action: "retried on the next tick".to_string(),
        };
        for tick in 0..240i64 {
            *clock.lock().unwrap() = start + chrono::Duration::seconds(15 * tick);
            gate.send(&symbol("BTC-BRL")).await;
            gate.send(&symbol("ETH-BRL")).await;
        }
        gate.failed(&failure(1)).await;
        assert_eq!(
            recorded.sent().len(),
            2 + 1,
            "one per symbol in the hour and the failure: {:#?}",
            recorded.sent()
        );
        gate.recovered("ingest").await;
        let sent = recorded.sent();
        assert_eq!(sent.len(), 4, "only the failed run recovers: {sent:#?}");
        // Two quiet hours later the symbol's notice is news again.
        *clock.lock().unwrap() = start + chrono::Duration::hours(3);
        gate.send(&symbol("BTC-BRL")).await;
        assert_eq!(recorded.sent().len(), 5);
    }

    #[test]
    fn a_cause_ignores_run_ids_counts_and_hashes_but_not_the_words() {
        let alert = |message: &str| Alert {
            stage: "transform",
            run_id: "r".to_string(),
            table: None,
            message: message.to_string(),
            action: String::new(),
        };
        assert_eq!(
            cause_of(&alert(
                "transform failed: object 20261130T170724570Z-014c26.json differs (sha ab12cd)"
            )),
            cause_of(&alert(
                "transform failed: object 20261201T000000000Z-99ff00.json differs (sha 77e9f1)"
            ))
        );
        assert_ne!(
            cause_of(&alert(
                "transform failed: cannot connect to db-1: timed out"
            )),
            cause_of(&alert("transform failed: cannot connect to db-1: refused"))
        );
    }

    #[tokio::test]
    async fn a_success_of_one_stage_does_not_recover_another() {
        let (_dir, lake) = lake();
        let clock = Arc::new(StdMutex::new(Utc::now()));
        let (gate, recorded) = gate(&lake, &clock);
        let mut totesys = failure(1);
        totesys.stage = "transform";
        gate.failed(&totesys).await;
        gate.recovered("markets-transform").await;
        gate.failed(&totesys).await;
        assert_eq!(
            recorded.sent().len(),
            1,
            "held back, not recovered: {:#?}",
            recorded.sent()
        );
        gate.recovered("transform").await;
        assert!(
            recorded.sent()[1]
                .message
                .starts_with("transform recovered")
        );
    }

    #[tokio::test]
    async fn an_unreadable_state_still_lets_the_alert_through() {
        let (dir, lake) = lake();
        std::fs::create_dir_all(dir.path().join("_alerts")).unwrap();
        std::fs::write(dir.path().join("_alerts/ingest.json"), b"{not json").unwrap();
        let clock = Arc::new(StdMutex::new(Utc::now()));
        let (gate, recorded) = gate(&lake, &clock);
        gate.failed(&failure(1)).await;
        assert_eq!(recorded.sent().len(), 1);
    }
}
