//! The four Lambda handlers against moto_server and real PostgreSQL:
//! S3 lakes (raw with Object Lock), Secrets Manager, SNS → SQS alerts, Glue,
//! Kinesis; real event payloads from `crates/lambdas/fixtures`.

use std::{collections::HashMap, sync::Arc};

use serde_json::{Value, json};
use tributary_e2e::{
    aws::{AlertInbox, create_bucket, head_object, moto_endpoint, rds_secret, unique},
    pipeline::Stack,
};
use tributary_lake::Lake;
use tributary_lambdas::{
    Context, Function,
    handlers::{ingest_handler, load_handler, stream_sink_handler, transform_handler},
};
use tributary_pipeline::{
    markets::stream::{TradeStream, pack_lines, put_all},
    metrics::RecordedMetrics,
};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../crates/lambdas/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture json")
}

/// The independent readers (`scripts/iceberg.sh <args>`, PyIceberg and
/// pyarrow against moto): their JSON answer.
fn iceberg_sh(args: &[&str]) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/iceberg.sh");
    let output = std::process::Command::new(script)
        .args(args)
        .output()
        .expect("run scripts/iceberg.sh");
    assert!(
        output.status.success(),
        "scripts/iceberg.sh {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The AWS side of one test: buckets, topic + inbox, secrets, Glue database.
struct Aws {
    sdk: aws_config::SdkConfig,
    endpoint: String,
    raw_bucket: String,
    env: HashMap<String, String>,
    inbox: AlertInbox,
    glue_db: String,
}

impl Aws {
    async fn new(stack: &Stack) -> Aws {
        let endpoint = moto_endpoint().expect("moto_server");
        let sdk = tributary_aws::sdk_config().await;
        let raw_bucket = unique("tributary-raw");
        let processed_bucket = unique("tributary-processed");
        create_bucket(&endpoint, &raw_bucket, true).await;
        create_bucket(&endpoint, &processed_bucket, false).await;
        let (inbox, topic) = AlertInbox::create(&endpoint, &sdk).await;
        let totesys = rds_secret(&sdk, "tributary-totesys", &stack.source_db.url).await;
        let warehouse = rds_secret(&sdk, "tributary-warehouse", &stack.warehouse_db.url).await;
        let glue_db = unique("tributary").replace('-', "_");
        aws_sdk_glue::Client::new(&sdk)
            .create_database()
            .database_input(
                aws_sdk_glue::types::DatabaseInput::builder()
                    .name(&glue_db)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("create glue database");
        let env: HashMap<String, String> = [
            ("TRIBUTARY_RAW_URL", format!("s3://{raw_bucket}")),
            (
                "TRIBUTARY_PROCESSED_URL",
                format!("s3://{processed_bucket}"),
            ),
            ("TOTESYS_SECRET_ARN", totesys),
            ("WAREHOUSE_SECRET_ARN", warehouse),
            ("TRIBUTARY_ALERT_TOPIC_ARN", topic),
            ("TRIBUTARY_GLUE_DATABASE", glue_db.clone()),
            ("TRIBUTARY_LATE_CHECK_EVERY", "0s".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Aws {
            sdk,
            endpoint,
            raw_bucket,
            env,
            inbox,
            glue_db,
        }
    }

    /// A function's context as a cold start builds it, from this env.
    async fn context(&self, function: Function, overrides: &[(&str, &str)]) -> Context {
        let mut env = self.env.clone();
        for (k, v) in overrides {
            env.insert(k.to_string(), v.to_string());
        }
        Context::from_lookup(function, &self.sdk, |name| env.get(name).cloned())
            .await
            .unwrap_or_else(|e| panic!("{} context: {e}", function.name()))
    }
}

#[tokio::test]
async fn handlers_carry_totesys_to_the_warehouse_catalog_and_alert_on_failure() {
    let Some(mut stack) = Stack::generated("lambda_moto", 3).await else {
        return;
    };
    if moto_endpoint().is_none() {
        return;
    }
    let aws = Aws::new(&stack).await;
    let metrics = Arc::new(RecordedMetrics::default());
    let ingest = aws
        .context(Function::Ingest, &[])
        .await
        .with_metrics(metrics.clone());
    let transform = aws
        .context(Function::Transform, &[])
        .await
        .with_metrics(metrics.clone());
    let load = aws
        .context(Function::Load, &[])
        .await
        .with_metrics(metrics.clone());

    // Schedule → ingest (the secret gave the URL) → S3 event → transform → load.
    let ingested = ingest_handler(&ingest, &fixture("ingest-schedule.json"), None)
        .await
        .unwrap();
    assert!(ingested["rows"].as_u64().unwrap() > 100, "{ingested}");
    // The first transform commits its data but cannot reach Glue (an
    // endpoint that refuses): it fails, and the next invocation registers
    // what is pending although it has nothing new to transform.
    let no_glue_sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:9")
        .load()
        .await;
    let transform_without_glue = Context::from_lookup(Function::Transform, &no_glue_sdk, |name| {
        aws.env.get(name).cloned()
    })
    .await
    .unwrap();
    let failed = transform_handler(&transform_without_glue, &fixture("transform-s3.json"))
        .await
        .unwrap_err();
    assert!(
        failed.retryable && failed.message.contains("glue"),
        "{failed}"
    );
    let transformed = transform_handler(&transform, &fixture("transform-s3.json"))
        .await
        .unwrap();
    assert_eq!(
        transformed["totesys"]["manifest"],
        Value::Null,
        "already transformed: {transformed}"
    );
    assert!(
        transformed["catalog_tables"].as_u64().unwrap() > 0,
        "the failed sync is retried: {transformed}"
    );
    let loaded = load_handler(&load, &fixture("load-s3.json")).await.unwrap();
    assert!(loaded["rows"].as_u64().unwrap() > 100, "{loaded}");
    // Freshness: the age of the ingest manifest behind what was loaded.
    let lag = loaded["freshness_lag_seconds"].as_f64().unwrap();
    assert!(lag > 0.0 && lag < 60.0, "{loaded}");
    assert_eq!(
        metrics.total("RowsLoaded"),
        2.0 * loaded["rows"].as_f64().unwrap(),
        "per table + total"
    );

    // Every layer agrees with the source (lakes on S3 through moto).
    stack.raw = Lake::from_url(&aws.env["TRIBUTARY_RAW_URL"]).unwrap();
    stack.processed = Lake::from_url(&aws.env["TRIBUTARY_PROCESSED_URL"]).unwrap();
    stack.assert_reconciled().await;

    // The raw bucket holds objects written with a SHA-256 checksum (Object Lock requires one).
    let headers = head_object(
        &aws.endpoint,
        &aws.raw_bucket,
        "_manifests/totesys/00000000000000000001.json",
    )
    .await;
    assert!(headers.contains_key("x-amz-checksum-sha256"), "{headers:?}");

    // Glue: the star schema's tables are Iceberg tables registered at their
    // current metadata file, with the schema's columns for people browsing.
    let glue = aws_sdk_glue::Client::new(&aws.sdk);
    let table = glue
        .get_table()
        .database_name(&aws.glue_db)
        .name("fact_sales_order")
        .send()
        .await
        .expect("fact_sales_order in Glue")
        .table
        .unwrap();
    let parameters = table.parameters().unwrap();
    assert_eq!(
        parameters.get("table_type").map(String::as_str),
        Some("ICEBERG")
    );
    let metadata = &parameters["metadata_location"];
    let processed_url = &aws.env["TRIBUTARY_PROCESSED_URL"];
    let catalog = tributary_iceberg::Catalog::new(stack.processed.clone());
    let current = catalog
        .load("warehouse/fact_sales_order")
        .await
        .unwrap()
        .expect("the Iceberg table on S3");
    assert_eq!(
        metadata,
        &catalog.metadata_url("warehouse/fact_sales_order", &current),
        "Glue names the newest version"
    );
    assert!(metadata.starts_with(processed_url.as_str()), "{metadata}");
    let sd = table.storage_descriptor().unwrap();
    let columns: HashMap<&str, &str> = sd
        .columns()
        .iter()
        .map(|c| (c.name(), c.r#type().unwrap_or_default()))
        .collect();
    assert_eq!(columns.get("unit_price"), Some(&"decimal(10,2)"));
    assert_eq!(columns.get("created_date"), Some(&"date"));
    assert!(
        table.partition_keys().is_empty(),
        "Iceberg partitions are hidden"
    );
    assert!(
        sd.location()
            .unwrap()
            .ends_with("/warehouse/fact_sales_order")
    );
    let tables = glue
        .get_tables()
        .database_name(&aws.glue_db)
        .send()
        .await
        .unwrap();
    let iceberg_tables = tables
        .table_list()
        .iter()
        .filter(|t| {
            t.parameters()
                .is_some_and(|p| p.get("table_type").is_some_and(|v| v == "ICEBERG"))
        })
        .count();
    assert_eq!(
        iceberg_tables,
        tributary_warehouse::WAREHOUSE_TABLES.len(),
        "every warehouse table"
    );
    assert_eq!(
        tables.table_list().len() - iceberg_tables,
        tributary_pipeline::catalog::raw_specs(&transform.raw, &Default::default()).len(),
        "and the raw zone's tables"
    );
    let rows: u64 = catalog
        .data_files(&current)
        .await
        .unwrap()
        .iter()
        .map(|f| f.record_count())
        .sum();
    let facts: i64 = stack
        .warehouse
        .query_one("SELECT count(*) FROM fact_sales_order", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, facts as u64,
        "the table's snapshot holds the warehouse's facts"
    );

    // PyIceberg, an independent reader, finds every table through Glue on
    // moto and reads it from S3: the warehouse's rows, every table.
    let wanted: std::collections::BTreeMap<&str, Vec<&str>> = tributary_warehouse::WAREHOUSE_TABLES
        .iter()
        .map(|t| (t.name, vec![t.key]))
        .collect();
    let read = iceberg_sh(&[
        "glue",
        &aws.glue_db,
        &serde_json::to_string(&wanted).unwrap(),
    ]);
    for table in &tributary_warehouse::WAREHOUSE_TABLES {
        let rows: i64 = stack
            .warehouse
            .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])
            .await
            .unwrap()
            .get(0);
        let through_glue = read[table.name]["rows"].as_array().map_or(0, Vec::len);
        assert_eq!(
            through_glue as i64, rows,
            "{}: PyIceberg through Glue vs the warehouse",
            table.name
        );
        assert!(
            read[table.name]["metadata"]
                .as_str()
                .is_some_and(|m| m.starts_with(processed_url.as_str())),
            "{read}"
        );
    }

    // Maintenance on S3: compaction and expiry, and Glue follows the
    // compacted version. A raw table deleted in Glue by hand comes back
    // (the transform registers raw tables only when their definitions change).
    glue.delete_table()
        .database_name(&aws.glue_db)
        .name("raw_totesys_payment")
        .send()
        .await
        .unwrap();
    let maintained = transform_handler(&transform, &json!({"maintain": {}}))
        .await
        .unwrap();
    assert!(
        maintained["maintain"]["fact_sales_order"].is_object(),
        "{maintained}"
    );
    let after = catalog
        .load("warehouse/fact_sales_order")
        .await
        .unwrap()
        .unwrap();
    let registered = glue
        .get_table()
        .database_name(&aws.glue_db)
        .name("fact_sales_order")
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(
        registered.parameters().unwrap()["metadata_location"],
        catalog.metadata_url("warehouse/fact_sales_order", &after)
    );
    let restored = glue
        .get_table()
        .database_name(&aws.glue_db)
        .name("raw_totesys_payment")
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(
        restored.parameters().unwrap()["projection.enabled"],
        "true",
        "the raw table is registered again"
    );

    // A warm function whose connection died (failover, idle timeout)
    // reconnects instead of failing.
    let killed: i64 = stack
        .warehouse
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'tributary' \
             AND pid <> pg_backend_pid()) t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1, "the load's warm connection was open");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // Repeated and out-of-order events change nothing.
    let again = transform_handler(&transform, &fixture("transform-s3.json"))
        .await
        .unwrap();
    assert_eq!(again["totesys"]["manifest"], Value::Null, "{again}");
    let again = load_handler(&load, &fixture("load-schedule.json"))
        .await
        .unwrap();
    assert_eq!(again["rows"], json!(0), "{again}");
    assert!(
        again["freshness_lag_seconds"].as_f64().unwrap() > lag,
        "nothing new: the warehouse grows older: {again}"
    );
    assert!(
        aws.inbox.drain().await.is_empty(),
        "no alerts on a healthy run"
    );

    // New changes while the warehouse is unreachable: the load fails as
    // retryable and the alert names the stage and the error.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    for _ in 0..5 {
        tributary_totesys::simulate::insert_order(&mut stack.source, &mut rng)
            .await
            .unwrap();
    }
    ingest_handler(&ingest, &fixture("ingest-schedule.json"), None)
        .await
        .unwrap();
    transform_handler(&transform, &fixture("transform-s3.json"))
        .await
        .unwrap();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dead_url = format!("postgres://postgres@127.0.0.1:{dead}/warehouse?connect_timeout=2");
    let dead_secret = rds_secret(&aws.sdk, "tributary-dead", &dead_url).await;
    let broken = aws
        .context(Function::Load, &[("WAREHOUSE_SECRET_ARN", &dead_secret)])
        .await;
    let failure = load_handler(&broken, &fixture("load-schedule.json"))
        .await
        .unwrap_err();
    assert!(failure.retryable, "{failure}");
    assert_eq!(failure.error_type(), "Retryable.Unreachable");
    let alerts = aws.inbox.drain().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].subject.starts_with("Tributary load: load failed"),
        "{:?}",
        alerts[0]
    );
    assert!(
        alerts[0]
            .message
            .contains("cannot connect to the warehouse database"),
        "{:?}",
        alerts[0]
    );
    assert!(
        alerts[0].message.contains("(from WAREHOUSE_SECRET_ARN)"),
        "names where the URL came from: {:?}",
        alerts[0]
    );
    assert!(
        alerts[0].message.contains("cannot connect"),
        "{:?}",
        alerts[0]
    );
    assert!(
        alerts[0].message.contains("the next scheduled run retries"),
        "{:?}",
        alerts[0]
    );

    // The same failure every minute is not mailed again within the hour:
    // the gate remembers it in the processed lake.
    for _ in 0..3 {
        load_handler(&broken, &fixture("load-schedule.json"))
            .await
            .unwrap_err();
    }
    let held = aws.inbox.drain().await;
    assert!(held.is_empty(), "repeats are held back: {held:?}");

    // The next run heals: everything pending is loaded, nothing lost or
    // doubled, and one notice says the failure is over.
    let healed = load_handler(&load, &fixture("load-schedule.json"))
        .await
        .unwrap();
    assert!(healed["rows"].as_u64().unwrap() >= 5, "{healed}");
    let recovered = aws.inbox.drain().await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert!(
        recovered[0].message.contains("load recovered")
            && recovered[0].message.contains("after failing 4 time(s)"),
        "{:?}",
        recovered[0]
    );
    load_handler(&load, &fixture("load-schedule.json"))
        .await
        .unwrap();
    assert!(aws.inbox.drain().await.is_empty(), "recovered once");
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn trades_go_through_kinesis_and_the_sink_once_even_when_redelivered() {
    let Some(stack) = Stack::new("lambda_kinesis").await else {
        return;
    };
    if moto_endpoint().is_none() {
        return;
    }
    let aws = Aws::new(&stack).await;
    let stream_name = unique("tributary-markets");
    let kinesis = aws_sdk_kinesis::Client::new(&aws.sdk);
    kinesis
        .create_stream()
        .stream_name(&stream_name)
        .shard_count(1)
        .send()
        .await
        .unwrap();

    // Producer: trades packed into records, put with PutRecords.
    let producer = tributary_aws::kinesis::KinesisStream::new(kinesis.clone(), &stream_name);
    let now = chrono::Utc::now().timestamp_millis();
    let lines: Vec<Vec<u8>> = (1..=3)
        .map(|tid| {
            serde_json::to_vec(
                &json!({"symbol": "BTC-BRL", "tid": tid, "traded_at_ms": now - 1000 + tid,
                "price": "512345.67", "amount": "0.001", "side": "buy"}),
            )
            .unwrap()
        })
        .collect();
    let records = pack_lines("BTC-BRL", &lines);
    // A stream that does not exist is a refusal, not a reason to resend.
    let nowhere = tributary_aws::kinesis::KinesisStream::new(kinesis.clone(), "no-such-stream");
    let refused = nowhere.put_records(&records).await.unwrap_err();
    assert!(!refused.is_retryable(), "{refused}");
    assert!(
        refused.to_string().contains("ResourceNotFound"),
        "{refused}"
    );
    put_all(&producer as &dyn TradeStream, records, 3)
        .await
        .unwrap();

    // What the event source mapping would deliver.
    let event = kinesis_event(&kinesis, &stream_name).await;

    let sink = aws.context(Function::StreamSink, &[]).await;
    let first = stream_sink_handler(&sink, &event).await.unwrap();
    assert_eq!(first, json!({"batchItemFailures": []}));
    let redelivered = stream_sink_handler(&sink, &event).await.unwrap();
    assert_eq!(redelivered, json!({"batchItemFailures": []}));
    // The committed fixture batch too (another shard position, other symbols).
    stream_sink_handler(&sink, &fixture("stream-sink-kinesis.json"))
        .await
        .unwrap();

    let transform = aws.context(Function::Transform, &[]).await;
    let t = transform_handler(&transform, &json!({})).await.unwrap();
    assert_eq!(
        t["markets"]["trades"],
        json!(6),
        "3 produced + 3 in the fixture, once each: {t}"
    );
    assert!(t["catalog_tables"].as_u64().unwrap() >= 2, "{t}");
    let load = aws.context(Function::Load, &[]).await;
    let l = load_handler(&load, &json!({})).await.unwrap();
    assert_eq!(l["trades"], json!(6), "{l}");
    let count: i64 = stack
        .warehouse
        .query_one(
            "SELECT count(*) FROM fact_trade WHERE symbol = 'BTC-BRL'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 5);
    // The fixture's trades are from a closed day (2025-11-22): compacted at
    // once in the lake's own layout; readers use the Iceberg table.
    assert_eq!(t["markets"]["compacted_days"], json!(1), "{t}");
    let processed = Lake::from_url(&aws.env["TRIBUTARY_PROCESSED_URL"]).unwrap();
    let iceberg = tributary_iceberg::Catalog::new(processed.clone());
    let trades_of_day = || async {
        let table = iceberg.load("markets/trades").await.unwrap().unwrap();
        let mut tids = Vec::new();
        for file in iceberg.data_files(&table).await.unwrap() {
            let key = iceberg_key(&processed, file.file_path());
            let (_, batches) =
                tributary_lake::parquet::decode(processed.get(&key).await.unwrap()).unwrap();
            for batch in batches {
                let symbols = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow_array::StringArray>()
                    .unwrap();
                let ids = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .unwrap();
                for row in 0..batch.num_rows() {
                    tids.push((symbols.value(row).to_string(), ids.value(row)));
                }
            }
        }
        tids.sort();
        tids
    };
    assert_eq!(trades_of_day().await.len(), 6, "every trade once");

    // A late trade for that day: the lake makes a new generation; the
    // Iceberg table gains exactly that trade.
    let late = json!({"symbol": "ETH-BRL", "tid": 78, "traded_at_ms": 1763787700000_i64,
        "price": "18200", "amount": "0.1", "side": "sell"});
    let data = aws_smithy_types::base64::encode(format!("{late}\n").as_bytes());
    let late_event = json!({"Records": [{"kinesis": {"partitionKey": "ETH-BRL",
        "sequenceNumber": "49590338271490256608559692540925702759324208523137515700", "data": data,
        "approximateArrivalTimestamp": 1.0}, "eventSource": "aws:kinesis",
        "eventID": "shardId-000000000000:49590338271490256608559692540925702759324208523137515700"}]});
    stream_sink_handler(&sink, &late_event).await.unwrap();
    let t = transform_handler(&transform, &json!({})).await.unwrap();
    assert_eq!(
        (
            t["markets"]["trades"].clone(),
            t["markets"]["compacted_days"].clone()
        ),
        (json!(1), json!(1)),
        "{t}"
    );
    let tids = trades_of_day().await;
    assert_eq!(tids.len(), 7, "{tids:?}");
    let mut distinct = tids.clone();
    distinct.dedup();
    assert_eq!(distinct, tids, "no trade twice");
    let l = load_handler(&load, &json!({})).await.unwrap();
    assert_eq!(
        l["trades"],
        json!(1),
        "compacted generations are not loaded again: {l}"
    );

    let glue = aws_sdk_glue::Client::new(&aws.sdk);
    for name in ["markets_trades", "markets_ohlcv_daily"] {
        let table = glue
            .get_table()
            .database_name(&aws.glue_db)
            .name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .table
            .unwrap();
        assert_eq!(
            table.parameters().unwrap()["table_type"],
            "ICEBERG",
            "{name}"
        );
    }
}

/// The lake key of a file URL the Iceberg metadata names.
fn iceberg_key(lake: &Lake, url: &str) -> String {
    url.strip_prefix(&format!("{}/", lake.url().trim_end_matches('/')))
        .unwrap_or_else(|| panic!("{url} is outside {}", lake.url()))
        .to_string()
}

/// What the event source mapping would deliver: every record of the
/// stream's first shard (GetRecords from TRIM_HORIZON) as a Kinesis event.
async fn kinesis_event(kinesis: &aws_sdk_kinesis::Client, stream_name: &str) -> Value {
    use aws_smithy_types::base64::encode;
    let shard = kinesis
        .list_shards()
        .stream_name(stream_name)
        .send()
        .await
        .unwrap()
        .shards()[0]
        .shard_id()
        .to_string();
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream_name)
        .shard_id(&shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let got = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap();
    assert!(!got.records().is_empty(), "the stream holds records");
    json!({"Records": got.records().iter().map(|r| json!({
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r.partition_key(),
            "sequenceNumber": r.sequence_number(), "data": encode(r.data().as_ref()),
            "approximateArrivalTimestamp": 1.0},
        "eventSource": "aws:kinesis", "eventID": format!("{shard}:{}", r.sequence_number()),
        "eventName": "aws:kinesis:record", "awsRegion": "eu-west-2"})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn a_scheduled_ingest_polls_the_markets_into_kinesis_and_on_to_the_warehouse() {
    let Some(stack) = Stack::generated("lambda_poll", 1).await else {
        return;
    };
    if moto_endpoint().is_none() {
        return;
    }
    let aws = Aws::new(&stack).await;
    let stream_name = unique("tributary-markets");
    let kinesis = aws_sdk_kinesis::Client::new(&aws.sdk);
    kinesis
        .create_stream()
        .stream_name(&stream_name)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let mut state = tributary_markets::replay::ReplayState::default();
    state.symbols.push((
        "BTC-BRL".into(),
        "CRYPTO".into(),
        "BTC".into(),
        "BRL".into(),
    ));
    // A CoinCap asset and two daily candles, for the raw tables' replies.
    state.assets.push(
        json!({"id": "bitcoin", "rank": "1", "symbol": "BTC", "name": "Bitcoin",
        "priceUsd": "57435.2862859343831301"}),
    );
    let day_start = |days_ago: i64| {
        (chrono::Utc::now().date_naive() - chrono::Days::new(days_ago as u64))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    };
    let bar = |price: &str| [price, price, price, price, "1.5"].map(str::to_string);
    state.candles.insert(
        "BTC-BRL".into(),
        vec![(day_start(3), bar("480000")), (day_start(2), bar("481000"))],
    );
    let server = tributary_markets::replay::ReplayServer::start(state)
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    for i in 0..3 {
        server.publish_trade("BTC-BRL", now - 30 + i, "488900.5", "0.01", "buy");
    }
    let mercado = server.mercado_base();
    let ingest = aws
        .context(
            Function::Ingest,
            &[
                ("TRIBUTARY_STREAM_NAME", &stream_name),
                ("TRIBUTARY_MERCADO_URL", &mercado),
            ],
        )
        .await;
    assert!(
        ingest.markets.as_ref().is_some_and(|m| m.coincap.is_none()),
        "no CoinCap key configured: CoinCap is skipped"
    );
    // A CoinCap secret with no value yet (as after `terraform apply`) skips
    // CoinCap; it does not stop the function from starting.
    let empty_secret = aws_sdk_secretsmanager::Client::new(&aws.sdk)
        .create_secret()
        .name(unique("tributary-coincap"))
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let with_empty_secret = aws
        .context(
            Function::Ingest,
            &[
                ("TRIBUTARY_STREAM_NAME", &stream_name),
                ("TRIBUTARY_MERCADO_URL", &mercado),
                ("COINCAP_SECRET_ARN", &empty_secret),
            ],
        )
        .await;
    assert!(
        with_empty_secret
            .markets
            .as_ref()
            .is_some_and(|m| m.coincap.is_none())
    );
    // The source is down: the invocation fails (retryable), but the market
    // polls still run. A deadline 7 s away leaves a budget for one poll.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dead_url = format!("postgres://postgres@127.0.0.1:{dead}/totesys?connect_timeout=2");
    let source_down = aws
        .context(
            Function::Ingest,
            &[
                ("TRIBUTARY_STREAM_NAME", &stream_name),
                ("TRIBUTARY_MERCADO_URL", &mercado),
                ("TOTESYS_DATABASE_URL", &dead_url),
            ],
        )
        .await;
    let deadline = || std::time::SystemTime::now() + std::time::Duration::from_secs(7);
    let failure = ingest_handler(
        &source_down,
        &fixture("ingest-schedule.json"),
        Some(deadline()),
    )
    .await
    .unwrap_err();
    assert_eq!(failure.error_type(), "Retryable.Unreachable", "{failure}");
    let alerts = aws.inbox.drain().await;
    assert!(
        alerts
            .iter()
            .any(|a| a.message.contains("cannot connect to the totesys database")),
        "{alerts:?}"
    );
    // With the source back, totesys flows and no trade is polled twice;
    // CoinCap is configured now.
    let coincap = server.coincap_base();
    let with_coincap = aws
        .context(
            Function::Ingest,
            &[
                ("TRIBUTARY_STREAM_NAME", &stream_name),
                ("TRIBUTARY_MERCADO_URL", &mercado),
                ("TRIBUTARY_COINCAP_URL", &coincap),
                ("COINCAP_API_KEY", "test-key"),
            ],
        )
        .await;
    let summary = ingest_handler(
        &with_coincap,
        &fixture("ingest-schedule.json"),
        Some(deadline()),
    )
    .await
    .unwrap();
    assert!(summary["rows"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["market_polls"], json!(1), "{summary}");
    assert_eq!(
        summary["trades"],
        json!(0),
        "polled while the source was down: {summary}"
    );

    // The history before polling: one `/candles` reply kept.
    let since = (chrono::Utc::now().date_naive() - chrono::Days::new(5)).to_string();
    ingest_handler(
        &with_coincap,
        &json!({"candles": {"since": since, "symbols": ["BTC-BRL"]}}),
        Some(deadline()),
    )
    .await
    .unwrap();

    let event = kinesis_event(&kinesis, &stream_name).await;
    let sink = aws.context(Function::StreamSink, &[]).await;
    assert_eq!(
        stream_sink_handler(&sink, &event).await.unwrap(),
        json!({"batchItemFailures": []})
    );
    let transform = aws.context(Function::Transform, &[]).await;
    let t = transform_handler(&transform, &fixture("transform-s3.json"))
        .await
        .unwrap();
    assert_eq!(t["markets"]["trades"], json!(3), "{t}");
    let load = aws.context(Function::Load, &[]).await;
    let l = load_handler(&load, &json!({})).await.unwrap();
    assert_eq!(l["trades"], json!(3), "{l}");

    // The raw zone as Glue declares it. An independent reader (pyarrow and
    // boto3) finds each table's files through its projection template and
    // reads them in the declared format: every file, every declared column,
    // the rows the raw manifests recorded.
    let read = iceberg_sh(&["raw", &aws.glue_db]);
    let recorded = |log: tributary_lake::Log, table: &'static str| {
        let raw = transform.raw.clone();
        async move {
            let log = tributary_lake::ManifestLog::new(raw, log);
            let latest = log.latest_seq().await.unwrap();
            let files = log.committed_files(latest).await.unwrap();
            let files: Vec<_> = files.into_iter().filter(|f| f.table == table).collect();
            (
                files.len() as u64,
                files.iter().map(|f| f.rows).sum::<u64>(),
            )
        }
    };
    for table in &tributary_totesys::tables::MODEL_INPUTS {
        let name = format!("raw_totesys_{}", table.name);
        let (files, rows) = recorded(tributary_lake::Log::Totesys, table.name).await;
        assert!(rows > 0, "{name}: the first extract kept rows");
        assert_eq!(read[&name]["files"], json!(files), "{name}: {read}");
        assert_eq!(read[&name]["rows"], json!(rows), "{name}: {read}");
        assert_eq!(read[&name]["problems"], json!([]), "{name}: {read}");
    }
    let (_, trades) = recorded(tributary_lake::Log::MarketsTrades, "trades").await;
    assert_eq!(trades, 3);
    assert_eq!(read["raw_mercado_trades"]["rows"], json!(3), "{read}");
    // Two polls, each `/tickers` reply kept as one line.
    let (replies, _) = recorded(tributary_lake::Log::MarketsPoll, "tickers").await;
    assert_eq!(replies, 2);
    assert_eq!(read["raw_mercado_tickers"]["rows"], json!(2), "{read}");
    // One CoinCap reply (the second poll) and one `/candles` reply, each a
    // line the JSON SerDe reads with every declared column.
    let (assets, _) = recorded(tributary_lake::Log::MarketsPoll, "assets").await;
    assert_eq!(assets, 1);
    assert_eq!(read["raw_coincap_assets"]["files"], json!(1), "{read}");
    assert_eq!(read["raw_coincap_assets"]["rows"], json!(1), "{read}");
    let (candle_files, _) = recorded(tributary_lake::Log::MarketsCandles, "candles").await;
    assert_eq!(candle_files, 1);
    assert_eq!(read["raw_mercado_candles"]["files"], json!(1), "{read}");
    assert_eq!(read["raw_mercado_candles"]["rows"], json!(1), "{read}");
    for name in [
        "raw_mercado_trades",
        "raw_mercado_tickers",
        "raw_mercado_candles",
        "raw_coincap_assets",
    ] {
        assert_eq!(read[name]["problems"], json!([]), "{name}: {read}");
    }
    assert_eq!(
        read["raw_mercado_trades"]["days"],
        json!([chrono::DateTime::from_timestamp(now - 30, 0)
            .unwrap()
            .date_naive()
            .to_string()]),
        "{read}"
    );
}

/// An RDS-managed secret holds only the username and password; the host,
/// port and database come from the function's settings. When the password
/// is rotated, the next connection reads the secret again.
#[tokio::test]
async fn an_rds_managed_secret_works_and_a_rotated_password_is_read_again() {
    let Some(stack) = Stack::new("lambda_rotate").await else {
        return;
    };
    let aws = Aws::new(&stack).await;
    let role = unique("rotating").replace('-', "_");
    stack
        .warehouse
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD 'first-pw' IN ROLE tributary_password_login"
        ))
        .await
        .expect("the local stack has role tributary_password_login (scripts/local-stack.sh start)");
    let parsed: tokio_postgres::Config = stack.warehouse_db.url.parse().unwrap();
    let host = match &parsed.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("{other:?}"),
    };
    let port = parsed.get_ports()[0].to_string();
    let dbname = parsed.get_dbname().unwrap().to_string();
    let secrets = aws_sdk_secretsmanager::Client::new(&aws.sdk);
    let managed = secrets
        .create_secret()
        .name(unique("rds-managed"))
        .secret_string(json!({"username": role, "password": "first-pw"}).to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let endpoint = [
        ("WAREHOUSE_SECRET_ARN", managed.as_str()),
        ("WAREHOUSE_DB_HOST", host.as_str()),
        ("WAREHOUSE_DB_PORT", port.as_str()),
        ("WAREHOUSE_DB_NAME", dbname.as_str()),
    ];
    let load = aws.context(Function::Load, &endpoint).await;
    load_handler(&load, &fixture("load-schedule.json"))
        .await
        .expect("the managed secret connects with host and port from settings");

    // Rotation: a new password in the database and in the secret, and the
    // kept connection gone (as after a freeze or a failover).
    stack
        .warehouse
        .batch_execute(&format!(
            "ALTER ROLE {role} PASSWORD 'second-pw';
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}';"
        ))
        .await
        .unwrap();
    secrets
        .put_secret_value()
        .secret_id(&managed)
        .secret_string(json!({"username": role, "password": "second-pw"}).to_string())
        .send()
        .await
        .unwrap();
    load_handler(&load, &fixture("load-schedule.json"))
        .await
        .expect("the refused password makes the function read the secret again");

    // A password that is wrong in the secret too: a clear, non-retryable
    // failure that names where the credentials came from.
    stack
        .warehouse
        .batch_execute(&format!(
            "ALTER ROLE {role} PASSWORD 'third-pw';
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}';"
        ))
        .await
        .unwrap();
    let failure = load_handler(&load, &fixture("load-schedule.json"))
        .await
        .unwrap_err();
    assert_eq!(
        failure.error_type(),
        "NonRetryable.Authentication",
        "{failure}"
    );
    assert!(
        failure.message.contains("refused the credentials")
            && failure.message.contains("WAREHOUSE_SECRET_ARN")
            && !failure.message.contains("second-pw"),
        "{failure}"
    );
}

