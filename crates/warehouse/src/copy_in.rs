//! Arrow batches → PostgreSQL binary COPY, encoded into large buffers.
//!
//! tokio-postgres' own binary writer flushes every 4 KB; encoding rows here
//! and sending 1 MiB chunks keeps the loader at COPY speed.

use arrow_array::{
    Array, BooleanArray, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch,
    StringArray, Time64MicrosecondArray, TimestampMillisecondArray,
};
use bytes::{BufMut, BytesMut};

use crate::{Error, Result, WType, WarehouseTable};

/// Bytes between sends.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Days between 1970-01-01 (Date32) and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS: i32 = 10_957;

/// The same epoch in milliseconds since the Unix epoch.
const PG_EPOCH_MS: i64 = 946_684_800_000;

/// The 19-byte header of a binary COPY stream.
pub fn put_header(buf: &mut BytesMut) {
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_u32(0);
    buf.put_u32(0);
}

/// The end-of-data marker.
pub fn put_trailer(buf: &mut BytesMut) {
    buf.put_i16(-1);
}

/// Appends every row of `batch`, whose columns follow `table`'s definition.
pub fn put_batch(buf: &mut BytesMut, table: &WarehouseTable, batch: &RecordBatch) -> Result<()> {
    let columns = columns_of(table, batch)?;
    for row in 0..batch.num_rows() {
        buf.put_i16(columns.len() as i16);
        for column in &columns {
            column.put(buf, row);
        }
    }
    Ok(())
}

/// Appends every row of `batch` like [`put_batch`], each led by an `int4`
/// record key: `first`, `first + 1`, …. Returns the key after the last row.
pub fn put_numbered_batch(
    buf: &mut BytesMut,
    table: &WarehouseTable,
    batch: &RecordBatch,
    first: i64,
) -> Result<i64> {
    let columns = columns_of(table, batch)?;
    let next = first + batch.num_rows() as i64;
    if first < 1 || next - 1 > i64::from(i32::MAX) {
        return Err(Error::Arrow(
            arrow_schema::ArrowError::InvalidArgumentError(format!(
                "{}: record keys {first}..{next} leave the int4 range of its serial",
                table.name
            )),
        ));
    }
    let fields = columns.len() as i16 + 1;
    for (row, key) in (first..next).enumerate() {
        buf.put_i16(fields);
        buf.put_i32(4);
        buf.put_i32(key as i32);
        for column in &columns {
            column.put(buf, row);
        }
    }
    Ok(next)
}

fn columns_of<'a>(table: &WarehouseTable, batch: &'a RecordBatch) -> Result<Vec<Column<'a>>> {
    let columns: Vec<Column<'_>> = table
        .columns
        .iter()
        .zip(batch.columns())
        .map(|(def, array)| {
            Column::of(def.ty, array.as_ref()).ok_or_else(|| mismatch(table, def.name))
        })
        .collect::<Result<_>>()?;
    if columns.len() != table.columns.len() {
        return Err(mismatch(table, "(column count)"));
    }
    Ok(columns)
}

fn mismatch(table: &WarehouseTable, column: &str) -> Error {
    Error::Arrow(arrow_schema::ArrowError::SchemaError(format!(
        "{}.{column}: processed file does not match the table definition",
        table.name
    )))
}

