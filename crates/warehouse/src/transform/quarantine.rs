//! Rows that break the contract: kept with their reason, never dropped silently.

use arrow_array::{
    Array, BooleanArray, Date32Array, Decimal128Array, Int32Array, RecordBatch, StringArray,
    Time64MicrosecondArray, TimestampMillisecondArray,
};
use serde::Serialize;
use serde_json::{Map, Value};

/// One rejected source row and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quarantined {
    /// The source table the row came from.
    pub table: &'static str,
    /// Its primary key, when readable.
    pub key: Option<i32>,
    /// What was wrong, naming the column and value.
    pub reason: String,
    /// The row as received, values as text.
    pub row: Value,
}

impl Quarantined {
    /// A record for row `row` of `batch` from source `table`.
    pub fn new(table: &'static str, batch: &RecordBatch, row: usize, reason: String) -> Self {
        let key = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int32Array>()
            .filter(|ids| !ids.is_null(row))
            .map(|ids| ids.value(row));
        Self {
            table,
            key,
            reason,
            row: render_row(batch, row),
        }
    }
}

/// A row as a JSON object of text values (null for NULL).
pub fn render_row(batch: &RecordBatch, row: usize) -> Value {
    let mut object = Map::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        object.insert(field.name().clone(), render_value(column.as_ref(), row));
    }
    Value::Object(object)
}

fn render_value(column: &dyn Array, row: usize) -> Value {
    if column.is_null(row) {
        return Value::Null;
    }
    let any = column.as_any();
    let text = if let Some(a) = any.downcast_ref::<Int32Array>() {
        a.value(row).to_string()
    } else if let Some(a) = any.downcast_ref::<StringArray>() {
        a.value(row).to_string()
    } else if let Some(a) = any.downcast_ref::<TimestampMillisecondArray>() {
        a.value_as_datetime(row)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            .unwrap_or_default()
    } else if let Some(a) = any.downcast_ref::<Decimal128Array>() {
        a.value_as_string(row)
    } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
        a.value(row).to_string()
    } else if let Some(a) = any.downcast_ref::<Date32Array>() {
        a.value_as_date(row)
            .map(|d| d.to_string())
            .unwrap_or_default()
    } else if let Some(a) = any.downcast_ref::<Time64MicrosecondArray>() {
        a.value_as_time(row)
            .map(|t| t.to_string())
            .unwrap_or_default()
    } else {
        format!("<{}>", column.data_type())
    };
    Value::String(text)
}

/// Quarantine records as JSON lines, the layout of `_quarantine/…jsonl`.
pub fn to_json_lines(records: &[Quarantined]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        // Serialising plain strings and JSON values cannot fail.
        if serde_json::to_writer(&mut out, record).is_ok() {
            out.push(b'\n');
        }
    }
    out
}
