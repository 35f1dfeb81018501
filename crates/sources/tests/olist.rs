//! The real Olist tables (../shared/olist: no change-tracking column at all,
//! text ids, a composite key, missing values, a backslash in a value) as a
//! source declared by configuration: a first load, then inserts, updates and
//! deletes found by transaction id and key comparison, then schema changes;
//! after every run the warehouse equals the source and nothing came twice.

mod common;

use tokio_postgres::Client;
use tributary_lake::Lake;
use tributary_sources::{
    config::SourceFile,
    ingest::{RunOptions, SourceRun, run_source},
    load::load_source,
};
use tributary_testkit::{TestDb, table_fingerprint as fingerprint, temp_lake};

use tributary_sources::olist::TABLES;

async fn assert_equal(source: &Client, warehouse: &Client, tables: &[&str]) {
    for table in tables {
        let want = fingerprint(source, &format!("public.{table}")).await;
        let got = fingerprint(warehouse, &format!("src_olist.{table}")).await;
        assert_eq!(got, want, "{table}: warehouse differs from the source");
    }
}

fn rows(run: &SourceRun, table: &str) -> (u64, u64) {
    let t = run
        .tables
        .iter()
        .find(|t| t.table == table)
        .unwrap_or_else(|| panic!("{table} not in the run: {run:?}"));
    (t.rows, t.deletes)
}

