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
