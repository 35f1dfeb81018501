//! CloudWatch metrics as Embedded Metric Format log lines.
//!
//! One JSON line per call on stdout; CloudWatch Logs turns it into metrics
//! in the `Tributary` namespace with no API call from the function.
//! Dimensions: `Stage`, and `Stage, Table` for per-table figures.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use serde_json::{Map, Value, json};
use tributary_pipeline::metrics::{Metrics, Sample};

/// The namespace of every Tributary metric.
pub const NAMESPACE: &str = "Tributary";

type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// Writes EMF lines to stdout (or to any writer, for tests).
#[derive(Clone)]
pub struct EmfMetrics {
    out: Sink,
}

impl std::fmt::Debug for EmfMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmfMetrics")
    }
}

impl Default for EmfMetrics {
    fn default() -> Self {
        Self::to_writer(std::io::stdout())
    }
}

impl EmfMetrics {
    /// Lines go to `out`.
    pub fn to_writer(out: impl Write + Send + 'static) -> Self {
        Self {
            out: Arc::new(Mutex::new(Box::new(out))),
        }
    }
}

/// The EMF document for one call.
pub fn document(stage: &str, table: Option<&str>, samples: &[Sample], timestamp_ms: i64) -> Value {
    let mut dimensions = vec!["Stage"];
    let mut root = Map::new();
    root.insert("Stage".into(), json!(stage));
    if let Some(table) = table {
        dimensions.push("Table");
        root.insert("Table".into(), json!(table));
    }
    let definitions: Vec<Value> = samples
        .iter()
        .map(|s| json!({"Name": s.name, "Unit": s.unit.as_str()}))
        .collect();
    for s in samples {
        root.insert(s.name.into(), json!(s.value));
    }
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions],
                "Metrics": definitions,
            }],
        }),
    );
    Value::Object(root)
}

impl Metrics for EmfMetrics {
    fn record(&self, stage: &str, table: Option<&str>, samples: &[Sample]) {
        if samples.is_empty() {
            return;
        }
        let line = document(stage, table, samples, chrono::Utc::now().timestamp_millis());
        if let Ok(mut out) = self.out.lock() {
            // A metric line that cannot be written is not worth failing a run.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_call_is_one_emf_line_with_its_dimensions_and_units() {
        let buffer = Buffer::default();
        let metrics = EmfMetrics::to_writer(buffer.clone());
        metrics.record(
            "load",
            Some("fact_payment"),
            &[Sample::count("RowsLoaded", 42)],
        );
        metrics.record(
            "load",
            None,
            &[Sample::seconds(
                "RunDuration",
                std::time::Duration::from_millis(250),
            )],
        );
        metrics.record("load", None, &[]);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["RowsLoaded"], json!(42.0));
        assert_eq!(first["Table"], json!("fact_payment"));
        let cw = &first["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], json!("Tributary"));
        assert_eq!(cw["Dimensions"], json!([["Stage", "Table"]]));
        assert_eq!(
            cw["Metrics"],
            json!([{"Name": "RowsLoaded", "Unit": "Count"}])
        );
        assert!(first["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
        assert_eq!(lines[1]["RunDuration"], json!(0.25));
        assert_eq!(
            lines[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stage"]])
        );
    }
}
