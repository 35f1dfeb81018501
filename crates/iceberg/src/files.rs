//! Data files as Iceberg sees them: counts, bounds and the partition value,
//! read from the Parquet footer the lake already wrote.

use std::collections::HashMap;

use arrow_schema::{DataType, Schema as ArrowSchema, TimeUnit};
use chrono::{Datelike, NaiveDate};
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, Literal, PrimitiveType,
    Schema, Struct, Transform, Type,
};
use parquet::file::{metadata::ParquetMetaData, statistics::Statistics};

use crate::{Error, Result};

/// How a table is partitioned: a transform of one of its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioning {
    /// One partition.
    None,
    /// By the calendar month of a date or timestamp column.
    Month(String),
    /// By the day of a date or timestamp column.
    Day(String),
}

impl Partitioning {
    /// The source column, if partitioned.
    pub fn column(&self) -> Option<&str> {
        match self {
            Partitioning::None => None,
            Partitioning::Month(c) | Partitioning::Day(c) => Some(c),
        }
    }

    pub(crate) fn transform(&self) -> Option<Transform> {
        match self {
            Partitioning::None => None,
            Partitioning::Month(_) => Some(Transform::Month),
            Partitioning::Day(_) => Some(Transform::Day),
        }
    }

    /// The partition value (months or days since 1970) of a value of the
    /// source column, given as days since 1970 or microseconds since 1970.
    pub(crate) fn value_of(&self, value: TemporalValue) -> Option<i32> {
        let day = match value {
            TemporalValue::Days(d) => d,
            TemporalValue::Micros(us) => us.div_euclid(86_400_000_000) as i32,
        };
        match self {
            Partitioning::None => None,
            Partitioning::Day(_) => Some(day),
            Partitioning::Month(_) => {
                let date = NaiveDate::from_num_days_from_ce_opt(day + EPOCH_CE_DAYS)?;
                Some((date.year() - 1970) * 12 + date.month0() as i32)
            }
        }
    }
}

/// Days from 0001-01-01 (CE day 1) to 1970-01-01.
const EPOCH_CE_DAYS: i32 = 719_163;

/// A value of a date or timestamp column, in Iceberg's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TemporalValue {
    /// A date: days since 1970-01-01.
    Days(i32),
    /// A timestamp: microseconds since 1970-01-01.
    Micros(i64),
}

/// What a column's values are, for bounds: the Iceberg type and the factor
/// from the file's timestamp unit to microseconds.
fn bound_kind(data_type: &DataType) -> Option<(PrimitiveType, i64)> {
    Some(match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 => (PrimitiveType::Int, 1),
        DataType::Int64 => (PrimitiveType::Long, 1),
        DataType::Date32 => (PrimitiveType::Date, 1),
        DataType::Utf8 | DataType::LargeUtf8 => (PrimitiveType::String, 1),
        DataType::Boolean => (PrimitiveType::Boolean, 1),
        DataType::Timestamp(unit, tz) => {
            let factor = match unit {
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1,
                _ => return None,
            };
            let ty = if tz.is_some() {
                PrimitiveType::Timestamptz
            } else {
                PrimitiveType::Timestamp
            };
            (ty, factor)
        }
        // Floats (NaN ordering), decimals and times carry counts only.
        _ => return None,
    })
}

fn datum(ty: &PrimitiveType, factor: i64, stats: &Statistics, max: bool) -> Option<Datum> {
    Some(match (ty, stats) {
        (PrimitiveType::Int, Statistics::Int32(s)) => {
            Datum::int(*if max { s.max_opt()? } else { s.min_opt()? })
        }
        (PrimitiveType::Date, Statistics::Int32(s)) => {
            Datum::date(*if max { s.max_opt()? } else { s.min_opt()? })
        }
        (PrimitiveType::Long, Statistics::Int64(s)) => {
            Datum::long(*if max { s.max_opt()? } else { s.min_opt()? })
        }
        (PrimitiveType::Timestamp, Statistics::Int64(s)) => {
            Datum::timestamp_micros(if max { s.max_opt()? } else { s.min_opt()? } * factor)
        }
        (PrimitiveType::Timestamptz, Statistics::Int64(s)) => {
            Datum::timestamptz_micros(if max { s.max_opt()? } else { s.min_opt()? } * factor)
        }
        (PrimitiveType::Boolean, Statistics::Boolean(s)) => {
            Datum::bool(*if max { s.max_opt()? } else { s.min_opt()? })
        }
        (PrimitiveType::String, Statistics::ByteArray(s)) => {
            let bytes = if max { s.max_opt()? } else { s.min_opt()? };
            Datum::string(std::str::from_utf8(bytes.data()).ok()?)
        }
        _ => return None,
    })
}

fn smaller(a: &Datum, b: &Datum) -> bool {
    a.partial_cmp(b) == Some(std::cmp::Ordering::Less)
}

/// A data file of the lake, described for an Iceberg manifest.
#[derive(Debug, Clone)]
pub(crate) struct FileStats {
    /// Rows.
    pub rows: u64,
    /// Per field id: compressed bytes, values, nulls.
    pub(crate) sizes: HashMap<i32, u64>,
    pub(crate) values: HashMap<i32, u64>,
    pub(crate) nulls: HashMap<i32, u64>,
    /// Per field id: the smallest and largest value, where known.
    pub(crate) lower: HashMap<i32, Datum>,
    pub(crate) upper: HashMap<i32, Datum>,
    pub(crate) split_offsets: Vec<i64>,
}

