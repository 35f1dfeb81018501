//! PostgreSQL's binary COPY (`COPY (SELECT …) TO STDOUT (FORMAT binary)`)
//! into Arrow batches, for any column types [`crate::types`] maps.
//!
//! Values are appended straight into column builders as they are read; the
//! input may arrive split anywhere (a row may span chunks), so an incomplete
//! tail is carried over to the next chunk. No input, however malformed,
//! panics: it is an [`Error::Decode`] naming the table, the column and what
//! was wrong.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, ListArray, RecordBatch, RecordBatchOptions, StringArray,
    builder::{
        BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
        Float64Builder, Int16Builder, Int32Builder, Int64Builder, PrimitiveBuilder,
        Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
    },
    types::ArrowPrimitiveType,
};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, FieldRef, SchemaRef};

use crate::{
    Error, Result,
    types::{PgColumnType, SourceColumn, arrow_schema},
};

/// The 11-byte signature that starts every binary COPY stream.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

type ValueResult<T = ()> = std::result::Result<T, String>;

/// What a `numeric` on the wire is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Numeric<'a> {
    /// `NaN`.
    NaN,
    /// `Infinity` (negative: `-Infinity`).
    Infinity {
        /// Whether it is `-Infinity`.
        negative: bool,
    },
    /// A finite value: Σ digits\[i\] × 10000^(weight − i), shown with
    /// `dscale` digits after the point.
    Finite {
        /// Whether it is below zero.
        negative: bool,
        /// The weight of the first digit, in powers of 10000.
        weight: i16,
        /// Digits to show after the point.
        dscale: u16,
        /// Base-10000 digits, each 0..=9999, as on the wire (no copy).
        digits: Digits<'a>,
    },
}

/// Base-10000 digits as the wire has them: big-endian pairs of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digits<'a>(&'a [u8]);

impl Digits<'_> {
    fn get(&self, i: usize) -> Option<u16> {
        self.0
            .get(2 * i..2 * i + 2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
    }

    fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
    }
}

