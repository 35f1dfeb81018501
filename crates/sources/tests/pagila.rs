//! Pagila (../shared/pagila) as a source declared by configuration: enums,
//! a domain, arrays, tsvector (read as text by an override), bytea,
//! numeric, timestamptz and a partitioned table. A first load, then a month
//! of rentals and payments from its own script; after each run every
//! table of the warehouse equals the source, and nothing is read twice.

mod common;

use tokio_postgres::Client;
use tributary_lake::Lake;
use tributary_sources::{
    ingest::{RunOptions, run_source},
    load::load_source,
};
use tributary_testkit::{TestDb, psql_file, shared, table_fingerprint as fingerprint, temp_lake};

async fn assert_equal(source: &Client, warehouse: &Client, tables: &[String]) {
    for table in tables {
        let want = fingerprint(source, &format!("public.{table}")).await;
        let got = fingerprint(warehouse, &format!("src_pagila.{table}")).await;
        assert_eq!(got, want, "{table}: warehouse differs from the source");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagila_with_every_kind_of_column_and_its_monthly_changes_arrives_exactly() {
    let Some(dir) = shared("pagila") else {
        return;
    };
    let Some(source_db) = TestDb::create("pagila_src").await else {
        return;
    };
    let Some(warehouse_db) = TestDb::create("pagila_wh").await else {
        return;
    };
    let url = &source_db.url;
    psql_file(url, &dir.join("pagila-schema.sql"), &[]);
    psql_file(url, &dir.join("pagila-data.sql.gz"), &[]);
    let mut source = source_db.connect().await;
    let mut warehouse = warehouse_db.connect().await;
    let (_lake_dir, lake_url) = temp_lake();
    let raw = Lake::from_url(&lake_url).unwrap();
    // The monthly script runs in psql: its statistics may publish after it
    // returns, and each run here must see its changes.
    let file = common::example("pagila");
    let options = RunOptions::default();

    let first = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    assert!(first.stopped.is_empty(), "{:?}", first.stopped);
    let tables: Vec<String> = first.tables.iter().map(|t| t.table.clone()).collect();
    // The partitions are read through their parent, not as tables of their own.
    assert!(tables.contains(&"payment".to_string()));
    assert!(
        !tables.iter().any(|t| t.starts_with("payment_p")),
        "{tables:?}"
    );
    assert_eq!(tables.len(), 15, "{tables:?}");
    load_source(&mut warehouse, &raw, "pagila").await.unwrap();
    assert_equal(&source, &warehouse, &tables).await;

    // A month of rentals and payments, by the database's own script.
    let count = |table: &'static str| {
        let source = &source;
        async move {
            source
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0) as u64
        }
    };
    let (rentals_before, payments_before) = (count("rental").await, count("payment").await);
    psql_file(
        url,
        &dir.join("add_monthly_data.sql"),
        &[("target_month", "2022-08-01")],
    );
    let new_rentals = count("rental").await - rentals_before;
    let new_payments = count("payment").await - payments_before;
    assert!(new_rentals > 0 && new_payments > 0);
    let month = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    assert!(month.stopped.is_empty(), "{:?}", month.stopped);
    let read = |table: &str| month.tables.iter().find(|t| t.table == table).unwrap().rows;
    assert_eq!(read("rental"), new_rentals, "each new rental once");
    assert_eq!(
        read("payment"),
        new_payments,
        "each new payment once, into its new partition"
    );
    load_source(&mut warehouse, &raw, "pagila").await.unwrap();
    assert_equal(&source, &warehouse, &tables).await;

    // Nothing changed since: nothing read twice.
    let idle = run_source(&mut source, &raw, &file, &options)
        .await
        .unwrap();
    assert!(idle.tables.iter().all(|t| t.rows == 0), "{idle:?}");
}
