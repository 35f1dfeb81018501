//! Arrow values back into PostgreSQL's COPY text format, so the warehouse
//! can `COPY <table> FROM STDIN` the lake's rows and hold exactly the
//! source's values.
//!
//! One line per row, fields separated by tabs, `\N` for NULL, and
//! backslash, tab, newline and carriage return escaped with a backslash.
//! Each value is written in a form PostgreSQL's input function reads back
//! as the same value: floats in their shortest round-trip form, decimals
//! with their scale, dates and timestamps with ` BC` before year 1,
//! `timestamptz` in UTC (`+00`), `bytea` as `\x` and hex, arrays as array
//! literals with every element double-quoted (a NULL element is the bare
//! word `NULL`, the string "NULL" is `"NULL"`).

use std::fmt::Write;

use arrow_array::{
    Array, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, LargeStringArray, ListArray, RecordBatch, StringArray,
    Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, TimeUnit};

use crate::{Error, Result, types::SourceColumn};

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// Appends `batch`'s rows to `buf` as COPY text lines; `columns` are the
/// batch's columns in order (their names are used in errors).
pub fn put_rows(buf: &mut Vec<u8>, batch: &RecordBatch, columns: &[SourceColumn]) -> Result<()> {
    if batch.num_columns() != columns.len() {
        return Err(error(format!(
            "a batch of {} columns for {} declared columns",
            batch.num_columns(),
            columns.len()
        )));
    }
    let values: Vec<Values<'_>> = batch
        .columns()
        .iter()
        .zip(columns)
        .map(|(array, column)| {
            Values::new(array.as_ref())
                .map_err(|reason| error(format!("column {}: {reason}", column.name)))
        })
        .collect::<Result<_>>()?;
    let mut scratch = String::new();
    for row in 0..batch.num_rows() {
        for (index, (values, column)) in values.iter().zip(columns).enumerate() {
            if index > 0 {
                buf.push(b'\t');
            }
            if values.is_null(row) {
                buf.extend_from_slice(b"\\N");
                continue;
            }
            scratch.clear();
            values.render(row, &mut scratch).map_err(|reason| {
                error(format!("column {}, row {}: {reason}", column.name, row + 1))
            })?;
            escape_into(buf, &scratch);
        }
        buf.push(b'\n');
    }
    Ok(())
}

fn error(reason: String) -> Error {
    Error::Decode {
        table: "(rows for the warehouse)".into(),
        reason,
    }
}

