//! The stream-sink stage: each batch of stream records becomes one immutable
//! JSON-lines object in the raw lake, then a manifest.
//!
//! The object's key comes from the shard and the batch's first sequence
//! number, and its bytes from the records alone (gzip without a timestamp),
//! so a redelivered batch finds its object already there, writes nothing
//! new, and commits no second manifest. Lines that are not trades, or whose
//! price or amount is not an exact decimal, are quarantined with their
//! reason (under `_quarantine/markets/trades/`), so they never reach the
//! transform; a batch that cannot be written is reported back as failed
//! items so the stream redelivers it.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tributary_lake::{Lake, Log, Manifest, ManifestLog, PutOutcome, RunId, keys};
use tributary_markets::{Trade, rollup::refusal};

use crate::{
    Error, Result,
    alerts::{Alert, Alerts},
    markets::stream::ReceivedRecord,
};

const STAGE: &str = "stream-sink";
/// Commits tried before racing sinks are reported as contention.
const COMMIT_ATTEMPTS: u32 = 8;
/// How many recent manifests a redelivery looks through for its object.
const RECENT_MANIFESTS: u64 = 64;

/// What one sink manifest records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SinkState {
    /// The shard the batch came from.
    pub shard_id: String,
    /// First and last sequence numbers of the batch.
    pub first_sequence: String,
    /// Last sequence number.
    pub last_sequence: String,
    /// Trades written.
    pub trades: u64,
    /// Lines quarantined.
    pub quarantined: u64,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// The object written (or found), if the batch had trades.
    pub key: Option<String>,
    /// Trades in it.
    pub trades: u64,
    /// The object was already there (a redelivery).
    pub already_written: bool,
    /// Lines that were not trades, quarantined.
    pub quarantined: u64,
    /// Sequence numbers to report as `batchItemFailures` (empty on success).
    pub batch_item_failures: Vec<String>,
}

/// The key of a batch's object.
pub fn batch_key(first_trade: &Trade, shard_id: &str, first_sequence: &str) -> String {
    let date = DateTime::<Utc>::from_timestamp_millis(first_trade.traded_at_ms)
        .unwrap_or_default()
        .date_naive();
    keys::raw_trades_batch(date, shard_id, first_sequence)
}

/// Writes one batch. Never fails as a whole: what could not be written comes
/// back in `batch_item_failures` (and as an alert).
pub async fn sink_batch(raw: &Lake, records: &[ReceivedRecord], alerts: &dyn Alerts) -> SinkReport {
    match sink(raw, records).await {
        Ok(report) => report,
        Err(error) => {
            let first = records.iter().map(|r| r.sequence_number.clone()).min();
            alerts
                .send(&Alert {
                    stage: STAGE,
                    run_id: first.clone().unwrap_or_default(),
                    table: Some("trades".to_string()),
                    message: format!(
                        "a batch of {} record(s) was not written: {error}",
                        records.len()
                    ),
                    action: "the stream redelivers it; if this repeats, check the raw bucket"
                        .to_string(),
                })
                .await;
            SinkReport {
                batch_item_failures: first.into_iter().collect(),
                ..SinkReport::default()
            }
        }
    }
}

async fn sink(raw: &Lake, records: &[ReceivedRecord]) -> Result<SinkReport> {
    let Some(first) = records.first() else {
        return Ok(SinkReport::default());
    };
    // Lines are kept as received (one trade a line); only their shape is checked.
    let (mut lines, mut trades, mut first_trade) = (Vec::new(), 0u64, None::<Trade>);
    let (mut refused, mut quarantined) = (Vec::new(), 0u64);
    for record in records {
        for line in record
            .data
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        {
            let reason = match serde_json::from_slice::<Trade>(line) {
                Ok(trade) => match refusal(&trade) {
                    None => {
                        first_trade.get_or_insert(trade);
                        lines.extend_from_slice(line);
                        lines.push(b'\n');
                        trades += 1;
                        continue;
                    }
                    Some(reason) => reason,
                },
                Err(e) => format!("not a trade: {e}"),
            };
            let record = serde_json::json!({
                "sequence_number": record.sequence_number,
                "reason": reason,
                "line": String::from_utf8_lossy(line),
            });
            refused.extend(record.to_string().into_bytes());
            refused.push(b'\n');
            quarantined += 1;
        }
    }
    let mut report = SinkReport {
        trades,
        quarantined,
        ..SinkReport::default()
    };
    let last = records.last().map_or("", |r| r.sequence_number.as_str());
    let batch_id = format!("{}-{}", first.shard_id, first.sequence_number);
    if !refused.is_empty() {
        let key = keys::quarantine("markets", "trades", &batch_id);
        raw.put_once(&key, Bytes::from(refused)).await?;
        // ERROR: the error-log alarm counts quarantines as well as failures.
        tracing::error!(
            stage = STAGE,
            quarantine = %key,
            lines = quarantined,
            "trade lines quarantined"
        );
    }
    let Some(first_trade) = first_trade else {
        return Ok(report);
    };
    let key = batch_key(&first_trade, &first.shard_id, &first.sequence_number);
    let body = crate::gz::gzip(&lines)?;
    let outcome = raw.put_once(&key, Bytes::from(body.clone())).await?;
    report.already_written = outcome == PutOutcome::AlreadyPresent;
    let log = ManifestLog::new(raw.clone(), Log::MarketsTrades);
    if !(report.already_written && recently_committed(&log, &key).await?) {
        let entry = tributary_lake::FileEntry {
            key: key.clone(),
            table: "trades".to_string(),
            rows: trades,
            bytes: body.len() as u64,
            sha256: tributary_lake::sha256_hex(&body),
        };
        let state = SinkState {
            shard_id: first.shard_id.clone(),
            first_sequence: first.sequence_number.clone(),
            last_sequence: last.to_string(),
            trades: report.trades,
            quarantined: report.quarantined,
        };
        commit_with_retries(&log, entry, state).await?;
    }
    report.key = Some(key);
    Ok(report)
}

async fn recently_committed(log: &ManifestLog, key: &str) -> Result<bool> {
    let latest = log.latest_seq().await?;
    for seq in (latest.saturating_sub(RECENT_MANIFESTS) + 1..=latest).rev() {
        let manifest: Option<Manifest<SinkState>> = log.read(seq).await?;
        if manifest.is_some_and(|m| m.files.iter().any(|f| f.key == key)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Shards sink in parallel, so a lost race for a number is retried with the next.
async fn commit_with_retries(
    log: &ManifestLog,
    entry: tributary_lake::FileEntry,
    state: SinkState,
) -> Result<()> {
    let run_id = RunId::now();
    for _ in 0..COMMIT_ATTEMPTS {
        let latest = log.latest_seq().await?;
        match log
            .commit(
                latest,
                &run_id,
                Utc::now(),
                vec![entry.clone()],
                state.clone(),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(tributary_lake::Error::ManifestRace { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::ManifestContention {
        log: Log::MarketsTrades,
        attempts: COMMIT_ATTEMPTS,
    })
}
