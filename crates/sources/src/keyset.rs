//! Sets of primary keys, for finding deletes by comparison, in bounded
//! memory.
//!
//! The keys in the table now are kept as 128-bit hashes only (16 bytes a
//! key: 16 MB for a million rows), sorted; their values stream to the new
//! key-set file as they are read. The keys the lake knows (the previous key
//! set and every key written since) are then streamed past that set, and
//! only the missing ones are kept, with their typed values, as tombstones.
//!
//! A key is rendered to one string per row (its columns' values joined,
//! text escaped so no two keys render alike) before it is hashed, so a
//! composite key cannot collide by shifting characters between columns.
//! Both sides are hashed by the same process in the same run, so the hash
//! need not be stable across releases; two different keys share a 128-bit
//! hash with a probability far below that of a disk error.

use std::{
    collections::HashSet,
    hash::{DefaultHasher, Hasher},
    sync::Arc,
};

use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Int16Array,
    Int32Array, Int64Array, RecordBatch, StringArray, Time64MicrosecondArray,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};

use crate::{
    Error, Result,
    types::{SourceColumn, arrow_schema},
};

/// Joins the columns of a composite key.
const SEPARATOR: char = '\u{1f}';

/// The key columns of `batch`, in key order, found by name (a file's
/// columns come in table order, which need not be the key's).
pub fn key_arrays(batch: &RecordBatch, columns: &[SourceColumn]) -> Result<Vec<ArrayRef>> {
    columns
        .iter()
        .map(|c| {
            batch
                .column_by_name(&c.name)
                .cloned()
                .ok_or_else(|| Error::Decode {
                    table: String::new(),
                    reason: format!("key column {} is missing from a key file", c.name),
                })
        })
        .collect()
}

/// The hash of each row's key.
pub fn row_hashes(arrays: &[ArrayRef], columns: &[SourceColumn]) -> Result<Vec<u128>> {
    let rows = arrays.first().map_or(0, |a| a.len());
    let mut out = Vec::with_capacity(rows);
    let mut key = String::new();
    for row in 0..rows {
        key.clear();
        for (i, array) in arrays.iter().enumerate() {
            if i > 0 {
                key.push(SEPARATOR);
            }
            render(&mut key, array.as_ref(), row, &columns[i].name)?;
        }
        out.push(hash(key.as_bytes()));
    }
    Ok(out)
}

fn hash(bytes: &[u8]) -> u128 {
    let mut high = DefaultHasher::new();
    high.write(bytes);
    let mut low = DefaultHasher::new();
    low.write_u8(0xa5);
    low.write(bytes);
    (u128::from(high.finish()) << 64) | u128::from(low.finish())
}

/// The keys in the table now, as sorted hashes.
#[derive(Debug, Default)]
pub struct KeyHashes {
    hashes: Vec<u128>,
    sorted: bool,
}

impl KeyHashes {
    /// Adds the keys of `batch` (its key columns found by name).
    pub fn add(&mut self, batch: &RecordBatch, columns: &[SourceColumn]) -> Result<()> {
        let arrays = key_arrays(batch, columns)?;
        self.hashes.extend(row_hashes(&arrays, columns)?);
        self.sorted = false;
        Ok(())
    }

    /// Sorts the set for lookups (a key seen twice is kept once).
    pub fn seal(&mut self) {
        self.hashes.sort_unstable();
        self.hashes.dedup();
        self.sorted = true;
    }