/// Appends `text` with COPY's text-format escapes.
fn escape_into(buf: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(escaped);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// A column's array, downcast once per batch.
enum Values<'a> {
    Int16(&'a Int16Array),
    Int32(&'a Int32Array),
    Int64(&'a Int64Array),
    Float32(&'a Float32Array),
    Float64(&'a Float64Array),
    Bool(&'a BooleanArray),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Decimal(&'a Decimal128Array, i8),
    Date(&'a Date32Array),
    Time(&'a Time64MicrosecondArray),
    Timestamp(&'a TimestampMicrosecondArray, bool),
    Binary(&'a BinaryArray),
    List(&'a ListArray, Box<Values<'a>>),
}

fn downcast<T: 'static>(array: &dyn Array) -> std::result::Result<&T, String> {
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        format!(
            "Arrow array of type {} is not what it says",
            array.data_type()
        )
    })
}

impl<'a> Values<'a> {
    fn new(array: &'a dyn Array) -> std::result::Result<Values<'a>, String> {
        Ok(match array.data_type() {
            DataType::Int16 => Values::Int16(downcast(array)?),
            DataType::Int32 => Values::Int32(downcast(array)?),
            DataType::Int64 => Values::Int64(downcast(array)?),
            DataType::Float32 => Values::Float32(downcast(array)?),
            DataType::Float64 => Values::Float64(downcast(array)?),
            DataType::Boolean => Values::Bool(downcast(array)?),
            DataType::Utf8 => Values::Utf8(downcast(array)?),
            DataType::LargeUtf8 => Values::LargeUtf8(downcast(array)?),
            DataType::Decimal128(_, scale) => Values::Decimal(downcast(array)?, *scale),
            DataType::Date32 => Values::Date(downcast(array)?),
            DataType::Time64(TimeUnit::Microsecond) => Values::Time(downcast(array)?),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                let utc = match tz.as_deref() {
                    None => false,
                    Some("UTC" | "+00:00" | "Z" | "Etc/UTC") => true,
                    Some(other) => return Err(format!("timestamps in time zone {other}")),
                };
                Values::Timestamp(downcast(array)?, utc)
            }
            DataType::Binary => Values::Binary(downcast(array)?),
            DataType::List(_) => {
                let list: &ListArray = downcast(array)?;
                Values::List(list, Box::new(Values::new(list.values().as_ref())?))
            }
            other => {
                return Err(format!(
                    "Arrow type {other} has no PostgreSQL text form here"
                ));
            }
        })
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Values::Int16(a) => a.is_null(row),
            Values::Int32(a) => a.is_null(row),
            Values::Int64(a) => a.is_null(row),
            Values::Float32(a) => a.is_null(row),
            Values::Float64(a) => a.is_null(row),
            Values::Bool(a) => a.is_null(row),
            Values::Utf8(a) => a.is_null(row),
            Values::LargeUtf8(a) => a.is_null(row),
            Values::Decimal(a, _) => a.is_null(row),
            Values::Date(a) => a.is_null(row),
            Values::Time(a) => a.is_null(row),
            Values::Timestamp(a, _) => a.is_null(row),
            Values::Binary(a) => a.is_null(row),
            Values::List(a, _) => a.is_null(row),
        }
    }

    /// The value at `row` (not NULL) as PostgreSQL's input function reads it.
    fn render(&self, row: usize, out: &mut String) -> std::result::Result<(), String> {
        match self {
            Values::Int16(a) => write_display(out, a.value(row)),
            Values::Int32(a) => write_display(out, a.value(row)),
            Values::Int64(a) => write_display(out, a.value(row)),
            Values::Float32(a) => float(out, a.value(row).into(), format!("{:?}", a.value(row))),
            Values::Float64(a) => float(out, a.value(row), format!("{:?}", a.value(row))),
            Values::Bool(a) => out.push(if a.value(row) { 't' } else { 'f' }),
            Values::Utf8(a) => out.push_str(a.value(row)),
            Values::LargeUtf8(a) => out.push_str(a.value(row)),
            Values::Decimal(a, scale) => decimal(out, a.value(row), *scale),
            Values::Date(a) => {
                let (year, month, day) = civil_from_days(a.value(row).into());
                write_date(out, year, month, day);
                bc(out, year);
            }
            Values::Time(a) => {
                let micros = a.value(row);
                if !(0..=DAY_MICROS).contains(&micros) {
                    return Err(format!("time of {micros} µs is not within a day"));
                }
                write_time(out, micros);
            }
            Values::Timestamp(a, utc) => {
                let micros = a.value(row);
                let (year, month, day) = civil_from_days(micros.div_euclid(DAY_MICROS));
                write_date(out, year, month, day);
                out.push(' ');
                write_time(out, micros.rem_euclid(DAY_MICROS));
                if *utc {
                    out.push_str("+00");
                }
                bc(out, year);
            }
            Values::Binary(a) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let bytes = a.value(row);
                out.reserve(2 + 2 * bytes.len());
                out.push_str("\\x");
                for b in bytes {
                    out.push(HEX[usize::from(b >> 4)] as char);
                    out.push(HEX[usize::from(b & 0xf)] as char);
                }
            }
            Values::List(list, elements) => {
                let offsets = list.value_offsets();
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                out.push('{');
                let mut element = String::new();
                for i in start..end {
                    if i > start {
                        out.push(',');
                    }
                    if elements.is_null(i) {
                        out.push_str("NULL");
                        continue;
                    }
                    element.clear();
                    elements.render(i, &mut element)?;
                    out.push('"');
                    for c in element.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
                out.push('}');
            }
        }
        Ok(())
    }
}

fn write_display(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

/// A float: `debug` is Rust's shortest round-trip form (`1e300`, `-0.0`),
/// which PostgreSQL's float input reads as the same value.
fn float(out: &mut String, value: f64, debug: String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(&debug);
    }
}

/// A Decimal128 value with `scale` digits after the point.
fn decimal(out: &mut String, value: i128, scale: i8) {
    if value < 0 {
        out.push('-');
    }
    let digits = value.unsigned_abs().to_string();
    if scale <= 0 {
        out.push_str(&digits);
        if digits != "0" {
            out.extend(std::iter::repeat_n('0', scale.unsigned_abs().into()));
        }
        return;
    }
    let scale = scale as usize;
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(&digits);
    }
}

/// Year (astronomical: 0 is 1 BC), month and day of a day count since
/// 1970-01-01, in the proleptic Gregorian calendar PostgreSQL uses.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD`, the year as PostgreSQL counts it (BC years positive).
fn write_date(out: &mut String, year: i64, month: u32, day: u32) {
    let shown = if year <= 0 { 1 - year } else { year };
    let _ = write!(out, "{shown:04}-{month:02}-{day:02}");
}

fn bc(out: &mut String, year: i64) {
    if year <= 0 {
        out.push_str(" BC");
    }
}

/// `HH:MM:SS.ffffff` of microseconds since midnight (24:00:00 allowed).
fn write_time(out: &mut String, micros: i64) {
    let (seconds, fraction) = (micros / 1_000_000, micros % 1_000_000);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{fraction:06}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StringBuilder};

    use super::*;
    use crate::types::{PgColumnType, SourceColumn, arrow_schema};

    fn col(name: &str, ty: PgColumnType) -> SourceColumn {
        SourceColumn {
            name: name.into(),
            ty,
            pg_type: String::new(),
            nullable: true,
            cast: None,
        }
    }

    #[test]
    fn dates_count_days_in_both_directions() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(10_957), (2000, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
        let mut s = String::new();
        let (y, m, d) = civil_from_days(-719_529);
        write_date(&mut s, y, m, d);
        bc(&mut s, y);
        assert_eq!(s, "0002-12-31 BC");
    }

    #[test]
    fn values_render_as_postgresql_reads_them() {
        use PgColumnType as T;
        let columns = vec![
            col("i", T::Int4),
            col("f", T::Float8),
            col("r", T::Float4),
            col(
                "n",
                T::Numeric {
                    precision: Some(10),
                    scale: Some(3),
                },
            ),
            col("t", T::Text),
            col("b", T::Bytea),
            col("ts", T::Timestamptz),
            col("tm", T::Time),
            col("d", T::Date),
            col("ok", T::Bool),
            col(
                "a",
                T::Array {
                    element: Box::new(T::Text),
                },
            ),
        ];
        let mut list = ListBuilder::new(StringBuilder::new());
        list.values().append_value("a,b");
        list.values().append_null();
        list.values().append_value("NULL");
        list.values().append_value("q\"\\\t");
        list.append(true);
        list.append(true);
        let list = list.finish();
        let batch = RecordBatch::try_new(
            arrow_schema(&columns),
            vec![
                Arc::new(Int32Array::from(vec![Some(-5), None])),
                Arc::new(Float64Array::from(vec![f64::NAN, -0.0])),
                Arc::new(Float32Array::from(vec![f32::NEG_INFINITY, 0.1])),
                Arc::new(
                    Decimal128Array::from(vec![-5, 1_234_567])
                        .with_precision_and_scale(10, 3)
                        .unwrap(),
                ),
                Arc::new(StringArray::from(vec!["a\tb\\c\nd\re", ""])),
                Arc::new(BinaryArray::from(vec![&[0u8, 255][..], &[][..]])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![-1, 946_684_800_000_000])
                        .with_timezone("UTC"),
                ),
                Arc::new(Time64MicrosecondArray::from(vec![86_399_999_999, 0])),
                Arc::new(Date32Array::from(vec![-719_529, 0])),
                Arc::new(BooleanArray::from(vec![true, false])),
                Arc::new(list),
            ],
        )
        .unwrap();
        let mut buf = Vec::new();
        put_rows(&mut buf, &batch, &columns).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "-5\tNaN\t-Infinity\t-0.005\ta\\tb\\\\c\\nd\\re\t\\\\x00ff\t\
             1969-12-31 23:59:59.999999+00\t23:59:59.999999\t0002-12-31 BC\tt\t\
             {\"a,b\",NULL,\"NULL\",\"q\\\\\"\\\\\\\\\\t\"}"
        );
        assert_eq!(
            lines[1],
            "\\N\t-0.0\t0.1\t1234.567\t\t\\\\x\t2000-01-01 00:00:00.000000+00\t\
             00:00:00.000000\t1970-01-01\tf\t{}"
        );
    }

    #[test]
    fn decimals_keep_their_scale() {
        let render = |v, s| {
            let mut out = String::new();
            decimal(&mut out, v, s);
            out
        };
        assert_eq!(render(0, 2), "0.00");
        assert_eq!(render(-1, 2), "-0.01");
        assert_eq!(render(12_345, 0), "12345");
        assert_eq!(
            render(i128::MAX, 38),
            format!("1.{}", &i128::MAX.to_string()[1..])
        );
        assert_eq!(render(12, -2), "1200");
    }
}
