//! Parquet encode (zstd) and decode for lake files.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use object_store::{PutPayload, PutPayloadMut};
use parquet::{
    arrow::{
        ArrowWriter,
        arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder},
    },
    basic::{Compression, ZstdLevel},
    errors::ParquetError,
    file::{
        metadata::{ParquetMetaData, ParquetMetaDataReader},
        properties::WriterProperties,
        statistics::Statistics,
    },
};

use crate::Result;

/// Rows per row group: large enough for good compression and few footers,
/// small enough that an in-progress group stays a few MB per column.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Writer settings shared by every lake file: zstd level 1 (fast; most of the
/// size win comes from dictionary and run-length encoding anyway).
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(concat!("tributary ", env!("CARGO_PKG_VERSION")).to_string())
        .build()
}

/// Rows of a first batch needed before a column's cardinality is judged.
const DICTIONARY_SAMPLE_ROWS: usize = 1024;

/// [`writer_properties`], with dictionary encoding turned off for the
/// columns that `first` shows to be nearly all distinct (keys, hashes, free
/// text, timestamps to the second). A dictionary of such a column only
/// grows until the writer gives up on it, costing a hash and a compare per
/// value (measured: about a sixth of an extract's CPU on three 32-character
/// id columns, and a twentieth on one timestamp column) and saving
/// nothing: the dictionary holds every value and the pages an index to it
/// besides. Columns with repeats keep their dictionary.
pub fn writer_properties_for(first: &RecordBatch) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(concat!("tributary ", env!("CARGO_PKG_VERSION")).to_string());
    if first.num_rows() >= DICTIONARY_SAMPLE_ROWS {
        for (field, column) in first.schema().fields().iter().zip(first.columns()) {
            if mostly_distinct(column.as_ref()) {
                builder = builder.set_column_dictionary_enabled(
                    parquet::schema::types::ColumnPath::from(field.name().as_str()),
                    false,
                );
            }
        }
    }
    builder.build()
}

/// Whether more than 90% of the non-null values of a text, binary or
/// fixed-width (integer, float, decimal, date and time) column are distinct
/// (a column of ids repeated twice, such as an order's items, keeps its
/// dictionary: it halves the column's size). Booleans and nested columns
/// are left alone.
fn mostly_distinct(column: &dyn arrow_array::Array) -> bool {
    use arrow_array::cast::AsArray;
    let data = column.to_data();
    let values: Vec<&[u8]> = match column.data_type() {
        arrow_schema::DataType::Utf8 => column
            .as_string::<i32>()
            .iter()
            .flatten()
            .map(str::as_bytes)
            .collect(),
        arrow_schema::DataType::LargeUtf8 => column
            .as_string::<i64>()
            .iter()
            .flatten()
            .map(str::as_bytes)
            .collect(),
        arrow_schema::DataType::Binary => column.as_binary::<i32>().iter().flatten().collect(),
        // Fixed-width values compared by their bytes (one buffer, `width`
        // bytes a value, from the array's offset).
        other => match (other.primitive_width(), data.buffers().first()) {
            (Some(width), Some(buffer)) => buffer
                .as_slice()
                .get(data.offset() * width..(data.offset() + data.len()) * width)
                .unwrap_or_default()
                .chunks_exact(width)
                .enumerate()
                .filter(|(row, _)| column.is_valid(*row))
                .map(|(_, value)| value)
                .collect(),
            _ => return false,
        },
    };
    if values.len() < DICTIONARY_SAMPLE_ROWS {
        return false;
    }
    let distinct: std::collections::HashSet<&[u8]> = values.iter().copied().collect();
    distinct.len() * 10 > values.len() * 9
}

/// Output blocks of 1 MiB: a file grows block by block instead of doubling
/// and copying one buffer, which halves peak memory for large files.
const BLOCK_BYTES: usize = 1 << 20;

/// An in-memory file made of 1 MiB blocks, ready to upload without a copy.
struct BlockBuffer(PutPayloadMut);

impl std::io::Write for BlockBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Builds one Parquet file in memory from a stream of batches.
pub struct ParquetEncoder {
    writer: ArrowWriter<BlockBuffer>,
    rows: u64,
}

impl ParquetEncoder {
    /// An empty file with `schema`.
    pub fn new(schema: SchemaRef) -> Result<Self> {
        Self::with_properties(schema, writer_properties())
    }

    /// An empty file with `schema`, its encodings chosen for data like
    /// `first` (see [`writer_properties_for`]); `first` is not written.
    pub fn for_batch(schema: SchemaRef, first: &RecordBatch) -> Result<Self> {
        Self::with_properties(schema, writer_properties_for(first))
    }

