//! A streaming decoder for PostgreSQL's binary COPY format into Arrow batches.
//!
//! Rows are appended straight into column builders: no per-row allocation,
//! no intermediate row type. Input arrives in arbitrary chunks (a row may span
//! two), so an incomplete tail is carried over to the next chunk.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{
        BooleanBuilder, Decimal128Builder, Int32Builder, StringBuilder, TimestampMillisecondBuilder,
    },
};

use crate::{Error, PgType, Result, SourceTable};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Milliseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MS: i64 = 946_684_800_000;

enum ColumnBuilder {
    Int32(Int32Builder),
    Utf8(StringBuilder),
    Timestamp(TimestampMillisecondBuilder),
    Decimal(Decimal128Builder, i8),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    fn new(pg: PgType, capacity: usize) -> Self {
        match pg {
            PgType::Int4 => Self::Int32(Int32Builder::with_capacity(capacity)),
            PgType::Text | PgType::Enum => {
                Self::Utf8(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            PgType::Timestamp => {
                Self::Timestamp(TimestampMillisecondBuilder::with_capacity(capacity))
            }
            PgType::Numeric { precision, scale } => Self::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_data_type(arrow_schema::DataType::Decimal128(precision, scale)),
                scale,
            ),
            PgType::Bool => Self::Bool(BooleanBuilder::with_capacity(capacity)),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Int32(b) => b.append_null(),
            Self::Utf8(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Decimal(b, _) => b.append_null(),
            Self::Bool(b) => b.append_null(),
        }
    }

    fn append(&mut self, value: &[u8]) -> std::result::Result<(), String> {
        match self {
            Self::Int32(b) => b.append_value(i32::from_be_bytes(fixed(value)?)),
            Self::Utf8(b) => b.append_value(std::str::from_utf8(value).map_err(|e| e.to_string())?),
            Self::Timestamp(b) => b.append_value(timestamp_ms(i64::from_be_bytes(fixed(value)?))?),
            Self::Decimal(b, scale) => b.append_value(numeric_to_scaled(value, *scale)?),
            Self::Bool(b) => b.append_value(fixed::<1>(value)?[0] != 0),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::Decimal(b, _) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
        }
    }
}

fn fixed<const N: usize>(value: &[u8]) -> std::result::Result<[u8; N], String> {
    value
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", value.len()))
}

/// PostgreSQL sends `timestamp` as microseconds since 2000-01-01.
fn timestamp_ms(micros: i64) -> std::result::Result<i64, String> {
    if micros == i64::MAX || micros == i64::MIN {
        return Err("infinite timestamp".to_string());
    }
    Ok(micros.div_euclid(1000) + PG_EPOCH_MS)
}

/// Converts a binary `numeric` (base-10000 digits) to an integer scaled by
/// 10^`scale`, refusing NaN, infinities and values that would lose digits.
pub(crate) fn numeric_to_scaled(value: &[u8], scale: i8) -> std::result::Result<i128, String> {
    if value.len() < 8 {
        return Err("numeric header truncated".to_string());
    }
    let word = |i: usize| u16::from_be_bytes([value[2 * i], value[2 * i + 1]]);
    let ndigits = word(0) as usize;
    let weight = word(1) as i16 as i32;
    let sign = word(2);
    if value.len() != 8 + 2 * ndigits {
        return Err("numeric digit count does not match its length".to_string());
    }
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN is not a decimal".to_string()),
        _ => return Err("infinite numeric is not a decimal".to_string()),
    }
    let mut scaled: i128 = 0;
    for i in 0..ndigits {
        let digit = word(4 + i) as i128;
        if digit >= 10_000 {
            return Err("numeric digit out of range".to_string());
        }
        // This digit stands for digit × 10000^(weight − i); in units of 10^-scale
        // that is digit × 10^(4(weight − i) + scale).
        let exponent = 4 * (weight - i as i32) + scale as i32;
        let contribution = if exponent >= 0 {
            10i128
                .checked_pow(exponent as u32)
                .and_then(|p| digit.checked_mul(p))
                .ok_or("numeric too large")?
        } else {
            let divisor = 10i128.pow((-exponent) as u32);
            if digit % divisor != 0 {
                return Err(format!("numeric has more than {scale} decimal places"));
            }
            digit / divisor
        };
        scaled = scaled
            .checked_add(contribution)
            .ok_or("numeric too large")?;
    }
    Ok(if sign == 0x4000 { -scaled } else { scaled })
}

/// Decodes one table's binary COPY output into batches of `batch_rows` rows.
pub struct CopyDecoder {
    table: Arc<SourceTable>,
    builders: Vec<ColumnBuilder>,
    batch_rows: usize,
    rows_in_batch: usize,
    carry: Vec<u8>,
    header_done: bool,
    trailer_seen: bool,
    rows_total: u64,
}

impl CopyDecoder {
    /// A decoder for `table`, emitting batches of `batch_rows` rows.
    pub fn new(table: Arc<SourceTable>, batch_rows: usize) -> Self {
        let batch_rows = batch_rows.max(1);
        Self {
            builders: Self::builders(&table, batch_rows),
            table,
            batch_rows,
            rows_in_batch: 0,
            carry: Vec::new(),
            header_done: false,
            trailer_seen: false,
            rows_total: 0,
        }
    }

