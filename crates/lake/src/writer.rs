//! Streams Arrow batches into one or more Parquet files in the lake.
//!
//! Encoding runs on a blocking thread fed by a bounded channel, so the
//! producer (a database COPY, a transform) and the encoder use both cores,
//! and at most one file is held in memory: a file is rolled and uploaded once
//! it reaches `file_rows` rows.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tokio::{runtime::Handle, sync::mpsc};

use crate::{FileEntry, Lake, Result, parquet::ParquetEncoder};

/// The files one dataset write produced.
#[derive(Debug, Clone, Default)]
pub struct DatasetFiles {
    /// One entry per file, in part order.
    pub files: Vec<FileEntry>,
    /// Rows across all files.
    pub rows: u64,
}

/// Consumes `batches` until the sender closes, writing files named by
/// `key_for_part(0)`, `key_for_part(1)`, … put-if-absent. Writes nothing for
/// an empty stream.
pub async fn write_dataset(
    lake: Lake,
    table: String,
    schema: SchemaRef,
    file_rows: u64,
    key_for_part: impl Fn(u32) -> String + Send + 'static,
    mut batches: mpsc::Receiver<RecordBatch>,
) -> Result<DatasetFiles> {
    let handle = Handle::current();
    let task = tokio::task::spawn_blocking(move || -> Result<DatasetFiles> {
        let mut out = DatasetFiles::default();
        let mut encoder: Option<ParquetEncoder> = None;
        let upload = |encoder: ParquetEncoder, out: &mut DatasetFiles| -> Result<()> {
            let rows = encoder.rows();
            let payload = encoder.finish()?;
            let key = key_for_part(out.files.len() as u32);
            let entry = handle.block_on(lake.put_file(&key, &table, rows, payload))?;
            tracing::debug!(table = %table, key = %key, rows, "file written");
            out.rows += rows;
            out.files.push(entry);
            Ok(())
        };
        while let Some(batch) = batches.blocking_recv() {
            let current = match encoder.as_mut() {
                Some(current) => current,
                None => encoder.insert(ParquetEncoder::for_batch(schema.clone(), &batch)?),
            };
            current.write(&batch)?;
            if current.rows() >= file_rows
                && let Some(full) = encoder.take()
            {
                upload(full, &mut out)?;
            }
        }
        if let Some(last) = encoder.take() {
            upload(last, &mut out)?;
        }
        Ok(out)
    });
    task.await.unwrap_or_else(|join| {
        Err(crate::Error::Parquet(
            ::parquet::errors::ParquetError::General(format!(
                "parquet writer thread failed: {join}"
            )),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::Int32Array;
    use arrow_schema::{DataType, Field, Schema};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_roll_at_the_row_limit_and_read_back_whole() {
        let lake = Lake::from_url("memory://").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)]));
        let (tx, rx) = mpsc::channel(2);
        let writer = tokio::spawn(write_dataset(
            lake.clone(),
            "numbers".into(),
            schema.clone(),
            250,
            |part| format!("numbers/{part}.parquet"),
            rx,
        ));
        for start in (0..1000).step_by(100) {
            let ids = Int32Array::from_iter_values(start..start + 100);
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap();
            tx.send(batch).await.unwrap();
        }
        drop(tx);
        let written = writer.await.unwrap().unwrap();
        assert_eq!(written.rows, 1000);
        assert_eq!(written.files.len(), 4, "300 + 300 + 300 + 100 rows");
        let mut seen = Vec::new();
        for file in &written.files {
            let bytes = lake.get(&file.key).await.unwrap();
            assert_eq!(crate::sha256_hex(&bytes), file.sha256);
            let (_, batches) = crate::parquet::decode(bytes).unwrap();
            for batch in batches {
                let ids = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .unwrap();
                seen.extend(ids.values().iter().copied());
            }
        }
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_stream_writes_no_file() {
        let lake = Lake::from_url("memory://").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)]));
        let (tx, rx) = mpsc::channel::<RecordBatch>(1);
        drop(tx);
        let written = write_dataset(lake.clone(), "t".into(), schema, 10, |p| format!("{p}"), rx)
            .await
            .unwrap();
        assert!(written.files.is_empty());
        assert!(lake.list("").await.unwrap().is_empty());
    }
}
