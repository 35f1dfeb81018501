//! The events that start each function, read strictly: anything else is a
//! non-retryable failure that names what was expected.

use aws_lambda_events::event::kinesis::KinesisEvent;
use chrono::NaiveDate;
use serde_json::Value;
use tributary_lake::{Flow, Log};
use tributary_pipeline::{
    fx::FxDays, markets::stream::ReceivedRecord, totesys::ingest::IngestRequest,
};

use crate::Failure;

/// What the ingest function was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestEvent {
    /// The EventBridge schedule (or an empty manual invocation): every
    /// table incrementally, then market polling for the rest of the budget.
    Scheduled,
    /// A manual backfill, e.g. `{"tables":["payment"],"since":"2024-01-01T00:00:00Z"}`.
    Backfill(IngestRequest),
    /// The markets' history before polling, e.g. `{"candles":{"since":"2020-01-01"}}`.
    History(tributary_pipeline::markets::history::HistoryRequest),
    /// Configured sources by hand, e.g. `{"sources": ["olist"]}`, optionally
    /// with `"accept_schema": ["orders"]` (tables whose changed schema is
    /// accepted in this run) and `"check_deletes": true`.
    Sources(SourcesRequest),
    /// S3 notifications of the landing bucket: the (bucket, key) of every
    /// object created; the file drops that read them run.
    Landed(Vec<(String, String)>),
}

/// Which configured sources to run by hand, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesRequest {
    /// The sources (their files' names).
    pub sources: Vec<String>,
    /// Tables whose changed schema this run accepts.
    #[serde(default)]
    pub accept_schema: Vec<String>,
    /// Look for deletes now, whatever `deletes_every` says.
    #[serde(default)]
    pub check_deletes: bool,
}

fn is_schedule(event: &Value) -> bool {
    event.get("source").and_then(Value::as_str) == Some("aws.events")
        || event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
}

fn is_empty(event: &Value) -> bool {
    event.is_null() || event.as_object().is_some_and(|o| o.is_empty())
}

/// Reads an ingest event.
pub fn ingest_event(event: &Value) -> Result<IngestEvent, Failure> {
    if is_schedule(event) || is_empty(event) {
        return Ok(IngestEvent::Scheduled);
    }
    if event.get("Records").is_some() {
        return landed_objects(event).map(IngestEvent::Landed);
    }
    if event.get("sources").is_some() {
        let usage = r#"sources takes {"sources": ["olist"]} (optional "accept_schema": ["table"], "check_deletes": true)"#;
        let request: SourcesRequest = serde_json::from_value(event.clone())
            .map_err(|e| Failure::bad_event(format!("{usage}: {e}")))?;
        if request.sources.is_empty() {
            return Err(Failure::bad_event(format!(
                "{usage}: name at least one source"
            )));
        }
        return Ok(IngestEvent::Sources(request));
    }
    if let Some(candles) = event.get("candles") {
        let request = serde_json::from_value(candles.clone()).map_err(|e| {
            Failure::bad_event(format!(
                "candles takes {{\"since\":\"2020-01-01\"}} (optional \"until\", \"symbols\"): {e}"
            ))
        })?;
        return Ok(IngestEvent::History(request));
    }
    let request: IngestRequest = serde_json::from_value(event.clone()).map_err(|e| {
        Failure::bad_event(format!(
            "ingest takes a schedule event or a backfill such as \
             {{\"tables\":[\"payment\"],\"since\":\"2024-01-01T00:00:00Z\"}}; this event: {e}"
        ))
    })?;
    // Its tables are checked against the source file by the handler,
    // before anything runs.
    Ok(IngestEvent::Backfill(request))
}

/// Which manifest logs an S3 event touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// A totesys manifest (raw) or transform manifest (processed).
    pub totesys: bool,
    /// A markets manifest (sink, poll or candles in raw, markets transform
    /// in processed).
    pub markets: bool,
    /// Configured sources with a new manifest
    /// (`sources/<name>/_manifests/source/…`): their Iceberg tables are
    /// published.
    pub sources: std::collections::BTreeSet<String>,
    /// Keys that named no known manifest (logged, ignored).
    pub ignored: Vec<String>,
}

/// The configured source whose manifest `key` (relative to the raw root)
/// is, if it is one.
fn source_of_manifest(key: &str) -> Option<String> {
    let (name, rest) = key.strip_prefix("sources/")?.split_once('/')?;
    let file = rest
        .strip_prefix("_manifests/")?
        .strip_prefix(Log::Source.name())?
        .strip_prefix('/')?;
    (!name.is_empty() && file.ends_with(".json") && !file.contains('/')).then(|| name.to_string())
}

