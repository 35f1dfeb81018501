//! The Olist star schema built with dbt (dbt/models/olist) on the warehouse
//! schema Tributary loads: on the real Olist tables plus generated
//! companions, then again after a month of business; and the generator
//! that makes all nine tables up for demos.

use std::path::Path;
use std::process::Command;

use tokio_postgres::Client;
use tributary_lake::Lake;
use tributary_sources::{
    config::SourceFile,
    dbt::latest_sources_yaml,
    ingest::{RunOptions, run_source},
    load::load_source,
};
use tributary_testkit::{TestDb, skip, table_fingerprint, temp_lake};

mod common;

use common::repo;

/// A copy of the dbt project of its own (dbt writes target/ and logs/ into
/// the project), with the sources file Tributary writes.
fn project_copy(sources_yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = repo().join("dbt");
    std::fs::copy(
        from.join("dbt_project.yml"),
        dir.path().join("dbt_project.yml"),
    )
    .unwrap();
    for folder in ["models/olist", "macros"] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        for entry in std::fs::read_dir(from.join(folder)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name != "_sources.yml" {
                std::fs::copy(entry.path(), dir.path().join(folder).join(name)).unwrap();
            }
        }
    }
    std::fs::write(dir.path().join("models/olist/_sources.yml"), sources_yaml).unwrap();
    dir
}

