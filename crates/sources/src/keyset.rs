//! Sets of primary keys, for finding deletes by comparison.
//!
//! A key is rendered to one string per row (its columns' values joined,
//! text escaped so no two keys render alike); each string remembers where
//! its typed values are, so the keys left after a difference are written
//! back with their own types.

use std::{collections::BTreeMap, sync::Arc};

use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Int16Array,
    Int32Array, Int64Array, RecordBatch, StringArray, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};

use crate::{
    Error, Result,
    types::{SourceColumn, arrow_schema},
};

/// Joins the columns of a composite key.
const SEPARATOR: char = '\u{1f}';

/// A set of keys, each with its typed values.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: BTreeMap<String, (usize, usize)>,
    batches: Vec<RecordBatch>,
}

impl KeySet {
    /// The keys of `batches` (the key columns, in key order).
    pub fn from_batches(batches: &[RecordBatch], columns: &[SourceColumn]) -> Result<KeySet> {
        let mut set = KeySet::default();
        set.extend_from_batches(batches, columns)?;
        Ok(set)
    }

    /// Adds the keys of `batches` (a key seen twice is kept once).
    pub fn extend_from_batches(
        &mut self,
        batches: &[RecordBatch],
        columns: &[SourceColumn],
    ) -> Result<()> {
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let index = self.batches.len();
            let arrays: Vec<&ArrayRef> = (0..columns.len()).map(|i| batch.column(i)).collect();
            for row in 0..batch.num_rows() {
                let mut key = String::new();
                for (i, array) in arrays.iter().enumerate() {
                    if i > 0 {
                        key.push(SEPARATOR);
                    }
                    render(&mut key, array.as_ref(), row, &columns[i].name)?;
                }
                self.keys.entry(key).or_insert((index, row));
            }
            self.batches.push(batch.clone());
        }
        Ok(())
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys of `self` that `other` does not have.
    pub fn minus(&self, other: &KeySet) -> KeySet {
        KeySet {
            keys: self
                .keys
                .iter()
                .filter(|(k, _)| !other.keys.contains_key(*k))
                .map(|(k, at)| (k.clone(), *at))
                .collect(),
            batches: self.batches.clone(),
        }
    }

    /// The keys as one batch of the key columns, in key order, plus a
    /// `_deleted_at` column when `deleted_at` is given; `None` when empty.
    pub fn to_batch(
        &self,
        columns: &[SourceColumn],
        deleted_at: Option<DateTime<Utc>>,
    ) -> Result<Option<RecordBatch>> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let at: Vec<(usize, usize)> = self.keys.values().copied().collect();
        let mut arrays = Vec::new();
        for i in 0..columns.len() {
            let sources: Vec<&dyn Array> =
                self.batches.iter().map(|b| b.column(i).as_ref()).collect();
            arrays.push(arrow_select::interleave::interleave(&sources, &at)?);
        }
        let mut fields: Vec<Field> = arrow_schema(columns)
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        if let Some(when) = deleted_at {
            fields.push(Field::new(
                DELETED_AT,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ));
            arrays.push(Arc::new(
                TimestampMicrosecondArray::from(vec![when.timestamp_micros(); at.len()])
                    .with_timezone("UTC"),
            ));
        }
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            arrays,
        )?))
    }
}

/// The column of a tombstone file that says when the delete was seen.
pub const DELETED_AT: &str = "_deleted_at";

fn render(out: &mut String, array: &dyn Array, row: usize, column: &str) -> Result<()> {
    use std::fmt::Write;
    macro_rules! value {
        ($t:ty) => {
            array
                .as_any()
                .downcast_ref::<$t>()
                .map(|a| a.value(row))
                .ok_or_else(|| unsupported(column, array.data_type()))?
        };
    }
    if array.is_null(row) {
        out.push_str("\\N");
        return Ok(());
    }
    match array.data_type() {
        DataType::Int16 => write!(out, "{}", value!(Int16Array)),
        DataType::Int32 => write!(out, "{}", value!(Int32Array)),
        DataType::Int64 => write!(out, "{}", value!(Int64Array)),
        DataType::Date32 => write!(out, "d{}", value!(Date32Array)),
        DataType::Time64(TimeUnit::Microsecond) => {
            write!(out, "t{}", value!(Time64MicrosecondArray))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            write!(out, "ts{}", value!(TimestampMicrosecondArray))
        }
        DataType::Decimal128(_, _) => write!(out, "{}", value!(Decimal128Array)),
        DataType::Boolean => write!(out, "{}", value!(BooleanArray)),
        DataType::Utf8 => {
            for c in value!(StringArray).chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    SEPARATOR => out.push_str("\\s"),
                    c => out.push(c),
                }
            }
            Ok(())
        }
        DataType::Binary => {
            for b in value!(BinaryArray) {
                let _ = write!(out, "{b:02x}");
            }
            Ok(())
        }
        other => return Err(unsupported(column, other)),
    }
    .map_err(|e| Error::Decode {
        table: String::new(),
        reason: e.to_string(),
    })
}

fn unsupported(column: &str, ty: &DataType) -> Error {
    Error::Decode {
        table: String::new(),
        reason: format!(
            "key column {column} of Arrow type {ty} cannot be compared for deletes; declare another primary_key or deletes_every = \"off\""
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PgColumnType;

    fn columns() -> Vec<SourceColumn> {
        let col = |name: &str, ty| SourceColumn {
            name: name.to_string(),
            ty,
            pg_type: String::new(),
            nullable: false,
            cast: None,
        };
        vec![
            col("order_id", PgColumnType::Text),
            col("seq", PgColumnType::Int4),
        ]
    }

    fn batch(rows: &[(&str, i32)]) -> RecordBatch {
        RecordBatch::try_new(
            arrow_schema(&columns()),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_difference_keeps_typed_keys_and_composite_keys_never_collide() {
        let cols = columns();
        let before = KeySet::from_batches(
            &[
                batch(&[("a", 1), ("a", 2), ("b\u{1f}1", 1)]),
                batch(&[("c", 1)]),
            ],
            &cols,
        )
        .unwrap();
        // "b" + separator + "1", seq 1 must not equal ("b", "1…"): escaped.
        let now = KeySet::from_batches(&[batch(&[("a", 2), ("b", 1)])], &cols).unwrap();
        let gone = before.minus(&now);
        assert_eq!(gone.len(), 3);
        let out = gone
            .to_batch(&cols, Some(DateTime::from_timestamp(0, 0).unwrap()))
            .unwrap()
            .unwrap();
        assert_eq!(out.num_columns(), 3);
        let ids = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let seqs = out.column(1).as_any().downcast_ref::<Int32Array>().unwrap();
        let got: Vec<(String, i32)> = (0..out.num_rows())
            .map(|i| (ids.value(i).to_string(), seqs.value(i)))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), 1),
                ("b\u{1f}1".to_string(), 1),
                ("c".to_string(), 1)
            ]
        );
        assert!(now.minus(&now).to_batch(&cols, None).unwrap().is_none());
    }
}