    /// Whether the key with this hash is in the set (after [`Self::seal`]).
    pub fn contains(&self, hash: u128) -> bool {
        debug_assert!(self.sorted, "seal the set before looking keys up");
        self.hashes.binary_search(&hash).is_ok()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// The known keys missing from a [`KeyHashes`]: each once, with its values.
#[derive(Debug, Default)]
pub struct Missing {
    seen: HashSet<u128>,
    parts: Vec<Vec<ArrayRef>>,
    rows: usize,
}

impl Missing {
    /// Keeps the keys of `batch` that `now` does not have and that were not
    /// kept before.
    pub fn collect(
        &mut self,
        batch: &RecordBatch,
        columns: &[SourceColumn],
        now: &KeyHashes,
    ) -> Result<()> {
        let arrays = key_arrays(batch, columns)?;
        let hashes = row_hashes(&arrays, columns)?;
        let rows: Vec<u32> = hashes
            .iter()
            .enumerate()
            .filter(|(_, h)| !now.contains(**h) && self.seen.insert(**h))
            .map(|(i, _)| i as u32)
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(rows);
        let taken = arrays
            .iter()
            .map(|a| arrow_select::take::take(a.as_ref(), &indices, None))
            .collect::<Result<Vec<_>, _>>()?;
        self.rows += indices.len();
        self.parts.push(taken);
        Ok(())
    }

    /// How many keys are missing.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The missing keys as one batch of the key columns plus `_deleted_at`;
    /// `None` when none is missing.
    pub fn to_batch(
        &self,
        columns: &[SourceColumn],
        deleted_at: DateTime<Utc>,
    ) -> Result<Option<RecordBatch>> {
        if self.rows == 0 {
            return Ok(None);
        }
        let mut arrays = Vec::new();
        for i in 0..columns.len() {
            let parts: Vec<&dyn Array> = self.parts.iter().map(|p| p[i].as_ref()).collect();
            arrays.push(arrow_select::concat::concat(&parts)?);
        }
        let mut fields: Vec<Field> = arrow_schema(columns)
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(
            DELETED_AT,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ));
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(vec![deleted_at.timestamp_micros(); self.rows])
                .with_timezone("UTC"),
        ));
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
        // By value, whatever the scale: a key column whose numeric scale
        // changed (and was accepted) still matches the keys read before.
        DataType::Decimal128(_, scale) => {
            write_decimal(out, value!(Decimal128Array), *scale);
            Ok(())
        }
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

/// A decimal as its shortest exact text: `1.5` for 1.50 and 1.500 alike.
fn write_decimal(out: &mut String, unscaled: i128, scale: i8) {
    let mut value = unscaled;
    let mut scale = i32::from(scale);
    while scale > 0 && value % 10 == 0 {
        value /= 10;
        scale -= 1;
    }
    while scale < 0 {
        value *= 10;
        scale += 1;
    }
    let digits = value.unsigned_abs().to_string();
    if value < 0 {
        out.push('-');
    }
    let scale = scale as usize;
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        out.push_str(whole);
        out.push('.');
        out.push_str(fraction);
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat(scale - digits.len()));
        out.push_str(&digits);
    }
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
    fn keys_compare_by_value_across_integer_widths_and_numeric_scales() {
        let text = |array: ArrayRef| {
            let mut out = String::new();
            render(&mut out, array.as_ref(), 0, "k").unwrap();
            out
        };
        let decimal = |v: i128, p: u8, s: i8| -> ArrayRef {
            Arc::new(
                Decimal128Array::from(vec![v])
                    .with_precision_and_scale(p, s)
                    .unwrap(),
            )
        };
        assert_eq!(text(decimal(150, 10, 2)), text(decimal(1500, 12, 3)));
        assert_eq!(text(decimal(150, 10, 2)), "1.5");
        assert_eq!(text(decimal(-5, 10, 3)), "-0.005");
        assert_eq!(text(decimal(700, 10, 2)), "7");
        assert_eq!(text(decimal(12, 10, -2)), "1200");
        assert_ne!(text(decimal(15, 10, 2)), text(decimal(15, 10, 1)));
        assert_eq!(
            text(Arc::new(Int32Array::from(vec![5]))),
            text(Arc::new(Int64Array::from(vec![5_i64])))
        );
    }

    #[test]
    fn missing_keys_keep_their_types_once_and_composite_keys_never_collide() {
        let cols = columns();
        let mut now = KeyHashes::default();
        now.add(&batch(&[("a", 2), ("b", 1)]), &cols).unwrap();
        now.seal();
        assert_eq!(now.len(), 2);
        let mut missing = Missing::default();
        // "b" + separator + "1", seq 1 must not equal ("b", 1…): escaped.
        missing
            .collect(&batch(&[("a", 1), ("a", 2), ("b\u{1f}1", 1)]), &cols, &now)
            .unwrap();
        // A key known twice (the old key set and a file since) is one tombstone.
        missing
            .collect(&batch(&[("c", 1), ("a", 1)]), &cols, &now)
            .unwrap();
        assert_eq!(missing.len(), 3);
        let out = missing
            .to_batch(&cols, DateTime::from_timestamp(0, 0).unwrap())
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
        assert!(
            Missing::default()
                .to_batch(&cols, DateTime::UNIX_EPOCH)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn key_columns_are_found_by_name_whatever_the_file_order() {
        let cols = columns();
        // A file with the key's columns the other way round.
        let swapped = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("seq", DataType::Int32, false),
                Field::new("order_id", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Int32Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "a"])),
            ],
        )
        .unwrap();
        let mut now = KeyHashes::default();
        now.add(&batch(&[("a", 1)]), &cols).unwrap();
        now.seal();
        let mut missing = Missing::default();
        missing.collect(&swapped, &cols, &now).unwrap();
        assert_eq!(missing.len(), 1, "only (a, 2) is gone");
        let out = missing
            .to_batch(&cols, DateTime::UNIX_EPOCH)
            .unwrap()
            .unwrap();
        assert_eq!(out.schema().field(0).name(), "order_id");
        let seqs = out.column(1).as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(seqs.value(0), 2);
    }
}
