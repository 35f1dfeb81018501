//! The real Olist tables (../shared/olist) and their generated companions,
//! read by the example source file into the raw lake and published as the
//! processed lake's Iceberg tables: after a first load and a month of
//! business (new orders, deliveries, deletes), each table's newest version
//! per key, read by DuckDB through PyIceberg, equals the source, and the
//! tables with a business date are partitioned by its month.

use std::collections::BTreeSet;

use chrono::Datelike;

use tributary_lake::{Lake, Log, Manifest, ManifestLog};
use tributary_pipeline::source_tables::publish_source;
use tributary_sources::ingest::{RunOptions, SourceState, run_source, source_lake};
use tributary_testkit::{example_source, iceberg_query, real_olist, temp_lake};

use tributary_sources::olist::TABLES;

/// Per table, the count of the current rows in the lake (the newest version
/// of each key, unless a delete) against the source's count.
async fn assert_lake_equals_source(
    source: &tokio_postgres::Client,
    raw: &Lake,
    tables_dir: &std::path::Path,
) -> bool {
    let latest: Manifest<SourceState> = ManifestLog::new(source_lake(raw, "olist"), Log::Source)
        .latest()
        .await
        .unwrap()
        .unwrap();
    for table in TABLES {
        let key = latest.state.tables[table]
            .key
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "select count(*) as n from (select _tributary_op, row_number() over \
             (partition by {key} order by _tributary_seq desc, _tributary_row desc) as newest \
             from {table}) \
             where newest = 1 and _tributary_op = 'upsert'"
        );
        let Some(read) = iceberg_query(tables_dir, &sql) else {
            return false;
        };
        let at_source: i64 = source
            .query_one(&format!("SELECT count(*) FROM public.{table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(read[0]["n"].as_i64(), Some(at_source), "{table}");
    }
    // Values too: each order's status and delivery as the source has them,
    // and the payments' total to the cent.
    let sql = "select order_id, order_status, \
                 cast(order_delivered_customer_date as varchar) as delivered from \
               (select *, row_number() over (partition by order_id order by _tributary_seq desc, _tributary_row desc) \
                as newest from orders) where newest = 1 and _tributary_op = 'upsert'";
    let lake: BTreeSet<String> = iceberg_query(tables_dir, sql)
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {}", r["order_id"], r["order_status"], r["delivered"]))
        .collect();
    let at_source: BTreeSet<String> = source
        .query(
            "SELECT order_id, order_status, \
               to_char(order_delivered_customer_date, 'YYYY-MM-DD HH24:MI:SS') FROM orders",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let delivered: Option<String> = r.get(2);
            format!(
                "\"{}\" \"{}\" {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                delivered.map_or("null".to_string(), |d| format!("\"{d}\""))
            )
        })
        .collect();
    assert_eq!(lake.len(), at_source.len());
    assert!(
        lake == at_source,
        "orders differ: {:?}",
        lake.symmetric_difference(&at_source)
            .take(5)
            .collect::<Vec<_>>()
    );
    let sql = "select cast(sum(payment_value) as varchar) as total from \
               (select *, row_number() over (partition by order_id, payment_sequential \
                order by _tributary_seq desc, _tributary_row desc) as newest from order_payments) \
               where newest = 1 and _tributary_op = 'upsert'";
    let total = iceberg_query(tables_dir, sql).unwrap()[0]["total"].clone();
    let at_source: String = source
        .query_one("SELECT sum(payment_value)::text FROM order_payments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total.as_str(), Some(at_source.as_str()));
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn olist_in_the_lakehouse_equals_the_source_partitioned_by_business_month() {
    let Some((_source_db, mut source)) = real_olist("olist_lakehouse").await else {
        return;
    };
    let (_raw_dir, raw_url) = temp_lake();
    let (processed_dir, processed_url) = temp_lake();
    let raw = Lake::from_url(&raw_url).unwrap();
    let processed = Lake::from_url(&processed_url).unwrap();
    let file = example_source("olist");
    let tables_dir = processed_dir.path().join("sources/olist");

    let first = run_source(&mut source, &raw, &file, &RunOptions::default())
        .await
        .unwrap();
    assert!(first.stopped.is_empty(), "{:?}", first.stopped);
    let published = publish_source(&raw, &processed, "olist").await.unwrap();
    assert_eq!(published.manifests, [1]);
    assert_eq!(published.commits.len(), TABLES.len());
    if !assert_lake_equals_source(&source, &raw, &tables_dir).await {
        return;
    }

    // A month of business, with deletes looked for.
    tributary_sources::olist::apply_month(&source, 1)
        .await
        .unwrap();
    let check = RunOptions {
        check_deletes: true,
        ..RunOptions::default()
    };
    let month = run_source(&mut source, &raw, &file, &check).await.unwrap();
    assert!(month.tables.iter().any(|t| t.deletes > 0), "{month:?}");
    let published = publish_source(&raw, &processed, "olist").await.unwrap();
    assert_eq!(published.manifests, [month.seq]);
    assert!(
        publish_source(&raw, &processed, "olist")
            .await
            .unwrap()
            .commits
            .is_empty()
    );
    assert_lake_equals_source(&source, &raw, &tables_dir).await;

    // Orders by the month they were bought: one partition a month, the
    // month of every file's rows the month its partition names.
    let catalog = tributary_iceberg::Catalog::new(processed.clone());
    let orders = catalog.load("sources/olist/orders").await.unwrap().unwrap();
    assert_eq!(
        orders.metadata.default_partition_spec().fields()[0].name,
        "order_purchase_timestamp_month"
    );
    // Every file's rows lie in the month its partition names (months since
    // 1970), by the file's own bounds; the deletes sit in the NULL one.
    let field = orders
        .metadata
        .current_schema()
        .field_by_name("order_purchase_timestamp")
        .unwrap()
        .id;
    let month_of = |datum: &tributary_iceberg::iceberg::spec::Datum| match datum.literal() {
        tributary_iceberg::iceberg::spec::PrimitiveLiteral::Long(us) => {
            let at = chrono::DateTime::from_timestamp_micros(*us).unwrap();
            (at.year() - 1970) * 12 + at.month0() as i32
        }
        other => panic!("a timestamp bound: {other:?}"),
    };
    let mut months = BTreeSet::new();
    let mut nulls = 0;
    for file in catalog.data_files(&orders).await.unwrap() {
        match file.partition().fields().first().cloned().flatten() {
            Some(tributary_iceberg::iceberg::spec::Literal::Primitive(
                tributary_iceberg::iceberg::spec::PrimitiveLiteral::Int(month),
            )) => {
                let low = month_of(&file.lower_bounds()[&field]);
                let high = month_of(&file.upper_bounds()[&field]);
                assert_eq!((low, high), (month, month), "{}", file.file_path());
                months.insert(month);
            }
            None => nulls += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(nulls > 0, "the month's deletes are in the NULL partition");
    let bought: i64 = source
        .query_one(
            "SELECT count(DISTINCT date_trunc('month', order_purchase_timestamp)) FROM orders",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // (Deleted orders keep their versions: the lake may know a month the
    // source no longer has.)
    assert!(
        months.len() as i64 >= bought,
        "{} month partitions for {bought} months bought",
        months.len()
    );
    let products = catalog
        .load("sources/olist/products")
        .await
        .unwrap()
        .unwrap();
    assert!(
        products
            .metadata
            .default_partition_spec()
            .fields()
            .is_empty(),
        "no business date declared: unpartitioned"
    );
}