/// What the transform function was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransformEvent {
    /// New raw manifests (from S3 notifications) or a schedule.
    Manifests(Touched),
    /// `{"rebuild": true}`: everything again from the first raw manifest.
    Rebuild,
    /// `{"maintain": {}}` (the hourly schedule), optionally with
    /// `target_mb` and `keep_hours`: compaction and expiry of the Iceberg
    /// tables.
    Maintain(MaintainRequest),
}

/// What a `maintain` event may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintainRequest {
    /// Target size of a compacted file in MB (default 128).
    #[serde(default = "default_target_mb")]
    pub target_mb: u64,
    /// Hours snapshots are kept (default 6).
    #[serde(default = "default_keep_hours")]
    pub keep_hours: u64,
}

fn default_target_mb() -> u64 {
    128
}

fn default_keep_hours() -> u64 {
    6
}

/// Decodes an S3 event key: `+` is a space and `%XX` a byte.
pub fn decode_s3_key(key: &str) -> Result<String, Failure> {
    let bad = || Failure::bad_event(format!("S3 key {key:?} is not URL-encoded correctly"));
    let mut bytes = Vec::with_capacity(key.len());
    let mut it = key.bytes();
    while let Some(b) = it.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?];
                let text = std::str::from_utf8(&hex).map_err(|_| bad())?;
                bytes.push(u8::from_str_radix(text, 16).map_err(|_| bad())?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

/// The (bucket, key) of every object an S3 event names, keys decoded.
pub fn landed_objects(event: &Value) -> Result<Vec<(String, String)>, Failure> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::bad_event("not an S3 event: no Records"))?;
    if records.is_empty() {
        return Err(Failure::bad_event("an S3 event with no records"));
    }
    records
        .iter()
        .map(|record| {
            let bucket = record.pointer("/s3/bucket/name").and_then(Value::as_str);
            let key = record.pointer("/s3/object/key").and_then(Value::as_str);
            match (bucket, key) {
                (Some(bucket), Some(key)) => Ok((bucket.to_string(), decode_s3_key(key)?)),
                _ => Err(Failure::bad_event(format!(
                    "not an S3 event: a record without s3.bucket.name and s3.object.key: {record}"
                ))),
            }
        })
        .collect()
}

/// The manifest logs named by the keys of an S3 event. `prefix` is the
/// lake root's key prefix inside the bucket (empty for a bucket root).
pub fn touched_manifests(event: &Value, prefix: &str) -> Result<Touched, Failure> {
    // Only the keys matter: read them leniently, so a notification with
    // fewer fields than the full S3 event shape is still understood.
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::bad_event("not an S3 event: no Records"))?;
    if records.is_empty() {
        return Err(Failure::bad_event("an S3 event with no records"));
    }
    let prefix = prefix.trim_matches('/');
    let mut touched = Touched::default();
    for record in records {
        let Some(key) = record.pointer("/s3/object/key").and_then(Value::as_str) else {
            return Err(Failure::bad_event(format!(
                "not an S3 event: a record without s3.object.key: {record}"
            )));
        };
        let key = decode_s3_key(key)?;
        let relative = if prefix.is_empty() {
            Some(key.as_str())
        } else {
            key.strip_prefix(prefix).and_then(|k| k.strip_prefix('/'))
        };
        if let Some(source) = relative.and_then(source_of_manifest) {
            touched.sources.insert(source);
            continue;
        }
        match relative.and_then(Log::of_key).map(Log::flow) {
            Some(Flow::Totesys) => touched.totesys = true,
            Some(Flow::Markets) => touched.markets = true,
            _ => touched.ignored.push(key),
        }
    }
    Ok(touched)
}

