//! The trade stream: Kinesis in AWS, an in-process stream locally.
//!
//! Trades travel packed, many to a record (JSON lines), partitioned by
//! symbol. [`put_all`] sends a set of records and resends only the entries
//! that failed, as Kinesis PutRecords can fail partly without an error.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;

use crate::{Error, Result};

/// Kinesis limits a record to 1 MiB; leave room for the partition key.
pub const MAX_RECORD_BYTES: usize = 1_000_000;
/// Kinesis takes at most 500 records per PutRecords call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// …and 5 MiB per call.
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;

/// One record to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Decides the shard: the symbol, so one symbol's trades stay in order.
    pub partition_key: String,
    /// JSON lines of trades.
    pub data: Bytes,
}

/// One record as the consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRecord {
    /// The shard it was read from.
    pub shard_id: String,
    /// Its sequence number in the shard.
    pub sequence_number: String,
    /// Its partition key.
    pub partition_key: String,
    /// Its data.
    pub data: Bytes,
}

/// A place trades are put: Kinesis, or the local in-process stream.
pub trait TradeStream: Send + Sync {
    /// Puts one call's worth of records (≤ 500, ≤ 5 MiB). Returns the
    /// indices of the entries that failed, as PutRecords reports them.
    fn put_records<'a>(
        &'a self,
        records: &'a [StreamRecord],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<usize>>> + Send + 'a>>;
}

