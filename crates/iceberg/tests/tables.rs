//! Iceberg tables in a file lake: appends, replaces by key, splits by
//! partition, idempotence and concurrent writers. Every table is also read
//! by PyIceberg (an independent reader) when `scripts/iceberg.sh` can run.

use std::{collections::BTreeMap, path::Path, process::Command, sync::Arc};

use arrow_array::{Date32Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use tributary_iceberg::{Catalog, Change, NewFile, Outcome, Partitioning, Rows, TableDef};
use tributary_lake::{Lake, parquet};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("created", DataType::Date32, false),
        Field::new("note", DataType::Utf8, true),
    ]))
}

fn day(y: i32, m: u32, d: u32) -> i32 {
    (NaiveDate::from_ymd_opt(y, m, d).unwrap() - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
        .num_days() as i32
}

fn batch(rows: &[(i32, i32, &str)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

async fn put(lake: &Lake, key: &str, rows: &[(i32, i32, &str)]) -> NewFile {
    let entry = lake.put_batch(key, "t", &batch(rows)).await.unwrap();
    NewFile {
        key: entry.key,
        bytes: entry.bytes,
    }
}

fn change(files: Vec<NewFile>, watermark: u64) -> Change {
    Change {
        files,
        watermark: Some(watermark),
        properties: BTreeMap::from([("tributary.run-id".into(), format!("run-{watermark}"))]),
        after: None,
    }
}

/// Rows of the table's current snapshot, read from its data files, as
/// (id, note) sorted.
async fn rows(catalog: &Catalog, location: &str) -> Vec<(i32, String)> {
    let table = catalog.load(location).await.unwrap().unwrap();
    let mut out = Vec::new();
    for file in catalog.data_files(&table).await.unwrap() {
        let key = file
            .file_path()
            .strip_prefix(&format!("{}/", catalog.lake().url()))
            .unwrap()
            .to_string();
        let (_, batches) = parquet::decode(catalog.lake().get(&key).await.unwrap()).unwrap();
        for b in batches {
            let ids = b.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
            let notes = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..b.num_rows() {
                out.push((ids.value(i), notes.value(i).to_string()));
            }
        }
    }
    out.sort();
    out
}

/// PyIceberg's rows of the table, `columns` only, as JSON lines sorted, or
/// `None` when the reader cannot be installed here (and the stack is not
/// required).
fn pyiceberg_json(location: &Path, columns: &str) -> Option<Vec<String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/iceberg.sh");
    let output = Command::new(script)
        .args(["rows", location.to_str().unwrap(), "--columns", columns])
        .output()
        .expect("run scripts/iceberg.sh");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("cannot install") && std::env::var("TRIBUTARY_REQUIRE_STACK").is_err() {
            eprintln!("skipping the PyIceberg check: {stderr}");
            return None;
        }
        panic!("scripts/iceberg.sh rows failed: {stderr}");
    }
    let mut rows: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    rows.sort();
    Some(rows)
}

/// PyIceberg's rows of the table as (id, note) sorted.
fn pyiceberg_rows(location: &Path) -> Option<Vec<(i32, String)>> {
    let mut rows: Vec<(i32, String)> = pyiceberg_json(location, "id,note")?
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["id"].as_i64().unwrap() as i32,
                v["note"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    Some(rows)
}

fn lake_in(dir: &Path) -> Lake {
    Lake::from_url(&format!("file://{}", dir.display())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_land_once_by_month_and_pyiceberg_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let catalog = Catalog::new(lake.clone());
    let def = TableDef {
        name: "facts".into(),
        location: "warehouse/facts".into(),
        schema: schema(),
        partitioning: Partitioning::Month("created".into()),
        rows: Rows::Append,
    };
    let nov = put(
        &lake,
        "warehouse/facts/a.parquet",
        &[(1, day(2024, 11, 2), "a"), (2, day(2024, 11, 30), "b")],
    )
    .await;
    // One file spanning October and December: split by month on commit.
    let mixed = put(
        &lake,
        "warehouse/facts/b.parquet",
        &[
            (3, day(2024, 10, 31), "c"),
            (4, day(2024, 12, 1), "d"),
            (5, day(2024, 10, 1), "e"),
        ],
    )
    .await;
    let first = catalog
        .commit(&def, &change(vec![nov.clone(), mixed], 1))
        .await
        .unwrap();
    let Outcome::Committed(committed) = first else {
        panic!("{first:?}")
    };
    assert_eq!(committed.version, 2, "v1 is the empty table");
    assert_eq!(
        committed.added_files, 3,
        "November, and October and December split"
    );
    // The same change again (a retried publication) is recognised.
    assert_eq!(
        catalog.commit(&def, &change(vec![nov], 1)).await.unwrap(),
        Outcome::AlreadyCommitted
    );
    let table = catalog.load(&def.location).await.unwrap().unwrap();
    let snapshot = table.metadata.current_snapshot().unwrap();
    assert_eq!(
        snapshot.summary().additional_properties["tributary.run-id"],
        "run-1"
    );
    assert_eq!(
        snapshot.summary().additional_properties["total-records"],
        "5"
    );
    let mut partitions: Vec<String> = catalog
        .data_files(&table)
        .await
        .unwrap()
        .iter()
        .map(|f| format!("{:?}", f.partition()))
        .collect();
    partitions.sort();
    partitions.dedup();
    assert_eq!(partitions.len(), 3, "{partitions:?}");
    let expected: Vec<(i32, String)> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, n)| (i as i32 + 1, n.to_string()))
        .collect();
    assert_eq!(rows(&catalog, &def.location).await, expected);
    if let Some(read) = pyiceberg_rows(&dir.path().join("warehouse/facts")) {
        assert_eq!(read, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_by_key_keeps_one_current_row_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let catalog = Catalog::new(lake.clone());
    let def = TableDef {
        name: "dim".into(),
        location: "warehouse/dim".into(),
        schema: schema(),
        partitioning: Partitioning::None,
        rows: Rows::ReplaceByKey(vec!["id".into()]),
    };
    let d = day(2024, 1, 1);
    let first = put(
        &lake,
        "warehouse/dim/1.parquet",
        &[(1, d, "one"), (2, d, "two"), (3, d, "three")],
    )
    .await;
    let far = put(&lake, "warehouse/dim/2.parquet", &[(100, d, "hundred")]).await;
    catalog
        .commit(&def, &change(vec![first, far], 1))
        .await
        .unwrap();
    let update = put(
        &lake,
        "warehouse/dim/3.parquet",
        &[(2, d, "TWO"), (4, d, "four")],
    )
    .await;
    let Outcome::Committed(second) = catalog
        .commit(&def, &change(vec![update], 2))
        .await
        .unwrap()
    else {
        panic!("not committed")
    };
    assert_eq!(
        second.removed_files, 1,
        "only the file holding key 2 is rewritten"
    );
    assert_eq!(second.rewritten_rows, 2, "keys 1 and 3 are copied");
    let expected = vec![
        (1, "one".to_string()),
        (2, "TWO".to_string()),
        (3, "three".to_string()),
        (4, "four".to_string()),
        (100, "hundred".to_string()),
    ];
    assert_eq!(rows(&catalog, &def.location).await, expected);
    let table = catalog.load(&def.location).await.unwrap().unwrap();
    assert_eq!(
        table
            .metadata
            .current_snapshot()
            .unwrap()
            .summary()
            .operation,
        tributary_iceberg::iceberg::spec::Operation::Overwrite
    );
    if let Some(read) = pyiceberg_rows(&dir.path().join("warehouse/dim")) {
        assert_eq!(read, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let catalog = Catalog::new(lake.clone());
    let def = TableDef {
        name: "events".into(),
        location: "warehouse/events".into(),
        schema: schema(),
        partitioning: Partitioning::None,
        rows: Rows::Append,
    };
    let mut tasks = Vec::new();
    for writer in 0..3 {
        let (catalog, lake, def) = (catalog.clone(), lake.clone(), def.clone());
        tasks.push(tokio::spawn(async move {
            let mut attempts = 0;
            for n in 0..4 {
                let id = writer * 10 + n;
                let file = put(
                    &lake,
                    &format!("warehouse/events/{id}.parquet"),
                    &[(id, 0, "x")],
                )
                .await;
                let change = Change {
                    files: vec![file],
                    ..Change::default()
                };
                match catalog.commit(&def, &change).await.unwrap() {
                    Outcome::Committed(c) => attempts += c.attempts,
                    other => panic!("{other:?}"),
                }
            }
            attempts
        }));
    }
    let mut attempts = 0;
    for task in tasks {
        attempts += task.await.unwrap();
    }
    let ids: Vec<i32> = rows(&catalog, &def.location)
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    let mut expected: Vec<i32> = (0..3)
        .flat_map(|w| (0..4).map(move |n| w * 10 + n))
        .collect();
    expected.sort();
    assert_eq!(
        ids, expected,
        "every commit of every writer is in the table"
    );
    let table = catalog.load(&def.location).await.unwrap().unwrap();
    assert_eq!(table.version, 13, "v1 plus twelve commits");
    eprintln!("12 commits took {attempts} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_beside_appends_and_expiry_keep_every_row_once() {
    use tributary_iceberg::MaintainOptions;
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let catalog = Catalog::new(lake.clone());
    let def = TableDef {
        name: "facts".into(),
        location: "warehouse/facts".into(),
        schema: schema(),
        partitioning: Partitioning::Month("created".into()),
        rows: Rows::Append,
    };
    let (nov, dec) = (day(2024, 11, 5), day(2024, 12, 5));
    // Twenty small files over two months, committed one by one.
    for n in 0..20 {
        let created = if n % 2 == 0 { nov } else { dec };
        let file = put(
            &lake,
            &format!("warehouse/facts/run-{n}.parquet"),
            &[(n, created, "x")],
        )
        .await;
        catalog
            .commit(&def, &change(vec![file], n as u64 + 1))
            .await
            .unwrap();
    }
    let options = MaintainOptions {
        target_file_bytes: 1 << 20,
        ..MaintainOptions::default()
    };
    // Compaction while a writer appends twenty more.
    let writer = {
        let (catalog, lake, def) = (catalog.clone(), lake.clone(), def.clone());
        tokio::spawn(async move {
            for n in 20..40 {
                let file = put(
                    &lake,
                    &format!("warehouse/facts/run-{n}.parquet"),
                    &[(n, nov, "y")],
                )
                .await;
                catalog
                    .commit(&def, &change(vec![file], n as u64 + 1))
                    .await
                    .unwrap();
            }
        })
    };
    let compacted = catalog.compact(&def, &options).await.unwrap();
    writer.await.unwrap();
    assert!(
        compacted.version.is_some() && !compacted.abandoned,
        "{compacted:?}"
    );
    assert!(compacted.rewritten_files >= 20, "{compacted:?}");
    let ids: Vec<i32> = rows(&catalog, &def.location)
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        ids,
        (0..40).collect::<Vec<_>>(),
        "every row once, beside the writer"
    );
    // A second compaction leaves one file per month.
    let again = catalog.compact(&def, &options).await.unwrap();
    assert_eq!(again.files_after, 2, "{again:?}");
    let table = catalog.load(&def.location).await.unwrap().unwrap();
    assert_eq!(
        table.watermark(),
        Some(40),
        "compaction carries the watermark"
    );

    // Expiry: every snapshot but the newest five is old enough.
    let later = chrono::Utc::now() + chrono::Duration::days(2);
    let expired = catalog.expire(&def, &options, later).await.unwrap();
    assert!(expired.expired_snapshots > 30, "{expired:?}");
    assert!(expired.deleted_files > 0, "{expired:?}");
    // The lake's own files stay: expiry deletes only what Iceberg wrote.
    for n in 0..40 {
        assert!(
            lake.exists(&format!("warehouse/facts/run-{n}.parquet"))
                .await
                .unwrap()
        );
    }
    let ids: Vec<i32> = rows(&catalog, &def.location)
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(ids, (0..40).collect::<Vec<_>>());
    if let Some(read) = pyiceberg_rows(&dir.path().join("warehouse/facts")) {
        assert_eq!(read.len(), 40, "PyIceberg after compaction and expiry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_key_replaces_only_the_same_pair_and_a_nullable_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let catalog = Catalog::new(lake.clone());
    let def = TableDef {
        name: "bars".into(),
        location: "markets/bars".into(),
        schema: schema(),
        partitioning: Partitioning::Month("created".into()),
        rows: Rows::ReplaceByKey(vec!["id".into(), "created".into()]),
    };
    let (d1, d2) = (day(2024, 11, 1), day(2024, 11, 2));
    let first = put(
        &lake,
        "markets/bars/1.parquet",
        &[(1, d1, "a"), (1, d2, "b"), (2, d1, "c")],
    )
    .await;
    catalog.commit(&def, &change(vec![first], 1)).await.unwrap();
    let late = put(&lake, "markets/bars/2.parquet", &[(1, d2, "B")]).await;
    catalog.commit(&def, &change(vec![late], 2)).await.unwrap();
    assert_eq!(
        rows(&catalog, &def.location).await,
        vec![
            (1, "B".to_string()),
            (1, "a".to_string()),
            (2, "c".to_string())
        ],
        "only (1, day 2) was replaced"
    );
    // A key column that may hold NULL could never be replaced: refused.
    let note_keyed = TableDef {
        name: "by_note".into(),
        location: "t/by_note".into(),
        rows: Rows::ReplaceByKey(vec!["note".into()]),
        ..def
    };
    let error = catalog
        .load_or_create(&note_keyed)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("note") && error.contains("non-null"),
        "{error}"
    );
}

/// The distinct partition tuples of the table's live files.
async fn partitions_of(catalog: &Catalog, location: &str) -> Vec<String> {
    let table = catalog.load(location).await.unwrap().unwrap();
    let mut out: Vec<String> = catalog
        .data_files(&table)
        .await
        .unwrap()
        .iter()
        .map(|f| format!("{:?}", f.partition()))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_takes_new_columns_keeps_rows_with_no_date_and_refuses_what_it_cannot_evolve() {
    use arrow_array::Int64Array;
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let catalog = Catalog::new(lake.clone());
    let nullable_created = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("created", DataType::Date32, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let def = TableDef {
        name: "versions".into(),
        location: "sources/shop/versions".into(),
        schema: nullable_created.clone(),
        partitioning: Partitioning::Month("created".into()),
        rows: Rows::Append,
    };
    let table = catalog.evolve(&def).await.unwrap();
    assert_eq!(table.version, 1, "created empty");
    let written = catalog.arrow_schema(&def, &table).unwrap();
    let first = RecordBatch::try_new(
        written,
        vec![
            Arc::new(Int32Array::from(vec![1, 2, 3])),
            Arc::new(Date32Array::from(vec![
                Some(day(2024, 11, 2)),
                None,
                Some(day(2024, 10, 9)),
            ])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    let files = catalog.write_rows(&def, "m1", &first).await.unwrap();
    assert_eq!(files.len(), 3, "October, November and no date");
    catalog.commit(&def, &change(files, 1)).await.unwrap();

    // A column appears at the source: a new schema, old files untouched.
    let mut wider = def.clone();
    wider.schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("created", DataType::Date32, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, true),
    ]));
    let table = catalog.evolve(&wider).await.unwrap();
    assert_eq!(table.version, 3);
    assert_eq!(table.metadata.current_schema().highest_field_id(), 4);
    assert!(
        catalog.evolve(&wider).await.unwrap().version == 3,
        "the same definition again changes nothing"
    );
    let written = catalog.arrow_schema(&wider, &table).unwrap();
    assert_eq!(written.fields().len(), 4);
    let second = RecordBatch::try_new(
        written,
        vec![
            Arc::new(Int32Array::from(vec![4, 5])),
            Arc::new(Date32Array::from(vec![None, Some(day(2024, 11, 20))])),
            Arc::new(StringArray::from(vec!["d", "e"])),
            Arc::new(Int64Array::from(vec![40, 50])),
        ],
    )
    .unwrap();
    let files = catalog.write_rows(&wider, "m2", &second).await.unwrap();
    catalog.commit(&wider, &change(files, 2)).await.unwrap();
    let table = catalog.load(&def.location).await.unwrap().unwrap();
    let data = catalog.data_files(&table).await.unwrap();
    let nulls = data
        .iter()
        .filter(|f| f.partition().fields().first() == Some(&None))
        .count();
    assert_eq!(
        nulls, 2,
        "each change's rows with no date in the NULL partition"
    );

    // A change computed against watermark 1 while another writer took the
    // table to 2 holds rows the table has: refused, not added twice.
    let stale = Change {
        after: Some(1),
        ..change(
            catalog
                .write_rows(&wider, "m2-again", &second)
                .await
                .unwrap(),
            3,
        )
    };
    assert_eq!(
        catalog.commit(&wider, &stale).await.unwrap(),
        Outcome::Overlap(2)
    );

    // Compaction merges the NULL partition's files into one.
    let compacted = catalog
        .compact(&wider, &tributary_iceberg::MaintainOptions::default())
        .await
        .unwrap();
    assert!(
        compacted.files_after < compacted.files_before,
        "{compacted:?}"
    );

    // A retype Iceberg cannot make in place, or other partitioning, is
    // refused, naming the column.
    let mut retyped = wider.clone();
    retyped.schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("created", DataType::Date32, true),
        Field::new("note", DataType::Int64, true),
    ]));
    let error = catalog.evolve(&retyped).await.unwrap_err().to_string();
    assert!(error.contains("column note is string"), "{error}");
    let mut widened = wider.clone();
    widened.schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let table = catalog.evolve(&widened).await.unwrap();
    assert_eq!(
        table.metadata.current_schema().as_struct().fields()[0]
            .field_type
            .to_string(),
        "long",
        "int widens to long in place"
    );
    let mut unpartitioned = wider.clone();
    unpartitioned.partitioning = Partitioning::None;
    let error = catalog
        .evolve(&unpartitioned)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("partitioned by month(created)"), "{error}");
    // Compaction under the changed definition keeps the table's own months
    // (a second November file to merge).
    let table = catalog.load(&def.location).await.unwrap().unwrap();
    let more = RecordBatch::try_new(
        catalog.arrow_schema(&wider, &table).unwrap(),
        vec![
            Arc::new(Int64Array::from(vec![6])),
            Arc::new(Date32Array::from(vec![day(2024, 11, 5)])),
            Arc::new(StringArray::from(vec!["f"])),
            Arc::new(Int64Array::from(vec![60])),
        ],
    )
    .unwrap();
    let files = catalog.write_rows(&wider, "m3", &more).await.unwrap();
    catalog.commit(&wider, &change(files, 3)).await.unwrap();
    let before = partitions_of(&catalog, &def.location).await;
    let merged = catalog
        .compact(
            &unpartitioned,
            &tributary_iceberg::MaintainOptions {
                target_file_bytes: 1 << 30,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(merged.files_after < merged.files_before, "{merged:?}");
    assert_eq!(partitions_of(&catalog, &def.location).await, before);

    if let Some(read) = pyiceberg_json(
        &dir.path().join("sources/shop/versions"),
        "id,created,amount",
    ) {
        assert_eq!(
            read,
            [
                r#"{"amount": 40, "created": null, "id": 4}"#,
                r#"{"amount": 50, "created": "2024-11-20", "id": 5}"#,
                r#"{"amount": 60, "created": "2024-11-05", "id": 6}"#,
                r#"{"amount": null, "created": "2024-10-09", "id": 3}"#,
                r#"{"amount": null, "created": "2024-11-02", "id": 1}"#,
                r#"{"amount": null, "created": null, "id": 2}"#,
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_writer_over_its_limit_writes_the_fullest_month_and_keeps_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let catalog = Catalog::new(lake.clone());
    let def = TableDef {
        name: "facts".into(),
        location: "warehouse/facts".into(),
        schema: schema(),
        partitioning: Partitioning::Month("created".into()),
        rows: Rows::Append,
    };
    let (oct, nov, dec) = (day(2024, 10, 3), day(2024, 11, 3), day(2024, 12, 3));
    // At most 4 rows wait: November fills first and is written while
    // October and December still wait.
    let mut writer = catalog.row_writer(&def, "w", 4);
    writer
        .push(&batch(&[(1, nov, "a"), (2, oct, "b"), (3, nov, "c")]))
        .await
        .unwrap();
    writer
        .push(&batch(&[(4, nov, "d"), (5, dec, "e")]))
        .await
        .unwrap();
    writer.push(&batch(&[(6, oct, "f")])).await.unwrap();
    let files = writer.finish().await.unwrap();
    let mut by_file: Vec<Vec<i32>> = Vec::new();
    for file in &files {
        let (_, batches) = parquet::decode(lake.get(&file.key).await.unwrap()).unwrap();
        let mut months = std::collections::BTreeSet::new();
        let mut ids = Vec::new();
        for b in &batches {
            let created = b.column(1).as_any().downcast_ref::<Date32Array>().unwrap();
            let id = b.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
            for i in 0..b.num_rows() {
                months.insert(
                    NaiveDate::from_num_days_from_ce_opt(created.value(i) + 719_163)
                        .unwrap()
                        .format("%Y-%m")
                        .to_string(),
                );
                ids.push(id.value(i));
            }
        }
        assert_eq!(months.len(), 1, "one month a file: {months:?}");
        by_file.push(ids);
    }
    assert_eq!(
        by_file,
        [vec![1, 3, 4], vec![2, 6], vec![5]],
        "November first (over the limit), then what waited, by month"
    );
    catalog.commit(&def, &change(files, 1)).await.unwrap();
    let expected: Vec<(i32, String)> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .enumerate()
        .map(|(i, n)| (i as i32 + 1, n.to_string()))
        .collect();
    assert_eq!(rows(&catalog, &def.location).await, expected);
}
