//! File drops as a source, end to end: CSV and JSON lines dropped in a
//! landing folder are received byte for byte, parsed against the declared
//! schema (bad rows quarantined with file, line and reason), and reach the
//! warehouse; a re-dropped identical file is a no-op and a changed file
//! under the same name is a new version.

use std::path::Path;

use tributary_lake::Lake;
use tributary_sources::{config::SourceFile, files::run_files, load::load_source};
use tributary_testkit::{TestDb, read_parquet_independently, temp_lake};

const SOURCE: &str = r#"
[source]
kind = "files"
landing_url = "LANDING"

[tables.orders]
pattern = "orders/*.csv"
format = "csv"
primary_key = ["order_id"]
columns = ["order_id text", "amount numeric(10,2)", "placed_at timestamptz", "note text"]

[tables.events]
pattern = "events/*.jsonl"
format = "jsonl"
primary_key = ["id"]
columns = ["id bigint", "kind text", "ok boolean"]
"#;

fn write(dir: &Path, key: &str, text: &str) {
    let path = dir.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_files_are_received_as_is_parsed_quarantined_and_loaded_once() {
    let Some(warehouse_db) = TestDb::create("files_wh").await else {
        return;
    };
    let mut warehouse = warehouse_db.connect().await;
    let landing = tempfile::tempdir().unwrap();
    let (raw_dir, raw_url) = temp_lake();
    let raw = Lake::from_url(&raw_url).unwrap();
    let text = SOURCE.replace("LANDING", &format!("file://{}", landing.path().display()));
    let file = SourceFile::parse("partner", Path::new("partner.toml"), &text).unwrap();

    let january = "order_id,amount,placed_at,note\n\
                   A1,10.50,2024-01-02T10:00:00Z,\"first, with a comma\"\n\
                   A2,oops,2024-01-02T11:00:00Z,bad amount\n\
                   A3,7,2024-01-03T09:30:00+01:00,\"two\nlines\"\n\
                   ,1.00,2024-01-03T10:00:00Z,no key\n";
    write(landing.path(), "orders/2024-01.csv", january);
    write(
        landing.path(),
        "events/e1.jsonl",
        "{\"id\": 1, \"kind\": \"signup\", \"ok\": true}\nnot json\n{\"id\": 2, \"kind\": null}\n",
    );
    write(landing.path(), "unrelated/readme.txt", "not a table's file");

    let first = run_files(&raw, &file).await.unwrap();
    assert_eq!(first.seq, 1);
    let rows = |run: &tributary_sources::ingest::SourceRun, t: &str| {
        run.tables.iter().find(|x| x.table == t).unwrap().rows
    };
    assert_eq!(rows(&first, "orders"), 2);
    let orders = first.tables.iter().find(|t| t.table == "orders").unwrap();
    assert_eq!(orders.quarantined, 2);
    assert_eq!(rows(&first, "events"), 2);

    // Received byte for byte, under the landing key and the content's hash.
    let received = raw.list("sources/partner/orders/_received/").await.unwrap();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].contains("orders/2024-01.csv/"));
    assert_eq!(
        raw.get(&received[0]).await.unwrap().as_ref(),
        january.as_bytes()
    );

    // Quarantined with file, line and reason; read back by pyarrow.
    let quarantine: Vec<_> = walk(raw_dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("orders/_quarantine/"))
        .collect();
    assert_eq!(quarantine.len(), 1);
    let read = read_parquet_independently(&quarantine);
    let found: Vec<(Option<String>, Option<String>)> = read
        .rows
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    // A3's note spans two lines, so the row without a key starts on line 6.
    assert_eq!(
        found,
        [
            (Some("orders/2024-01.csv".into()), Some("3".into())),
            (Some("orders/2024-01.csv".into()), Some("6".into())),
        ],
        "{read:?}"
    );
    assert!(read.rows[0][2].as_deref().unwrap().contains("amount"));
    assert!(read.rows[1][2].as_deref().unwrap().contains("key"));

    let loaded = load_source(&mut warehouse, &raw, "partner").await.unwrap();
    assert_eq!(loaded.manifests, [1]);
    let got: Vec<(String, String, String)> = warehouse
        .query(
            "SELECT order_id, amount::text, note FROM src_partner.orders ORDER BY order_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            ("A1".into(), "10.50".into(), "first, with a comma".into()),
            ("A3".into(), "7.00".into(), "two\nlines".into()),
        ]
    );
    let placed: String = warehouse
        .query_one(
            "SELECT (placed_at AT TIME ZONE 'UTC')::text FROM src_partner.orders WHERE order_id = 'A3'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(placed, "2024-01-03 08:30:00", "the zone is kept exactly");

    // Nothing new, or the same bytes dropped again: nothing happens.
    let idle = run_files(&raw, &file).await.unwrap();
    assert_eq!(idle.seq, 1, "no manifest for a run that found nothing new");
    // The listing's version tag of each file received is kept, so the next
    // run does not download an unchanged file again.
    let manifest: tributary_lake::Manifest<tributary_sources::ingest::SourceState> =
        tributary_lake::ManifestLog::new(raw.child("sources/partner"), tributary_lake::Log::Source)
            .latest()
            .await
            .unwrap()
            .unwrap();
    let tags = &manifest.state.tables["orders"].landed;
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["orders/2024-01.csv"]);
    write(landing.path(), "orders/2024-01.csv", january);
    assert_eq!(run_files(&raw, &file).await.unwrap().seq, 1);

    // The same name with other bytes is a new version, kept beside the old.
    let corrected = january.replace("A2,oops", "A2,12.00") + "A4,1.25,2024-01-04T00:00:00Z,late\n";
    write(landing.path(), "orders/2024-01.csv", &corrected);
    let second = run_files(&raw, &file).await.unwrap();
    assert_eq!(second.seq, 2);
    assert_eq!(rows(&second, "orders"), 4, "A1, A2, A3 again and A4");
    assert_eq!(rows(&second, "events"), 0);
    let received = raw.list("sources/partner/orders/_received/").await.unwrap();
    assert_eq!(received.len(), 2, "both versions as received");
    load_source(&mut warehouse, &raw, "partner").await.unwrap();
    let count: i64 = warehouse
        .query_one("SELECT count(*) FROM src_partner.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 4, "rows replaced by key, never twice");
    // Every version is kept beside, with the manifest that brought it.
    let versions: Vec<(i64, String)> = warehouse
        .query(
            "SELECT _tributary_seq, amount::text FROM src_partner.orders_history \
             WHERE order_id = 'A1' ORDER BY _tributary_seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        versions,
        [(1, "10.50".to_string()), (2, "10.50".to_string())]
    );
    // A key twice in one file: the later line is the row. And the first
    // version dropped again (a revert) is applied again.
    write(
        landing.path(),
        "orders/2024-02.csv",
        "order_id,amount,placed_at,note\nB1,1.00,2024-02-01T00:00:00Z,first\nB1,2.00,2024-02-01T00:00:00Z,second\n",
    );
    write(landing.path(), "orders/2024-01.csv", january);
    let third = run_files(&raw, &file).await.unwrap();
    assert_eq!(third.seq, 3);
    load_source(&mut warehouse, &raw, "partner").await.unwrap();
    let rows_now: Vec<(String, String)> = warehouse
        .query(
            "SELECT order_id, amount::text FROM src_partner.orders WHERE order_id IN ('A2', 'A4', 'B1') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // A2 keeps its corrected amount (January's A2 row is quarantined), A4
    // stays (no deletes for files), B1 is its later line.
    assert_eq!(
        rows_now,
        [
            ("A2".to_string(), "12.00".to_string()),
            ("A4".to_string(), "1.25".to_string()),
            ("B1".to_string(), "2.00".to_string()),
        ]
    );
    let events: i64 = warehouse
        .query_one(
            "SELECT count(*) FROM src_partner.events WHERE kind IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

const DELETING: &str = r#"
[source]
kind = "files"
landing_url = "LANDING"

[tables.customers]
pattern = "customers/*.csv"
format = "csv"
primary_key = ["id"]
columns = ["id bigint", "name text"]
deletes = "snapshot"

[tables.changes]
pattern = "changes/*.jsonl"
format = "jsonl"
primary_key = ["id", "region"]
columns = ["id bigint", "region text", "name text", "op text"]
deletes = { column = "op", values = ["D", "delete"] }
"#;

/// The warehouse rows of `table`, as text, in key order.
async fn current(warehouse: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    warehouse
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_tables_delete_by_snapshot_or_by_an_operation_column() {
    let Some(warehouse_db) = TestDb::create("files_deletes").await else {
        return;
    };
    let mut warehouse = warehouse_db.connect().await;
    let landing = tempfile::tempdir().unwrap();
    let (_raw_dir, raw_url) = temp_lake();
    let raw = Lake::from_url(&raw_url).unwrap();
    let text = DELETING.replace("LANDING", &format!("file://{}", landing.path().display()));
    let file = SourceFile::parse("crm", Path::new("crm.toml"), &text).unwrap();
    let customers = "SELECT id || ':' || name FROM src_crm.customers ORDER BY id";
    let changes =
        "SELECT id || '/' || region || ':' || name FROM src_crm.changes ORDER BY id, region";
    let deletes = |run: &tributary_sources::ingest::SourceRun, t: &str| {
        run.tables.iter().find(|x| x.table == t).unwrap().deletes
    };

    // Day 1: a snapshot of three customers; a change feed that inserts
    // three rows and deletes one of them again in a later line.
    write(
        landing.path(),
        "customers/2026-11-01.csv",
        "id,name\n1,Ann\n2,Bob\n3,Cy\n",
    );
    write(
        landing.path(),
        "changes/001.jsonl",
        "{\"id\": 1, \"region\": \"eu\", \"name\": \"a\", \"op\": \"I\"}\n\
         {\"id\": 1, \"region\": \"us\", \"name\": \"b\", \"op\": \"I\"}\n\
         {\"id\": 2, \"region\": \"eu\", \"name\": \"c\", \"op\": \"I\"}\n\
         {\"id\": 2, \"region\": \"eu\", \"name\": \"c\", \"op\": \"D\"}\n",
    );
    let first = run_files(&raw, &file).await.unwrap();
    assert_eq!(
        deletes(&first, "customers"),
        0,
        "a first snapshot deletes nothing"
    );
    assert_eq!(deletes(&first, "changes"), 1);
    load_source(&mut warehouse, &raw, "crm").await.unwrap();
    assert_eq!(
        current(&warehouse, customers).await,
        ["1:Ann", "2:Bob", "3:Cy"]
    );
    assert_eq!(current(&warehouse, changes).await, ["1/eu:a", "1/us:b"]);

    // Day 2: Bob is gone from the snapshot and Dee is new; the feed
    // deletes 1/us, deletes then re-inserts 1/eu (the last line decides),
    // and deletes a key it never sent (harmless).
    write(
        landing.path(),
        "customers/2026-11-02.csv",
        "id,name\n1,Ann\n3,Cy\n4,Dee\n",
    );
    write(
        landing.path(),
        "changes/002.jsonl",
        "{\"id\": 1, \"region\": \"us\", \"name\": null, \"op\": \"delete\"}\n\
         {\"id\": 1, \"region\": \"eu\", \"name\": null, \"op\": \"D\"}\n\
         {\"id\": 1, \"region\": \"eu\", \"name\": \"a2\", \"op\": \"U\"}\n\
         {\"id\": 9, \"region\": \"eu\", \"name\": null, \"op\": \"D\"}\n",
    );
    let second = run_files(&raw, &file).await.unwrap();
    assert_eq!(deletes(&second, "customers"), 1, "Bob");
    assert_eq!(deletes(&second, "changes"), 2, "1/us and 9/eu, not 1/eu");
    load_source(&mut warehouse, &raw, "crm").await.unwrap();
    assert_eq!(
        current(&warehouse, customers).await,
        ["1:Ann", "3:Cy", "4:Dee"]
    );
    assert_eq!(current(&warehouse, changes).await, ["1/eu:a2"]);
    let history: Vec<String> = current(
        &warehouse,
        "SELECT _tributary_seq || ':' || _tributary_op FROM src_crm.customers_history \
         WHERE id = 2 ORDER BY _tributary_seq",
    )
    .await;
    assert_eq!(
        history,
        ["1:upsert", "2:delete"],
        "the delete is kept in history"
    );

    // Day 3: two snapshots land in one run: Cy leaves in the first and
    // comes back in the second; Eve is only in the first. The newest (by
    // name) is the table: Eve is deleted, Cy stays.
    write(
        landing.path(),
        "customers/2026-11-03.csv",
        "id,name\n1,Ann\n4,Dee\n5,Eve\n",
    );
    write(
        landing.path(),
        "customers/2026-11-04.csv",
        "id,name\n1,Ann\n3,Cy\n4,Dee\n",
    );
    let third = run_files(&raw, &file).await.unwrap();
    assert_eq!(deletes(&third, "customers"), 1, "Eve");
    load_source(&mut warehouse, &raw, "crm").await.unwrap();
    assert_eq!(
        current(&warehouse, customers).await,
        ["1:Ann", "3:Cy", "4:Dee"]
    );

    // Day 4: a snapshot whose only new row is quarantined, and an empty
    // snapshot: neither is taken as "everyone left".
    write(landing.path(), "customers/2026-11-05.csv", "id,name\n");
    let fourth = run_files(&raw, &file).await.unwrap();
    assert_eq!(
        deletes(&fourth, "customers"),
        0,
        "an empty snapshot deletes nothing"
    );
    write(
        landing.path(),
        "customers/2026-11-06.csv",
        "id,name\n1,Ann\nx,broken\n",
    );
    let fifth = run_files(&raw, &file).await.unwrap();
    assert_eq!(
        deletes(&fifth, "customers"),
        0,
        "a snapshot with quarantined rows infers no deletes"
    );
    load_source(&mut warehouse, &raw, "crm").await.unwrap();
    assert_eq!(
        current(&warehouse, customers).await,
        ["1:Ann", "3:Cy", "4:Dee"]
    );

    // A clean snapshot again: compared with the last one deletes came
    // from (day 3's) and every file taken since, so Cy and Dee go.
    write(
        landing.path(),
        "customers/2026-11-07.csv",
        "id,name\n1,Ann\n6,Fay\n",
    );
    let sixth = run_files(&raw, &file).await.unwrap();
    assert_eq!(deletes(&sixth, "customers"), 2, "Cy and Dee");
    load_source(&mut warehouse, &raw, "crm").await.unwrap();
    assert_eq!(current(&warehouse, customers).await, ["1:Ann", "6:Fay"]);
}