fn file() -> SourceFile {
    common::example("olist")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn olist_by_configuration_changes_deletes_and_schema_changes_reach_the_warehouse_once() {
    let Some((_source_db, mut source)) = tributary_testkit::real_olist("olist_src").await else {
        return;
    };
    let Some(warehouse_db) = TestDb::create("olist_wh").await else {
        return;
    };
    let mut warehouse = warehouse_db.connect().await;
    let (_lake_dir, url) = temp_lake();
    let raw = Lake::from_url(&url).unwrap();
    let file = file();
    let options = RunOptions::default();
    let check = RunOptions {
        check_deletes: true,
        ..RunOptions::default()
    };

    // 1. The first run reads every table whole.
    let first = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    assert!(first.stopped.is_empty(), "{:?}", first.stopped);
    assert_eq!(rows(&first, "order_payments"), (103_886, 0));
    assert_eq!(rows(&first, "products"), (32_951, 0));
    assert_eq!(rows(&first, "sellers"), (3_095, 0));
    assert_eq!(rows(&first, "product_category_name_translation"), (71, 0));
    let loaded = load_source(&mut warehouse, &raw, "olist").await.unwrap();
    assert_eq!(loaded.manifests, [1]);
    assert_equal(&source, &warehouse, &TABLES).await;
    // The backslash inside a value survived every hop.
    let city: i64 = warehouse
        .query_one(
            "SELECT count(*) FROM src_olist.sellers WHERE seller_city = 'rio de janeiro \\rio de janeiro'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(city, 1);

    assert_eq!(rows(&first, "orders"), (99_440, 0));

    // 2. Nothing changed: nothing is read again.
    let idle = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    assert!(
        idle.tables.iter().all(|t| t.rows == 0 && t.deletes == 0),
        "{idle:?}"
    );

    // A generated month: new orders, deliveries, purged cancellations.
    tributary_sources::olist::apply_month(&source, 1)
        .await
        .unwrap();
    let month = run_source(&mut source, &raw, &file, &check).await.unwrap();
    let (orders_read, orders_deleted) = rows(&month, "orders");
    assert!(orders_read >= 3_000 && orders_deleted > 0, "{month:?}");
    let loaded = load_source(&mut warehouse, &raw, "olist").await.unwrap();
    assert_eq!(loaded.manifests, [2, 3]);
    assert_equal(&source, &warehouse, &TABLES).await;

    // 3. A month of business: new payments, changed ones, a re-categorised
    //    product, deleted payments and a deleted seller; and a payment added
    //    then deleted between two runs.
    let new_ids = "SELECT md5('new' || g) FROM generate_series(1, 500) g";
    let inserted = source
        .execute(
            "INSERT INTO order_payments \
               SELECT md5('new' || g), 1, 'credit_card', 1 + g % 10, (g * 7.31)::numeric(10,2) \
               FROM generate_series(1, 500) g",
            &[],
        )
        .await
        .unwrap();
    let updated = source
        .execute(
            &format!(
                "UPDATE order_payments SET payment_value = payment_value + 1 \
                 WHERE order_id IN (SELECT order_id FROM order_payments \
                   WHERE order_id NOT IN ({new_ids}) ORDER BY order_id LIMIT 40)"
            ),
            &[],
        )
        .await
        .unwrap();
    let deleted_payments = source
        .execute(
            &format!(
                "DELETE FROM order_payments WHERE order_id IN (SELECT order_id FROM order_payments \
                   WHERE order_id NOT IN ({new_ids}) ORDER BY order_id DESC LIMIT 25)"
            ),
            &[],
        )
        .await
        .unwrap();
    source
        .batch_execute(
            "UPDATE products SET product_category_name = 'pc_gamer' \
               WHERE product_id = '09ff539a621711667c43eba6a3bd8466'; \
             DELETE FROM sellers WHERE seller_id = (SELECT min(seller_id) FROM sellers);",
        )
        .await
        .unwrap();
    assert!(inserted == 500 && updated >= 40 && deleted_payments >= 25);
    let second = run_source(&mut source, &raw, &file, &check).await.unwrap();
    let (payment_rows, payment_deletes) = rows(&second, "order_payments");
    assert_eq!(payment_rows, inserted + updated, "each change once");
    assert_eq!(
        payment_deletes, deleted_payments,
        "one tombstone per deleted row"
    );
    assert_eq!(rows(&second, "products"), (1, 0));
    assert_eq!(rows(&second, "sellers"), (0, 1));
    assert_eq!(rows(&second, "product_category_name_translation"), (0, 0));

    // An insert that is deleted again before the next delete check still
    // ends up deleted.
    source
        .batch_execute(
            "INSERT INTO sellers VALUES ('ffffffffffffffffffffffffffffffff', '01001', 'sao paulo', 'SP')",
        )
        .await
        .unwrap();
    let third = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    assert_eq!(rows(&third, "sellers"), (1, 0));
    source
        .batch_execute("DELETE FROM sellers WHERE seller_id = 'ffffffffffffffffffffffffffffffff'")
        .await
        .unwrap();
    let fourth = run_source(&mut source, &raw, &file, &check).await.unwrap();
    assert_eq!(rows(&fourth, "sellers"), (0, 1));
    let loaded = load_source(&mut warehouse, &raw, "olist").await.unwrap();
    assert_eq!(loaded.manifests, [4, 5, 6]);
    assert_equal(&source, &warehouse, &TABLES).await;
    // The history keeps the deletes, keys only, with the manifest of each.
    let seller_deletes: Vec<i64> = warehouse
        .query(
            "SELECT _tributary_seq FROM src_olist.sellers_history \
             WHERE _tributary_op = 'delete' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seller_deletes, [4, 6], "the two deleted sellers");
    let payment_deletes: i64 = warehouse
        .query_one(
            "SELECT count(*) FROM src_olist.order_payments_history WHERE _tributary_op = 'delete' AND _tributary_seq = 4",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(payment_deletes as u64, deleted_payments);
    // Loading again changes nothing.
    assert!(
        load_source(&mut warehouse, &raw, "olist")
            .await
            .unwrap()
            .manifests
            .is_empty()
    );

    // 4. Schema changes on the live source: a new column flows through; a
    //    dropped one stops its table only, until accepted.
    source
        .batch_execute(
            "ALTER TABLE sellers ADD COLUMN seller_rating integer; \
             UPDATE sellers SET seller_rating = 5 WHERE seller_state = 'AC'; \
             ALTER TABLE products DROP COLUMN product_photos_qty; \
             UPDATE order_payments SET payment_installments = 2 \
               WHERE order_id = (SELECT max(order_id) FROM order_payments);",
        )
        .await
        .unwrap();
    let fifth = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    let added = fifth.tables.iter().find(|t| t.table == "sellers").unwrap();
    assert_eq!(added.added_columns, ["seller_rating"]);
    assert!(added.rows > 0);
    assert_eq!(fifth.stopped.len(), 1, "{:?}", fifth.stopped);
    let stop = &fifth.stopped[0];
    assert_eq!(stop.table, "products");
    assert!(
        stop.reason.contains("product_photos_qty")
            && stop.reason.contains("--accept-schema products"),
        "{}",
        stop.reason
    );
    assert!(
        rows(&fifth, "order_payments").0 >= 1,
        "the other tables go on"
    );
    load_source(&mut warehouse, &raw, "olist").await.unwrap();
    assert_equal(
        &source,
        &warehouse,
        &[
            "order_payments",
            "sellers",
            "product_category_name_translation",
        ],
    )
    .await;
    let accepted = run_source(
        &mut source,
        &raw,
        &file,
        &RunOptions {
            accept_schema: vec!["products".to_string()],
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(accepted.stopped.is_empty());
    load_source(&mut warehouse, &raw, "olist").await.unwrap();
    // The warehouse keeps the dropped column (NULL from now on); the
    // source's columns match the source.
    let kept: i64 = warehouse
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = 'src_olist' AND table_name = 'products' \
               AND column_name = 'product_photos_qty'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);
    let want = fingerprint(&source, "public.sellers").await;
    let got = fingerprint(&warehouse, "src_olist.sellers").await;
    assert_eq!(got, want, "sellers with its new column");
}