/// Puts every record, in calls within the Kinesis limits, resending only the
/// failed entries up to `attempts` times.
pub async fn put_all(
    stream: &dyn TradeStream,
    records: Vec<StreamRecord>,
    attempts: u32,
) -> Result<()> {
    for call in calls(records) {
        let mut pending = call;
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=attempts.max(1) {
            let failed = stream.put_records(&pending).await?;
            if failed.is_empty() {
                break;
            }
            if attempt == attempts.max(1) {
                return Err(Error::StreamRefused {
                    failed: failed.len(),
                    attempts,
                    partition_key: pending
                        .get(failed[0])
                        .map_or_else(|| "?".to_string(), |r| r.partition_key.clone()),
                });
            }
            pending = failed
                .into_iter()
                .filter_map(|i| pending.get(i).cloned())
                .collect();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    Ok(())
}

/// Splits records into PutRecords calls within the count and size limits.
fn calls(records: Vec<StreamRecord>) -> Vec<Vec<StreamRecord>> {
    let mut out: Vec<Vec<StreamRecord>> = Vec::new();
    let mut bytes = 0;
    for record in records {
        let size = record.data.len() + record.partition_key.len();
        let full = out.last().is_none_or(|call| {
            call.len() >= MAX_RECORDS_PER_CALL || bytes + size > MAX_BYTES_PER_CALL
        });
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(call) = out.last_mut() {
            call.push(record);
        }
    }
    out
}

/// Packs JSON lines into records of at most [`MAX_RECORD_BYTES`], never
/// splitting a line.
pub fn pack_lines(partition_key: &str, lines: &[Vec<u8>]) -> Vec<StreamRecord> {
    let mut records = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for line in lines {
        if !current.is_empty() && current.len() + line.len() + 1 > MAX_RECORD_BYTES {
            records.push(StreamRecord {
                partition_key: partition_key.to_string(),
                data: Bytes::from(std::mem::take(&mut current)),
            });
        }
        current.extend_from_slice(line);
        current.push(b'\n');
    }
    if !current.is_empty() {
        records.push(StreamRecord {
            partition_key: partition_key.to_string(),
            data: Bytes::from(current),
        });
    }
    records
}

/// The local stream: one shard in memory, read back by the local sink.
///
/// Sequence numbers start at the clock (µs), so, like Kinesis's, they are
/// never reused, not even by the next process writing to the same lake.
#[derive(Debug, Clone)]
pub struct MemoryStream {
    records: Arc<Mutex<Vec<ReceivedRecord>>>,
    first_sequence: u128,
}

impl Default for MemoryStream {
    fn default() -> Self {
        let first_sequence = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or_default();
        Self {
            records: Arc::default(),
            first_sequence,
        }
    }
}

impl MemoryStream {
    /// Records from position `from` on, at most `limit`.
    pub fn read(&self, from: usize, limit: usize) -> Vec<ReceivedRecord> {
        self.records
            .lock()
            .map(|r| r.iter().skip(from).take(limit).cloned().collect())
            .unwrap_or_default()
    }

    /// Records put so far.
    pub fn len(&self) -> usize {
        self.records.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Whether nothing was put yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TradeStream for MemoryStream {
    fn put_records<'a>(
        &'a self,
        records: &'a [StreamRecord],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<usize>>> + Send + 'a>> {
        Box::pin(async move {
            // A panic elsewhere cannot leave the Vec half-pushed: keep using it.
            let mut stored = self
                .records
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for record in records {
                let sequence_number = format!("{:024}", self.first_sequence + stored.len() as u128);
                stored.push(ReceivedRecord {
                    shard_id: "shardId-000000000000".to_string(),
                    sequence_number,
                    partition_key: record.partition_key.clone(),
                    data: record.data.clone(),
                });
            }
            Ok(Vec::new())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails the entries at the given indices on the first call only.
    struct PartlyFailing {
        inner: MemoryStream,
        fail_first: Vec<usize>,
        calls: AtomicUsize,
        sent: Mutex<Vec<Vec<String>>>,
    }

    impl TradeStream for PartlyFailing {
        fn put_records<'a>(
            &'a self,
            records: &'a [StreamRecord],
        ) -> Pin<Box<dyn Future<Output = Result<Vec<usize>>> + Send + 'a>> {
            Box::pin(async move {
                let call = self.calls.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut sent) = self.sent.lock() {
                    sent.push(records.iter().map(|r| r.partition_key.clone()).collect());
                }
                let failed: Vec<usize> = if call == 0 {
                    self.fail_first.clone()
                } else {
                    Vec::new()
                };
                let delivered: Vec<StreamRecord> = records
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !failed.contains(i))
                    .map(|(_, r)| r.clone())
                    .collect();
                self.inner.put_records(&delivered).await?;
                Ok(failed)
            })
        }
    }

    fn record(key: &str) -> StreamRecord {
        StreamRecord {
            partition_key: key.to_string(),
            data: Bytes::from_static(b"{}\n"),
        }
    }

    #[tokio::test]
    async fn a_partly_failed_put_resends_only_the_failed_entries() {
        let stream = PartlyFailing {
            inner: MemoryStream::default(),
            fail_first: vec![1, 3],
            calls: AtomicUsize::new(0),
            sent: Mutex::new(Vec::new()),
        };
        let records: Vec<StreamRecord> = ["A", "B", "C", "D", "E"]
            .iter()
            .map(|k| record(k))
            .collect();
        put_all(&stream, records, 3).await.unwrap();
        let sent = stream.sent.lock().unwrap().clone();
        assert_eq!(sent, vec![vec!["A", "B", "C", "D", "E"], vec!["B", "D"]]);
        assert_eq!(stream.inner.len(), 5, "every record delivered once");
    }

    #[tokio::test]
    async fn entries_failing_every_time_are_an_error_after_bounded_retries() {
        struct AlwaysFailing;
        impl TradeStream for AlwaysFailing {
            fn put_records<'a>(
                &'a self,
                records: &'a [StreamRecord],
            ) -> Pin<Box<dyn Future<Output = Result<Vec<usize>>> + Send + 'a>> {
                Box::pin(async move { Ok((0..records.len()).collect()) })
            }
        }
        let err = put_all(&AlwaysFailing, vec![record("BTC-BRL")], 2)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("after 2 attempts") && err.to_string().contains("BTC-BRL"),
            "{err}"
        );
    }

    #[test]
    fn records_and_calls_respect_the_kinesis_limits() {
        let line = vec![b'x'; 300_000];
        let records = pack_lines("BTC-BRL", &vec![line; 7]);
        assert_eq!(records.len(), 3, "3 + 3 + 1 lines of 300 kB");
        assert!(records.iter().all(|r| r.data.len() <= MAX_RECORD_BYTES));
        let many: Vec<StreamRecord> = (0..1_200).map(|i| record(&format!("S{i}"))).collect();
        let split = calls(many);
        assert_eq!(
            split.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![500, 500, 200]
        );
        let big: Vec<StreamRecord> = (0..12)
            .map(|_| StreamRecord {
                partition_key: "K".into(),
                data: Bytes::from(vec![b'y'; 900_000]),
            })
            .collect();
        assert!(
            calls(big)
                .iter()
                .all(|c| c.iter().map(|r| r.data.len()).sum::<usize>() <= MAX_BYTES_PER_CALL)
        );
    }
}
