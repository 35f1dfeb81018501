//! Streams Arrow batches into one or more Parquet files in the lake.
//!
//! Encoding runs on a blocking thread fed by a bounded channel, so the
//! producer (a database COPY, a transform) and the encoder use both cores,
//! and at most `file_rows` rows are held in memory: a file is rolled and
//! uploaded once it reaches `file_rows` rows. A partitioned write fills up
//! to four files at once within that same bound.

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
    let next = move || batches.blocking_recv().map(|batch| (0, batch));
    write_labelled(lake, table, schema, file_rows, key_for_part, next).await
}

/// Partitions a writer keeps open at once; opening one more closes the
/// largest. Rows mostly arrive in time order, so few are open for long.
pub(crate) const OPEN_PARTITIONS: usize = 4;

/// [`write_dataset`] for batches labelled with a partition: a file holds one
/// label only. Up to [`OPEN_PARTITIONS`] files are filled at once (a fan-out
/// writer), so interleaved labels do not make a file per switch; memory
/// stays within one file's: when the open files hold `file_rows` rows
/// together, the largest is written.
pub async fn write_partitioned_dataset(
    lake: Lake,
    table: String,
    schema: SchemaRef,
    file_rows: u64,
    key_for_part: impl Fn(u32) -> String + Send + 'static,
    mut batches: mpsc::Receiver<(i64, RecordBatch)>,
) -> Result<DatasetFiles> {
    let next = move || batches.blocking_recv();
    write_labelled(lake, table, schema, file_rows, key_for_part, next).await
}

/// Both writers: `next` gives labelled batches on the encoding thread.
async fn write_labelled(
    lake: Lake,
    table: String,
    schema: SchemaRef,
    file_rows: u64,
    key_for_part: impl Fn(u32) -> String + Send + 'static,
    mut next: impl FnMut() -> Option<(i64, RecordBatch)> + Send + 'static,
) -> Result<DatasetFiles> {
    let handle = Handle::current();
    let task = tokio::task::spawn_blocking(move || -> Result<DatasetFiles> {
        let mut out = DatasetFiles::default();
        let mut open: std::collections::BTreeMap<i64, ParquetEncoder> = Default::default();
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
        while let Some((label, batch)) = next() {
            if !open.contains_key(&label) && open.len() >= OPEN_PARTITIONS {
                let largest = open
                    .iter()
                    .max_by_key(|(_, e)| e.rows())
                    .map(|(l, _)| *l)
                    .expect("open partitions");
                if let Some(full) = open.remove(&largest) {
                    upload(full, &mut out)?;
                }
            }
            let current = match open.entry(label) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(ParquetEncoder::for_batch(schema.clone(), &batch)?)
                }
            };
            current.write(&batch)?;
            let held: u64 = open.values().map(ParquetEncoder::rows).sum();
            if held >= file_rows {
                let largest = open
                    .iter()
                    .max_by_key(|(_, e)| e.rows())
                    .map(|(l, _)| *l)
                    .expect("open partitions");
                if let Some(full) = open.remove(&largest) {
                    upload(full, &mut out)?;
                }
            }
        }
        for (_, last) in std::mem::take(&mut open) {
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
    async fn a_new_label_starts_a_new_file() {
        let lake = Lake::from_url("memory://").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)]));
        let (tx, rx) = mpsc::channel(2);
        let writer = tokio::spawn(write_partitioned_dataset(
            lake.clone(),
            "numbers".into(),
            schema.clone(),
            1000,
            |part| format!("numbers/{part}.parquet"),
            rx,
        ));
        for (label, start) in [(1, 0), (2, 10), (1, 20), (3, 30), (4, 40), (5, 50), (1, 60)] {
            let ids = Int32Array::from_iter_values(start..start + 10);
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap();
            tx.send((label, batch)).await.unwrap();
        }
        drop(tx);
        let written = writer.await.unwrap().unwrap();
        let rows: Vec<u64> = written.files.iter().map(|f| f.rows).collect();
        // Opening a fifth label writes the largest open file first: label
        // 1 (20 rows) for label 5, then one of 10 rows for label 1 again;
        // the four left are written at the end.
        assert_eq!(rows, [20, 10, 10, 10, 10, 10], "{rows:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_partitions_together_hold_at_most_file_rows() {
        let lake = Lake::from_url("memory://").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)]));
        let (tx, rx) = mpsc::channel(2);
        let writer = tokio::spawn(write_partitioned_dataset(
            lake.clone(),
            "numbers".into(),
            schema.clone(),
            100,
            |part| format!("numbers/{part}.parquet"),
            rx,
        ));
        // Two months interleaved, 30 rows at a time: 240 rows.
        for n in 0..8 {
            let ids = Int32Array::from_iter_values(n * 30..n * 30 + 30);
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap();
            tx.send((i64::from(n % 2), batch)).await.unwrap();
        }
        drop(tx);
        let written = writer.await.unwrap().unwrap();
        let rows: Vec<u64> = written.files.iter().map(|f| f.rows).collect();
        assert_eq!(written.rows, 240);
        // Each time the two open files reach 100 rows together, the larger
        // is written (label 1 at 60 of 120, then label 0 at 90 of 120); the
        // last two at the end.
        assert!(rows.iter().all(|r| *r <= 100), "{rows:?}");
        assert_eq!(rows, [60, 90, 30, 60], "{rows:?}");
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