    fn builders(table: &SourceTable, capacity: usize) -> Vec<ColumnBuilder> {
        table
            .columns
            .iter()
            .map(|c| ColumnBuilder::new(c.pg, capacity))
            .collect()
    }

    /// Rows decoded so far.
    pub fn rows(&self) -> u64 {
        self.rows_total
    }

    /// Decodes what `chunk` completes; full batches are pushed to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<RecordBatch>) -> Result<()> {
        if self.carry.is_empty() {
            let used = self.parse(chunk, out)?;
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            let mut buffer = std::mem::take(&mut self.carry);
            buffer.extend_from_slice(chunk);
            let used = self.parse(&buffer, out)?;
            buffer.drain(..used);
            self.carry = buffer;
        }
        Ok(())
    }

    /// Ends the stream: the last partial batch, if any. Fails if the stream
    /// stopped before PostgreSQL's end-of-data marker.
    pub fn finish(mut self) -> Result<Option<RecordBatch>> {
        if !self.trailer_seen || !self.carry.is_empty() {
            return Err(self.malformed("stream ended before the end-of-data marker"));
        }
        if self.rows_in_batch == 0 {
            return Ok(None);
        }
        self.flush().map(Some)
    }

    fn malformed(&self, reason: &str) -> Error {
        Error::MalformedCopy {
            table: self.table.name.clone(),
            row: self.rows_total + 1,
            reason: reason.to_string(),
        }
    }

    fn flush(&mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect();
        self.rows_in_batch = 0;
        Ok(RecordBatch::try_new(self.table.arrow_schema(), columns)?)
    }

