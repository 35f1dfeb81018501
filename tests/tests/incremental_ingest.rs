//! Incremental ingest against a real PostgreSQL filled by the generator.

use std::{collections::HashSet, time::Duration};

use arrow_array::{Array, Int32Array, TimestampMillisecondArray};
use chrono::Utc;
use tokio_postgres::Client;
use tributary_e2e::{TestDb, temp_lake};
use tributary_lake::{Lake, Log, Manifest, ManifestLog, parquet::decode};
use tributary_pipeline::{
    Error,
    alerts::RecordedAlerts,
    totesys::ingest::{IngestOptions, IngestReport, IngestRequest, IngestState, ingest},
};
use tributary_totesys::{
    TableDef,
    generate::{GenerateOptions, generate},
};

fn options() -> IngestOptions {
    IngestOptions {
        lookback: Duration::from_secs(600),
        batch_rows: 1_000,
        file_rows: 100_000,
        late_check_every: Duration::ZERO,
        max_rows: 5_000_000,
        source: std::sync::Arc::new(tributary_testkit::pipeline::shipped_totesys_source()),
    }
}

/// A generated source (10 days of history) and an empty local lake.
async fn generated(label: &str) -> Option<(TestDb, Client, tempfile::TempDir, Lake)> {
    let db = TestDb::create(label).await?;
    let mut client = db.connect().await;
    generate(
        &mut client,
        &GenerateOptions {
            seed: 3,
            scale: 1,
            days: 10,
            until_ms: Utc::now().timestamp_millis() - 60_000,
        },
    )
    .await
    .unwrap();
    let (dir, url) = temp_lake();
    let lake = Lake::from_url(&url).unwrap();
    Some((db, client, dir, lake))
}

async fn run(client: &mut Client, lake: &Lake, alerts: &RecordedAlerts) -> IngestReport {
    ingest(client, lake, &options(), &IngestRequest::default(), alerts)
        .await
        .unwrap()
}

fn rows_of(report: &IngestReport, table: &str) -> u64 {
    report
        .tables
        .iter()
        .find(|t| t.table == table)
        .map_or(0, |t| t.rows)
}

/// Every (key, last_updated) of a table across all committed manifests.
async fn versions(lake: &Lake, table: &str) -> Vec<(i32, i64)> {
    let log = ManifestLog::new(lake.clone(), Log::Totesys);
    let def = TableDef::by_name(table).unwrap();
    let lu = def.column_index("last_updated").unwrap();
    let mut out = Vec::new();
    for seq in 1..=log.latest_seq().await.unwrap() {
        let manifest: Manifest<IngestState> = log.read(seq).await.unwrap().unwrap();
        for file in manifest.files.iter().filter(|f| f.table == table) {
            let (_, batches) = decode(lake.get(&file.key).await.unwrap()).unwrap();
            for batch in batches {
                let keys = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .unwrap();
                let lus = batch
                    .column(lu)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .unwrap();
                out.extend((0..batch.num_rows()).map(|i| (keys.value(i), lus.value(i))));
            }
        }
    }
    out
}

fn assert_no_duplicates(versions: &[(i32, i64)]) {
    let unique: HashSet<_> = versions.iter().collect();
    assert_eq!(
        unique.len(),
        versions.len(),
        "a row version was ingested twice"
    );
}