/// A backfill queued in the raw bucket (`tributary backfill`) runs with the
/// next scheduled ingest, before its incremental run, and is recorded done.
#[tokio::test]
async fn a_scheduled_ingest_runs_the_backfills_queued_in_the_raw_bucket() {
    use tributary_pipeline::totesys::{
        ingest::IngestRequest,
        requests::{queue, statuses},
    };
    let Some(stack) = Stack::generated("lambda_queue", 3).await else {
        return;
    };
    let aws = Aws::new(&stack).await;
    let ingest = aws.context(Function::Ingest, &[]).await;
    ingest_handler(&ingest, &fixture("ingest-schedule.json"), None)
        .await
        .unwrap();
    let request = IngestRequest {
        tables: Some(vec!["payment".to_string()]),
        since: Some("2000-01-01T00:00:00Z".parse().unwrap()),
    };
    let id = queue(
        &ingest.raw,
        &request,
        &tributary_pipeline::totesys::source::model_defaults(),
    )
    .await
    .unwrap();
    let summary = ingest_handler(&ingest, &fixture("ingest-schedule.json"), None)
        .await
        .unwrap();
    let status = statuses(&ingest.raw).await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].id, id);
    let outcome = status[0].outcome.as_ref().expect("done");
    assert_eq!(outcome.status, "done");
    let payments: i64 = stack
        .source
        .query_one("SELECT count(*) FROM payment", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome.rows, payments as u64, "every payment re-read");
    assert_eq!(
        summary["manifest"].as_u64(),
        outcome.manifest.map(|m| m + 1),
        "the incremental run committed right after the backfill: {summary}"
    );
}