    /// Parses whole tuples from `buf`; returns how many bytes were consumed.
    fn parse(&mut self, buf: &[u8], out: &mut Vec<RecordBatch>) -> Result<usize> {
        let mut pos = 0;
        if !self.header_done {
            // Signature, flags (4 bytes), header extension length (4) + extension.
            if buf.len() < 19 {
                return Ok(0);
            }
            if &buf[..11] != SIGNATURE {
                return Err(self.malformed("not a binary COPY stream"));
            }
            let ext = u32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]) as usize;
            if buf.len() < 19 + ext {
                return Ok(0);
            }
            pos = 19 + ext;
            self.header_done = true;
        }
        let ncols = self.builders.len();
        loop {
            if self.trailer_seen {
                if pos < buf.len() {
                    return Err(self.malformed("data after the end-of-data marker"));
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
            if count as usize != ncols {
                return Err(self.malformed(&format!("row has {count} fields, table has {ncols}")));
            }
            // First pass: is the whole tuple here?
            let mut end = pos + 2;
            for _ in 0..ncols {
                let Some(len) = buf.get(end..end + 4) else {
                    return Ok(pos);
                };
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                end += 4 + len.max(0) as usize;
            }
            if end > buf.len() {
                return Ok(pos);
            }
            // Second pass: append each field.
            let mut field = pos + 2;
            for (index, builder) in self.builders.iter_mut().enumerate() {
                let len = i32::from_be_bytes([
                    buf[field],
                    buf[field + 1],
                    buf[field + 2],
                    buf[field + 3],
                ]);
                field += 4;
                if len < 0 {
                    let column = &self.table.columns[index];
                    if !column.nullable {
                        let name = column.name.clone();
                        return Err(self.malformed(&format!(
                            "column {name}: NULL in a column the source declares NOT NULL"
                        )));
                    }
                    builder.append_null();
                } else {
                    let value = &buf[field..field + len as usize];
                    field += len as usize;
                    if let Err(reason) = builder.append(value) {
                        let column = self.table.columns[index].name.clone();
                        return Err(self.malformed(&format!("column {column}: {reason}")));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TableDef;
    use arrow_array::{Array, Decimal128Array, Int32Array, StringArray, TimestampMillisecondArray};

    fn numeric(ndigits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((ndigits.len() as u16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend(sign.to_be_bytes());
        out.extend(dscale.to_be_bytes());
        for d in ndigits {
            out.extend(d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_become_exact_scaled_integers() {
        // 552548.62 = 55 | 2548 | 6200 with weight 1
        assert_eq!(
            numeric_to_scaled(&numeric(&[55, 2548, 6200], 1, 0, 2), 2),
            Ok(55_254_862)
        );
        // 3.94
        assert_eq!(numeric_to_scaled(&numeric(&[3, 9400], 0, 0, 2), 2), Ok(394));
        // -0.05
        assert_eq!(
            numeric_to_scaled(&numeric(&[500], -1, 0x4000, 2), 2),
            Ok(-5)
        );
        // 0 has no digits
        assert_eq!(numeric_to_scaled(&numeric(&[], 0, 0, 0), 2), Ok(0));
        // 1 000 000 000 = 10 | 0000 | 0000 weight 2
        assert_eq!(
            numeric_to_scaled(&numeric(&[10], 2, 0, 0), 2),
            Ok(100_000_000_000)
        );
        assert!(
            numeric_to_scaled(&numeric(&[], 0, 0xC000, 0), 2)
                .unwrap_err()
                .contains("NaN")
        );
        assert!(
            numeric_to_scaled(&numeric(&[1, 1], 0, 0, 4), 2)
                .unwrap_err()
                .contains("decimal places")
        );
        assert!(numeric_to_scaled(&[0, 1], 2).is_err());
    }

    fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            None => out.extend((-1i32).to_be_bytes()),
            Some(bytes) => {
                out.extend((bytes.len() as i32).to_be_bytes());
                out.extend(bytes);
            }
        }
    }

    /// A currency table stream: (id, code, created_at, last_updated).
    fn currency_stream(rows: &[(i32, &str, i64)]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0u32.to_be_bytes());
        out.extend(0u32.to_be_bytes());
        for (id, code, micros) in rows {
            out.extend(4i16.to_be_bytes());
            field(&mut out, Some(&id.to_be_bytes()));
            field(&mut out, Some(code.as_bytes()));
            field(&mut out, Some(&micros.to_be_bytes()));
            field(&mut out, Some(&micros.to_be_bytes()));
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    #[test]
    fn rows_split_across_chunks_decode_the_same() {
        let table = TableDef::by_name("currency").unwrap();
        // 2022-11-03 14:20:49.962 is 720800449962000 µs after 2000-01-01.
        let rows = [
            (1, "GBP", 720_800_449_962_000),
            (2, "USD", 0),
            (3, "EUR", -1_000),
        ];
        let stream = currency_stream(&rows);
        for chunk_size in [1, 3, 7, 19, 64, stream.len()] {
            let mut decoder = CopyDecoder::new(SourceTable::from_model(table), 2);
            let mut batches = Vec::new();
            for chunk in stream.chunks(chunk_size) {
                decoder.feed(chunk, &mut batches).unwrap();
            }
            batches.extend(decoder.finish().unwrap());
            assert_eq!(
                batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
                [2, 1]
            );
            let ids = batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap();
            assert_eq!(ids.values(), &[1, 2]);
            let codes = batches[1]
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            assert_eq!(codes.value(0), "EUR");
            let ts = batches[0]
                .column(2)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            let expected = chrono::NaiveDate::from_ymd_opt(2022, 11, 3)
                .unwrap()
                .and_hms_milli_opt(14, 20, 49, 962)
                .unwrap()
                .and_utc()
                .timestamp_millis();
            assert_eq!(ts.value(0), expected);
            assert_eq!(ts.value(1), PG_EPOCH_MS);
            let before_epoch = batches[1]
                .column(3)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            assert_eq!(before_epoch.value(0), PG_EPOCH_MS - 1);
        }
    }

    #[test]
    fn a_truncated_stream_is_an_error_not_a_short_table() {
        let table = TableDef::by_name("currency").unwrap();
        let stream = currency_stream(&[(1, "GBP", 0)]);
        let mut decoder = CopyDecoder::new(SourceTable::from_model(table), 10);
        let mut batches = Vec::new();
        decoder
            .feed(&stream[..stream.len() - 2], &mut batches)
            .unwrap();
        let err = decoder.finish().unwrap_err().to_string();
        assert!(err.contains("end-of-data"), "{err}");
    }

    #[test]
    fn garbage_and_wrong_widths_are_rejected_with_the_column() {
        let table = TableDef::by_name("currency").unwrap();
        let mut decoder = CopyDecoder::new(SourceTable::from_model(table), 10);
        let err = decoder
            .feed(b"COPY 1 2 3 4 5 6 7 8 9 10 11 12", &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("not a binary COPY"), "{err}");

        let mut stream = SIGNATURE.to_vec();
        stream.extend([0u8; 8]);
        stream.extend(4i16.to_be_bytes());
        field(&mut stream, Some(&[0, 0, 1])); // 3-byte int4
        field(&mut stream, Some(b"GBP"));
        field(&mut stream, None);
        field(&mut stream, None);
        let mut decoder = CopyDecoder::new(SourceTable::from_model(table), 10);
        let err = decoder
            .feed(&stream, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("currency_id") && err.contains("expected 4 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_null_in_a_not_null_column_is_named() {
        let table = TableDef::by_name("currency").unwrap();
        let mut stream = SIGNATURE.to_vec();
        stream.extend([0u8; 8]);
        stream.extend(4i16.to_be_bytes());
        field(&mut stream, Some(&1i32.to_be_bytes()));
        field(&mut stream, None);
        field(&mut stream, Some(&0i64.to_be_bytes()));
        field(&mut stream, Some(&0i64.to_be_bytes()));
        let err = CopyDecoder::new(SourceTable::from_model(table), 10)
            .feed(&stream, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("currency_code: NULL in a column the source declares NOT NULL"),
            "{err}"
        );
    }

    #[test]
    fn decimal_columns_carry_precision_and_scale() {
        let table = TableDef::by_name("payment").unwrap();
        let mut builder = ColumnBuilder::new(table.columns[5].pg, 1);
        builder.append(&numeric(&[3, 9400], 0, 0, 2)).unwrap();
        let array = builder.finish();
        let decimals = array.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(decimals.value_as_string(0), "3.94");
        assert_eq!(decimals.precision(), 10);
        assert_eq!(decimals.scale(), 2);
        assert!(!decimals.is_null(0));
    }
}
