//! `tributary sources`: a folder of source files, read into the raw lake
//! and the warehouse schema `src_<name>`, by the same entry functions the
//! Lambda functions call.

mod support;

use support::{Installation, succeeds, tributary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_file_reads_a_database_into_its_warehouse_schema_once() {
    let Some(install) = Installation::new("cli_sources").await else {
        return;
    };
    let source = install.source.connect().await;
    source
        .batch_execute(
            "CREATE TABLE customer (id int PRIMARY KEY, name text); \
             INSERT INTO customer VALUES (1, 'Ann'), (2, 'Bob');",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shop.toml"),
        "[source]\nkind = \"postgres\"\nurl_env = \"SHOP_DATABASE_URL\"\n",
    )
    .unwrap();
    let folder = dir.path().to_str().unwrap();
    let mut env = install.env().to_vec();
    env.push(("SHOP_DATABASE_URL", install.source.url.as_str()));

    let first = succeeds(&["sources", "--dir", folder], &env);
    assert!(
        first.contains("source shop: run") && first.contains("committed manifest 1"),
        "{first}"
    );
    assert!(
        first.contains("warehouse schema src_shop: 1 manifest(s) applied, 2 rows written"),
        "{first}"
    );
    let names: Vec<String> = install
        .warehouse
        .connect()
        .await
        .query("SELECT name FROM src_shop.customer ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["Ann", "Bob"]);

    // The raw catalog declares the table as its manifest recorded it, over
    // the folders the extract wrote; pyarrow reads those columns there.
    let raw_url = install.env()[2].1.to_string();
    let raw = tributary_lake::Lake::from_url(&raw_url).unwrap();
    let specs = tributary_pipeline::catalog::source_raw_specs(&raw)
        .await
        .unwrap();
    assert_eq!(specs.len(), 1, "{specs:?}");
    let spec = &specs[0];
    assert_eq!(spec.name, "raw_src_shop_customer");
    assert_eq!(spec.location, format!("{raw_url}/sources/shop/customer"));
    let declared = [("id", "int"), ("name", "string")].map(|(n, t)| (n.to_string(), t.to_string()));
    assert_eq!(spec.columns, declared);
    let root = raw_url.trim_start_matches("file://");
    let files: Vec<std::path::PathBuf> = raw
        .list("sources/shop/customer")
        .await
        .unwrap()
        .iter()
        .filter(|key| key.starts_with("sources/shop/customer/date="))
        .map(|key| std::path::Path::new(root).join(key))
        .collect();
    assert!(!files.is_empty());
    let read = tributary_testkit::read_parquet_independently(&files);
    assert_eq!(read.rows.len(), 2);
    assert_eq!(read.schema["id"], "int32");
    assert_eq!(read.schema["name"], "string");

    // Its variable unset: the run fails naming it.
    let missing = tributary(&["sources", "--dir", folder], &install.env());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && said.contains("SHOP_DATABASE_URL"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_table_is_an_iceberg_table_of_every_version_by_the_month_of_its_business_date() {
    let Some(install) = Installation::new("cli_sources_lakehouse").await else {
        return;
    };
    let source = install.source.connect().await;
    source
        .batch_execute(
            "CREATE TABLE payment (id int PRIMARY KEY, paid_on date, amount numeric(10,2), \
               at time, tags text[]); \
             INSERT INTO payment VALUES \
               (1, '2024-10-30', 10.50, '08:00', '{a,b}'), \
               (2, '2024-11-02', 20.00, NULL, NULL), \
               (3, '2024-11-29', 30.25, '23:59:59', '{}'), \
               (4, NULL, 40.00, NULL, NULL); \
             CREATE TABLE note (id int PRIMARY KEY, body text); \
             INSERT INTO note VALUES (1, 'hello');",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shop.toml"),
        "[source]\nkind = \"postgres\"\nurl_env = \"SHOP_DATABASE_URL\"\n\
         trust_statistics = false\n[tables.payment]\npartition = \"paid_on\"\n",
    )
    .unwrap();
    // Every table is read every run (trust_statistics = false): a run right
    // after a change must not wait for the statistics to show it.
    let folder = dir.path().to_str().unwrap();
    let mut env = install.env().to_vec();
    env.push(("SHOP_DATABASE_URL", install.source.url.as_str()));
    let first = succeeds(&["sources", "--dir", folder, "--no-load"], &env);
    assert!(
        first.contains("lakehouse: 2 Iceberg table(s) published from 1 manifest(s) in ")
            && first.contains("s: src_shop_note, src_shop_payment"),
        "{first}"
    );

    // An update, a delete and a new column with a row that has it.
    source
        .batch_execute(
            "UPDATE payment SET amount = 11.00 WHERE id = 1; DELETE FROM payment WHERE id = 3; \
             ALTER TABLE payment ADD COLUMN method text; \
             INSERT INTO payment VALUES (5, '2024-12-01', 50.00, NULL, NULL, 'card');",
        )
        .await
        .unwrap();
    let second = succeeds(
        &["sources", "--dir", folder, "--no-load", "--check-deletes"],
        &env,
    );
    assert!(
        second.contains("lakehouse: 1 Iceberg table(s) published from 1 manifest(s) in ")
            && second.contains("s: src_shop_payment"),
        "{second}"
    );
    let again = succeeds(&["sources", "--dir", folder, "--no-load"], &env);
    assert!(
        !again.contains("lakehouse:"),
        "nothing new to publish: {again}"
    );

    let processed = install.env()[3].1.trim_start_matches("file://").to_string();
    let table_dir = std::path::Path::new(&processed).join("sources/shop/payment");
    let lake = tributary_lake::Lake::from_url(install.env()[3].1).unwrap();
    let catalog = tributary_iceberg::Catalog::new(lake);
    let table = catalog
        .load("sources/shop/payment")
        .await
        .unwrap()
        .expect("the table exists");
    let spec = table.metadata.default_partition_spec();
    assert_eq!(spec.fields()[0].name, "paid_on_month");
    let mut months: Vec<String> = catalog
        .data_files(&table)
        .await
        .unwrap()
        .iter()
        .map(|f| format!("{:?}", f.partition().fields()))
        .collect();
    months.sort();
    months.dedup();
    assert_eq!(
        months.len(),
        4,
        "October, November, December and no date (row 4, the delete): {months:?}"
    );
    let Some(rows) = tributary_testkit::iceberg_rows(
        &table_dir,
        "id,paid_on,amount,at,tags,method,_tributary_seq,_tributary_op",
    ) else {
        return;
    };
    let expected = [
        r#"{"_tributary_op": "delete", "_tributary_seq": 2, "amount": null, "at": null, "id": 3, "method": null, "paid_on": null, "tags": null}"#,
        r#"{"_tributary_op": "upsert", "_tributary_seq": 1, "amount": "10.50", "at": 28800000000, "id": 1, "method": null, "paid_on": "2024-10-30", "tags": "[a, b]"}"#,
        r#"{"_tributary_op": "upsert", "_tributary_seq": 1, "amount": "20.00", "at": null, "id": 2, "method": null, "paid_on": "2024-11-02", "tags": null}"#,
        r#"{"_tributary_op": "upsert", "_tributary_seq": 1, "amount": "30.25", "at": 86399000000, "id": 3, "method": null, "paid_on": "2024-11-29", "tags": "[]"}"#,
        r#"{"_tributary_op": "upsert", "_tributary_seq": 1, "amount": "40.00", "at": null, "id": 4, "method": null, "paid_on": null, "tags": null}"#,
        r#"{"_tributary_op": "upsert", "_tributary_seq": 2, "amount": "11.00", "at": 28800000000, "id": 1, "method": null, "paid_on": "2024-10-30", "tags": "[a, b]"}"#,
        r#"{"_tributary_op": "upsert", "_tributary_seq": 2, "amount": "50.00", "at": null, "id": 5, "method": "card", "paid_on": "2024-12-01", "tags": null}"#,
    ];
    assert_eq!(rows, expected);

    // A partition column that is not a date stops that table only.
    std::fs::write(
        dir.path().join("shop.toml"),
        "[source]\nkind = \"postgres\"\nurl_env = \"SHOP_DATABASE_URL\"\n\
         trust_statistics = false\n[tables.payment]\npartition = \"paid_on\"\n[tables.note]\npartition = \"body\"\n",
    )
    .unwrap();
    source
        .batch_execute("INSERT INTO payment VALUES (6, '2024-12-02', 60.00, NULL, NULL, 'cash')")
        .await
        .unwrap();
    let stopped = tributary(&["sources", "--dir", folder, "--no-load"], &env);
    let said = String::from_utf8_lossy(&stopped.stdout);
    assert!(!stopped.status.success());
    assert!(
        said.contains("note")
            && said.contains("partition column body")
            && said.contains("not a date or timestamp"),
        "{said}"
    );
    assert!(
        said.contains("payment                                   1")
            && said.contains("s: src_shop_payment"),
        "the other table went on, into the lakehouse too: {said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_drops_repeated_keys_read_in_the_lakehouse_as_in_the_warehouse() {
    let Some(install) = Installation::new("cli_sources_drops").await else {
        return;
    };
    let landing = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(landing.path().join("orders")).unwrap();
    // One file, one run: A changed twice, B inserted then deleted, C kept.
    std::fs::write(
        landing.path().join("orders/1.csv"),
        "order_id,amount,op,placed_on\nA,1.00,I,2024-11-01\nB,5.00,I,2024-10-02\n\
         A,2.00,U,2024-11-01\nC,7.00,I,2024-12-24\nB,,D,\nA,3.00,U,2024-11-01\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("partner.toml"),
        format!(
            "[source]\nkind = \"files\"\nlanding_url = \"file://{}\"\n\
             [tables.orders]\npattern = \"orders/*.csv\"\nformat = \"csv\"\n\
             primary_key = [\"order_id\"]\npartition = \"placed_on\"\n\
             columns = [\"order_id text\", \"amount numeric(10,2)\", \"op text\", \"placed_on date\"]\n\
             deletes = {{ column = \"op\", values = [\"D\"] }}\n",
            landing.path().display()
        ),
    )
    .unwrap();
    let folder = dir.path().to_str().unwrap();
    let run = succeeds(&["sources", "--dir", folder], &install.env());
    assert!(run.contains("s: src_partner_orders"), "{run}");
    let warehouse: Vec<String> = install
        .warehouse
        .connect()
        .await
        .query(
            "SELECT order_id || ' ' || amount::text FROM src_partner.orders ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(warehouse, ["A 3.00", "C 7.00"]);
    let processed = install.env()[3].1.trim_start_matches("file://").to_string();
    let Some(current) = tributary_testkit::iceberg_query(
        &std::path::Path::new(&processed).join("sources/partner"),
        "select order_id || ' ' || cast(amount as varchar) as row from \
         (select *, row_number() over (partition by order_id \
            order by _tributary_seq desc, _tributary_row desc) as newest from orders) \
         where newest = 1 and _tributary_op = 'upsert' order by 1",
    ) else {
        return;
    };
    let lake: Vec<&str> = current.iter().map(|r| r["row"].as_str().unwrap()).collect();
    assert_eq!(
        lake, warehouse,
        "the newest version per key is the warehouse's row"
    );
}