/// The load function's daily exchange-rate run against the replayed API:
/// replies kept in the S3 raw bucket, rates in the warehouse, a re-run
/// writes nothing, and an empty warehouse has no days to cover.
#[tokio::test]
async fn the_load_function_runs_the_exchange_rates() {
    use tributary_markets::replay::{ReplayServer, ReplayState};
    let Some(stack) = Stack::new("lambda_fx").await else {
        return;
    };
    if moto_endpoint().is_none() {
        return;
    }
    let aws = Aws::new(&stack).await;
    let mut state = ReplayState::default();
    state.fx.published_through = Some("2026-11-06".parse().unwrap());
    let server = ReplayServer::start(state).await.unwrap();
    let load = aws
        .context(Function::Load, &[("TRIBUTARY_FX_URL", &server.fx_base())])
        .await;

    let nothing = load_handler(&load, &fixture("load-fx.json")).await.unwrap();
    assert!(
        nothing["fx"].as_str().unwrap().contains("no facts"),
        "{nothing}"
    );

    let event = json!({"fx": {"from": "2026-11-02", "to": "2026-11-06"}});
    let first = load_handler(&load, &event).await.unwrap();
    let fx = &first["fx"];
    assert_eq!(fx["from"], "2026-11-02", "{first}");
    assert_eq!(fx["reporting_currency"], "GBP", "{first}");
    assert!(fx["raw_replies_written"].as_u64().unwrap() >= 1, "{first}");
    // Five weekdays of six published currencies and the euro, into GBP.
    assert_eq!(fx["inserted"], 5 * 7, "{first}");
    let kept = load.raw.list("fx/").await.unwrap();
    assert!(
        !kept.is_empty() && kept.iter().all(|k| k.starts_with("fx/frankfurter/")),
        "{kept:?}"
    );
    let rows = stack
        .warehouse_rows(
            "SELECT count(*)::text, count(DISTINCT date)::text FROM fact_exchange_rate \
             WHERE rate_to_reporting > 0",
        )
        .await;
    assert_eq!(
        rows,
        vec![vec![Some("35".to_string()), Some("5".to_string())]]
    );

    let again = load_handler(&load, &event).await.unwrap();
    assert_eq!(again["fx"]["raw_replies_written"], 0, "{again}");
    assert_eq!(again["fx"]["inserted"], 0, "{again}");
    assert_eq!(load.raw.list("fx/").await.unwrap(), kept);
}