impl<'a> Numeric<'a> {
    /// Reads PostgreSQL's binary `numeric`.
    pub(crate) fn from_wire(value: &'a [u8]) -> ValueResult<Numeric<'a>> {
        if value.len() < 8 {
            return Err(format!("numeric of {} bytes has no header", value.len()));
        }
        let word = |i: usize| u16::from_be_bytes([value[2 * i], value[2 * i + 1]]);
        let ndigits = word(0) as i16;
        let weight = word(1) as i16;
        let sign = word(2);
        let dscale = word(3);
        if ndigits < 0 || value.len() != 8 + 2 * ndigits as usize {
            return Err(format!(
                "numeric with {ndigits} digits in {} bytes",
                value.len()
            ));
        }
        let negative = match sign {
            0x0000 => false,
            0x4000 => true,
            0xC000 => return Ok(Numeric::NaN),
            0xD000 => return Ok(Numeric::Infinity { negative: false }),
            0xF000 => return Ok(Numeric::Infinity { negative: true }),
            other => return Err(format!("numeric sign {other:#06x} is not valid")),
        };
        if dscale > 0x3FFF {
            return Err(format!("numeric display scale {dscale} is not valid"));
        }
        let digits = Digits(&value[8..]);
        if let Some(bad) = digits.iter().find(|d| *d > 9999) {
            return Err(format!("numeric digit {bad} is not below 10000"));
        }
        Ok(Numeric::Finite {
            negative,
            weight,
            dscale,
            digits,
        })
    }

    /// The value as PostgreSQL prints it: every digit of the display
    /// scale, `NaN`, `Infinity`, `-Infinity`.
    pub(crate) fn to_text(&self, out: &mut String) {
        let (negative, weight, dscale, digits) = match self {
            Numeric::NaN => return out.push_str("NaN"),
            Numeric::Infinity { negative: false } => return out.push_str("Infinity"),
            Numeric::Infinity { negative: true } => return out.push_str("-Infinity"),
            Numeric::Finite {
                negative,
                weight,
                dscale,
                digits,
            } => (*negative, i32::from(*weight), usize::from(*dscale), digits),
        };
        let digit = |i: i32| -> u16 {
            usize::try_from(i)
                .ok()
                .and_then(|i| digits.get(i))
                .unwrap_or(0)
        };
        if negative && digits.iter().any(|d| d != 0) {
            out.push('-');
        }
        // Integer part: groups 0..=weight.
        if weight < 0 {
            out.push('0');
        } else {
            let mut started = false;
            for i in 0..=weight {
                let d = digit(i);
                if started {
                    out.push_str(&format!("{d:04}"));
                } else if d != 0 || i == weight {
                    out.push_str(&d.to_string());
                    started = true;
                }
            }
        }
        if dscale > 0 {
            out.push('.');
            let mut written = 0;
            let mut i = weight + 1;
            while written < dscale {
                let group = format!("{:04}", digit(i));
                let take = (dscale - written).min(4);
                out.push_str(&group[..take]);
                written += take;
                i += 1;
            }
        }
    }

    /// The value scaled by 10^`scale`, if it has no more than `scale`
    /// digits after the point and fewer than `precision` digits in all.
    pub(crate) fn to_scaled(&self, precision: u8, scale: i8) -> ValueResult<i128> {
        let (negative, weight, digits) = match self {
            Numeric::NaN => return Err("NaN does not fit a decimal column".into()),
            Numeric::Infinity { .. } => {
                return Err("an infinite numeric does not fit a decimal column".into());
            }
            Numeric::Finite {
                negative,
                weight,
                digits,
                ..
            } => (*negative, i32::from(*weight), digits),
        };
        let too_large = || format!("numeric does not fit numeric({precision},{scale})");
        let mut scaled: i128 = 0;
        for (i, digit) in digits.iter().enumerate() {
            if digit == 0 {
                continue;
            }
            let digit = i128::from(digit);
            // This digit is digit × 10000^(weight − i): in units of
            // 10^-scale that is digit × 10^(4 (weight − i) + scale).
            let exponent = 4 * (weight - i as i32) + i32::from(scale);
            let part = if exponent >= 0 {
                10i128
                    .checked_pow(exponent as u32)
                    .and_then(|p| digit.checked_mul(p))
                    .ok_or_else(too_large)?
            } else {
                match 10i128.checked_pow(exponent.unsigned_abs()) {
                    Some(divisor) if digit % divisor == 0 => digit / divisor,
                    _ => {
                        return Err(format!(
                            "numeric has more than {scale} digits after the point"
                        ));
                    }
                }
            };
            scaled = scaled.checked_add(part).ok_or_else(too_large)?;
        }
        let limit = 10i128
            .checked_pow(u32::from(precision))
            .unwrap_or(i128::MAX);
        if scaled >= limit {
            return Err(too_large());
        }
        Ok(if negative { -scaled } else { scaled })
    }
}

/// `N` bytes exactly.
fn fixed<const N: usize>(value: &[u8]) -> ValueResult<[u8; N]> {
    value
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", value.len()))
}

fn utf8(value: &[u8]) -> ValueResult<&str> {
    std::str::from_utf8(value).map_err(|e| format!("invalid UTF-8: {e}"))
}

/// An `interval` (months, days, microseconds) as an ISO 8601 duration
/// PostgreSQL reads back as the same value.
pub(crate) fn interval_iso(months: i32, days: i32, micros: i64, out: &mut String) {
    use std::fmt::Write;
    // PostgreSQL 17 stores infinite intervals as all-maximum/all-minimum.
    if (months, days, micros) == (i32::MAX, i32::MAX, i64::MAX) {
        return out.push_str("infinity");
    }
    if (months, days, micros) == (i32::MIN, i32::MIN, i64::MIN) {
        return out.push_str("-infinity");
    }
    out.push('P');
    let (years, months) = (months / 12, months % 12);
    if years != 0 {
        let _ = write!(out, "{years}Y");
    }
    if months != 0 {
        let _ = write!(out, "{months}M");
    }
    if days != 0 {
        let _ = write!(out, "{days}D");
    }
    if micros != 0 || (years, months, days) == (0, 0, 0) {
        out.push('T');
        let hours = micros / 3_600_000_000;
        let minutes = (micros % 3_600_000_000) / 60_000_000;
        let rest = micros % 60_000_000;
        if hours != 0 {
            let _ = write!(out, "{hours}H");
        }
        if minutes != 0 {
            let _ = write!(out, "{minutes}M");
        }
        if rest != 0 || (hours, minutes) == (0, 0) {
            if rest < 0 {
                out.push('-');
            }
            let rest = rest.unsigned_abs();
            let _ = write!(out, "{}", rest / 1_000_000);
            let fraction = rest % 1_000_000;
            if fraction != 0 {
                let digits = format!("{fraction:06}");
                let _ = write!(out, ".{}", digits.trim_end_matches('0'));
            }
            out.push('S');
        }
    }
}

/// `uuid`'s 16 bytes as lowercase hyphenated text.
fn uuid_text(bytes: &[u8; 16], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
}

/// How a text column's wire value becomes its Arrow string.
#[derive(Debug, Clone, Copy)]
enum TextKind {
    /// UTF-8 as sent (text, varchar, enums, json).
    Plain,
    /// A version byte (1), then the JSON text.
    Jsonb,
    /// Binary numeric, as its exact decimal text.
    Numeric,
    /// Binary interval, as ISO 8601.
    Interval,
    /// 16 bytes, as the canonical text.
    Uuid,
}

/// One column's (or one array's elements') values in the making.
///
/// Text is gathered as bytes and checked to be UTF-8 once per batch, when
/// the batch is finished: one pass over the batch's bytes costs a fraction
/// of a check per value (measured: a quarter of the decoding's CPU on three
/// 32-character id columns).
enum Column {
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Text(BinaryBuilder, TextKind, String),
    Decimal(Decimal128Builder, u8, i8),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Binary(BinaryBuilder),
    List(Box<ListColumn>),
}

/// A list column: element values plus offsets and validity.
struct ListColumn {
    field: FieldRef,
    values: Column,
    offsets: Vec<i32>,
    validity: NullBufferBuilder,
}

impl Column {
    fn new(ty: &PgColumnType) -> Column {
        use PgColumnType as T;
        let text = |kind| Column::Text(BinaryBuilder::new(), kind, String::new());
        match ty {
            T::Int2 => Column::Int16(Int16Builder::new()),
            T::Int4 => Column::Int32(Int32Builder::new()),
            T::Int8 => Column::Int64(Int64Builder::new()),
            T::Float4 => Column::Float32(Float32Builder::new()),
            T::Float8 => Column::Float64(Float64Builder::new()),
            T::Bool => Column::Bool(BooleanBuilder::new()),
            T::Text | T::Json | T::Enum { .. } => text(TextKind::Plain),
            T::Jsonb => text(TextKind::Jsonb),
            T::Interval => text(TextKind::Interval),
            T::Uuid => text(TextKind::Uuid),
            T::Numeric { .. } => match ty.decimal() {
                Some((precision, scale)) => Column::Decimal(
                    Decimal128Builder::new().with_data_type(DataType::Decimal128(precision, scale)),
                    precision,
                    scale,
                ),
                None => text(TextKind::Numeric),
            },
            T::Date => Column::Date(Date32Builder::new()),
            T::Time => Column::Time(Time64MicrosecondBuilder::new()),
            T::Timestamp => Column::Timestamp(TimestampMicrosecondBuilder::new()),
            T::Timestamptz => {
                Column::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            T::Bytea => Column::Binary(BinaryBuilder::new()),
            T::Array { element } => {
                let field = Arc::new(Field::new("item", element.arrow_type(), true));
                Column::List(Box::new(ListColumn {
                    field,
                    values: Column::new(element),
                    offsets: vec![0],
                    validity: NullBufferBuilder::new(0),
                }))
            }
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::Int16(b) => b.append_null(),
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Float32(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Text(b, ..) => b.append_null(),
            Column::Decimal(b, ..) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Time(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
            Column::Binary(b) => b.append_null(),
            Column::List(list) => {
                let end = *list.offsets.last().unwrap_or(&0);
                list.offsets.push(end);
                list.validity.append_null();
            }
        }
    }

    /// Appends one non-NULL value in its binary wire format.
    fn append(&mut self, value: &[u8]) -> ValueResult {
        match self {
            Column::Int16(b) => b.append_value(i16::from_be_bytes(fixed(value)?)),
            Column::Int32(b) => b.append_value(i32::from_be_bytes(fixed(value)?)),
            Column::Int64(b) => b.append_value(i64::from_be_bytes(fixed(value)?)),
            Column::Float32(b) => b.append_value(f32::from_be_bytes(fixed(value)?)),
            Column::Float64(b) => b.append_value(f64::from_be_bytes(fixed(value)?)),
            Column::Bool(b) => match fixed::<1>(value)? {
                [0] => b.append_value(false),
                [1] => b.append_value(true),
                [other] => return Err(format!("boolean byte {other} is neither 0 nor 1")),
            },
            Column::Text(b, kind, scratch) => match kind {
                TextKind::Plain => b.append_value(value),
                TextKind::Jsonb => match value.split_first() {
                    Some((1, text)) => b.append_value(text),
                    Some((version, _)) => {
                        return Err(format!("jsonb format version {version} is not 1"));
                    }
                    None => return Err("jsonb value has no version byte".into()),
                },
                TextKind::Numeric => {
                    scratch.clear();
                    Numeric::from_wire(value)?.to_text(scratch);
                    b.append_value(scratch.as_bytes());
                }
                TextKind::Interval => {
                    let bytes: [u8; 16] = fixed(value)?;
                    let micros = i64::from_be_bytes(fixed(&bytes[..8])?);
                    let days = i32::from_be_bytes(fixed(&bytes[8..12])?);
                    let months = i32::from_be_bytes(fixed(&bytes[12..])?);
                    scratch.clear();
                    interval_iso(months, days, micros, scratch);
                    b.append_value(scratch.as_bytes());
                }
                TextKind::Uuid => {
                    scratch.clear();
                    uuid_text(&fixed(value)?, scratch);
                    b.append_value(scratch.as_bytes());
                }
            },
            Column::Decimal(b, precision, scale) => {
                b.append_value(Numeric::from_wire(value)?.to_scaled(*precision, *scale)?)
            }
            Column::Date(b) => {
                let days = i32::from_be_bytes(fixed(value)?);
                if days == i32::MAX || days == i32::MIN {
                    return Err(infinite("date"));
                }
                b.append_value(
                    days.checked_add(PG_EPOCH_DAYS).ok_or_else(|| {
                        format!("date {days} days after 2000-01-01 is out of range")
                    })?,
                )
            }
            Column::Time(b) => {
                let micros = i64::from_be_bytes(fixed(value)?);
                if !(0..=DAY_MICROS).contains(&micros) {
                    return Err(format!("time of {micros} µs is not within a day"));
                }
                b.append_value(micros)
            }
            Column::Timestamp(b) => {
                let micros = i64::from_be_bytes(fixed(value)?);
                if micros == i64::MAX || micros == i64::MIN {
                    return Err(infinite("timestamp"));
                }
                b.append_value(micros.checked_add(PG_EPOCH_MICROS).ok_or_else(|| {
                    format!("timestamp {micros} µs after 2000-01-01 is out of range")
                })?)
            }
            Column::Binary(b) => b.append_value(value),
            Column::List(list) => list.append(value)?,
        }
        Ok(())
    }

    /// The values so far as an array; the builder starts again, sized for
    /// a batch like this one. (A finished builder keeps none of its
    /// capacity: grown again from nothing, each batch's buffers would be
    /// reallocated and copied a dozen times over.) `Err` names the first
    /// value (its index in this batch) that is not what its type says.
    fn finish(&mut self) -> std::result::Result<ArrayRef, (usize, String)> {
        Ok(match self {
            Column::Int16(b) => finish_primitive(b),
            Column::Int32(b) => finish_primitive(b),
            Column::Int64(b) => finish_primitive(b),
            Column::Float32(b) => finish_primitive(b),
            Column::Float64(b) => finish_primitive(b),
            Column::Bool(b) => {
                let array = b.finish();
                *b = BooleanBuilder::with_capacity(array.len());
                Arc::new(array)
            }
            Column::Text(b, ..) => {
                let bytes = b.finish();
                *b = BinaryBuilder::with_capacity(bytes.len(), bytes.value_data().len());
                match StringArray::try_from_binary(bytes.clone()) {
                    Ok(text) => Arc::new(text),
                    Err(_) => return Err(first_invalid_utf8(&bytes)),
                }
            }
            Column::Decimal(b, ..) => finish_primitive(b),
            Column::Date(b) => finish_primitive(b),
            Column::Time(b) => finish_primitive(b),
            Column::Timestamp(b) => finish_primitive(b),
            Column::Binary(b) => {
                let array = b.finish();
                *b = BinaryBuilder::with_capacity(array.len(), array.value_data().len());
                Arc::new(array)
            }
            Column::List(list) => list.finish()?,
        })
    }
}

/// The first value of `bytes` that is not UTF-8, and why (for the error of
/// a batch that failed the check).
fn first_invalid_utf8(bytes: &BinaryArray) -> (usize, String) {
    bytes
        .iter()
        .enumerate()
        .find_map(|(index, value)| Some((index, utf8(value?).err()?)))
        // The batch as a whole fails only if some value does.
        .unwrap_or_else(|| (0, "invalid UTF-8".into()))
}

/// [`Column::finish`] for a fixed-width column (its Arrow type kept: a
/// decimal's precision and scale, a timestamp's zone).
fn finish_primitive<T: ArrowPrimitiveType>(builder: &mut PrimitiveBuilder<T>) -> ArrayRef {
    let array = builder.finish();
    *builder =
        PrimitiveBuilder::with_capacity(array.len()).with_data_type(array.data_type().clone());
    Arc::new(array)
}

fn infinite(what: &str) -> String {
    format!(
        "an infinite {what} ('infinity' or '-infinity') has no value in the lake; \
         override the column as text to keep it"
    )
}

impl ListColumn {
    /// Appends one array in PostgreSQL's binary array format.
    fn append(&mut self, value: &[u8]) -> ValueResult {
        let mut reader = Reader { buf: value, pos: 0 };
        let ndim = reader.i32()?;
        let _has_nulls = reader.i32()?;
        let _element_oid = reader.i32()?;
        let count = match ndim {
            0 => 0,
            1 => {
                let length = reader.i32()?;
                let lower = reader.i32()?;
                if lower != 1 {
                    return Err(format!(
                        "an array starting at index {lower} (not 1) is not supported; \
                         override the column as text"
                    ));
                }
                // Each element takes at least its 4-byte length.
                match usize::try_from(length) {
                    Ok(n) if n <= reader.remaining() / 4 => n,
                    _ => return Err(format!("array length {length} does not fit its bytes")),
                }
            }
            n if n > 1 => {
                return Err(
                    "multi-dimensional arrays are not supported; override the column as text"
                        .into(),
                );
            }
            n => return Err(format!("array with {n} dimensions")),
        };
        for index in 0..count {
            let length = reader.i32()?;
            if length == -1 {
                self.values.append_null();
                continue;
            }
            let element = usize::try_from(length)
                .ok()
                .and_then(|n| reader.take(n))
                .ok_or_else(|| format!("array element {} has length {length}", index + 1))?;
            self.values
                .append(element)
                .map_err(|e| format!("array element {}: {e}", index + 1))?;
        }
        if reader.remaining() != 0 {
            return Err(format!(
                "{} bytes after the array's last element",
                reader.remaining()
            ));
        }
        let end = i32::try_from(column_len(&self.values))
            .map_err(|_| "more than 2^31 array elements in one batch".to_string())?;
        self.offsets.push(end);
        self.validity.append_non_null();
        Ok(())
    }

    fn finish(&mut self) -> std::result::Result<ArrayRef, (usize, String)> {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let nulls = self.validity.finish();
        let values = self.values.finish().map_err(|(element, reason)| {
            // The array holding that element, and its place in it.
            let row = offsets
                .partition_point(|&start| start as usize <= element)
                .saturating_sub(1);
            let index = element - offsets.get(row).map_or(0, |&start| start as usize);
            (row, format!("array element {}: {reason}", index + 1))
        })?;
        Ok(Arc::new(ListArray::new(
            self.field.clone(),
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            values,
            nulls,
        )))
    }
}

/// How many values a column holds so far.
fn column_len(column: &Column) -> usize {
    use arrow_array::builder::ArrayBuilder;
    match column {
        Column::Int16(b) => b.len(),
        Column::Int32(b) => b.len(),
        Column::Int64(b) => b.len(),
        Column::Float32(b) => b.len(),
        Column::Float64(b) => b.len(),
        Column::Bool(b) => b.len(),
        Column::Text(b, ..) => b.len(),
        Column::Decimal(b, ..) => b.len(),
        Column::Date(b) => b.len(),
        Column::Time(b) => b.len(),
        Column::Timestamp(b) => b.len(),
        Column::Binary(b) => b.len(),
        Column::List(list) => list.offsets.len() - 1,
    }
}

/// Big-endian reads from a slice, short input an error.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn i32(&mut self) -> ValueResult<i32> {
        let bytes = self.take(4).ok_or("array header truncated")?;
        Ok(i32::from_be_bytes(fixed(bytes)?))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// Decodes one table's binary COPY output into batches of its columns'
/// Arrow schema ([`arrow_schema()`]).
///
/// After an error the decoder refuses further input: drop it.
pub struct RowDecoder {
    table: String,
    columns: Vec<SourceColumn>,
    schema: SchemaRef,
    builders: Vec<Column>,
    batch_rows: usize,
    rows_in_batch: usize,
    rows_total: u64,
    carry: Vec<u8>,
    header_done: bool,
    trailer_seen: bool,
    failed: bool,
}

impl RowDecoder {
    /// A decoder for `columns` of `table` (in the order the COPY selects
    /// them), emitting batches of `batch_rows` rows (at least 1).
    pub fn new(table: &str, columns: &[SourceColumn], batch_rows: usize) -> Self {
        Self {
            table: table.to_string(),
            columns: columns.to_vec(),
            schema: arrow_schema(columns),
            builders: columns.iter().map(|c| Column::new(&c.ty)).collect(),
            batch_rows: batch_rows.max(1),
            rows_in_batch: 0,
            rows_total: 0,
            carry: Vec::new(),
            header_done: false,
            trailer_seen: false,
            failed: false,
        }
    }

    /// Rows decoded so far.
    pub fn rows(&self) -> u64 {
        self.rows_total
    }

    /// Decodes what `chunk` completes; full batches are pushed to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<RecordBatch>) -> Result<()> {
        if self.failed {
            return Err(self.error("the decoder already failed".into()));
        }
        let result = if self.carry.is_empty() {
            self.parse(chunk, out).map(|used| {
                self.carry.extend_from_slice(&chunk[used..]);
            })
        } else {
            let mut buffer = std::mem::take(&mut self.carry);
            buffer.extend_from_slice(chunk);
            self.parse(&buffer, out).map(|used| {
                buffer.drain(..used);
                self.carry = buffer;
            })
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Ends the stream: the last partial batch, if any. Fails if the
    /// stream stopped mid-row or before PostgreSQL's end-of-data marker.
    pub fn finish(mut self) -> Result<Option<RecordBatch>> {
        if self.failed {
            return Err(self.error("the decoder already failed".into()));
        }
        if !self.header_done {
            return Err(self.error("the stream ended before the COPY header".into()));
        }
        if !self.trailer_seen {
            return Err(self.error(format!(
                "the stream ended {} after row {} without the end-of-data marker",
                if self.carry.is_empty() {
                    "cleanly"
                } else {
                    "mid-row"
                },
                self.rows_total
            )));
        }
        if self.rows_in_batch == 0 {
            return Ok(None);
        }
        self.flush().map(Some)
    }

    fn error(&self, reason: String) -> Error {
        Error::Decode {
            table: self.table.clone(),
            reason,
        }
    }

    fn flush(&mut self) -> Result<RecordBatch> {
        let mut arrays = Vec::with_capacity(self.builders.len());
        for index in 0..self.builders.len() {
            match self.builders[index].finish() {
                Ok(array) => arrays.push(array),
                Err((row, reason)) => {
                    let row = self.rows_total - self.rows_in_batch as u64 + row as u64;
                    return Err(self.column_error_at(index, row, reason));
                }
            }
        }
        let rows = std::mem::take(&mut self.rows_in_batch);
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }

    /// Parses whole rows from `buf`; returns how many bytes were used.
    fn parse(&mut self, buf: &[u8], out: &mut Vec<RecordBatch>) -> Result<usize> {
        let mut pos = 0;
        if !self.header_done {
            // Signature, flags (4 bytes), extension length (4) + extension.
            let check = buf.len().min(SIGNATURE.len());
            if buf[..check] != SIGNATURE[..check] {
                return Err(self.error("not a binary COPY stream (bad signature)".into()));
            }
            if buf.len() < 19 {
                return Ok(0);
            }
            let flags = u32::from_be_bytes([buf[11], buf[12], buf[13], buf[14]]);
            if flags != 0 {
                return Err(self.error(format!(
                    "COPY header flags {flags:#010x}: OIDs or unknown options"
                )));
            }
            let ext = u32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]) as usize;
            let Some(end) = 19usize.checked_add(ext) else {
                return Err(self.error("COPY header extension too long".into()));
            };
            if buf.len() < end {
                return Ok(0);
            }
            pos = end;
            self.header_done = true;
        }
        let ncols = self.builders.len();
        loop {
            if self.trailer_seen {
                if pos < buf.len() {
                    return Err(self.error("data after the end-of-data marker".into()));
                }
                return Ok(pos);
            }
            let Some(count) = buf.get(pos..pos + 2) else {
                return Ok(pos);
            };
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count == -1 {
                self.trailer_seen = true;
                pos += 2;
                continue;
            }
            if usize::try_from(count).ok() != Some(ncols) {
                return Err(self.error(format!(
                    "row {} has {count} fields, the table has {ncols} columns",
                    self.rows_total + 1
                )));
            }
            // First pass: is the whole row here? Lengths are checked here too.
            let mut end = pos + 2;
            for index in 0..ncols {
                let Some(len) = buf.get(end..end + 4) else {
                    return Ok(pos);
                };
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                if len < -1 {
                    return Err(self.column_error(index, format!("field length {len}")));
                }
                end += 4 + len.max(0) as usize;
                if end > buf.len() {
                    return Ok(pos);
                }
            }
            // Second pass: append each field.
            let mut field = pos + 2;
            for index in 0..ncols {
                let len = i32::from_be_bytes([
                    buf[field],
                    buf[field + 1],
                    buf[field + 2],
                    buf[field + 3],
                ]);
                field += 4;
                if len < 0 {
                    if !self.columns[index].nullable {
                        return Err(self.column_error(
                            index,
                            "NULL in a column the source declares NOT NULL".into(),
                        ));
                    }
                    self.builders[index].append_null();
                } else {
                    let value = &buf[field..field + len as usize];
                    field += len as usize;
                    if let Err(reason) = self.builders[index].append(value) {
                        return Err(self.column_error(index, reason));
                    }
                }
            }
            pos = end;
            self.rows_in_batch += 1;
            self.rows_total += 1;
            if self.rows_in_batch == self.batch_rows {
                out.push(self.flush()?);
            }
        }
    }

    /// An error in column `index` of the row being read.
    fn column_error(&self, index: usize, reason: String) -> Error {
        self.column_error_at(index, self.rows_total, reason)
    }

    /// An error in column `index` of the row after `rows_before` rows.
    fn column_error_at(&self, index: usize, rows_before: u64, reason: String) -> Error {
        let column = &self.columns[index];
        self.error(format!(
            "{}.{} ({}), row {}: {reason}",
            self.table,
            column.name,
            column.pg_type,
            rows_before + 1
        ))
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{
        Array, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int16Array,
        Int64Array, ListArray, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
    };

    use super::*;

    fn numeric(digits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((digits.len() as u16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend(sign.to_be_bytes());
        out.extend(dscale.to_be_bytes());
        for d in digits {
            out.extend(d.to_be_bytes());
        }
        out
    }

    fn text_of(wire: &[u8]) -> String {
        let mut s = String::new();
        Numeric::from_wire(wire).unwrap().to_text(&mut s);
        s
    }

    #[test]
    fn numerics_print_exactly_as_postgresql_does() {
        assert_eq!(text_of(&numeric(&[55, 2548, 6200], 1, 0, 2)), "552548.62");
        assert_eq!(text_of(&numeric(&[3, 9400], 0, 0, 3)), "3.940");
        assert_eq!(text_of(&numeric(&[500], -1, 0x4000, 2)), "-0.05");
        assert_eq!(text_of(&numeric(&[], 0, 0, 0)), "0");
        assert_eq!(text_of(&numeric(&[], 0, 0, 3)), "0.000");
        assert_eq!(text_of(&numeric(&[10], 2, 0, 0)), "1000000000");
        assert_eq!(text_of(&numeric(&[1], -3, 0, 12)), "0.000000000001");
        assert_eq!(
            text_of(&numeric(
                &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9],
                7,
                0,
                0
            )),
            "12345678901234567890123456780009"
        );
        assert_eq!(text_of(&numeric(&[], 0, 0xC000, 0)), "NaN");
        assert_eq!(text_of(&numeric(&[], 0, 0xD000, 0)), "Infinity");
        assert_eq!(text_of(&numeric(&[], 0, 0xF000, 0)), "-Infinity");
    }

    #[test]
    fn numerics_scale_exactly_or_refuse() {
        let scaled = |wire: &[u8], p, s| Numeric::from_wire(wire).and_then(|n| n.to_scaled(p, s));
        assert_eq!(
            scaled(&numeric(&[55, 2548, 6200], 1, 0, 2), 12, 2),
            Ok(55_254_862)
        );
        assert_eq!(scaled(&numeric(&[500], -1, 0x4000, 2), 8, 3), Ok(-50));
        assert_eq!(scaled(&numeric(&[], 0, 0, 0), 2, 2), Ok(0));
        assert!(
            scaled(&numeric(&[1000], 0, 0, 0), 3, 0)
                .unwrap_err()
                .contains("fit")
        );
        assert_eq!(scaled(&numeric(&[999], 0, 0, 0), 3, 0), Ok(999));
        assert!(
            scaled(&numeric(&[1, 1], 0, 0, 4), 8, 2)
                .unwrap_err()
                .contains("after the point")
        );
        assert!(
            scaled(&numeric(&[], 0, 0xC000, 0), 8, 2)
                .unwrap_err()
                .contains("NaN")
        );
        assert!(
            scaled(&numeric(&[], 0, 0xD000, 0), 8, 2)
                .unwrap_err()
                .contains("infinite")
        );
        // 10^40 does not fit 38 digits (no overflow panic either).
        assert!(scaled(&numeric(&[1], 10, 0, 0), 38, 0).is_err());
        assert!(scaled(&numeric(&[1], -20, 0, 0), 38, 2).is_err());
        assert!(Numeric::from_wire(&[0, 1]).is_err());
        assert!(Numeric::from_wire(&numeric(&[10000], 0, 0, 0)).is_err());
        assert!(Numeric::from_wire(&numeric(&[], 0, 0x1234, 0)).is_err());
    }

    #[test]
    fn intervals_are_iso_8601() {
        let iso = |months, days, micros| {
            let mut s = String::new();
            interval_iso(months, days, micros, &mut s);
            s
        };
        assert_eq!(iso(14, 3, 14_706_500_000), "P1Y2M3DT4H5M6.5S");
        assert_eq!(iso(0, -1, 0), "P-1D");
        assert_eq!(iso(0, 0, -5_000_000), "PT-5S");
        assert_eq!(iso(0, 0, -500_000), "PT-0.5S");
        assert_eq!(iso(0, 0, 0), "PT0S");
        assert_eq!(iso(-13, 0, -3_600_000_001), "P-1Y-1MT-1H-0.000001S");
        assert_eq!(iso(i32::MAX, i32::MAX, i64::MAX), "infinity");
        assert_eq!(iso(i32::MIN, i32::MIN, i64::MIN), "-infinity");
    }

    fn col(name: &str, ty: PgColumnType, nullable: bool) -> SourceColumn {
        SourceColumn {
            name: name.into(),
            ty,
            pg_type: String::new(),
            nullable,
            cast: None,
        }
    }

    fn header() -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0u32.to_be_bytes());
        out.extend(0u32.to_be_bytes());
        out
    }

    fn row(out: &mut Vec<u8>, fields: &[Option<Vec<u8>>]) {
        out.extend((fields.len() as i16).to_be_bytes());
        for field in fields {
            match field {
                None => out.extend((-1i32).to_be_bytes()),
                Some(bytes) => {
                    out.extend((bytes.len() as i32).to_be_bytes());
                    out.extend(bytes);
                }
            }
        }
    }

    fn array(elements: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        if elements.is_empty() {
            out.extend(0i32.to_be_bytes());
            out.extend(0i32.to_be_bytes());
            out.extend(23u32.to_be_bytes());
            return out;
        }
        out.extend(1i32.to_be_bytes());
        out.extend(1i32.to_be_bytes());
        out.extend(23u32.to_be_bytes());
        out.extend((elements.len() as i32).to_be_bytes());
        out.extend(1i32.to_be_bytes());
        for e in elements {
            match e {
                None => out.extend((-1i32).to_be_bytes()),
                Some(bytes) => {
                    out.extend((bytes.len() as i32).to_be_bytes());
                    out.extend(bytes);
                }
            }
        }
        out
    }

    fn columns() -> Vec<SourceColumn> {
        use PgColumnType as T;
        vec![
            col("id", T::Int8, false),
            col("small", T::Int2, true),
            col("f", T::Float8, true),
            col("b", T::Bool, true),
            col("t", T::Jsonb, true),
            col(
                "price",
                T::Numeric {
                    precision: Some(8),
                    scale: Some(2),
                },
                true,
            ),
            col("d", T::Date, true),
            col("tm", T::Time, true),
            col("ts", T::Timestamptz, true),
            col("u", T::Uuid, true),
            col("bin", T::Bytea, true),
            col(
                "tags",
                T::Array {
                    element: Box::new(T::Int2),
                },
                true,
            ),
        ]
    }

    fn stream() -> Vec<u8> {
        let mut out = header();
        for id in 0..5i64 {
            let jsonb = [&[1u8][..], br#"{"a": 1}"#].concat();
            row(
                &mut out,
                &[
                    Some(id.to_be_bytes().to_vec()),
                    Some((-7i16).to_be_bytes().to_vec()),
                    Some(f64::NAN.to_be_bytes().to_vec()),
                    Some(vec![1]),
                    Some(jsonb),
                    Some(numeric(&[12, 3400], 0, 0x4000, 2)),
                    Some((-1i32).to_be_bytes().to_vec()),
                    Some(86_399_999_999i64.to_be_bytes().to_vec()),
                    Some((-1i64).to_be_bytes().to_vec()),
                    Some((0u8..16).collect()),
                    Some(vec![0, 0xff, 0]),
                    Some(array(&[
                        Some(3i16.to_be_bytes().to_vec()),
                        None,
                        Some((-3i16).to_be_bytes().to_vec()),
                    ])),
                ],
            );
            row(
                &mut out,
                &[
                    Some((100 + id).to_be_bytes().to_vec()),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(array(&[])),
                ],
            );
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    fn decode(stream: &[u8], chunk: usize, batch_rows: usize) -> Result<Vec<RecordBatch>> {
        let mut decoder = RowDecoder::new("things", &columns(), batch_rows);
        let mut out = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            decoder.feed(piece, &mut out)?;
        }
        assert_eq!(decoder.rows(), 10);
        out.extend(decoder.finish()?);
        Ok(out)
    }

    #[test]
    fn every_type_decodes_and_chunk_splits_do_not_matter() {
        let stream = stream();
        let whole = decode(&stream, stream.len(), 4).unwrap();
        assert_eq!(
            whole.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        for chunk in [1, 2, 3, 7, 64] {
            assert_eq!(
                decode(&stream, chunk, 4).unwrap(),
                whole,
                "chunks of {chunk}"
            );
        }
        let b = &whole[0];
        let get = |i: usize| b.column(i).clone();
        assert_eq!(
            get(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values(),
            &[0, 100, 1, 101]
        );
        let small = get(1);
        let small = small.as_any().downcast_ref::<Int16Array>().unwrap();
        assert_eq!(small.value(0), -7);
        assert!(small.is_null(1));
        assert!(
            get(2)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .value(0)
                .is_nan()
        );
        assert!(
            get(3)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap()
                .value(0)
        );
        assert_eq!(
            get(4)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0),
            r#"{"a": 1}"#
        );
        let price = get(5);
        let price = price.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(
            (price.value(0), price.precision(), price.scale()),
            (-1234, 8, 2)
        );
        assert_eq!(
            get(6)
                .as_any()
                .downcast_ref::<Date32Array>()
                .unwrap()
                .value(0),
            10_956
        );
        assert_eq!(
            get(7)
                .as_any()
                .downcast_ref::<Time64MicrosecondArray>()
                .unwrap()
                .value(0),
            86_399_999_999
        );
        let ts = get(8);
        assert_eq!(
            ts.data_type(),
            &DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            ts.as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .value(0),
            PG_EPOCH_MICROS - 1
        );
        assert_eq!(
            get(9)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
        assert_eq!(
            get(10)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .unwrap()
                .value(0),
            &[0, 0xff, 0]
        );
        let tags = get(11);
        let tags = tags.as_any().downcast_ref::<ListArray>().unwrap();
        let first = tags.value(0);
        let first = first.as_any().downcast_ref::<Int16Array>().unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(
            (first.value(0), first.is_null(1), first.value(2)),
            (3, true, -3)
        );
        assert_eq!(tags.value(1).len(), 0);
        assert!(!tags.is_null(1));
    }

    fn one_row(column: SourceColumn, value: Option<Vec<u8>>) -> Result<Option<RecordBatch>> {
        let mut stream = header();
        row(&mut stream, &[value]);
        stream.extend((-1i16).to_be_bytes());
        let mut decoder = RowDecoder::new("t", &[column], 10);
        let mut out = Vec::new();
        decoder.feed(&stream, &mut out)?;
        decoder.finish()
    }

    fn reason(result: Result<Option<RecordBatch>>) -> String {
        match result {
            Err(Error::Decode { reason, .. }) => reason,
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    /// Rows of one column through a decoder of `batch_rows`-row batches.
    fn rows_of(
        column: SourceColumn,
        values: &[Option<Vec<u8>>],
        batch_rows: usize,
    ) -> Result<Vec<RecordBatch>> {
        let mut stream = header();
        for value in values {
            row(&mut stream, std::slice::from_ref(value));
        }
        stream.extend((-1i16).to_be_bytes());
        let mut decoder = RowDecoder::new("t", &[column], batch_rows);
        let mut out = Vec::new();
        decoder.feed(&stream, &mut out)?;
        out.extend(decoder.finish()?);
        Ok(out)
    }

    #[test]
    fn text_is_checked_for_utf8_per_batch_and_the_bad_row_is_named() {
        use PgColumnType as T;
        let good = |s: &str| Some(s.as_bytes().to_vec());
        // Valid text, multi-byte characters and NULLs come through as sent,
        // across batches.
        let values = [good("ação"), None, good(""), good("日本"), good("x")];
        let batches = rows_of(col("s", T::Text, true), &values, 2).unwrap();
        let read: Vec<Option<String>> = batches
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                a.iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            read,
            [Some("ação"), None, Some(""), Some("日本"), Some("x")].map(|v| v.map(str::to_string))
        );
        // A bad value in the second batch: its row, counted from the start.
        let values = [
            good("a"),
            good("b"),
            good("c"),
            Some(vec![b'd', 0xff]),
            good("e"),
        ];
        let r = reason(rows_of(col("s", T::Text, true), &values, 3).map(|_| None));
        assert!(
            r.contains("t.s") && r.contains("row 4") && r.contains("UTF-8"),
            "{r}"
        );
        // A character split across two values: together the bytes are
        // UTF-8, each value alone is not.
        let values = [good("a"), Some(vec![0xc3]), Some(vec![0xa9])];
        let r = reason(rows_of(col("s", T::Text, true), &values, 10).map(|_| None));
        assert!(r.contains("row 2") && r.contains("UTF-8"), "{r}");
        let jsonb = [Some(vec![1, b'"', 0xc3, b'"'])];
        let r = reason(rows_of(col("j", T::Jsonb, true), &jsonb, 10).map(|_| None));
        assert!(
            r.contains("t.j") && r.contains("row 1") && r.contains("UTF-8"),
            "{r}"
        );
        // In an array: the row holding it and the element's place.
        let tags = col(
            "tags",
            T::Array {
                element: Box::new(T::Text),
            },
            true,
        );
        let values = [
            Some(array(&[good("a"), good("b")])),
            Some(array(&[good("c"), None, Some(vec![0xff])])),
        ];
        let r = reason(rows_of(tags, &values, 10).map(|_| None));
        assert!(
            r.contains("t.tags") && r.contains("row 2") && r.contains("array element 3"),
            "{r}"
        );
    }

    #[test]
    fn bad_values_are_errors_naming_the_column() {
        use PgColumnType as T;
        let r = reason(one_row(
            col("d", T::Date, true),
            Some(i32::MAX.to_be_bytes().to_vec()),
        ));
        assert!(r.contains("t.d") && r.contains("infinite date"), "{r}");
        let r = reason(one_row(
            col("ts", T::Timestamp, true),
            Some(i64::MIN.to_be_bytes().to_vec()),
        ));
        assert!(
            r.contains("t.ts") && r.contains("infinite timestamp"),
            "{r}"
        );
        let r = reason(one_row(col("s", T::Text, true), Some(vec![0xff, 0xfe])));
        assert!(r.contains("t.s") && r.contains("UTF-8"), "{r}");
        let r = reason(one_row(col("n", T::Int4, false), None));
        assert!(r.contains("NOT NULL"), "{r}");
        let r = reason(one_row(col("n", T::Int4, true), Some(vec![1, 2])));
        assert!(r.contains("expected 4 bytes"), "{r}");
        let mut multi = Vec::new();
        for v in [2i32, 0, 23, 1, 1, 1, 1] {
            multi.extend(v.to_be_bytes());
        }
        let arr = T::Array {
            element: Box::new(T::Int4),
        };
        let r = reason(one_row(col("a", arr.clone(), true), Some(multi)));
        assert!(r.contains("t.a") && r.contains("multi-dimensional"), "{r}");
        let price = T::Numeric {
            precision: Some(4),
            scale: Some(2),
        };
        let r = reason(one_row(
            col("p", price, true),
            Some(numeric(&[], 0, 0xC000, 0)),
        ));
        assert!(r.contains("t.p") && r.contains("NaN"), "{r}");
        let unconstrained = T::Numeric {
            precision: None,
            scale: None,
        };
        let batch = one_row(
            col("p", unconstrained, true),
            Some(numeric(&[], 0, 0xC000, 0)),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0),
            "NaN"
        );
    }

    #[test]
    fn truncated_streams_and_missing_trailers_are_errors() {
        let stream = stream();
        for cut in [0, 5, 19, 40, stream.len() - 2, stream.len() - 1] {
            let mut decoder = RowDecoder::new("things", &columns(), 4);
            let mut out = Vec::new();
            decoder.feed(&stream[..cut], &mut out).unwrap();
            assert!(decoder.finish().is_err(), "cut at {cut}");
        }
        let mut extra = stream.clone();
        extra.push(0);
        assert!(decode(&extra, 7, 4).is_err());
        let mut bad = stream;
        bad[0] = b'X';
        assert!(decode(&bad, 7, 4).is_err());
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let valid = stream();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let input: Vec<u8> = if round % 3 == 0 {
                // Pure noise after a valid header.
                let len = (rng.next() % 300) as usize;
                let mut v = header();
                v.extend((0..len).map(|_| rng.next() as u8));
                v
            } else {
                // A valid stream with a few bytes flipped.
                let mut v = valid.clone();
                for _ in 0..(1 + rng.next() % 4) {
                    let i = (rng.next() as usize) % v.len();
                    v[i] = rng.next() as u8;
                }
                v
            };
            let chunk = 1 + (rng.next() % 50) as usize;
            let mut decoder = RowDecoder::new("things", &columns(), 3);
            let mut out = Vec::new();
            let mut ok = true;
            for piece in input.chunks(chunk) {
                if decoder.feed(piece, &mut out).is_err() {
                    ok = false;
                    break;
                }
            }
            if ok {
                let _ = decoder.finish();
            }
        }
    }
}
