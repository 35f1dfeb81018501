//! The loader against a real PostgreSQL: a first load goes straight into the
//! empty tables (indexes set aside and built again, record keys numbered by
//! the loader), later loads go through staging; both keep every guarantee:
//! one row per fact version, every reference checked, the load log written
//! once, a failed manifest leaves nothing behind, a re-run does nothing.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMillisecondArray,
};
use chrono::NaiveDate;
use tokio_postgres::Client;
use tributary_lake::{FileEntry, Lake};
use tributary_testkit::{TestDb, temp_lake};
use tributary_warehouse::{
    Error, WAREHOUSE_TABLES, WType, WarehouseTable,
    load::{LoadedManifest, init, load_manifest},
};

/// One value of a processed row.
#[derive(Clone)]
enum V {
    I(i32),
    T(String),
    D(NaiveDate),
    /// Seconds after midnight.
    Tm(i64),
    /// Cents.
    M(i128),
    B(bool),
    /// A bigint.
    L(i64),
    /// Milliseconds since the Unix epoch.
    Ts(i64),
    Null,
}

fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Duration::days(n)
}

fn epoch_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

/// A batch of `table`'s processed schema from rows of values.
fn batch(table: &WarehouseTable, rows: &[Vec<V>]) -> RecordBatch {
    let columns: Vec<ArrayRef> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| -> ArrayRef {
            let values = rows.iter().map(|r| r[i].clone());
            match column.ty {
                WType::Int => Arc::new(Int32Array::from_iter(values.map(|v| match v {
                    V::I(x) => Some(x),
                    _ => None,
                }))),
                WType::Text => Arc::new(StringArray::from_iter(values.map(|v| match v {
                    V::T(x) => Some(x),
                    _ => None,
                }))),
                WType::Date => Arc::new(Date32Array::from_iter(values.map(|v| match v {
                    V::D(x) => Some(epoch_days(x)),
                    _ => None,
                }))),
                // Microseconds since midnight.
                WType::Time => Arc::new(Int64Array::from_iter(values.map(|v| match v {
                    V::Tm(x) => Some(x * 1_000_000),
                    _ => None,
                }))),
                WType::Money => Arc::new(
                    Decimal128Array::from_iter(values.map(|v| match v {
                        V::M(x) => Some(x),
                        _ => None,
                    }))
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
                ),
                WType::Bool => Arc::new(BooleanArray::from_iter(values.map(|v| match v {
                    V::B(x) => Some(x),
                    _ => None,
                }))),
                WType::BigInt => Arc::new(Int64Array::from_iter(values.map(|v| match v {
                    V::L(x) => Some(x),
                    _ => None,
                }))),
                WType::Timestamp => Arc::new(TimestampMillisecondArray::from_iter(values.map(
                    |v| match v {
                        V::Ts(x) => Some(x),
                        _ => None,
                    },
                ))),
            }
        })
        .collect();
    RecordBatch::try_new(table.arrow_schema(), columns).unwrap()
}

fn t(s: &str) -> V {
    V::T(s.to_string())
}

/// Calendar rows for days 0..days.
fn dates(days: i64) -> Vec<Vec<V>> {
    (0..days)
        .map(|n| {
            let d = day(n);
            vec![
                V::D(d),
                V::I(2024),
                V::I(1),
                V::I(1),
                V::I(1),
                t("Monday"),
                t("January"),
                V::I(1),
            ]
        })
        .collect()
}

/// Every dimension a sales order references, ids 1..=n (designs: `designs`).
fn dimensions(n: i32, designs: &[i32]) -> BTreeMap<&'static str, Vec<Vec<V>>> {
    let ids = 1..=n;
    BTreeMap::from([
        ("dim_date", dates(40)),
        (
            "dim_staff",
            ids.clone()
                .map(|i| {
                    vec![
                        V::I(i),
                        t("Ada"),
                        t("Lovelace"),
                        t("Sales"),
                        V::Null,
                        t("ada@example.com"),
                    ]
                })
                .collect(),
        ),
        (
            "dim_counterparty",
            ids.clone()
                .map(|i| {
                    let mut row = vec![V::I(i), t(&format!("Counterparty {i}")), t("1 Road")];
                    row.extend([V::Null, V::Null]);
                    row.extend([t("Leeds"), t("LS1"), t("UK"), t("0113")]);
                    row
                })
                .collect(),
        ),
        (
            "dim_currency",
            ids.clone()
                .map(|i| vec![V::I(i), t("GBP"), t("Pound")])
                .collect(),
        ),
        (
            "dim_design",
            designs
                .iter()
                .map(|&i| vec![V::I(i), t("Design"), t("/designs"), t("d.json")])
                .collect(),
        ),
        (
            "dim_location",
            ids.map(|i| {
                vec![
                    V::I(i),
                    t("1 Street"),
                    V::Null,
                    V::Null,
                    t("York"),
                    t("YO1"),
                    t("UK"),
                    t("01904"),
                ]
            })
            .collect(),
        ),
    ])
}