/// Reads counts and bounds from a Parquet footer, matching columns to the
/// table's fields by name.
pub(crate) fn stats(schema: &Schema, arrow: &ArrowSchema, footer: &ParquetMetaData) -> FileStats {
    let mut out = FileStats {
        rows: footer.file_metadata().num_rows().max(0) as u64,
        sizes: HashMap::new(),
        values: HashMap::new(),
        nulls: HashMap::new(),
        lower: HashMap::new(),
        upper: HashMap::new(),
        split_offsets: footer
            .row_groups()
            .iter()
            .filter_map(|g| g.file_offset())
            .collect(),
    };
    for group in footer.row_groups() {
        for chunk in group.columns() {
            let name = chunk.column_descr().path().string();
            let Some(field) = schema.field_by_name(&name) else {
                continue;
            };
            let id = field.id;
            *out.sizes.entry(id).or_default() += chunk.compressed_size().max(0) as u64;
            *out.values.entry(id).or_default() += chunk.num_values().max(0) as u64;
            let Some(stats) = chunk.statistics() else {
                continue;
            };
            if let Some(nulls) = stats.null_count_opt() {
                *out.nulls.entry(id).or_default() += nulls;
            }
            let Some((ty, factor)) = arrow
                .field_with_name(&name)
                .ok()
                .and_then(|f| bound_kind(f.data_type()))
            else {
                continue;
            };
            if *field.field_type != Type::Primitive(ty.clone()) {
                continue;
            }
            if let Some(low) = datum(&ty, factor, stats, false) {
                let keep = out.lower.get(&id).is_some_and(|l| !smaller(&low, l));
                if !keep {
                    out.lower.insert(id, low);
                }
            }
            if let Some(high) = datum(&ty, factor, stats, true) {
                let keep = out.upper.get(&id).is_some_and(|u| !smaller(u, &high));
                if !keep {
                    out.upper.insert(id, high);
                }
            }
        }
    }
    out
}

fn temporal(datum: &Datum) -> Option<TemporalValue> {
    use iceberg::spec::PrimitiveLiteral;
    match (datum.data_type(), datum.literal()) {
        (PrimitiveType::Date, PrimitiveLiteral::Int(d)) => Some(TemporalValue::Days(*d)),
        (PrimitiveType::Timestamp | PrimitiveType::Timestamptz, PrimitiveLiteral::Long(us)) => {
            Some(TemporalValue::Micros(*us))
        }
        _ => None,
    }
}

/// A file's partition: `None` in an unpartitioned table, else the value of
/// the transform, `Some(None)` for rows whose column is NULL (a business
/// date not known yet, a delete that carries only the key).
pub(crate) type PartitionValue = Option<Option<i32>>;

/// The partition of a file, or `Err(())` when its rows span several
/// partitions (or their bounds are unknown) and the file must be split.
pub(crate) fn partition_of(
    schema: &Schema,
    partitioning: &Partitioning,
    stats: &FileStats,
) -> std::result::Result<PartitionValue, ()> {
    let Some(column) = partitioning.column() else {
        return Ok(None);
    };
    let field = schema.field_by_name(column).ok_or(())?;
    if stats.rows == 0 {
        return Err(());
    }
    let nulls = stats.nulls.get(&field.id).copied().unwrap_or(0);
    if nulls == stats.rows {
        return Ok(Some(None));
    }
    if nulls > 0 {
        return Err(());
    }
    let low = stats.lower.get(&field.id).and_then(temporal).ok_or(())?;
    let high = stats.upper.get(&field.id).and_then(temporal).ok_or(())?;
    match (partitioning.value_of(low), partitioning.value_of(high)) {
        (Some(a), Some(b)) if a == b => Ok(Some(Some(a))),
        _ => Err(()),
    }
}

/// The partition tuple of a manifest entry.
pub(crate) fn partition_struct(value: PartitionValue) -> Struct {
    match value {
        Some(value) => Struct::from_iter([value.map(Literal::int)]),
        None => Struct::empty(),
    }
}

/// The manifest entry's data file for a file at `path`.
pub(crate) fn data_file(
    path: String,
    bytes: u64,
    stats: &FileStats,
    partition: Struct,
    spec_id: i32,
) -> Result<DataFile> {
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(path)
        .file_format(DataFileFormat::Parquet)
        .partition(partition)
        .partition_spec_id(spec_id)
        .record_count(stats.rows)
        .file_size_in_bytes(bytes)
        .column_sizes(stats.sizes.clone())
        .value_counts(stats.values.clone())
        .null_value_counts(stats.nulls.clone())
        .lower_bounds(stats.lower.clone())
        .upper_bounds(stats.upper.clone())
        .split_offsets(Some(stats.split_offsets.clone()))
        .build()
        .map_err(|e| {
            Error::Iceberg(iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("data file: {e}"),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_days_count_from_1970() {
        let month = Partitioning::Month("d".into());
        let day = Partitioning::Day("d".into());
        let d = |y, m, dd| {
            TemporalValue::Days(
                (NaiveDate::from_ymd_opt(y, m, dd).unwrap()
                    - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
                .num_days() as i32,
            )
        };
        assert_eq!(month.value_of(d(1970, 1, 31)), Some(0));
        assert_eq!(month.value_of(d(2024, 11, 15)), Some(54 * 12 + 10));
        assert_eq!(month.value_of(d(1969, 12, 31)), Some(-1));
        assert_eq!(day.value_of(d(1970, 1, 2)), Some(1));
        assert_eq!(day.value_of(TemporalValue::Micros(-1)), Some(-1));
        assert_eq!(
            day.value_of(TemporalValue::Micros(86_400_000_000 * 3 + 5)),
            Some(3)
        );
    }
}