enum Column<'a> {
    Int(&'a Int32Array),
    Text(&'a StringArray),
    Date(&'a Date32Array),
    Time(&'a Time64MicrosecondArray),
    Money(&'a Decimal128Array),
    Bool(&'a BooleanArray),
    BigInt(&'a Int64Array),
    Timestamp(&'a TimestampMillisecondArray),
}

impl<'a> Column<'a> {
    fn of(ty: WType, array: &'a dyn Array) -> Option<Self> {
        let any = array.as_any();
        Some(match ty {
            WType::Int => Column::Int(any.downcast_ref()?),
            WType::Text => Column::Text(any.downcast_ref()?),
            WType::Date => Column::Date(any.downcast_ref()?),
            // Microseconds since midnight are `time`'s binary form.
            WType::Time => match any.downcast_ref::<Int64Array>() {
                Some(micros) => Column::BigInt(micros),
                // Parquet TIME, in files written before December 2026.
                None => Column::Time(any.downcast_ref()?),
            },
            WType::Money => Column::Money(any.downcast_ref()?),
            WType::Bool => Column::Bool(any.downcast_ref()?),
            WType::BigInt => Column::BigInt(any.downcast_ref()?),
            WType::Timestamp => Column::Timestamp(any.downcast_ref()?),
        })
    }

    fn put(&self, buf: &mut BytesMut, row: usize) {
        let null = match self {
            Column::Int(a) => a.is_null(row),
            Column::Text(a) => a.is_null(row),
            Column::Date(a) => a.is_null(row),
            Column::Time(a) => a.is_null(row),
            Column::Money(a) => a.is_null(row),
            Column::Bool(a) => a.is_null(row),
            Column::BigInt(a) => a.is_null(row),
            Column::Timestamp(a) => a.is_null(row),
        };
        if null {
            buf.put_i32(-1);
            return;
        }
        match self {
            Column::Int(a) => {
                buf.put_i32(4);
                buf.put_i32(a.value(row));
            }
            Column::Text(a) => {
                let text = a.value(row).as_bytes();
                buf.put_i32(text.len() as i32);
                buf.put_slice(text);
            }
            Column::Date(a) => {
                buf.put_i32(4);
                buf.put_i32(a.value(row) - PG_EPOCH_DAYS);
            }
            Column::Time(a) => {
                buf.put_i32(8);
                buf.put_i64(a.value(row));
            }
            Column::Money(a) => put_numeric(buf, a.value(row), a.scale().max(0) as u32),
            Column::Bool(a) => {
                buf.put_i32(1);
                buf.put_u8(u8::from(a.value(row)));
            }
            Column::BigInt(a) => {
                buf.put_i32(8);
                buf.put_i64(a.value(row));
            }
            Column::Timestamp(a) => {
                buf.put_i32(8);
                buf.put_i64((a.value(row) - PG_EPOCH_MS).saturating_mul(1000));
            }
        }
    }
}

/// Writes a scaled integer (`value` × 10^-`scale`) as a binary `numeric`.
pub fn put_numeric(buf: &mut BytesMut, value: i128, scale: u32) {
    let negative = value < 0;
    let magnitude = value.unsigned_abs();
    let ten_scale = 10u128.pow(scale);
    let (mut integer, fraction) = (magnitude / ten_scale, magnitude % ten_scale);
    // Base-10000 groups of the integer part, most significant first.
    let mut groups: Vec<u16> = Vec::new();
    while integer > 0 {
        groups.push((integer % 10_000) as u16);
        integer /= 10_000;
    }
    groups.reverse();
    let weight = groups.len() as i16 - 1;
    // The fraction, padded to whole groups of four digits.
    let fraction_groups = scale.div_ceil(4);
    let mut fraction = fraction * 10u128.pow(fraction_groups * 4 - scale);
    let mut tail: Vec<u16> = Vec::new();
    for _ in 0..fraction_groups {
        tail.push((fraction % 10_000) as u16);
        fraction /= 10_000;
    }
    tail.reverse();
    groups.extend(tail);
    let weight = if groups.iter().all(|g| *g == 0) {
        0
    } else {
        weight
    };
    while groups.last() == Some(&0) {
        groups.pop();
    }
    // Leading zero groups (a value below 1) move the weight down.
    let leading = groups.iter().take_while(|g| **g == 0).count();
    let weight = weight - leading as i16;
    let groups = &groups[leading..];
    buf.put_i32(8 + 2 * groups.len() as i32);
    buf.put_u16(groups.len() as u16);
    buf.put_i16(if groups.is_empty() { 0 } else { weight });
    buf.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    buf.put_u16(scale as u16);
    for group in groups {
        buf.put_u16(*group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_of_day_encodes_alike_from_the_lakes_long_and_from_parquet_time() {
        // 12:34:56.789
        let at = 45_296_789_000_i64;
        let micros = Int64Array::from(vec![Some(at), None]);
        let time = Time64MicrosecondArray::from(vec![Some(at), None]);
        let (mut from_long, mut from_time) = (BytesMut::new(), BytesMut::new());
        for row in 0..2 {
            Column::of(WType::Time, &micros)
                .unwrap()
                .put(&mut from_long, row);
            Column::of(WType::Time, &time)
                .unwrap()
                .put(&mut from_time, row);
        }
        assert_eq!(from_long, from_time);
        let mut expected = BytesMut::new();
        expected.put_i32(8);
        expected.put_i64(at);
        expected.put_i32(-1);
        assert_eq!(from_long, expected);
        assert!(Column::of(WType::Time, &StringArray::from(vec!["12:34"])).is_none());
    }

    fn numeric(value: i128) -> Vec<u16> {
        let mut buf = BytesMut::new();
        put_numeric(&mut buf, value, 2);
        buf[4..]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numbered_rows_lead_with_their_record_key() {
        let table = crate::WarehouseTable::by_name("dim_payment_type").unwrap();
        let batch = RecordBatch::try_new(
            table.arrow_schema(),
            vec![
                std::sync::Arc::new(Int32Array::from(vec![7, 8])),
                std::sync::Arc::new(StringArray::from(vec!["card", "cash"])),
            ],
        )
        .unwrap();
        let mut plain = BytesMut::new();
        put_batch(&mut plain, table, &batch).unwrap();
        let mut numbered = BytesMut::new();
        assert_eq!(
            put_numbered_batch(&mut numbered, table, &batch, 41).unwrap(),
            43
        );
        // Row 1: 3 fields, the key 41 (length 4), then the row as put_batch wrote it.
        let row = 2 + 8 + 8 + 8;
        assert_eq!(numbered[..2], 3i16.to_be_bytes());
        assert_eq!(numbered[2..10], [0, 0, 0, 4, 0, 0, 0, 41]);
        assert_eq!(numbered[10..row], plain[2..row - 8]);
        assert_eq!(numbered[row + 6..row + 10], 42i32.to_be_bytes());
        assert_eq!(numbered.len(), plain.len() + 2 * 8);
        // Keys past the int4 range of a serial are refused.
        let last = i64::from(i32::MAX);
        assert!(put_numbered_batch(&mut BytesMut::new(), table, &batch, last).is_err());
        assert!(put_numbered_batch(&mut BytesMut::new(), table, &batch, last - 1).is_ok());
    }

    #[test]
    fn numerics_encode_like_postgres() {
        // [ndigits, weight, sign, dscale, digits…]
        assert_eq!(numeric(55_254_862), vec![3, 1, 0, 2, 55, 2548, 6200]);
        assert_eq!(numeric(394), vec![2, 0, 0, 2, 3, 9400]);
        assert_eq!(numeric(-5), vec![1, 0xFFFF, 0x4000, 2, 500]);
        assert_eq!(numeric(0), vec![0, 0, 0, 2]);
        assert_eq!(numeric(100_000_000_000), vec![1, 2, 0, 2, 10]);
        assert_eq!(numeric(100), vec![1, 0, 0, 2, 1]);
    }
}