/// Reads a transform event.
pub fn transform_event(event: &Value, raw_prefix: &str) -> Result<TransformEvent, Failure> {
    if let Some(rebuild) = event.get("rebuild") {
        return match rebuild.as_bool() {
            Some(true) => Ok(TransformEvent::Rebuild),
            _ => Err(Failure::bad_event(
                r#"transform takes {"rebuild": true} to rebuild"#,
            )),
        };
    }
    if let Some(maintain) = event.get("maintain") {
        let request: MaintainRequest = serde_json::from_value(maintain.clone()).map_err(|e| {
            Failure::bad_event(format!(
                r#"transform takes {{"maintain": {{}}}} or {{"maintain": {{"target_mb": 128, "keep_hours": 6}}}}: {e}"#
            ))
        })?;
        if request.target_mb == 0 {
            return Err(Failure::bad_event("maintain: target_mb must be at least 1"));
        }
        return Ok(TransformEvent::Maintain(request));
    }
    if is_schedule(event) || is_empty(event) {
        return Ok(TransformEvent::Manifests(Touched {
            totesys: true,
            markets: true,
            ..Touched::default()
        }));
    }
    Ok(TransformEvent::Manifests(touched_manifests(
        event, raw_prefix,
    )?))
}

/// What the load function was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadEvent {
    /// Every pending processed manifest (a schedule, an empty manual
    /// invocation or S3 notifications of processed manifests).
    Pending,
    /// Exchange rates (the daily schedule's `{"fx": {}}`: every day the
    /// facts convert at; `{"fx": {"from": "2024-01-01", "to": "2024-12-31"}}`
    /// a range, `to` defaulting to today): replies into the raw lake, then
    /// `fact_exchange_rate`.
    Fx(FxDays),
}

/// What an `fx` event may hold.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FxRequest {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

/// Reads a load event: a schedule, an empty manual invocation, or S3
/// notifications of processed manifests, which all load whatever is
/// pending (so duplicates and out-of-order events are harmless); or an
/// exchange-rate run (`today` resolves a range's open end).
pub fn load_event(
    event: &Value,
    processed_prefix: &str,
    today: NaiveDate,
) -> Result<LoadEvent, Failure> {
    if let Some(fx) = event.get("fx") {
        let usage = r#"fx takes {} (every day the facts convert at) or {"from":"2024-01-01","to":"2024-12-31"} ("to" defaults to today)"#;
        let request: FxRequest = serde_json::from_value(fx.clone())
            .map_err(|e| Failure::bad_event(format!("{usage}: {e}")))?;
        return match (request.from, request.to) {
            (None, None) => Ok(LoadEvent::Fx(FxDays::ForFacts)),
            (Some(from), to) => {
                let to = to.unwrap_or(today);
                if from > to {
                    return Err(Failure::bad_event(format!(
                        "fx: \"from\" ({from}) is after \"to\" ({to})"
                    )));
                }
                Ok(LoadEvent::Fx(FxDays::Range(from, to)))
            }
            (None, Some(_)) => Err(Failure::bad_event(format!(
                "fx: \"to\" without \"from\"; {usage}"
            ))),
        };
    }
    if is_schedule(event) || is_empty(event) {
        return Ok(LoadEvent::Pending);
    }
    touched_manifests(event, processed_prefix).map(|_| LoadEvent::Pending)
}

