//! The same ingest code on S3 (moto_server) as on local files.

use std::time::Duration;

use arrow_array::RecordBatch;
use bytes::Bytes;
use chrono::Utc;
use tributary_e2e::{
    TestDb,
    aws::{create_bucket, moto_endpoint},
    temp_lake,
};
use tributary_lake::{Error, Lake, Log, Manifest, ManifestLog, PutOutcome, RunId, parquet::decode};
use tributary_pipeline::{
    alerts::RecordedAlerts,
    totesys::ingest::{IngestOptions, IngestRequest, IngestState, ingest},
};
use tributary_totesys::{
    MODEL_INPUTS,
    generate::{GenerateOptions, generate},
    row_fingerprint,
};

async fn s3_lake(endpoint: &str, prefix: &str) -> Lake {
    let bucket = format!("tributary-test-{:08x}", rand::random::<u32>());
    create_bucket(endpoint, &bucket, false).await;
    Lake::from_url(&format!("s3://{bucket}/{prefix}")).unwrap()
}

/// Per table, the sorted fingerprints of every committed row.
async fn lake_rows(lake: &Lake) -> Vec<(String, Vec<u64>)> {
    let manifest: Manifest<IngestState> = ManifestLog::new(lake.clone(), Log::Totesys)
        .latest()
        .await
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    for table in &MODEL_INPUTS {
        let mut prints = Vec::new();
        for file in manifest.files.iter().filter(|f| f.table == table.name) {
            let (_, batches) = decode(lake.get(&file.key).await.unwrap()).unwrap();
            for batch in &batches {
                prints.extend((0..batch.num_rows()).map(|row| row_fingerprint(batch, row)));
            }
            let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(total as u64, file.rows, "{}", file.key);
        }
        prints.sort_unstable();
        out.push((table.name.to_string(), prints));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_ingest_works_on_s3_through_moto_and_on_local_files() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let Some(db) = TestDb::create("s3").await else {
        return;
    };
    let mut client = db.connect().await;
    generate(
        &mut client,
        &GenerateOptions {
            seed: 11,
            scale: 1,
            days: 20,
            until_ms: Utc::now().timestamp_millis(),
        },
    )
    .await
    .unwrap();
    let s3 = s3_lake(&endpoint, "raw").await;
    let (_dir, url) = temp_lake();
    let local = Lake::from_url(&url).unwrap();
    let options = IngestOptions {
        lookback: Duration::from_secs(600),
        batch_rows: 100,
        file_rows: 200,
        late_check_every: Duration::ZERO,
        max_rows: 5_000_000,
        source: std::sync::Arc::new(tributary_testkit::pipeline::shipped_totesys_source()),
    };
    let alerts = RecordedAlerts::default();
    let on_s3 = ingest(
        &mut client,
        &s3,
        &options,
        &IngestRequest::default(),
        &alerts,
    )
    .await
    .unwrap();
    let on_disk = ingest(
        &mut client,
        &local,
        &options,
        &IngestRequest::default(),
        &alerts,
    )
    .await
    .unwrap();
    assert_eq!(on_s3.seq, 1);
    assert_eq!(on_s3.rows(), on_disk.rows());
    assert!(
        on_s3.tables.iter().any(|t| t.files > 1),
        "files rolled on S3 too"
    );
    assert_eq!(
        lake_rows(&s3).await,
        lake_rows(&local).await,
        "same rows on S3 and on disk"
    );

    let again = ingest(
        &mut client,
        &s3,
        &options,
        &IngestRequest::default(),
        &alerts,
    )
    .await
    .unwrap();
    assert_eq!(again.seq, 2);
    assert!(again.tables.iter().all(|t| t.files == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_are_written_once() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let lake = s3_lake(&endpoint, "raw").await;
    let key = "totesys/payment/date=2024-01-01/x.parquet";
    assert_eq!(
        lake.put_once(key, Bytes::from_static(b"one"))
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        lake.put_once(key, Bytes::from_static(b"one"))
            .await
            .unwrap(),
        PutOutcome::AlreadyPresent
    );
    let err = lake
        .put_once(key, Bytes::from_static(b"two"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ConflictingObject { .. }), "{err}");
    assert_eq!(lake.get(key).await.unwrap(), Bytes::from_static(b"one"));

    let log = ManifestLog::new(lake.clone(), Log::Totesys);
    let (run_a, run_b) = (RunId::now(), RunId::now());
    let (a, b) = tokio::join!(
        log.commit(0, &run_a, Utc::now(), vec![], 1u32),
        log.commit(0, &run_b, Utc::now(), vec![], 2u32),
    );
    assert_eq!(
        a.is_ok() as u8 + b.is_ok() as u8,
        1,
        "exactly one run commits number 1"
    );
    assert_eq!(log.latest_seq().await.unwrap(), 1);
}

/// The loader decides to append from Parquet footers alone: on S3 they are
/// read with suffix-range GETs, which must return exactly the file's tail;
/// a source's folder (`Lake::child`) keeps its keys under its prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footers_are_read_by_ranged_gets_on_s3_and_child_lakes_stay_in_their_folder() {
    use std::sync::Arc;

    use arrow_array::Int32Array;
    use arrow_schema::{DataType, Field, Schema};
    use tributary_lake::parquet::{int_column_min, read_footer};

    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let lake = s3_lake(&endpoint, "processed").await;
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)]));
    let ids: Vec<i32> = (0..300_000).map(|i| 5_000_000 - i).collect();
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(ids))]).unwrap();
    let child = lake.child("sources/olist");
    let entry = child.put_batch("t/f.parquet", "t", &batch).await.unwrap();
    assert!(
        entry.bytes > 64 * 1024,
        "the file is larger than one footer read"
    );
    let footer = read_footer(&child, "t/f.parquet").await.unwrap();
    assert_eq!(footer.file_metadata().num_rows(), 300_000);
    assert_eq!(int_column_min(&footer, "id"), Some(4_700_001));
    // The child's key is the parent's key under the prefix.
    assert!(lake.exists("sources/olist/t/f.parquet").await.unwrap());
    assert_eq!(
        lake.get("sources/olist/t/f.parquet").await.unwrap(),
        child.get("t/f.parquet").await.unwrap()
    );
    assert_eq!(child.list("t").await.unwrap(), ["t/f.parquet"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_dropped_in_an_s3_landing_prefix_are_received_once_into_an_s3_raw_lake() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let landing = s3_lake(&endpoint, "drops/acme").await;
    let raw = s3_lake(&endpoint, "raw").await;
    let csv = "id,amount\n1,2.50\n2,x\n";
    landing
        .put_once("orders/2024-01.csv", Bytes::from_static(csv.as_bytes()))
        .await
        .unwrap();
    landing
        .put_once("elsewhere/notes.csv", Bytes::from_static(b"id\n9\n"))
        .await
        .unwrap();
    let text = format!(
        "[source]\nkind = \"files\"\nlanding_url = \"{}\"\n\
         [tables.orders]\npattern = \"orders/*.csv\"\nformat = \"csv\"\n\
         primary_key = [\"id\"]\ncolumns = [\"id bigint\", \"amount numeric(8,2)\"]\n",
        landing.url()
    );
    let file = tributary_sources::config::SourceFile::parse(
        "acme",
        std::path::Path::new("acme.toml"),
        &text,
    )
    .unwrap();
    let first = tributary_sources::files::run_files(&raw, &file)
        .await
        .unwrap();
    assert_eq!(first.seq, 1);
    let orders = &first.tables[0];
    assert_eq!((orders.rows, orders.quarantined), (1, 1));
    let received = raw.list("sources/acme/orders/_received/").await.unwrap();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        raw.get(&received[0]).await.unwrap().as_ref(),
        csv.as_bytes(),
        "byte for byte on S3"
    );
    // Nothing new in the landing prefix: nothing is committed.
    let again = tributary_sources::files::run_files(&raw, &file)
        .await
        .unwrap();
    assert_eq!(again.seq, 1);
    assert!(again.tables[0].unchanged);
}