/// Makes PostgreSQL's change counters (`pg_stat_user_tables`, which a
/// configured source reads to skip unchanged tables) show every change the
/// session `client` made: flushed at its next idle moment, then awaited.
async fn flush_statistics(client: &tokio_postgres::Client, table: &str, changes: i64) {
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let seen: i64 = client
            .query_one(
                "SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::int8 \
                 FROM pg_stat_user_tables WHERE relname = $1",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        if seen >= changes {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{table}: {seen} of {changes} changes counted"
        );
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The rows of the shop's `customers` as one text, in key order.
const CUSTOMERS: &str = "SELECT string_agg(id || '|' || name || '|' || COALESCE(city, '-') \
                         || '|' || credit::text, ',' ORDER BY id) FROM ";

/// A configured PostgreSQL source on AWS: the scheduled ingest reads it
/// (after totesys, its URL from an RDS-shaped secret) into the S3 raw lake,
/// the load applies it to `src_<name>` (rows equal to the source's), a run
/// with no change commits nothing, and a change arrives once. A source that
/// cannot run alerts and fails the invocation without stopping totesys or
/// the other sources.
#[tokio::test]
async fn configured_sources_run_on_the_ingest_schedule_and_load_into_their_schema() {
    let Some(stack) = Stack::generated("lambda_sources", 1).await else {
        return;
    };
    if moto_endpoint().is_none() {
        return;
    }
    let Some(shop) = tributary_testkit::TestDb::create("lambda_shop").await else {
        return;
    };
    let aws = Aws::new(&stack).await;
    let source = shop.connect().await;
    source
        .batch_execute(
            "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, city text, \
               credit numeric(10,2) NOT NULL); \
             INSERT INTO customers SELECT i, 'customer ' || i, \
               CASE WHEN i % 3 = 0 THEN NULL ELSE 'city ' || (i % 5) END, i * 1.25 \
             FROM generate_series(1, 40) i;",
        )
        .await
        .unwrap();
    flush_statistics(&source, "customers", 40).await;
    let secret = rds_secret(&aws.sdk, &unique("tributary-shop"), &shop.url).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shop.toml"),
        "[source]\nkind = \"postgres\"\nsecret_env = \"SHOP_SECRET_ARN\"\n",
    )
    .unwrap();
    // A second source whose secret the function was not given.
    std::fs::write(
        dir.path().join("ghost.toml"),
        "[source]\nkind = \"postgres\"\nsecret_env = \"GHOST_SECRET_ARN\"\n",
    )
    .unwrap();
    let sources_dir = dir.path().display().to_string();
    let env = [
        ("TRIBUTARY_SOURCES_DIR", sources_dir.as_str()),
        ("SHOP_SECRET_ARN", secret.as_str()),
    ];
    let schedule = fixture("ingest-schedule.json");

    let ingest = aws.context(Function::Ingest, &env).await;
    let failed = ingest_handler(&ingest, &schedule, None).await.unwrap_err();
    assert_eq!(failed.error_type(), "NonRetryable.Source", "{failed}");
    assert!(
        failed.message.contains("source ghost")
            && failed.message.contains("GHOST_SECRET_ARN")
            && !failed.message.contains("source shop"),
        "{failed}"
    );
    // totesys and the other source went on.
    assert!(ingest.raw.list("_manifests/totesys/").await.unwrap().len() == 1);
    assert_eq!(
        ingest
            .raw
            .list("sources/shop/_manifests/source/")
            .await
            .unwrap(),
        vec!["sources/shop/_manifests/source/00000000000000000001.json".to_string()]
    );
    let alerts = aws.inbox.drain().await;
    assert!(
        alerts
            .iter()
            .any(|a| a.subject.starts_with("Tributary source ghost")
                && a.message.contains("GHOST_SECRET_ARN")),
        "{alerts:#?}"
    );
    assert!(
        !alerts.iter().any(|a| a.subject.contains("source shop")),
        "{alerts:#?}"
    );

    // Without the unreadable one (a new deployment: a cold start).
    std::fs::remove_file(dir.path().join("ghost.toml")).unwrap();
    let ingest = aws.context(Function::Ingest, &env).await;
    let quiet = ingest_handler(&ingest, &schedule, None).await.unwrap();
    let shop_run = &quiet["sources"]["shop"];
    assert_eq!(
        (
            &shop_run["committed"],
            &shop_run["manifest"],
            &shop_run["rows"]
        ),
        (&json!(false), &json!(1), &json!(0)),
        "read once already, nothing changed since: {quiet}"
    );
    assert!(quiet["rows"].is_u64(), "totesys ran too: {quiet}");

    let load = aws.context(Function::Load, &env).await;
    let loaded = load_handler(&load, &fixture("load-schedule.json"))
        .await
        .unwrap();
    assert!(
        loaded["run_id"].is_string(),
        "the totesys load ran first: {loaded}"
    );
    let shop_load = &loaded["sources"]["shop"];
    assert_eq!(
        (
            &shop_load["schema"],
            &shop_load["manifests"],
            &shop_load["rows"]
        ),
        (&json!("src_shop"), &json!([1]), &json!(40)),
        "{loaded}"
    );
    let at_source = || async {
        tributary_testkit::pipeline::text_rows(&source, &format!("{CUSTOMERS} customers")).await
    };
    let in_warehouse = || async {
        stack
            .warehouse_rows(&format!("{CUSTOMERS} src_shop.customers"))
            .await
    };
    assert_eq!(in_warehouse().await, at_source().await);

    // Nothing new: the ingest commits nothing, the load applies nothing.
    let again = ingest_handler(&ingest, &schedule, None).await.unwrap();
    assert_eq!(
        again["sources"]["shop"]["committed"],
        json!(false),
        "{again}"
    );
    let again = load_handler(&load, &fixture("load-schedule.json"))
        .await
        .unwrap();
    assert_eq!(
        (
            &again["sources"]["shop"]["manifests"],
            &again["sources"]["shop"]["rows"]
        ),
        (&json!([]), &json!(0)),
        "{again}"
    );
    let log: i64 = stack
        .warehouse
        .query_one("SELECT count(*) FROM src_shop._tributary_load_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(log, 1);

    // A change and a new row arrive once.
    source
        .batch_execute(
            "UPDATE customers SET city = 'Lisbon', credit = 99.99 WHERE id = 7; \
             INSERT INTO customers VALUES (41, 'customer 41', NULL, 0.5);",
        )
        .await
        .unwrap();
    flush_statistics(&source, "customers", 42).await;
    let changed = ingest_handler(&ingest, &schedule, None).await.unwrap();
    let shop_run = &changed["sources"]["shop"];
    assert_eq!(
        (
            &shop_run["committed"],
            &shop_run["manifest"],
            &shop_run["rows"]
        ),
        (&json!(true), &json!(2), &json!(2)),
        "{changed}"
    );
    let applied = load_handler(&load, &fixture("load-schedule.json"))
        .await
        .unwrap();
    assert_eq!(applied["sources"]["shop"]["rows"], json!(2), "{applied}");
    assert_eq!(in_warehouse().await, at_source().await);
    assert!(
        aws.inbox
            .drain()
            .await
            .iter()
            .all(|a| !a.subject.contains("source shop")),
        "no alert for the healthy source"
    );

    // The source's new manifest, as its S3 event, makes the transform
    // function publish the source's Iceberg table (both manifests: the
    // first had no event here) and point Glue at it; PyIceberg reads it
    // through Glue: every version, the changed row twice.
    let transform = aws.context(Function::Transform, &env).await;
    let raw_bucket = aws.env["TRIBUTARY_RAW_URL"].trim_start_matches("s3://");
    let manifest_event = json!({"Records": [{"s3": {
        "bucket": {"name": raw_bucket},
        "object": {"key": "sources/shop/_manifests/source/00000000000000000002.json"}
    }}]});
    let published = transform_handler(&transform, &manifest_event)
        .await
        .unwrap();
    assert_eq!(
        (
            &published["sources"]["shop"]["manifests"],
            &published["sources"]["shop"]["tables"]
        ),
        (&json!([1, 2]), &json!(["src_shop_customers"])),
        "{published}"
    );
    let again = transform_handler(&transform, &manifest_event)
        .await
        .unwrap();
    assert_eq!(
        again["sources"]["shop"]["tables"],
        json!([]),
        "a repeated event publishes nothing: {again}"
    );
    let read = iceberg_sh(&[
        "glue",
        &aws.glue_db,
        r#"{"src_shop_customers": ["id", "city", "_tributary_seq"]}"#,
    ]);
    let versions = read["src_shop_customers"]["rows"].as_array().unwrap();
    assert_eq!(versions.len(), 40 + 2, "{read}");
    let mut seven: Vec<(Value, Value)> = versions
        .iter()
        .filter(|r| r["id"] == json!(7))
        .map(|r| (r["_tributary_seq"].clone(), r["city"].clone()))
        .collect();
    seven.sort_by_key(|(seq, _)| seq.as_i64());
    assert_eq!(seven.len(), 2, "{seven:?}");
    assert_eq!(seven[1], (json!(2), json!("Lisbon")));

    // The transform function's maintenance registers the source's raw table
    // in Glue, with the columns its manifest recorded, over its day folders.
    transform_handler(&transform, &json!({"maintain": {}}))
        .await
        .unwrap();
    let table = aws_sdk_glue::Client::new(&aws.sdk)
        .get_table()
        .database_name(&aws.glue_db)
        .name("raw_src_shop_customers")
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let columns: Vec<(String, String)> = table
        .storage_descriptor()
        .unwrap()
        .columns()
        .iter()
        .map(|c| {
            (
                c.name().to_string(),
                c.r#type().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected = [
        ("id", "int"),
        ("name", "string"),
        ("city", "string"),
        ("credit", "decimal(10,2)"),
    ]
    .map(|(n, t)| (n.to_string(), t.to_string()));
    assert_eq!(columns, expected);
    assert!(
        table.parameters().unwrap()["storage.location.template"]
            .ends_with("/sources/shop/customers/date=${date}/"),
        "{:?}",
        table.parameters()
    );
}

/// A file dropped in the landing bucket reaches the warehouse through its
/// own S3 event (the committed fixture: its key URL-encoded), once: the
/// event delivered again changes nothing, and objects no file drop reads
/// are ignored and named.
#[tokio::test]
async fn a_file_dropped_in_the_landing_bucket_reaches_the_warehouse_once() {
    let Some(stack) = Stack::new("lambda_landing").await else {
        return;
    };
    if moto_endpoint().is_none() {
        return;
    }
    let aws = Aws::new(&stack).await;
    let landing_bucket = unique("tributary-landing");
    create_bucket(&aws.endpoint, &landing_bucket, false).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("partner.toml"),
        format!(
            "[source]\nkind = \"files\"\nlanding_url = \"s3://{landing_bucket}/partner\"\n\n\
             [tables.orders]\npattern = \"orders/*.csv\"\nformat = \"csv\"\n\
             primary_key = [\"order_id\"]\n\
             columns = [\"order_id text\", \"amount numeric(10,2)\", \"placed_at timestamptz\"]\n"
        ),
    )
    .unwrap();
    let sources_dir = dir.path().display().to_string();
    let env = [("TRIBUTARY_SOURCES_DIR", sources_dir.as_str())];
    let ingest = aws.context(Function::Ingest, &env).await;
    let load = aws.context(Function::Load, &env).await;

    // The partner's drop, at the key the fixture names (`+` is a space).
    let landing = Lake::from_url(&format!("s3://{landing_bucket}")).unwrap();
    let csv = "order_id,amount,placed_at\n\
               P-1,12.50,2026-12-01T08:00:00Z\n\
               P-2,3.00,2026-12-01T08:30:00Z\n\
               P-3,not a number,2026-12-01T08:45:00Z\n\
               P-4,7.75,2026-12-01T09:00:00Z\n";
    landing
        .put_replace(
            "partner/orders/2026-12-01 morning.csv",
            csv.as_bytes().to_vec(),
        )
        .await
        .unwrap();
    landing
        .put_replace("partner/readme.txt", b"not an order file".to_vec())
        .await
        .unwrap();
    let mut event = fixture("ingest-landing-s3.json");
    let mut other = event["Records"][0].clone();
    other["s3"]["object"]["key"] = json!("partner/readme.txt");
    event["Records"].as_array_mut().unwrap().push(other);
    for record in event["Records"].as_array_mut().unwrap() {
        record["s3"]["bucket"]["name"] = json!(landing_bucket);
    }

    let landed = ingest_handler(&ingest, &event, None).await.unwrap();
    let partner = &landed["sources"]["partner"];
    assert_eq!(
        (
            &partner["committed"],
            &partner["rows"],
            &partner["quarantined"]
        ),
        (&json!(true), &json!(3), &json!(1)),
        "{landed}"
    );
    assert_eq!(
        partner["landed"],
        json!(["orders/2026-12-01 morning.csv"]),
        "{landed}"
    );
    assert_eq!(
        landed["ignored"],
        json!([format!("{landing_bucket}/partner/readme.txt")]),
        "{landed}"
    );
    assert!(landed.get("rows").is_none(), "no totesys run: {landed}");
    let received = ingest
        .raw
        .list("sources/partner/orders/_received/")
        .await
        .unwrap();
    assert_eq!(received.len(), 1, "received as is: {received:?}");
    assert_eq!(
        ingest.raw.get(&received[0]).await.unwrap().as_ref(),
        csv.as_bytes()
    );

    let loaded = load_handler(&load, &fixture("load-schedule.json"))
        .await
        .unwrap();
    assert_eq!(loaded["sources"]["partner"]["rows"], json!(3), "{loaded}");
    let orders = "SELECT string_agg(order_id || '=' || amount::text, ',' ORDER BY order_id) \
                  FROM src_partner.orders";
    let expected = vec![vec![Some("P-1=12.50,P-2=3.00,P-4=7.75".to_string())]];
    assert_eq!(stack.warehouse_rows(orders).await, expected);

    // The same event again (S3 delivers at least once): nothing new.
    let again = ingest_handler(&ingest, &event, None).await.unwrap();
    assert_eq!(
        (
            &again["sources"]["partner"]["committed"],
            &again["sources"]["partner"]["manifest"]
        ),
        (&json!(false), &partner["manifest"]),
        "{again}"
    );
    let reloaded = load_handler(&load, &fixture("load-schedule.json"))
        .await
        .unwrap();
    assert_eq!(
        reloaded["sources"]["partner"]["manifests"],
        json!([]),
        "{reloaded}"
    );
    assert_eq!(stack.warehouse_rows(orders).await, expected);
    assert_eq!(
        ingest
            .raw
            .list("sources/partner/orders/_received/")
            .await
            .unwrap(),
        received
    );

    // Named by hand, an unknown source is refused with the known ones.
    let unknown = ingest_handler(&ingest, &json!({"sources": ["partners"]}), None)
        .await
        .unwrap_err();
    assert!(
        !unknown.retryable && unknown.message.contains("[\"partner\"]"),
        "{unknown}"
    );
    let by_hand = ingest_handler(&ingest, &json!({"sources": ["partner"]}), None)
        .await
        .unwrap();
    assert_eq!(by_hand["sources"]["partner"]["committed"], json!(false));
}