/// A sales order version: `id` last updated on day `version`, at `version`
/// seconds past midnight, referencing staff `staff` and design `design`.
fn order(id: i32, version: i64, staff: i32, design: i32) -> Vec<V> {
    vec![
        V::I(id),
        V::D(day(0)),
        V::Tm(3600),
        V::D(day(version)),
        V::Tm(version),
        V::I(staff),
        V::I(1 + id % 3),
        V::I(10),
        V::M(1_234),
        V::I(1),
        V::I(design),
        V::D(day(30)),
        V::D(day(31)),
        V::I(2),
    ]
}

/// Transactions 1..=n and the three payment types.
fn payment_dimensions(n: i32) -> [(&'static str, Vec<Vec<V>>); 2] {
    [
        (
            "dim_transaction",
            (1..=n)
                .map(|i| vec![V::I(i), t("SALE"), V::I(i), V::Null])
                .collect(),
        ),
        (
            "dim_payment_type",
            (1..=3).map(|i| vec![V::I(i), t("SALES_RECEIPT")]).collect(),
        ),
    ]
}

/// A payment version: `id` last updated on day `version`, for `transaction`.
fn payment(id: i32, version: i64, transaction: i32) -> Vec<V> {
    vec![
        V::I(id),
        V::D(day(0)),
        V::Tm(60),
        V::D(day(version)),
        V::Tm(version),
        V::I(transaction),
        V::I(2),
        V::M(-5_000),
        V::I(1),
        V::I(1 + id % 3),
        V::B(version > 1),
        V::D(day(10)),
    ]
}

/// Writes each table's rows as one processed file; returns the files map.
async fn write(
    lake: &Lake,
    seq: u64,
    tables: &BTreeMap<&'static str, Vec<Vec<V>>>,
) -> BTreeMap<String, Vec<FileEntry>> {
    static FILES: AtomicU64 = AtomicU64::new(0);
    let mut files = BTreeMap::new();
    for (name, rows) in tables {
        let table = WarehouseTable::by_name(name).unwrap();
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let key = format!("warehouse/{name}/m{seq}-{n}.parquet");
        let entry = lake
            .put_batch(&key, name, &batch(table, rows))
            .await
            .unwrap();
        files.insert(name.to_string(), vec![entry]);
    }
    files
}

async fn load(
    client: &mut Client,
    lake: &Lake,
    seq: u64,
    tables: &BTreeMap<&'static str, Vec<Vec<V>>>,
) -> tributary_warehouse::Result<LoadedManifest> {
    let files = write(lake, seq, tables).await;
    load_manifest(client, lake, seq, &format!("run-{seq}"), &files).await
}

/// An error and its causes, as the command line prints them.
fn chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(next) = cause {
        text.push_str(&format!(": {next}"));
        cause = next.source();
    }
    text
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// (record key, id, last_updated_date, last_updated_time) of every sales order row.
async fn sales_rows(client: &Client) -> Vec<(i32, i32, String)> {
    client
        .query(
            "SELECT sales_record_id, sales_order_id, \
                    last_updated_date::text || ' ' || last_updated_time::text \
             FROM fact_sales_order ORDER BY sales_record_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// The constraints of fact_sales_order (name, definition), and whether its indexes are valid.
async fn sales_constraints(client: &Client) -> Vec<(String, String)> {
    let invalid = count(
        client,
        "SELECT count(*) FROM pg_index WHERE indrelid = 'fact_sales_order'::regclass \
         AND NOT (indisvalid AND indisready)",
    )
    .await;
    assert_eq!(invalid, 0, "an index of fact_sales_order is not valid");
    client
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = 'fact_sales_order'::regclass ORDER BY conname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Every constraint and index of the warehouse's tables, by table and name.
async fn schema(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
             UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn unique_index_oid(client: &Client) -> u32 {
    client
        .query_one(
            "SELECT conindid FROM pg_constraint WHERE conrelid = 'fact_sales_order'::regclass \
             AND contype = 'u'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn warehouse(label: &str) -> Option<(TestDb, Client)> {
    let db = TestDb::create(label).await?;
    let client = db.connect().await;
    init(&client).await.unwrap();
    Some((db, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_goes_straight_in_then_increments_skip_repeats_and_reruns_do_nothing() {
    let Some((_db, mut client)) = warehouse("load_first").await else {
        return;
    };
    let (_dir, url) = temp_lake();
    let lake = Lake::from_url(&url).unwrap();
    // Statistics that say "empty" (a vacuumed new table) must not matter.
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    let constraints = sales_constraints(&client).await;
    let declared = schema(&client).await;
    assert!(declared.len() > 40, "{declared:?}");
    let index_before = unique_index_oid(&client).await;

    // 1. A first load into empty tables: 2,000 orders, two versions of the
    //    first 100.
    let mut first = dimensions(5, &[1, 2, 3]);
    let mut orders: Vec<Vec<V>> = (1..=2_000).map(|id| order(id, 1, 1 + id % 5, 1)).collect();
    orders.extend((1..=100).map(|id| order(id, 2, 2, 3)));
    first.insert("fact_sales_order", orders);
    first.extend(payment_dimensions(400));
    first.insert(
        "fact_payment",
        (1..=400).map(|id| payment(id, 1, id)).collect(),
    );
    let loaded = load(&mut client, &lake, 1, &first).await.unwrap();
    assert!(!loaded.already_loaded);
    assert_eq!(loaded.rows["fact_sales_order"], 2_100);
    assert_eq!(loaded.rows["dim_staff"], 5);
    assert_eq!(loaded.rows["dim_date"], 40);
    assert_eq!(loaded.rows["dim_transaction"], 400);
    assert_eq!(loaded.rows["fact_payment"], 400);
    let rows = sales_rows(&client).await;
    assert_eq!(rows.len(), 2_100);
    // Record keys 1, 2, … in file order, as the serial would have given.
    assert!(rows.iter().enumerate().all(|(i, r)| r.0 == i as i32 + 1));
    assert_eq!(rows[2_000].1, 1);
    // The indexes were built again (a new unique index), under the same names.
    assert_ne!(unique_index_oid(&client).await, index_before);
    assert_eq!(sales_constraints(&client).await, constraints);
    // Every key and foreign key set aside on the way is declared again.
    assert_eq!(schema(&client).await, declared);
    // The sequence continues after the keys the loader numbered.
    assert_eq!(
        count(
            &client,
            "SELECT last_value FROM fact_sales_order_sales_record_id_seq"
        )
        .await,
        2_100
    );

    // 2. An increment: 300 repeated versions, 50 new ones, a renamed staff
    //    member, a new design.
    let mut second = dimensions(5, &[1, 2, 3, 4]);
    second.get_mut("dim_staff").unwrap()[0][2] = t("Byron");
    let mut orders: Vec<Vec<V>> = (1..=300).map(|id| order(id, 1, 1 + id % 5, 1)).collect();
    orders.extend((1..=50).map(|id| order(id, 3, 4, 4)));
    second.insert("fact_sales_order", orders);
    second.extend(payment_dimensions(410));
    let mut payments: Vec<Vec<V>> = (1..=100).map(|id| payment(id, 1, id)).collect();
    payments.extend((401..=410).map(|id| payment(id, 2, id)));
    payments.push(payment(7, 2, 7));
    second.insert("fact_payment", payments);
    let loaded = load(&mut client, &lake, 2, &second).await.unwrap();
    assert_eq!(
        loaded.paths["fact_sales_order"], "staged",
        "repeats go through staging"
    );
    assert_eq!(
        loaded.paths["fact_payment"], "staged",
        "payment 7 is not new"
    );
    assert_eq!(loaded.rows["fact_sales_order"], 50);
    assert_eq!(loaded.rows["dim_transaction"], 10);
    assert_eq!(loaded.rows["fact_payment"], 11);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FILTER (WHERE paid) * 1000 + max(payment_record_id) FROM fact_payment"
        )
        .await,
        11_411
    );
    assert_eq!(loaded.rows["dim_staff"], 1);
    assert_eq!(loaded.rows["dim_design"], 1);
    let rows = sales_rows(&client).await;
    assert_eq!(rows.len(), 2_150);
    assert_eq!(rows.last().unwrap().0, 2_150, "the serial continues");
    assert_eq!(
        count(
            &client,
            "SELECT count(DISTINCT (sales_order_id, last_updated_date, last_updated_time)) \
             FROM fact_sales_order"
        )
        .await,
        2_150
    );
    assert_eq!(sales_constraints(&client).await, constraints);

    // 3. Re-running manifest 2 does nothing; a manifest of repeats adds nothing.
    let before = sales_rows(&client).await;
    let again = load(&mut client, &lake, 2, &second).await.unwrap();
    assert!(again.already_loaded);
    let repeats = load(&mut client, &lake, 3, &first).await.unwrap();
    assert_eq!(repeats.rows["fact_sales_order"], 0);
    assert_eq!(repeats.rows["dim_staff"], 1, "the rename is undone");
    assert_eq!(sales_rows(&client).await, before);
    assert_eq!(
        count(&client, "SELECT count(*) FROM tributary.load_log").await,
        3
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM tributary.load_log WHERE seq = 2"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_repeating_a_fact_version_fails_clearly_and_leaves_nothing() {
    let Some((_db, mut client)) = warehouse("load_repeat").await else {
        return;
    };
    let (_dir, url) = temp_lake();
    let lake = Lake::from_url(&url).unwrap();
    let declared = schema(&client).await;

    // A dimension key given twice, into the empty dimension: its primary
    // key, built again, stops it.
    let mut tables = dimensions(3, &[1]);
    tables.get_mut("dim_staff").unwrap().push(vec![
        V::I(2),
        t("Grace"),
        t("Hopper"),
        t("Sales"),
        V::Null,
        t("grace@example.com"),
    ]);
    let error = load(&mut client, &lake, 1, &tables).await.unwrap_err();
    let message = chain(&error);
    assert!(
        message.contains("dim_staff_pkey") && message.contains("(staff_id)=(2) is duplicated"),
        "{message}"
    );
    assert_eq!(schema(&client).await, declared);

    // Into the empty table: the unique index, built again, stops it.
    let mut tables = dimensions(3, &[1]);
    tables.insert(
        "fact_sales_order",
        vec![order(1, 1, 1, 1), order(2, 1, 1, 1), order(1, 1, 2, 1)],
    );
    let error = load(&mut client, &lake, 1, &tables).await.unwrap_err();
    let message = chain(&error);
    assert!(
        message.contains("fact_sales_order_sales_order_id_last_updated_date_last_upda_key")
            && message.contains("is duplicated"),
        "{message}"
    );
    // Nothing half done: no dimension, no fact, no log row; the constraints are back.
    assert_eq!(count(&client, "SELECT count(*) FROM dim_staff").await, 0);
    assert_eq!(
        count(&client, "SELECT count(*) FROM fact_sales_order").await,
        0
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM tributary.load_log").await,
        0
    );
    assert_eq!(schema(&client).await, declared);

    // The manifest without the repeat loads; a later one repeating a new
    // version twice fails the same way through staging.
    tables.insert(
        "fact_sales_order",
        vec![order(1, 1, 1, 1), order(2, 1, 1, 1)],
    );
    load(&mut client, &lake, 1, &tables).await.unwrap();
    tables.insert(
        "fact_sales_order",
        vec![order(1, 1, 1, 1), order(3, 2, 1, 1), order(3, 2, 2, 1)],
    );
    let error = load(&mut client, &lake, 2, &tables).await.unwrap_err();
    let message = chain(&error);
    assert!(
        message.contains("fact_sales_order_sales_order_id_last_updated_date_last_upda_key"),
        "{message}"
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM fact_sales_order").await,
        2
    );
    assert_eq!(
        count(&client, "SELECT max(seq) FROM tributary.load_log").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_referencing_missing_dimension_rows_fail_with_the_column_named() {
    let Some((_db, mut client)) = warehouse("load_orphans").await else {
        return;
    };
    let (_dir, url) = temp_lake();
    let lake = Lake::from_url(&url).unwrap();

    // Into the empty table: staff 9 is past the dimension's range.
    let mut tables = dimensions(3, &[1, 2, 5]);
    tables.insert(
        "fact_sales_order",
        vec![order(1, 1, 1, 1), order(2, 1, 9, 1), order(3, 1, 9, 2)],
    );
    match load(&mut client, &lake, 1, &tables).await {
        Err(Error::Orphans {
            table,
            column,
            dimension,
            rows,
            example,
        }) => {
            assert_eq!(
                (table, column, dimension, rows, example.as_str()),
                ("fact_sales_order", "sales_staff_id", "dim_staff", 2, "9")
            );
        }
        other => panic!("expected orphans, got {other:?}"),
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM fact_sales_order").await,
        0
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM tributary.load_log").await,
        0
    );

    // Designs 1, 2 and 5 leave a gap their range cannot prove: design 3
    // falls in it, and the anti-join names it.
    tables.insert(
        "fact_sales_order",
        vec![order(1, 1, 1, 1), order(2, 1, 2, 3), order(3, 1, 3, 5)],
    );
    match load(&mut client, &lake, 1, &tables).await {
        Err(Error::Orphans {
            column,
            rows,
            example,
            ..
        }) => assert_eq!((column, rows, example.as_str()), ("design_id", 1, "3")),
        other => panic!("expected orphans, got {other:?}"),
    }

    // Every value present, gap or not: the load goes through.
    tables.insert(
        "fact_sales_order",
        vec![order(1, 1, 1, 1), order(2, 1, 2, 5), order(3, 1, 3, 2)],
    );
    load(&mut client, &lake, 1, &tables).await.unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM fact_sales_order").await,
        3
    );

    // Through staging, the same errors.
    tables.insert(
        "fact_sales_order",
        vec![order(4, 1, 1, 1), order(5, 1, 1, 4)],
    );
    match load(&mut client, &lake, 2, &tables).await {
        Err(Error::Orphans {
            column,
            rows,
            example,
            ..
        }) => assert_eq!((column, rows, example.as_str()), ("design_id", 1, "4")),
        other => panic!("expected orphans, got {other:?}"),
    }
    tables.insert(
        "fact_sales_order",
        vec![order(4, 1, 1, 1), order(5, 1, 1, 6)],
    );
    match load(&mut client, &lake, 2, &tables).await {
        Err(Error::Orphans {
            column,
            rows,
            example,
            ..
        }) => assert_eq!((column, rows, example.as_str()), ("design_id", 1, "6")),
        other => panic!("expected orphans, got {other:?}"),
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM fact_sales_order").await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_whose_ids_follow_the_tables_are_appended_and_a_repeat_among_them_still_fails() {
    let Some((_db, mut client)) = warehouse("load_append").await else {
        return;
    };
    let (_dir, url) = temp_lake();
    let lake = Lake::from_url(&url).unwrap();
    let mut tables = dimensions(5, &[1, 2, 3]);
    tables.insert(
        "fact_sales_order",
        (1..=100).map(|id| order(id, 1, 1 + id % 5, 1)).collect(),
    );
    tables.extend(payment_dimensions(10));
    let loaded = load(&mut client, &lake, 1, &tables).await.unwrap();
    assert_eq!(loaded.paths["fact_sales_order"], "direct");
    tables.remove("dim_payment_type");

    // The next part, large: ids 101..=50_100, two versions of 200 among
    // them, and one order of a design the dimension lacks.
    let part = |last: i32| {
        let mut rows: Vec<Vec<V>> = (101..=last).map(|id| order(id, 1, 1 + id % 5, 2)).collect();
        rows.push(order(200, 2, 3, 3));
        rows
    };
    let mut orphaned = part(50_100);
    orphaned.push(order(50_101, 1, 1, 7));
    tables.insert("fact_sales_order", orphaned);
    match load(&mut client, &lake, 2, &tables).await {
        Err(Error::Orphans {
            column,
            rows,
            example,
            ..
        }) => assert_eq!((column, rows, example.as_str()), ("design_id", 1, "7")),
        other => panic!("expected orphans, got {other:?}"),
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM fact_sales_order").await,
        100,
        "nothing of the failed batch stays"
    );
    tables.insert("fact_sales_order", part(50_100));
    // Many new transactions, none known: a dimension is appended too.
    tables.insert(
        "dim_transaction",
        (11..=50_010)
            .map(|i| vec![V::I(i), t("SALE"), V::I(i), V::Null])
            .collect(),
    );
    let loaded = load(&mut client, &lake, 2, &tables).await.unwrap();
    assert_eq!(loaded.paths["dim_transaction"], "append");
    assert_eq!(loaded.rows["dim_transaction"], 50_000);
    assert_eq!(
        count(&client, "SELECT count(*) FROM dim_transaction").await,
        50_010
    );
    tables.remove("dim_transaction");
    assert_eq!(loaded.paths["fact_sales_order"], "append");
    assert_eq!(loaded.rows["fact_sales_order"], 50_001);
    let rows = sales_rows(&client).await;
    assert_eq!(rows.len(), 50_101);
    assert!(
        rows.windows(2).all(|w| w[0].0 < w[1].0) && rows[100].0 > 100,
        "the serial numbers appended rows after the others"
    );

    // A version twice in an appended batch is refused by the unique index,
    // and nothing of the batch stays.
    let mut repeated: Vec<Vec<V>> = (60_001..=110_000).map(|id| order(id, 1, 1, 1)).collect();
    repeated.push(order(60_001, 1, 1, 1));
    tables.insert("fact_sales_order", repeated);
    let error = load(&mut client, &lake, 3, &tables).await.unwrap_err();
    assert!(chain(&error).contains("duplicate key"), "{}", chain(&error));
    assert_eq!(
        count(&client, "SELECT count(*) FROM fact_sales_order").await,
        50_101
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM tributary.load_log").await,
        2
    );
    // New ids after changed ones: staged, and only the new versions go in.
    tables.insert(
        "fact_sales_order",
        vec![
            order(250, 1, 1, 2),
            order(250, 5, 2, 2),
            order(60_000, 1, 1, 1),
        ],
    );
    let loaded = load(&mut client, &lake, 3, &tables).await.unwrap();
    assert_eq!(loaded.paths["fact_sales_order"], "staged");
    assert_eq!(loaded.rows["fact_sales_order"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_keeps_indexes_something_depends_on_and_numbers_after_used_keys() {
    let Some((_db, mut client)) = warehouse("load_depends").await else {
        return;
    };
    let (_dir, url) = temp_lake();
    let lake = Lake::from_url(&url).unwrap();
    // A view relying on the primary key (grouping by it, selecting other
    // columns): the key cannot be dropped, so the load keeps it. A key
    // already taken by a rolled-back load: numbering starts after it.
    client
        .batch_execute(
            "CREATE VIEW order_days AS SELECT sales_record_id, sales_order_id, count(*) AS n \
               FROM fact_sales_order GROUP BY sales_record_id; \
             CREATE INDEX fact_sales_order_created ON fact_sales_order (created_date); \
             SELECT setval('fact_sales_order_sales_record_id_seq', 41);",
        )
        .await
        .unwrap();
    let index_before = unique_index_oid(&client).await;
    let mut tables = dimensions(3, &[1]);
    tables.insert(
        "fact_sales_order",
        (1..=10).map(|id| order(id, 1, 1, 1)).collect(),
    );
    let loaded = load(&mut client, &lake, 1, &tables).await.unwrap();
    assert_eq!(loaded.rows["fact_sales_order"], 10);
    assert_eq!(unique_index_oid(&client).await, index_before);
    let keys: Vec<i32> = sales_rows(&client).await.iter().map(|r| r.0).collect();
    assert_eq!(keys, (42..=51).collect::<Vec<_>>());
    assert_eq!(count(&client, "SELECT count(*) FROM order_days").await, 10);

    // Emptied by hand, the table takes the first-load path again; its
    // plain index comes back too.
    client
        .batch_execute("DROP VIEW order_days; DELETE FROM fact_sales_order")
        .await
        .unwrap();
    tables.insert(
        "fact_sales_order",
        (1..=5).map(|id| order(id, 2, 1, 1)).collect(),
    );
    load(&mut client, &lake, 2, &tables).await.unwrap();
    assert_ne!(unique_index_oid(&client).await, index_before);
    let keys: Vec<i32> = sales_rows(&client).await.iter().map(|r| r.0).collect();
    assert_eq!(keys, (52..=56).collect::<Vec<_>>());
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'fact_sales_order_created'"
        )
        .await,
        1
    );
    // An insert through the serial takes the next key.
    client
        .batch_execute(
            "INSERT INTO fact_sales_order (sales_order_id, created_date, created_time, \
               last_updated_date, last_updated_time, sales_staff_id, counterparty_id, units_sold, \
               unit_price, currency_id, design_id, agreed_payment_date, agreed_delivery_date, \
               agreed_delivery_location_id) \
             SELECT 99, created_date, created_time, last_updated_date, last_updated_time, \
               sales_staff_id, counterparty_id, units_sold, unit_price, currency_id, design_id, \
               agreed_payment_date, agreed_delivery_date, agreed_delivery_location_id \
             FROM fact_sales_order LIMIT 1",
        )
        .await
        .unwrap();
    assert_eq!(
        count(
            &client,
            "SELECT max(sales_record_id)::bigint FROM fact_sales_order"
        )
        .await,
        57
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processed_file_that_is_not_parquet_fails_the_load_and_leaves_nothing() {
    let Some((_db, mut client)) = warehouse("load_corrupt").await else {
        return;
    };
    let (_dir, url) = temp_lake();
    let lake = Lake::from_url(&url).unwrap();
    let declared = schema(&client).await;
    let mut tables = dimensions(3, &[1]);
    tables.insert(
        "fact_sales_order",
        (1..=20_000).map(|id| order(id, 1, 1, 1)).collect(),
    );
    let mut files = write(&lake, 1, &tables).await;
    // A second file of facts, cut short: the first has gone out by then.
    let good = files["fact_sales_order"][0].clone();
    let bytes = lake.get(&good.key).await.unwrap();
    let cut = "warehouse/fact_sales_order/cut.parquet";
    lake.put_once(cut, bytes.slice(..bytes.len() / 2))
        .await
        .unwrap();
    files.get_mut("fact_sales_order").unwrap().push(FileEntry {
        key: cut.to_string(),
        ..good
    });
    let error = load_manifest(&mut client, &lake, 1, "run-1", &files)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Lake(_)), "{error:?}");
    assert_eq!(
        count(&client, "SELECT count(*) FROM fact_sales_order").await,
        0
    );
    assert_eq!(count(&client, "SELECT count(*) FROM dim_staff").await, 0);
    assert_eq!(schema(&client).await, declared);
    // Without it, the manifest loads.
    files.get_mut("fact_sales_order").unwrap().pop();
    let loaded = load_manifest(&mut client, &lake, 1, "run-1", &files)
        .await
        .unwrap();
    assert_eq!(loaded.rows["fact_sales_order"], 20_000);
}

/// A history row of dim_payment_type_history: (version id, id, name, from, to).
fn payment_type_version(version: i64, id: i32, name: &str, from: i64, to: Option<i64>) -> Vec<V> {
    vec![
        V::L(version),
        V::I(id),
        t(name),
        V::Ts(from),
        to.map_or(V::Null, V::Ts),
        V::B(to.is_none()),
        V::I((version % 10) as i32),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_load_replaces_the_whole_history_of_each_entity_it_carries() {
    let Some((_db, mut client)) = warehouse("load_history").await else {
        return;
    };
    let (_dir, url) = temp_lake();
    let lake = Lake::from_url(&url).unwrap();
    // 2024-01-01T00:00:00Z and a day, an hour and a millisecond later.
    let (t0, t1, t2) = (1_704_067_200_000, 1_704_153_600_000, 1_704_157_200_001);
    let first = BTreeMap::from([(
        "dim_payment_type_history",
        vec![
            payment_type_version(11, 1, "SALES_RECEIPT", t0, Some(t1)),
            payment_type_version(12, 1, "SALES_RECEIPT_V2", t1, None),
            payment_type_version(21, 2, "PURCHASE_PAYMENT", t0, None),
        ],
    )]);
    load(&mut client, &lake, 1, &first).await.unwrap();
    // Entity 1 again, with a version split in: entity 2 is left alone.
    let second = BTreeMap::from([(
        "dim_payment_type_history",
        vec![
            payment_type_version(11, 1, "SALES_RECEIPT", t0, Some(t1)),
            payment_type_version(12, 1, "SALES_RECEIPT_V2", t1, Some(t2)),
            payment_type_version(13, 1, "SALES_RECEIPT_V3", t2, None),
        ],
    )]);
    let loaded = load(&mut client, &lake, 2, &second).await.unwrap();
    // Version 12 changed (it closes now) and 13 is new; 11 stays as it was.
    assert_eq!(loaded.rows["dim_payment_type_history"], 2);
    let rows: Vec<(i64, i32, String, String, Option<String>, bool)> = client
        .query(
            "SELECT payment_type_version_id, payment_type_id, payment_type_name, \
                    valid_from::text, valid_to::text, is_current \
             FROM dim_payment_type_history ORDER BY 2, valid_from",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    let row = |v: i64, id: i32, name: &str, from: &str, to: Option<&str>| {
        (
            v,
            id,
            name.to_string(),
            from.to_string(),
            to.map(str::to_string),
            to.is_none(),
        )
    };
    assert_eq!(
        rows,
        vec![
            row(
                11,
                1,
                "SALES_RECEIPT",
                "2024-01-01 00:00:00",
                Some("2024-01-02 00:00:00")
            ),
            row(
                12,
                1,
                "SALES_RECEIPT_V2",
                "2024-01-02 00:00:00",
                Some("2024-01-02 01:00:00.001")
            ),
            row(13, 1, "SALES_RECEIPT_V3", "2024-01-02 01:00:00.001", None),
            row(21, 2, "PURCHASE_PAYMENT", "2024-01-01 00:00:00", None),
        ]
    );
    // The same history again changes nothing.
    let again = load(&mut client, &lake, 3, &second).await.unwrap();
    assert_eq!(again.rows["dim_payment_type_history"], 0);
}

#[tokio::test]
async fn the_schema_ddl_runs_once_per_version_unless_forced() {
    let Some((_db, client)) = warehouse("ddl_once").await else {
        return;
    };
    // A DDL with a visible side effect: each run adds a row.
    let ddl = |version: i32| {
        format!(
            "CREATE TABLE IF NOT EXISTS ddl_runs (version int); \
             INSERT INTO ddl_runs VALUES ({version});"
        )
    };
    let rows = || async { count(&client, "SELECT count(*) FROM ddl_runs").await };
    tributary_warehouse::apply_ddl(&client, "probe", &ddl(1), &["ddl_runs"], false)
        .await
        .unwrap();
    tributary_warehouse::apply_ddl(&client, "probe", &ddl(1), &["ddl_runs"], false)
        .await
        .unwrap();
    assert_eq!(rows().await, 1, "the same text runs once");
    tributary_warehouse::apply_ddl(&client, "probe", &ddl(2), &["ddl_runs"], false)
        .await
        .unwrap();
    assert_eq!(rows().await, 2, "a new version runs");
    tributary_warehouse::apply_ddl(&client, "probe", &ddl(2), &["ddl_runs"], true)
        .await
        .unwrap();
    assert_eq!(rows().await, 3, "forced, it runs again");
    // A table dropped by hand: the same text runs again and brings it back.
    client.batch_execute("DROP TABLE ddl_runs").await.unwrap();
    tributary_warehouse::apply_ddl(&client, "probe", &ddl(2), &["ddl_runs"], false)
        .await
        .unwrap();
    assert_eq!(rows().await, 1, "recreated, with this run's row");
    // The loader's own schema: a second init finds it in place.
    tributary_warehouse::load::init(&client).await.unwrap();
    tributary_warehouse::load::init(&client).await.unwrap();
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM tributary.ddl_applied WHERE name = 'warehouse'"
        )
        .await,
        1
    );
}

/// Autovacuum holds SHARE UPDATE EXCLUSIVE on a table it vacuums. A minute's
/// load must not queue behind it: a SHARE lock would wait until the
/// deadlock timeout cancels the vacuum (a second, every minute, and the
/// vacuum never finishes). Another session holds that lock on every
/// warehouse table here, and the load must go through well within a
/// lock timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minutes_load_does_not_wait_for_a_vacuum() {
    let Some((db, mut client)) = warehouse("load_vacuum").await else {
        return;
    };
    let (_dir, url) = temp_lake();
    let lake = Lake::from_url(&url).unwrap();
    let mut first = dimensions(5, &[1, 2, 3]);
    first.insert(
        "fact_sales_order",
        (1..=200).map(|id| order(id, 1, 1 + id % 5, 1)).collect(),
    );
    first.extend(payment_dimensions(50));
    first.insert(
        "fact_payment",
        (1..=50).map(|id| payment(id, 1, id)).collect(),
    );
    load(&mut client, &lake, 1, &first).await.unwrap();

    let vacuum = db.connect().await;
    let tables: Vec<&str> = WAREHOUSE_TABLES.iter().map(|t| t.name).collect();
    vacuum
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE",
            tables.join(", ")
        ))
        .await
        .unwrap();
    client
        .batch_execute("SET lock_timeout = '3s'")
        .await
        .unwrap();
    // The schema is in place: the DDL (CREATE INDEX IF NOT EXISTS takes
    // SHARE) is not run again.
    init(&client).await.unwrap();
    // New orders and a second version of five payments: staged, probed.
    let mut next = BTreeMap::new();
    next.insert(
        "fact_sales_order",
        (201..=210).map(|id| order(id, 1, 1, 1)).collect::<Vec<_>>(),
    );
    next.insert(
        "fact_payment",
        (1..=5).map(|id| payment(id, 2, id)).collect(),
    );
    let loaded = load(&mut client, &lake, 2, &next).await.unwrap();
    assert_eq!(loaded.rows["fact_sales_order"], 10);
    assert_eq!(loaded.rows["fact_payment"], 5);
    assert_eq!(loaded.paths["fact_payment"], "staged");
    vacuum.batch_execute("ROLLBACK").await.unwrap();
}
