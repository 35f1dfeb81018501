//! The market-data producer: Kinesis PutRecords behind the pipeline's
//! [`TradeStream`]. Only entries Kinesis reports as failed are resent (by
//! `pipeline::stream::put_all`); a call that failed as a whole for a reason
//! a retry can fix (throttling, a timeout, a 5xx) counts as every entry
//! failed, so it is retried the same bounded way.

use std::{future::Future, pin::Pin};

use aws_sdk_kinesis::{primitives::Blob, types::PutRecordsRequestEntry};
use tributary_pipeline::{
    Result,
    markets::stream::{StreamRecord, TradeStream},
};

use crate::describe;

/// Puts trades into one Kinesis stream.
#[derive(Debug, Clone)]
pub struct KinesisStream {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
}

impl KinesisStream {
    /// The producer for `stream_name`.
    pub fn new(client: aws_sdk_kinesis::Client, stream_name: impl Into<String>) -> Self {
        Self {
            client,
            stream_name: stream_name.into(),
        }
    }
}

impl TradeStream for KinesisStream {
    fn put_records<'a>(
        &'a self,
        records: &'a [StreamRecord],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<usize>>> + Send + 'a>> {
        Box::pin(async move {
            let mut entries = Vec::with_capacity(records.len());
            for record in records {
                entries.push(
                    PutRecordsRequestEntry::builder()
                        .partition_key(&record.partition_key)
                        .data(Blob::new(record.data.to_vec()))
                        .build()
                        .map_err(|e| crate::Error::Call {
                            service: "kinesis",
                            operation: "PutRecords",
                            reason: format!("building an entry: {e}"),
                            retryable: false,
                        })?,
                );
            }
            let sent = self
                .client
                .put_records()
                .stream_name(&self.stream_name)
                .set_records(Some(entries))
                .send()
                .await;
            match sent {
                Ok(output) => Ok(output
                    .records()
                    .iter()
                    .enumerate()
                    .filter(|(_, entry)| entry.error_code().is_some())
                    .map(|(i, _)| i)
                    .collect()),
                Err(error) if crate::sdk_retryable(&error) => {
                    tracing::warn!(
                        stream = %self.stream_name,
                        error = %describe(&error),
                        "PutRecords failed as a whole; every entry will be resent"
                    );
                    Ok((0..records.len()).collect())
                }
                // A refusal (no such stream, access denied) keeps its
                // classification: no retry can fix it.
                Err(error) => Err(crate::sdk_error("kinesis", "PutRecords", &error).into()),
            }
        })
    }
}