    fn with_properties(schema: SchemaRef, properties: WriterProperties) -> Result<Self> {
        let buffer = BlockBuffer(PutPayloadMut::new().with_block_size(BLOCK_BYTES));
        let writer = ArrowWriter::try_new(buffer, schema, Some(properties))?;
        Ok(Self { writer, rows: 0 })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes held so far: encoded output plus the in-progress row group.
    pub fn buffered_bytes(&self) -> usize {
        self.writer.bytes_written() + self.writer.in_progress_size()
    }

    /// Closes the file and returns its blocks, ready for [`crate::Lake::put_once`].
    pub fn finish(self) -> Result<PutPayload> {
        Ok(self.writer.into_inner()?.0.freeze())
    }
}

/// Encodes `batches` as one Parquet file.
pub fn encode(schema: SchemaRef, batches: &[RecordBatch]) -> Result<Bytes> {
    let mut encoder = match batches.first() {
        Some(first) => ParquetEncoder::for_batch(schema, first)?,
        None => ParquetEncoder::new(schema)?,
    };
    for batch in batches {
        encoder.write(batch)?;
    }
    Ok(Bytes::from(encoder.finish()?))
}

/// Rows per decoded batch: large enough that per-batch work is amortised,
/// small enough that a decoded batch of a wide table stays a few MB.
pub const DECODE_BATCH_ROWS: usize = 64 * 1024;

/// Decodes a whole Parquet file into its schema and batches.
pub fn decode(bytes: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader = reader(bytes)?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Decodes a Parquet file batch by batch ([`DECODE_BATCH_ROWS`] rows each):
/// only the file's compressed bytes and the batch in hand are held, so a
/// large file streams in bounded memory.
pub fn decode_batches(bytes: Bytes) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    Ok(reader(bytes)?.map(|batch| batch.map_err(crate::Error::from)))
}

fn reader(bytes: Bytes) -> Result<ParquetRecordBatchReader> {
    Ok(ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(DECODE_BATCH_ROWS)
        .build()?)
}

/// Decodes only the named top-level columns of a Parquet file (in file
/// order); names the file does not have are left out.
pub fn decode_columns(bytes: Bytes, names: &[&str]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader = projected_reader(bytes, names)?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// [`decode_batches`] of only the named top-level columns.
pub fn decode_column_batches(
    bytes: Bytes,
    names: &[&str],
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    Ok(projected_reader(bytes, names)?.map(|batch| batch.map_err(crate::Error::from)))
}

fn projected_reader(bytes: Bytes, names: &[&str]) -> Result<ParquetRecordBatchReader> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
    Ok(builder
        .with_projection(mask)
        .with_batch_size(DECODE_BATCH_ROWS)
        .build()?)
}

/// Bytes read from the end of a file for its footer in one request; a
/// larger footer takes a second.
const FOOTER_GUESS: u64 = 64 * 1024;

/// Reads only the footer (metadata) of the Parquet file at `key`: one or two
/// ranged reads, no data pages.
pub async fn read_footer(lake: &crate::Lake, key: &str) -> Result<ParquetMetaData> {
    let mut tail = lake.get_tail(key, FOOTER_GUESS).await?;
    let footer_len = footer_length(&tail)?;
    if footer_len + 8 > tail.len() as u64 {
        tail = lake.get_tail(key, footer_len + 8).await?;
    }
    let end = tail.len() - 8;
    let start = end
        .checked_sub(footer_len as usize)
        .ok_or_else(|| ParquetError::General(format!("{key}: footer longer than the file")))?;
    Ok(ParquetMetaDataReader::decode_metadata(&tail[start..end])?)
}

/// The metadata length a file's last 8 bytes declare.
fn footer_length(tail: &[u8]) -> Result<u64> {
    let Some(last) = tail.len().checked_sub(8).map(|at| &tail[at..]) else {
        return Err(ParquetError::General("shorter than a Parquet footer".to_string()).into());
    };
    if &last[4..] != b"PAR1" {
        return Err(
            ParquetError::General("not a Parquet file (no PAR1 at its end)".to_string()).into(),
        );
    }
    Ok(u32::from_le_bytes([last[0], last[1], last[2], last[3]]) as u64)
}

/// The least value of the integer column `column` over every row group, by
/// the footer's statistics; `None` when a row group holds no statistics
/// for it (or the column is missing or not an integer), so callers fall
/// back to reading the data.
pub fn int_column_min(metadata: &ParquetMetaData, column: &str) -> Option<i64> {
    let index = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == column)?;
    let mut least: Option<i64> = None;
    for group in metadata.row_groups() {
        if group.num_rows() == 0 {
            continue;
        }
        let min = match group.column(index).statistics()? {
            Statistics::Int32(s) => i64::from(*s.min_opt()?),
            Statistics::Int64(s) => *s.min_opt()?,
            _ => return None,
        };
        least = Some(least.map_or(min, |l| l.min(min)));
    }
    least
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether each column of the first row group has a dictionary page.
    fn dictionaries(bytes: &Bytes) -> Vec<bool> {
        let reader =
            parquet::file::serialized_reader::SerializedFileReader::new(bytes.clone()).unwrap();
        let group = parquet::file::reader::FileReader::metadata(&reader).row_group(0);
        group
            .columns()
            .iter()
            .map(|c| c.dictionary_page_offset().is_some())
            .collect()
    }
    use arrow_array::{Int32Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_footer_alone_gives_the_least_key_of_every_row_group() {
        let lake = crate::Lake::from_url("memory://").unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        // Three row groups; the least key sits in the last one.
        let rows = 2 * ROW_GROUP_ROWS + 10;
        let ids: Vec<i32> = (0..rows as i32).map(|i| 1_000_000 - i).collect();
        let names: Vec<Option<&str>> = (0..rows).map(|_| None).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap();
        lake.put_batch("f.parquet", "t", &batch).await.unwrap();
        let footer = read_footer(&lake, "f.parquet").await.unwrap();
        assert_eq!(footer.num_row_groups(), 3);
        assert_eq!(
            int_column_min(&footer, "id"),
            Some(1_000_000 - rows as i64 + 1)
        );
        // Not an integer, or not there: nothing to say.
        assert_eq!(int_column_min(&footer, "name"), None);
        assert_eq!(int_column_min(&footer, "missing"), None);
        // Not Parquet: a clear error, not a panic.
        lake.put_once("x.parquet", bytes::Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let error = read_footer(&lake, "x.parquet").await.unwrap_err();
        assert!(error.to_string().contains("Parquet"), "{error}");
    }

    #[test]
    fn mostly_distinct_text_is_written_without_a_dictionary_and_reads_back() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, true),
            Field::new("n", DataType::Int32, false),
        ]));
        let rows = 5000;
        let ids: Vec<String> = (0..rows).map(|i| format!("{i:032x}")).collect();
        let statuses: Vec<Option<&str>> = (0..rows)
            .map(|i| [Some("delivered"), Some("shipped"), None][i % 3])
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(StringArray::from(statuses)),
                Arc::new(Int32Array::from_iter_values(0..rows as i32)),
            ],
        )
        .unwrap();
        let bytes = encode(schema.clone(), std::slice::from_ref(&batch)).unwrap();
        // Unique ids: no dictionary; a status with three values keeps its own.
        assert_eq!(dictionaries(&bytes)[..2], [false, true]);
        let (_, read) = decode(bytes).unwrap();
        let rows_read: usize = read.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows_read, rows);
        let mut at = 0;
        for part in &read {
            assert_eq!(part, &batch.slice(at, part.num_rows()));
            at += part.num_rows();
        }
    }

    #[test]
    fn mostly_distinct_fixed_width_columns_are_written_without_a_dictionary() {
        use arrow_array::{Decimal128Array, TimestampMicrosecondArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "at",
                DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("price", DataType::Decimal128(10, 2), false),
            Field::new("item", DataType::Int32, false),
        ]));
        let rows: usize = 5000;
        // Distinct seconds with a few NULLs; forty prices; items 1 to 3.
        let at: TimestampMicrosecondArray = (0..rows as i64)
            .map(|i| (i % 97 != 0).then_some(1_500_000_000_000_000 + i * 1_000_000))
            .collect();
        let price = Decimal128Array::from_iter_values((0..rows as i128).map(|i| 999 + i % 40))
            .with_precision_and_scale(10, 2)
            .unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(at),
                Arc::new(price),
                Arc::new(Int32Array::from_iter_values(
                    (0..rows as i32).map(|i| 1 + i % 3),
                )),
            ],
        )
        .unwrap();
        // A slice starts at an offset into its buffers: judged all the same.
        for batch in [batch.clone(), batch.slice(1000, 4000)] {
            let bytes = encode(schema.clone(), std::slice::from_ref(&batch)).unwrap();
            // Distinct timestamps: no dictionary; forty prices and three
            // items keep theirs.
            assert_eq!(dictionaries(&bytes), [false, true, true]);
            let (_, read) = decode(bytes).unwrap();
            assert_eq!(read.len(), 1);
            assert_eq!(read[0], batch);
        }
    }

    #[test]
    fn batches_survive_a_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![
                    Some("a'b;--"),
                    None,
                    Some("ünï 🚀"),
                ])),
            ],
        )
        .unwrap();
        let bytes = encode(schema.clone(), &[batch.clone(), batch.clone()]).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        let (read_schema, batches) = decode(bytes.clone()).unwrap();
        assert_eq!(read_schema.fields(), schema.fields());
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 6);
        assert_eq!(batches[0].slice(0, 3), batch);
        let (only_id, batches) = decode_columns(bytes, &["id", "absent"]).unwrap();
        assert_eq!(only_id.fields().len(), 1);
        assert_eq!(only_id.field(0).name(), "id");
        assert_eq!(batches[0].num_columns(), 1);
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 6);
    }
}
