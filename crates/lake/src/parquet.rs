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
    file::properties::WriterProperties,
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
        let buffer = BlockBuffer(PutPayloadMut::new().with_block_size(BLOCK_BYTES));
        let writer = ArrowWriter::try_new(buffer, schema, Some(writer_properties()))?;
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
    let mut encoder = ParquetEncoder::new(schema)?;
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
) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

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
