//! Typed access to raw columns by name, with errors instead of panics.

use arrow_array::{
    Array, ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::ArrowError;

use crate::Result;

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| ArrowError::SchemaError(format!("raw batch has no column {name:?}")).into())
}

fn typed<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    column(batch, name)?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| {
            ArrowError::SchemaError(format!("raw column {name:?} has an unexpected type")).into()
        })
}

/// An Int32 column.
pub(crate) fn ints<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int32Array> {
    typed(batch, name)
}

/// A Utf8 column.
pub(crate) fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    typed(batch, name)
}

/// A Timestamp(ms) column.
pub(crate) fn timestamps<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a TimestampMillisecondArray> {
    typed(batch, name)
}

/// A column of any type, cloned (cheap: arrays are shared).
pub(crate) fn any(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    column(batch, name).cloned()
}

/// The id of row `row` of an Int32 key column, if set.
pub(crate) fn id_at(ids: &Int32Array, row: usize) -> Option<i32> {
    (!ids.is_null(row)).then(|| ids.value(row))
}