/// The records of a Kinesis event, with their shard ids, in order.
pub fn kinesis_records(event: &Value) -> Result<Vec<ReceivedRecord>, Failure> {
    let kinesis: KinesisEvent = serde_json::from_value(event.clone())
        .map_err(|e| Failure::bad_event(format!("not a Kinesis event: {e}")))?;
    kinesis
        .records
        .into_iter()
        .map(|record| {
            // eventID is "<shard id>:<sequence number>".
            let shard_id = record
                .event_id
                .as_deref()
                .and_then(|id| id.split_once(':'))
                .map(|(shard, _)| shard.to_string())
                .ok_or_else(|| {
                    Failure::bad_event(format!(
                        "Kinesis record {} has no eventID naming its shard",
                        record.kinesis.sequence_number
                    ))
                })?;
            Ok(ReceivedRecord {
                shard_id,
                sequence_number: record.kinesis.sequence_number,
                partition_key: record.kinesis.partition_key,
                data: bytes::Bytes::from(record.kinesis.data.0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn a_configured_source_manifest_names_its_source_and_nothing_else_does() {
        let event = |keys: &[&str]| json!({"Records": keys.iter().map(|k| json!({"s3": {"object": {"key": k}}})).collect::<Vec<_>>()});
        let touched = touched_manifests(
            &event(&[
                "lake/sources/shop/_manifests/source/00000000000000000002.json",
                "lake/sources/olist/_manifests/source/00000000000000000001.json",
                "lake/sources/shop/orders/_received/a.json/abc",
                "lake/sources/shop/_manifests/other/00000000000000000001.json",
            ]),
            "lake",
        )
        .unwrap();
        assert_eq!(
            touched
                .sources
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["olist", "shop"]
        );
        assert!(!touched.totesys && !touched.markets);
        assert_eq!(touched.ignored.len(), 2, "{:?}", touched.ignored);
    }

    #[test]
    fn ingest_reads_schedules_backfills_and_refuses_typos() {
        assert_eq!(
            ingest_event(&fixture("ingest-schedule.json")).unwrap(),
            IngestEvent::Scheduled
        );
        assert_eq!(ingest_event(&json!({})).unwrap(), IngestEvent::Scheduled);
        match ingest_event(&fixture("ingest-backfill.json")).unwrap() {
            IngestEvent::Backfill(r) => {
                assert_eq!(r.tables, Some(vec!["payment".to_string()]));
                assert_eq!(r.since.unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
            }
            other => panic!("{other:?}"),
        }
        let typo = ingest_event(&json!({"table": ["payment"]})).unwrap_err();
        assert!(
            !typo.retryable && typo.message.contains("backfill"),
            "{typo}"
        );
        match ingest_event(&json!({"candles": {"since": "2020-01-01", "symbols": ["BTC-BRL"]}}))
            .unwrap()
        {
            IngestEvent::History(r) => {
                assert_eq!(r.since.to_string(), "2020-01-01");
                assert_eq!(r.symbols, Some(vec!["BTC-BRL".to_string()]));
            }
            other => panic!("{other:?}"),
        }
        let bad = ingest_event(&json!({"candles": {"from": "2020-01-01"}})).unwrap_err();
        assert!(!bad.retryable && bad.message.contains("since"), "{bad}");
        // A table name is checked by the handler against the source file.
        let IngestEvent::Backfill(typo) = ingest_event(&json!({"tables": ["payments"]})).unwrap()
        else {
            panic!("a backfill")
        };
        let source = tributary_pipeline::totesys::source::model_defaults();
        let unknown = Failure::from(
            tributary_pipeline::totesys::ingest::selected_tables(&typo, &source).unwrap_err(),
        );
        assert!(
            !unknown.retryable && unknown.message.contains("payments"),
            "{unknown}"
        );
    }

    #[test]
    fn ingest_reads_sources_by_hand_and_landing_events() {
        assert_eq!(
            ingest_event(&json!({"sources": ["olist", "partner"]})).unwrap(),
            IngestEvent::Sources(SourcesRequest {
                sources: vec!["olist".into(), "partner".into()],
                ..SourcesRequest::default()
            })
        );
        assert_eq!(
            ingest_event(
                &json!({"sources": ["olist"], "accept_schema": ["orders"], "check_deletes": true})
            )
            .unwrap(),
            IngestEvent::Sources(SourcesRequest {
                sources: vec!["olist".into()],
                accept_schema: vec!["orders".into()],
                check_deletes: true,
            })
        );
        for (bad, says) in [
            (json!({"sources": []}), "at least one"),
            (json!({"sources": "olist"}), "sources takes"),
            (
                json!({"sources": ["olist"], "accept": ["x"]}),
                "unknown field",
            ),
        ] {
            let failure = ingest_event(&bad).unwrap_err();
            assert!(
                !failure.retryable && failure.message.contains(says),
                "{bad}: {failure}"
            );
        }
        // The landing fixture: its key decoded (`+` is a space).
        assert_eq!(
            ingest_event(&fixture("ingest-landing-s3.json")).unwrap(),
            IngestEvent::Landed(vec![(
                "tributary-landing".into(),
                "partner/orders/2026-12-01 morning.csv".into()
            )])
        );
        let broken = json!({"Records": [{"s3": {"object": {"key": "a.csv"}}}]});
        assert!(
            ingest_event(&broken)
                .unwrap_err()
                .message
                .contains("s3.bucket.name")
        );
        assert!(ingest_event(&json!({"Records": []})).is_err());
    }

    #[test]
    fn load_reads_pending_and_exchange_rate_runs() {
        let today: NaiveDate = "2026-12-01".parse().unwrap();
        let read = |event: Value| load_event(&event, "", today);
        assert_eq!(
            read(fixture("load-schedule.json")).unwrap(),
            LoadEvent::Pending
        );
        assert_eq!(read(json!({})).unwrap(), LoadEvent::Pending);
        assert_eq!(
            read(fixture("load-fx.json")).unwrap(),
            LoadEvent::Fx(FxDays::ForFacts)
        );
        assert_eq!(
            read(json!({"fx": {"from": "2024-01-01", "to": "2024-12-31"}})).unwrap(),
            LoadEvent::Fx(FxDays::Range(
                "2024-01-01".parse().unwrap(),
                "2024-12-31".parse().unwrap()
            ))
        );
        assert_eq!(
            read(json!({"fx": {"from": "2026-11-01"}})).unwrap(),
            LoadEvent::Fx(FxDays::Range("2026-11-01".parse().unwrap(), today))
        );
        for (bad, says) in [
            (json!({"fx": {"since": "2024-01-01"}}), "unknown field"),
            (json!({"fx": {"from": "2024-13-01"}}), "fx takes"),
            (json!({"fx": {"to": "2024-01-01"}}), "without"),
            (
                json!({"fx": {"from": "2025-01-02", "to": "2025-01-01"}}),
                "after",
            ),
            (json!({"fx": true}), "fx takes"),
        ] {
            let failure = read(bad.clone()).unwrap_err();
            assert!(
                !failure.retryable && failure.message.contains(says),
                "{bad}: {failure}"
            );
        }
    }

    #[test]
    fn transform_decodes_keys_and_sorts_manifests_by_source() {
        let TransformEvent::Manifests(t) =
            transform_event(&fixture("transform-s3.json"), "").unwrap()
        else {
            panic!()
        };
        assert!(t.totesys && t.markets);
        assert_eq!(t.ignored, ["_manifests/other thing/x.json"]);
        assert_eq!(
            transform_event(&json!({"rebuild": true}), "").unwrap(),
            TransformEvent::Rebuild
        );
        assert!(transform_event(&json!({"rebuild": "yes"}), "").is_err());
        assert_eq!(
            transform_event(&json!({"maintain": {}}), "").unwrap(),
            TransformEvent::Maintain(MaintainRequest {
                target_mb: 128,
                keep_hours: 6
            })
        );
        assert_eq!(
            transform_event(&json!({"maintain": {"target_mb": 64}}), "").unwrap(),
            TransformEvent::Maintain(MaintainRequest {
                target_mb: 64,
                keep_hours: 6
            })
        );
        assert!(transform_event(&json!({"maintain": {"target": 64}}), "").is_err());
        assert!(transform_event(&json!({"maintain": {"target_mb": 0}}), "").is_err());
        assert!(transform_event(&json!({"Records": []}), "").is_err());
        assert_eq!(decode_s3_key("a+b%2Fc%3D1").unwrap(), "a b/c=1");
        assert!(decode_s3_key("bad%2").is_err());
    }

    #[test]
    fn every_manifest_log_routes_to_its_flow_including_candle_backfills() {
        for log in Log::ALL {
            let event = json!({"Records": [{"s3": {"object": {"key": log.manifest(1)}}}]});
            let t = touched_manifests(&event, "").unwrap();
            let expected = match log.flow() {
                Flow::Totesys => (true, false),
                Flow::Markets => (false, true),
                _ => (false, false),
            };
            assert_eq!((t.totesys, t.markets), expected, "{log}");
        }
        let candles = json!({"Records": [{"s3": {"object": {"key": "_manifests/markets_candles/00000000000000000001.json"}}}]});
        assert!(touched_manifests(&candles, "").unwrap().markets);
    }

    #[test]
    fn keys_outside_the_lake_prefix_are_ignored() {
        let event = json!({"Records": [{"eventSource": "aws:s3", "s3": {
            "bucket": {"name": "b"}, "object": {"key": "lake/raw/_manifests/totesys/00000000000000000001.json"}}}]});
        let t = touched_manifests(&event, "lake/raw").unwrap();
        assert!(t.totesys);
        let t = touched_manifests(&event, "other").unwrap();
        assert!(!t.totesys && t.ignored.len() == 1);
    }

    #[test]
    fn kinesis_records_keep_shard_sequence_and_data() {
        let records = kinesis_records(&fixture("stream-sink-kinesis.json")).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].shard_id, "shardId-000000000000");
        assert!(records[0].sequence_number.starts_with("4959"));
        assert_eq!(records[0].partition_key, "BTC-BRL");
        let text = std::str::from_utf8(&records[0].data).unwrap();
        assert!(text.contains("\"tid\""), "{text}");
        assert!(kinesis_records(&json!({"Records": [{"kinesis": {}}]})).is_err());
    }
}
