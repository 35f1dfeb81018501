//! Fact row versions as data: `(id, last_updated in ms)` read from raw rows
//! and from fact rows, and the small sorted Parquet files the transform's
//! version index keeps them in.
//!
//! The index answers one question: has the processed lake already been
//! given this version of this row? Its files are split by id bucket so a
//! lookup reads only the buckets of the ids it asks about.

use std::sync::Arc;

use arrow_array::{Array, Date32Array, Int32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use tributary_lake::parquet::{decode, encode};

use super::columns::{ints, timestamps};
use crate::{Error, Result};

/// A row version: (id, `last_updated` in ms since the epoch).
pub type Version = (i32, i64);

const DAY_MS: i64 = 86_400_000;

/// Ids per bucket of the version index (2^16).
const BUCKET_SHIFT: u32 = 16;

/// The index bucket holding `id`'s versions.
pub fn bucket_of(id: i32) -> u32 {
    (id as u32) >> BUCKET_SHIFT
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("last_updated_ms", DataType::Int64, false),
    ]))
}

/// One version file: `versions` sorted and without repeats.
pub fn encode_versions(versions: &mut Vec<Version>) -> Result<Bytes> {
    versions.sort_unstable();
    versions.dedup();
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int32Array::from_iter_values(versions.iter().map(|v| v.0))),
            Arc::new(Int64Array::from_iter_values(versions.iter().map(|v| v.1))),
        ],
    )?;
    Ok(encode(schema(), &[batch])?)
}

/// The versions of a file written by [`encode_versions`]; `key` names it in errors.
pub fn decode_versions(key: &str, bytes: Bytes) -> Result<Vec<Version>> {
    let corrupt = |reason: String| Error::CorruptState {
        key: key.to_string(),
        reason,
    };
    let (file_schema, batches) = decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    if file_schema.fields() != schema().fields() {
        return Err(corrupt("not a version file (columns differ)".to_string()));
    }
    let mut out = Vec::new();
    for batch in batches {
        let (Some(ids), Some(ms)) = (
            batch.column(0).as_any().downcast_ref::<Int32Array>(),
            batch.column(1).as_any().downcast_ref::<Int64Array>(),
        ) else {
            return Err(corrupt("unexpected column types".to_string()));
        };
        out.extend(
            ids.values()
                .iter()
                .copied()
                .zip(ms.values().iter().copied()),
        );
    }
    Ok(out)
}

/// The versions of raw source rows: `key` and `last_updated`. Rows with a
/// NULL key are left out (they are quarantined, never facts).
pub fn raw_versions(batch: &RecordBatch, key: &str) -> Result<Vec<Version>> {
    let ids = ints(batch, key)?;
    let lus = timestamps(batch, "last_updated")?;
    Ok((0..batch.num_rows())
        .filter(|row| !ids.is_null(*row) && !lus.is_null(*row))
        .map(|row| (ids.value(row), lus.value(row)))
        .collect())
}

/// The versions of fact rows: `key`, `last_updated_date` and
/// `last_updated_time` put back together (milliseconds).
pub fn fact_versions(batch: &RecordBatch, key: &str) -> Result<Vec<Version>> {
    let column = |name: &str| {
        batch.column_by_name(name).ok_or_else(|| {
            arrow_schema::ArrowError::SchemaError(format!("fact batch has no column {name:?}"))
        })
    };
    let wrong = |name: &str| {
        arrow_schema::ArrowError::SchemaError(format!(
            "fact column {name:?} has an unexpected type"
        ))
    };
    let ids = column(key)?
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| wrong(key))?;
    let dates = column("last_updated_date")?
        .as_any()
        .downcast_ref::<Date32Array>()
        .ok_or_else(|| wrong("last_updated_date"))?;
    let time = column("last_updated_time")?;
    let times =
        crate::tables::micros_of_day(time.as_ref()).ok_or_else(|| wrong("last_updated_time"))?;
    Ok((0..batch.num_rows())
        .map(|row| {
            (
                ids.value(row),
                dates.value(row) as i64 * DAY_MS + times[row] / 1_000,
            )
        })
        .collect())
}

/// The columns [`fact_versions`] reads, for a projected decode.
pub fn fact_version_columns(key: &str) -> [&str; 3] {
    [key, "last_updated_date", "last_updated_time"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_files_are_sorted_without_repeats_and_read_back() {
        let mut versions = vec![(7, 300), (1, 100), (7, 300), (-3, 5), (1, 50)];
        let bytes = encode_versions(&mut versions).unwrap();
        let read = decode_versions("k", bytes).unwrap();
        assert_eq!(read, vec![(-3, 5), (1, 50), (1, 100), (7, 300)]);
    }

    #[test]
    fn a_file_of_another_shape_is_refused_with_its_key() {
        let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        let batch =
            RecordBatch::try_new(other.clone(), vec![Arc::new(Int32Array::from(vec![1]))]).unwrap();
        let bytes = encode(other, &[batch]).unwrap();
        let err = decode_versions("_state/versions/x.parquet", bytes).unwrap_err();
        assert!(
            err.to_string().contains("_state/versions/x.parquet"),
            "{err}"
        );
        let err = decode_versions("k2", Bytes::from_static(b"not parquet")).unwrap_err();
        assert!(err.to_string().contains("k2"), "{err}");
    }

    #[test]
    fn ids_fall_into_buckets_of_65536() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(65_535), 0);
        assert_eq!(bucket_of(65_536), 1);
        assert_ne!(
            bucket_of(-1),
            bucket_of(1),
            "negative ids get buckets of their own"
        );
    }

    #[test]
    fn fact_versions_put_date_and_time_back_together() {
        let table = crate::WarehouseTable::by_name("fact_payment").unwrap();
        let ms = 1_700_000_123_456_i64;
        let mut columns: Vec<Arc<dyn Array>> = Vec::new();
        for column in table.arrow_schema().fields() {
            let rows = 1;
            let array: Arc<dyn Array> = match column.name().as_str() {
                "payment_id" => Arc::new(Int32Array::from(vec![42])),
                "last_updated_date" => Arc::new(Date32Array::from(vec![(ms / DAY_MS) as i32])),
                "last_updated_time" => Arc::new(Int64Array::from(vec![(ms % DAY_MS) * 1_000])),
                _ => arrow_array::new_null_array(column.data_type(), rows),
            };
            columns.push(array);
        }
        let schema = Arc::new(Schema::new(
            table
                .arrow_schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        assert_eq!(fact_versions(&batch, table.key).unwrap(), vec![(42, ms)]);
        assert!(fact_versions(&batch, "nope").is_err());
    }
}
