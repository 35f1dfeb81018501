//! Metrics: figures a dashboard and the alarms read after each run.
//!
//! In Lambda they become CloudWatch Embedded Metric Format lines (crate
//! `tributary-aws`), so no API call is made on the hot path; tests record
//! them. The CLI prints its own summaries instead.

use std::sync::{Arc, Mutex};

use crate::{
    markets::{
        load::MarketsLoadReport, poll::PollReport, sink::SinkReport, transform::MarketsReport,
    },
    totesys::{ingest::IngestReport, load::LoadReport, transform::TransformReport},
};

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

/// Figures for one table, or for the whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct TableFigures {
    /// The table (the `Table` dimension); `None` for the run as a whole.
    pub table: Option<String>,
    /// The figures.
    pub samples: Vec<Sample>,
}

impl TableFigures {
    /// Figures of one table.
    pub fn table(table: impl Into<String>, samples: Vec<Sample>) -> Self {
        Self {
            table: Some(table.into()),
            samples,
        }
    }

    /// Figures of the whole run.
    pub fn run(samples: Vec<Sample>) -> Self {
        Self {
            table: None,
            samples,
        }
    }
}

/// A stage report that knows its own figures, so every caller records the
/// same ones through [`record`].
pub trait Figures {
    /// The stage the figures belong to (the `Stage` dimension).
    fn stage(&self) -> &'static str;
    /// Per-table figures first, then the run's own.
    fn figures(&self) -> Vec<TableFigures>;
}

/// Records every figure of `report`.
pub fn record(metrics: &dyn Metrics, report: &dyn Figures) {
    for figures in report.figures() {
        metrics.record(report.stage(), figures.table.as_deref(), &figures.samples);
    }
}

/// Rows and late rows per table, the run's rows and time.
impl Figures for IngestReport {
    fn stage(&self) -> &'static str {
        "ingest"
    }

    fn figures(&self) -> Vec<TableFigures> {
        let mut out: Vec<TableFigures> = self
            .tables
            .iter()
            .filter(|t| t.rows > 0)
            .map(|t| {
                TableFigures::table(
                    t.table.clone(),
                    vec![
                        Sample::count("RowsIngested", t.rows),
                        Sample::count("LateRows", t.late_rows),
                    ],
                )
            })
            .collect();
        out.push(TableFigures::run(vec![
            Sample::count("RowsIngested", self.rows()),
            Sample::seconds("RunDuration", self.elapsed),
            Sample::count("RunSucceeded", 1),
        ]));
        out
    }
}

/// Rows per warehouse table, quarantined rows per source table, the run's time.
impl Figures for TransformReport {
    fn stage(&self) -> &'static str {
        "transform"
    }

    fn figures(&self) -> Vec<TableFigures> {
        let mut out: Vec<TableFigures> = self
            .rows
            .iter()
            .map(|(table, rows)| {
                TableFigures::table(*table, vec![Sample::count("RowsTransformed", *rows)])
            })
            .collect();
        out.extend(self.quarantined.iter().map(|(table, rows)| {
            TableFigures::table(*table, vec![Sample::count("QuarantinedRows", *rows)])
        }));
        out.push(TableFigures::run(vec![
            Sample::count("QuarantinedRows", self.quarantined.values().sum()),
            Sample::seconds("RunDuration", self.elapsed),
            Sample::count("RunSucceeded", 1),
        ]));
        out
    }
}

/// Rows per table, manifests, the run's time.
impl Figures for LoadReport {
    fn stage(&self) -> &'static str {
        "load"
    }

    fn figures(&self) -> Vec<TableFigures> {
        let mut per_table = std::collections::BTreeMap::<&str, u64>::new();
        for manifest in &self.manifests {
            for (table, rows) in &manifest.rows {
                *per_table.entry(table).or_default() += rows;
            }
        }
        let mut out: Vec<TableFigures> = per_table
            .into_iter()
            .map(|(table, rows)| {
                TableFigures::table(table, vec![Sample::count("RowsLoaded", rows)])
            })
            .collect();
        out.push(TableFigures::run(vec![
            Sample::count("RowsLoaded", self.rows()),
            Sample::count("ManifestsLoaded", self.manifests.len() as u64),
            Sample::seconds("RunDuration", self.elapsed),
            Sample::count("RunSucceeded", 1),
        ]));
        out
    }
}

/// Trades written and dropped as duplicates.
impl Figures for MarketsReport {
    fn stage(&self) -> &'static str {
        "transform"
    }

    fn figures(&self) -> Vec<TableFigures> {
        vec![TableFigures::table(
            "markets_trades",
            vec![
                Sample::count("RowsTransformed", self.trades),
                Sample::count("DuplicateTrades", self.duplicates),
            ],
        )]
    }
}

/// Trades loaded.
impl Figures for MarketsLoadReport {
    fn stage(&self) -> &'static str {
        "load"
    }

    fn figures(&self) -> Vec<TableFigures> {
        vec![TableFigures::table(
            "fact_trade",
            vec![Sample::count("RowsLoaded", self.trades)],
        )]
    }
}

/// Trades kept, lines quarantined, records handed back for redelivery.
impl Figures for SinkReport {
    fn stage(&self) -> &'static str {
        "stream-sink"
    }

    fn figures(&self) -> Vec<TableFigures> {
        vec![TableFigures::run(vec![
            Sample::count("TradesSunk", self.trades),
            Sample::count("QuarantinedRows", self.quarantined),
            Sample::count("BatchItemFailures", self.batch_item_failures.len() as u64),
        ])]
    }
}

/// The warehouse's freshness lag: the age of the newest source state it
/// holds (`status::freshness_lag`), which the stale-data alarm reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreshnessLag(pub std::time::Duration);

impl Figures for FreshnessLag {
    fn stage(&self) -> &'static str {
        "load"
    }

    fn figures(&self) -> Vec<TableFigures> {
        vec![TableFigures::run(vec![Sample::seconds(
            "FreshnessLagSeconds",
            self.0,
        )])]
    }
}

/// Trades polled into the stream over one invocation's ticks.
impl Figures for Vec<PollReport> {
    fn stage(&self) -> &'static str {
        "ingest"
    }

    fn figures(&self) -> Vec<TableFigures> {
        vec![TableFigures::table(
            "trades",
            vec![Sample::count(
                "TradesPolled",
                self.iter().map(|p| p.trades).sum(),
            )],
        )]
    }
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