/// `scripts/dbt.sh build` on `project` against `warehouse_url`: whether it
/// ran (false after a skip message when dbt cannot be installed), panicking
/// with dbt's output when a model or test fails.
fn dbt_build(project: &Path, warehouse_url: &str) -> bool {
    let install = Command::new(repo().join("scripts/dbt.sh"))
        .arg("--install")
        .output()
        .expect("scripts/dbt.sh runs");
    if !install.status.success() {
        skip(&format!(
            "dbt could not be installed: {}",
            String::from_utf8_lossy(&install.stderr)
        ));
        return false;
    }
    let out = Command::new(repo().join("scripts/dbt.sh"))
        .arg("build")
        .env("WAREHOUSE_DATABASE_URL", warehouse_url)
        .env("DBT_PROJECT_DIR", project)
        .output()
        .expect("scripts/dbt.sh runs");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && log.contains("ERROR=0"),
        "dbt build failed:\n{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

async fn one(client: &Client, sql: &str) -> String {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// The star schema says what the source says: every item once with its
/// order's status, amounts to the cent, products with their categories.
async fn assert_star_matches(source: &Client, warehouse: &Client) {
    let items =
        "SELECT count(*)::text || ' ' || sum(price)::text || ' ' || sum(freight_value)::text";
    let want = one(source, &format!("{items} FROM order_items")).await;
    let got = one(warehouse, &format!("{items} FROM olist.fact_order_item")).await;
    assert_eq!(
        got, want,
        "fact_order_item against the source's order_items"
    );
    let by_status = "SELECT string_agg(s || '=' || n, ',' ORDER BY s) FROM (SELECT order_status AS s, count(*) AS n FROM";
    let want = one(
        source,
        &format!("{by_status} order_items JOIN orders USING (order_id) GROUP BY 1) x"),
    )
    .await;
    let got = one(
        warehouse,
        &format!("{by_status} olist.fact_order_item GROUP BY 1) x"),
    )
    .await;
    assert_eq!(got, want, "items per order status");
    for (model, table) in [
        ("dim_product", "products"),
        ("dim_seller", "sellers"),
        ("dim_customer", "customers"),
    ] {
        let want = one(source, &format!("SELECT count(*)::text FROM {table}")).await;
        let got = one(
            warehouse,
            &format!("SELECT count(*)::text FROM olist.{model}"),
        )
        .await;
        assert_eq!(got, want, "{model}");
    }
}

fn olist_file() -> SourceFile {
    common::example("olist")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbt_builds_the_olist_star_on_the_real_tables_and_again_after_a_month() {
    let Some((_source_db, mut source)) = tributary_testkit::real_olist("olist_dbt_src").await
    else {
        return;
    };
    let Some(warehouse_db) = TestDb::create("olist_dbt_wh").await else {
        return;
    };
    let mut warehouse = warehouse_db.connect().await;
    let (_lake_dir, url) = temp_lake();
    let raw = Lake::from_url(&url).unwrap();
    let file = olist_file();

    run_source(&mut source, &raw, &file, &RunOptions::default())
        .await
        .unwrap();
    load_source(&mut warehouse, &raw, "olist").await.unwrap();
    let yaml = latest_sources_yaml(&raw, "olist").await.unwrap();
    assert!(yaml.contains("name: \"product_name_lenght\""), "{yaml}");
    let project = project_copy(&yaml);
    if !dbt_build(project.path(), &warehouse_db.url) {
        return;
    }
    assert_star_matches(&source, &warehouse).await;
    // The real products whose category has no translation keep its name.
    let gamer = one(
        &warehouse,
        "SELECT count(*)::text FROM olist.dim_product WHERE category_english = 'pc_gamer'",
    )
    .await;
    let real = one(
        &source,
        "SELECT count(*)::text FROM products WHERE product_category_name = 'pc_gamer'",
    )
    .await;
    assert_eq!(gamer, real);
    assert_ne!(gamer, "0");

    // A month of business: new orders, deliveries, purged cancellations.
    tributary_sources::olist::apply_month(&source, 1)
        .await
        .unwrap();
    let check = RunOptions {
        check_deletes: true,
        ..RunOptions::default()
    };
    run_source(&mut source, &raw, &file, &check).await.unwrap();
    load_source(&mut warehouse, &raw, "olist").await.unwrap();
    assert!(dbt_build(project.path(), &warehouse_db.url));
    assert_star_matches(&source, &warehouse).await;
    // The second build was incremental: orders the month did not touch
    // keep the rows (and manifest mark) of the first build; the orders it
    // touched, and only those, were rebuilt.
    let marks = one(
        &warehouse,
        "SELECT string_agg(DISTINCT _loaded_seq::text, ',' ORDER BY _loaded_seq::text)          FROM olist.fact_order_item",
    )
    .await;
    assert_eq!(marks, "1,2", "untouched orders were not rebuilt");
    let rebuilt_untouched = one(
        &warehouse,
        "SELECT count(*)::text FROM olist.fact_order_item f WHERE f._loaded_seq = 2 \
         AND NOT EXISTS (SELECT 1 FROM src_olist.order_items_history h \
                         WHERE h.order_id = f.order_id AND h._tributary_seq = 2) \
         AND NOT EXISTS (SELECT 1 FROM src_olist.orders_history h \
                         WHERE h.order_id = f.order_id AND h._tributary_seq = 2) \
         AND NOT EXISTS (SELECT 1 FROM src_olist.order_payments_history h \
                         WHERE h.order_id = f.order_id AND h._tributary_seq = 2)",
    )
    .await;
    assert_eq!(rebuilt_untouched, "0");
    let canceled = one(
        &warehouse,
        "SELECT count(*)::text FROM olist.fact_order_item WHERE order_status = 'canceled'",
    )
    .await;
    assert_eq!(canceled, "0", "purged orders leave the star schema");
}

#[tokio::test]
async fn the_generator_makes_all_nine_tables_consistent_and_the_same_every_time() {
    let Some(first) = TestDb::create("olist_gen_a").await else {
        return;
    };
    let Some(second) = TestDb::create("olist_gen_b").await else {
        return;
    };
    let a = first.connect().await;
    let b = second.connect().await;
    tributary_sources::olist::generate(&a, 3000).await.unwrap();
    tributary_sources::olist::generate(&b, 3000).await.unwrap();
    let tables = tributary_sources::olist::TABLES;
    for table in tables {
        let fa = table_fingerprint(&a, table).await;
        assert!(fa.0 > 0, "{table} is empty");
        assert_eq!(fa, table_fingerprint(&b, table).await, "{table} differs");
    }
    let orders = one(&a, "SELECT count(*)::text FROM orders").await;
    assert_eq!(orders, "3000");
    // The references hold where Olist's do, and the real data's awkward
    // parts are there: untranslated and missing categories, a backslash.
    for (what, sql) in [
        (
            "items without their order",
            "SELECT count(*) FROM order_items LEFT JOIN orders o USING (order_id) WHERE o.order_id IS NULL",
        ),
        (
            "items without their product",
            "SELECT count(*) FROM order_items i LEFT JOIN products p USING (product_id) WHERE p.product_id IS NULL",
        ),
        (
            "items without their seller",
            "SELECT count(*) FROM order_items i LEFT JOIN sellers s USING (seller_id) WHERE s.seller_id IS NULL",
        ),
        (
            "orders without their customer",
            "SELECT count(*) FROM orders LEFT JOIN customers c USING (customer_id) WHERE c.customer_id IS NULL",
        ),
        (
            "payments without their order",
            "SELECT count(*) FROM order_payments LEFT JOIN orders o USING (order_id) WHERE o.order_id IS NULL",
        ),
    ] {
        let n: i64 = a.query_one(sql, &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "{what}");
    }
    for (what, sql) in [
        (
            "untranslated category",
            "SELECT count(*) FROM products p LEFT JOIN product_category_name_translation t USING (product_category_name) WHERE p.product_category_name IS NOT NULL AND t.product_category_name IS NULL",
        ),
        (
            "no category",
            "SELECT count(*) FROM products WHERE product_category_name IS NULL",
        ),
        (
            "backslash in a city",
            "SELECT count(*) FROM sellers WHERE strpos(seller_city, chr(92)) > 0",
        ),
        (
            "paid in parts",
            "SELECT count(*) FROM order_payments WHERE payment_sequential > 1",
        ),
    ] {
        let n: i64 = a.query_one(sql, &[]).await.unwrap().get(0);
        assert!(n > 0, "the generated data has no {what}");
    }
}

#[tokio::test]
async fn a_warehouse_schema_loaded_from_one_lake_refuses_another() {
    let Some(source_db) = TestDb::create("olist_two_lakes_src").await else {
        return;
    };
    let Some(warehouse_db) = TestDb::create("olist_two_lakes_wh").await else {
        return;
    };
    let mut source = source_db.connect().await;
    tributary_sources::olist::generate(&source, 500)
        .await
        .unwrap();
    let mut warehouse = warehouse_db.connect().await;
    let file = olist_file();
    let (_first_dir, first_url) = temp_lake();
    let first = Lake::from_url(&first_url).unwrap();
    run_source(&mut source, &first, &file, &RunOptions::default())
        .await
        .unwrap();
    load_source(&mut warehouse, &first, "olist").await.unwrap();

    let (_second_dir, second_url) = temp_lake();
    let second = Lake::from_url(&second_url).unwrap();
    run_source(&mut source, &second, &file, &RunOptions::default())
        .await
        .unwrap();
    run_source(&mut source, &second, &file, &RunOptions::default())
        .await
        .unwrap();
    let err = load_source(&mut warehouse, &second, "olist")
        .await
        .expect_err("another lake's manifests are not applied on top");
    let message = err.to_string();
    assert!(
        message.contains("another lake") && message.contains("DROP SCHEMA"),
        "{message}"
    );
    // The first lake still loads (nothing new in it), and nothing changed.
    let orders = one(&warehouse, "SELECT count(*)::text FROM src_olist.orders").await;
    assert_eq!(orders, "500");
    assert!(
        load_source(&mut warehouse, &first, "olist")
            .await
            .unwrap()
            .manifests
            .is_empty()
    );
}

#[tokio::test]
async fn tables_whose_statistics_did_not_move_are_left_unread_until_they_do() {
    let Some(source_db) = TestDb::create("olist_stats_src").await else {
        return;
    };
    let mut source = source_db.connect().await;
    tributary_sources::olist::generate(&source, 500)
        .await
        .unwrap();
    let (_dir, url) = temp_lake();
    let raw = Lake::from_url(&url).unwrap();
    let mut file = olist_file();
    file.trust_statistics = true;
    let options = RunOptions::default();
    // The generator's statistics are published when its session goes idle.
    source
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    let first = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    assert!(
        first.tables.iter().all(|t| !t.unchanged && t.rows > 0),
        "{first:?}"
    );

    let idle = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    assert!(
        idle.tables.iter().all(|t| t.unchanged && t.rows == 0),
        "nothing moved, nothing read: {idle:?}"
    );

    // A change, published: its table is read, the others are not; the
    // change comes once.
    source
        .batch_execute(
            "UPDATE sellers SET seller_city = 'curitiba' WHERE seller_id = (SELECT min(seller_id) FROM sellers); \
             SELECT pg_stat_force_next_flush();",
        )
        .await
        .unwrap();
    let changed = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    for t in &changed.tables {
        if t.table == "sellers" {
            assert!(!t.unchanged && t.rows == 1, "{t:?}");
        } else {
            assert!(t.unchanged, "{t:?}");
        }
    }
    // A reset of the table's statistics is a move too: it is read (and
    // finds nothing new).
    source
        .batch_execute(
            "SELECT pg_stat_reset_single_table_counters('sellers'::regclass); \
             SELECT pg_stat_force_next_flush();",
        )
        .await
        .unwrap();
    let reset = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    let sellers = reset.tables.iter().find(|t| t.table == "sellers").unwrap();
    assert!(!sellers.unchanged && sellers.rows == 0, "{sellers:?}");
}