const INSERT_ADDRESS: &str = "INSERT INTO address (address_line_1, city, postal_code, country, phone, created_at, last_updated) \
     VALUES ($1, 'Leeds', 'LS1', 'United Kingdom', '0113 000000', \
             (now() AT TIME ZONE 'UTC')::timestamp(3) + $2::text::interval, \
             (now() AT TIME ZONE 'UTC')::timestamp(3) + $2::text::interval) \
     RETURNING address_id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_commit_inside_lookback_is_ingested_once() {
    let Some((db, mut client, _dir, lake)) = generated("late_inside").await else {
        return;
    };
    let alerts = RecordedAlerts::default();
    run(&mut client, &lake, &alerts).await;

    // A slow writer takes its last_updated now but commits after a faster one.
    let mut slow = db.connect().await;
    let slow_tx = slow.transaction().await.unwrap();
    let slow_id: i32 = slow_tx
        .query_one(INSERT_ADDRESS, &[&"slow writer", &"-2 minutes"])
        .await
        .unwrap()
        .get(0);
    let fast_id: i32 = client
        .query_one(INSERT_ADDRESS, &[&"fast writer", &"0 seconds"])
        .await
        .unwrap()
        .get(0);
    let second = run(&mut client, &lake, &alerts).await;
    assert_eq!(rows_of(&second, "address"), 1, "only the committed row");

    slow_tx.commit().await.unwrap();
    let third = run(&mut client, &lake, &alerts).await;
    assert_eq!(
        rows_of(&third, "address"),
        1,
        "the late row, inside the lookback"
    );
    let address = third.tables.iter().find(|t| t.table == "address").unwrap();
    assert_eq!(address.late_rows, 0, "inside the lookback it is not late");
    assert!(
        address.already_ingested >= 1,
        "the fast row was read again and dropped"
    );

    let fourth = run(&mut client, &lake, &alerts).await;
    assert_eq!(fourth.rows(), 0);
    let ingested = versions(&lake, "address").await;
    assert_no_duplicates(&ingested);
    for id in [slow_id, fast_id] {
        assert_eq!(
            ingested.iter().filter(|(k, _)| *k == id).count(),
            1,
            "address {id}"
        );
    }
    assert!(alerts.sent().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_commit_older_than_lookback_is_reported_and_ingested_once() {
    let Some((db, mut client, _dir, lake)) = generated("late_outside").await else {
        return;
    };
    let alerts = RecordedAlerts::default();
    run(&mut client, &lake, &alerts).await;

    let mut slow = db.connect().await;
    let slow_tx = slow.transaction().await.unwrap();
    let slow_id: i32 = slow_tx
        .query_one(INSERT_ADDRESS, &[&"very slow", &"-1 hour"])
        .await
        .unwrap()
        .get(0);
    client
        .query_one(INSERT_ADDRESS, &[&"fast", &"0 seconds"])
        .await
        .unwrap();
    run(&mut client, &lake, &alerts).await;
    slow_tx.commit().await.unwrap();

    let third = run(&mut client, &lake, &alerts).await;
    let address = third.tables.iter().find(|t| t.table == "address").unwrap();
    assert_eq!((address.rows, address.late_rows), (1, 1));
    let sent = alerts.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].stage, "ingest");
    assert_eq!(sent[0].table.as_deref(), Some("address"));
    assert!(
        sent[0].message.contains("older than the 10m lookback"),
        "{}",
        sent[0].message
    );

    let fourth = run(&mut client, &lake, &alerts).await;
    assert_eq!(fourth.rows(), 0);
    assert_eq!(alerts.sent().len(), 1, "reported once");
    let ingested = versions(&lake, "address").await;
    assert_no_duplicates(&ingested);
    assert_eq!(ingested.iter().filter(|(k, _)| *k == slow_id).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_without_changes_writes_no_data_file() {
    let Some((_db, mut client, _dir, lake)) = generated("no_change").await else {
        return;
    };
    let alerts = RecordedAlerts::default();
    let first = run(&mut client, &lake, &alerts).await;
    assert_eq!(first.tables.len(), 11);
    assert!(first.tables.iter().all(|t| t.files == 1 && t.rows > 0));
    let files_before = lake.list("totesys").await.unwrap();
    let second = run(&mut client, &lake, &alerts).await;
    assert_eq!(
        second.seq,
        first.seq + 1,
        "the run still commits its manifest"
    );
    assert!(second.tables.iter().all(|t| t.files == 0 && t.rows == 0));
    assert_eq!(lake.list("totesys").await.unwrap(), files_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_never_commit_the_same_manifest_number() {
    let Some((db, mut client, _dir, lake)) = generated("concurrent").await else {
        return;
    };
    let mut other = db.connect().await;
    let alerts = RecordedAlerts::default();
    let (opts, request) = (options(), IngestRequest::default());
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            ingest(&mut client, &lake, &opts, &request, &alerts),
            ingest(&mut other, &lake, &opts, &request, &alerts),
        );
        let mut committed = Vec::new();
        for result in [a, b] {
            match result {
                Ok(report) => committed.push(report.seq),
                Err(Error::Lake(tributary_lake::Error::ManifestRace { .. })) => {}
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert!(!committed.is_empty(), "at least one run commits");
        let unique: HashSet<_> = committed.iter().collect();
        assert_eq!(
            unique.len(),
            committed.len(),
            "two runs committed the same number: {committed:?}"
        );
    }
    // Whatever the interleaving, the committed data has no duplicates.
    assert_no_duplicates(&versions(&lake, "payment").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_re_extracts_only_the_chosen_tables_from_the_given_time() {
    let Some((_db, mut client, _dir, lake)) = generated("backfill").await else {
        return;
    };
    let alerts = RecordedAlerts::default();
    run(&mut client, &lake, &alerts).await;
    let since = Utc::now() - chrono::Duration::days(3);
    let expected: i64 = client
        .query_one(
            "SELECT count(*) FROM payment WHERE last_updated > $1::text::timestamp",
            &[&since.format("%Y-%m-%d %H:%M:%S%.3f").to_string()],
        )
        .await
        .unwrap()
        .get(0);
    let request: IngestRequest = serde_json::from_value(serde_json::json!({
        "tables": ["payment"],
        "since": since.to_rfc3339(),
    }))
    .unwrap();
    let before: Manifest<IngestState> = ManifestLog::new(lake.clone(), Log::Totesys)
        .latest()
        .await
        .unwrap()
        .unwrap();
    let report = ingest(&mut client, &lake, &options(), &request, &alerts)
        .await
        .unwrap();
    assert_eq!(report.tables.len(), 1);
    assert_eq!(report.tables[0].table, "payment");
    assert!(expected > 0);
    assert_eq!(report.tables[0].rows, expected as u64);
    let after: Manifest<IngestState> = ManifestLog::new(lake.clone(), Log::Totesys)
        .latest()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.state.tables["sales_order"], before.state.tables["sales_order"],
        "other tables untouched"
    );
    assert_eq!(
        after.state.tables["payment"].watermark,
        before.state.tables["payment"].watermark
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_orders_payments_and_reference_changes_arrive_exactly_once() {
    use rand::SeedableRng;
    use tributary_totesys::simulate::{change_reference_rows, flip_due_payments, insert_order};
    let Some((_db, mut client, _dir, lake)) = generated("simulated").await else {
        return;
    };
    let alerts = RecordedAlerts::default();
    run(&mut client, &lake, &alerts).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..12 {
        insert_order(&mut client, &mut rng).await.unwrap();
    }
    // Make three unpaid payments due, as days passing would.
    client
        .batch_execute(
            "UPDATE payment SET created_at = created_at - interval '7 days' \
             WHERE payment_id IN (SELECT payment_id FROM payment WHERE NOT paid ORDER BY payment_id LIMIT 3)",
        )
        .await
        .unwrap();
    let flipped = flip_due_payments(&client).await.unwrap();
    assert!(flipped >= 3, "flipped {flipped}");
    let changed = change_reference_rows(&client, &mut rng).await.unwrap();
    assert!(changed >= 1);

    let second = run(&mut client, &lake, &alerts).await;
    assert_eq!(
        rows_of(&second, "sales_order") + rows_of(&second, "purchase_order"),
        12
    );
    assert_eq!(rows_of(&second, "transaction"), 12);
    // The three back-dated payments' created_at change kept last_updated
    // (the rescue reads them as changed rows), plus 12 new ones, plus flips.
    assert!(rows_of(&second, "payment") >= 12 + flipped - 3);
    assert!(rows_of(&second, "address") + rows_of(&second, "staff") >= 1);
    let third = run(&mut client, &lake, &alerts).await;
    assert_eq!(third.rows(), 0);
    for table in ["payment", "transaction", "address", "staff"] {
        assert_no_duplicates(&versions(&lake, table).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_check_after_lookback_only_runs_does_not_ingest_their_rows_again() {
    let Some((db, mut client, _dir, lake)) = generated("late_interval").await else {
        return;
    };
    let alerts = RecordedAlerts::default();
    let mut opts = IngestOptions {
        lookback: Duration::from_secs(2),
        late_check_every: Duration::from_secs(3600),
        max_rows: 5_000_000,
        source: std::sync::Arc::new(tributary_testkit::pipeline::shipped_totesys_source()),
        ..options()
    };
    let request = IngestRequest::default();
    ingest(&mut client, &lake, &opts, &request, &alerts)
        .await
        .unwrap();

    // A late commit caught by the lookback in a run without the check…
    let mut slow = db.connect().await;
    let slow_tx = slow.transaction().await.unwrap();
    let late_id: i32 = slow_tx
        .query_one(INSERT_ADDRESS, &[&"late", &"-1 second"])
        .await
        .unwrap()
        .get(0);
    client
        .query_one(INSERT_ADDRESS, &[&"first", &"0 seconds"])
        .await
        .unwrap();
    ingest(&mut client, &lake, &opts, &request, &alerts)
        .await
        .unwrap();
    slow_tx.commit().await.unwrap();
    let caught = ingest(&mut client, &lake, &opts, &request, &alerts)
        .await
        .unwrap();
    assert_eq!(
        rows_of(&caught, "address"),
        1,
        "the lookback caught the late row"
    );

    // …is older than the lookback by the time the check runs, and not taken twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    client
        .query_one(INSERT_ADDRESS, &[&"later", &"0 seconds"])
        .await
        .unwrap();
    opts.late_check_every = Duration::ZERO;
    let checked = ingest(&mut client, &lake, &opts, &request, &alerts)
        .await
        .unwrap();
    let address = checked
        .tables
        .iter()
        .find(|t| t.table == "address")
        .unwrap();
    assert_eq!(
        (address.rows, address.late_rows),
        (1, 0),
        "only the new row"
    );
    let ingested = versions(&lake, "address").await;
    assert_no_duplicates(&ingested);
    assert_eq!(ingested.iter().filter(|(k, _)| *k == late_id).count(), 1);
    assert!(alerts.sent().is_empty(), "{:?}", alerts.sent());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_table_changed_in_place_arrives_with_the_next_run_whatever_late_check_every_says() {
    let Some((_db, mut client, _dir, lake)) = generated("late_adaptive").await else {
        return;
    };
    let alerts = RecordedAlerts::default();
    // An hour between checks at most; the check of a table of a few hundred
    // rows costs milliseconds, so it comes every run.
    let opts = IngestOptions {
        late_check_every: Duration::from_secs(3600),
        ..options()
    };
    let request = IngestRequest::default();
    ingest(&mut client, &lake, &opts, &request, &alerts)
        .await
        .unwrap();
    // Changed like the real source does: last_updated untouched.
    let changed = client
        .execute(
            "UPDATE design SET file_location = '/moved' \
             WHERE design_id = (SELECT min(design_id) FROM design)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    // The check comes again 20× its last cost after it: well within a
    // second here (an hour is the cap). Runs a second apart, as a schedule
    // would, find the row once.
    let started = std::time::Instant::now();
    let (mut rows, mut late) = (0, 0);
    while started.elapsed() < Duration::from_secs(20) && rows == 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let next = ingest(&mut client, &lake, &opts, &request, &alerts)
            .await
            .unwrap();
        let design = next.tables.iter().find(|t| t.table == "design").unwrap();
        rows += design.rows;
        late += design.late_rows;
    }
    assert_eq!((rows, late), (1, 1), "found once, by the check");
    let again = ingest(&mut client, &lake, &opts, &request, &alerts)
        .await
        .unwrap();
    assert_eq!(rows_of(&again, "design"), 0, "and not again");
}
