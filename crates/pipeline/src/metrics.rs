//! Metrics: figures a dashboard and the alarms read after each run.
//!
//! In Lambda they become CloudWatch Embedded Metric Format lines (crate
//! `tributary-aws`), so no API call is made on the hot path; tests record
//! them. The CLI prints its own summaries instead.

use std::sync::{Arc, Mutex};

use crate::{ingest::IngestReport, load::LoadReport, transform::TransformReport};

/// The unit of a figure, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count of things.
    Count,
    /// Seconds.
    Seconds,
}

impl Unit {
    /// The CloudWatch name of the unit.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, e.g. `RowsIngested`.
    pub name: &'static str,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
}

impl Sample {
    /// A count.
    pub fn count(name: &'static str, value: u64) -> Self {
        Self {
            name,
            value: value as f64,
            unit: Unit::Count,
        }
    }

    /// A duration in seconds.
    pub fn seconds(name: &'static str, value: std::time::Duration) -> Self {
        Self {
            name,
            value: value.as_secs_f64(),
            unit: Unit::Seconds,
        }
    }
}

/// Where figures go. Recording must not fail a stage.
pub trait Metrics: Send + Sync {
    /// Records figures of one stage, for one table when `table` is given.
    fn record(&self, stage: &str, table: Option<&str>, samples: &[Sample]);
}

/// One recorded call: stage, table and figures.
pub type Recorded = (String, Option<String>, Vec<Sample>);

/// Keeps figures in memory, for tests.
#[derive(Debug, Default, Clone)]
pub struct RecordedMetrics {
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl RecordedMetrics {
    /// Everything recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The sum of one metric over every call (any stage, any table).
    pub fn total(&self, name: &str) -> f64 {
        self.recorded()
            .iter()
            .flat_map(|(_, _, s)| s.iter())
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

impl Metrics for RecordedMetrics {
    fn record(&self, stage: &str, table: Option<&str>, samples: &[Sample]) {
        if let Ok(mut recorded) = self.recorded.lock() {
            recorded.push((
                stage.to_string(),
                table.map(str::to_string),
                samples.to_vec(),
            ));
        }
    }
}

/// Figures of an ingest run: rows and late rows per table, the run's time.
pub fn record_ingest(metrics: &dyn Metrics, report: &IngestReport) {
    for table in report.tables.iter().filter(|t| t.rows > 0) {
        metrics.record(
            "ingest",
            Some(table.table),
            &[
                Sample::count("RowsIngested", table.rows),
                Sample::count("LateRows", table.late_rows),
            ],
        );
    }
    metrics.record(
        "ingest",
        None,
        &[
            Sample::count("RowsIngested", report.rows()),
            Sample::seconds("RunDuration", report.elapsed),
            Sample::count("RunSucceeded", 1),
        ],
    );
}

/// Figures of a transform run: rows per warehouse table, quarantined rows
/// per source table, the run's time.
pub fn record_transform(metrics: &dyn Metrics, report: &TransformReport) {
    for (table, rows) in &report.rows {
        metrics.record(
            "transform",
            Some(table),
            &[Sample::count("RowsTransformed", *rows)],
        );
    }
    for (table, rows) in &report.quarantined {
        metrics.record(
            "transform",
            Some(table),
            &[Sample::count("QuarantinedRows", *rows)],
        );
    }
    metrics.record(
        "transform",
        None,
        &[
            Sample::count("QuarantinedRows", report.quarantined.values().sum()),
            Sample::seconds("RunDuration", report.elapsed),
            Sample::count("RunSucceeded", 1),
        ],
    );
}

/// Figures of a load run: rows per table, the run's time, and the freshness
/// lag (the age of the newest source state in the warehouse), when known.
pub fn record_load(metrics: &dyn Metrics, report: &LoadReport, lag: Option<std::time::Duration>) {
    let mut per_table = std::collections::BTreeMap::<&str, u64>::new();
    for manifest in &report.manifests {
        for (table, rows) in &manifest.rows {
            *per_table.entry(table).or_default() += rows;
        }
    }
    for (table, rows) in per_table {
        metrics.record("load", Some(table), &[Sample::count("RowsLoaded", rows)]);
    }
    let mut samples = vec![
        Sample::count("RowsLoaded", report.rows()),
        Sample::count("ManifestsLoaded", report.manifests.len() as u64),
        Sample::seconds("RunDuration", report.elapsed),
        Sample::count("RunSucceeded", 1),
    ];
    if let Some(lag) = lag {
        samples.push(Sample::seconds("FreshnessLagSeconds", lag));
    }
    metrics.record("load", None, &samples);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_sum_across_calls() {
        let m = RecordedMetrics::default();
        m.record("load", Some("a"), &[Sample::count("RowsLoaded", 3)]);
        m.record("load", Some("b"), &[Sample::count("RowsLoaded", 4)]);
        m.record(
            "load",
            None,
            &[Sample::seconds(
                "RunDuration",
                std::time::Duration::from_millis(1500),
            )],
        );
        assert_eq!(m.total("RowsLoaded"), 7.0);
        assert_eq!(m.total("RunDuration"), 1.5);
        assert_eq!(m.recorded()[1].1.as_deref(), Some("b"));
        assert_eq!(Unit::Seconds.as_str(), "Seconds");
    }
}
