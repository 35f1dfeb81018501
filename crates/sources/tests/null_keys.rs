//! A declared key on columns the source lets be NULL: while rows hold a
//! NULL there, that table stops with the reason (the others go on); once
//! the rows are fixed it is read.

use std::path::Path;

use tributary_lake::Lake;
use tributary_sources::{
    config::SourceFile,
    ingest::{RunOptions, run_source},
};
use tributary_testkit::{TestDb, temp_lake};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_key_holding_nulls_stops_its_table_only() {
    let Some(db) = TestDb::create("null_keys").await else {
        return;
    };
    let mut client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE fine (id int PRIMARY KEY, v text); \
             INSERT INTO fine VALUES (1, 'a'), (2, 'b'); \
             CREATE TABLE loose (code text, region text, v text); \
             INSERT INTO loose VALUES ('x', 'eu', 'one'), (NULL, 'eu', 'two'), ('y', NULL, 'three');",
        )
        .await
        .unwrap();
    let file = SourceFile::parse(
        "shop",
        Path::new("sources/shop.toml"),
        "[source]\nkind = \"postgres\"\nurl_env = \"SHOP_URL\"\n\
         [tables.loose]\nprimary_key = [\"code\", \"region\"]\n",
    )
    .unwrap();
    let (_dir, url) = temp_lake();
    let raw = Lake::from_url(&url).unwrap();

    let first = run_source(&mut client, &raw, &file, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(first.stopped.len(), 1, "{:?}", first.stopped);
    let stop = &first.stopped[0];
    assert_eq!(stop.table, "loose");
    assert!(
        stop.reason.contains("2 row(s)")
            && stop.reason.contains("code, region")
            && stop.reason.contains("sources/shop.toml"),
        "{}",
        stop.reason
    );
    let fine = first.tables.iter().find(|t| t.table == "fine").unwrap();
    assert_eq!(fine.rows, 2, "the other table goes on");

    client
        .batch_execute(
            "UPDATE loose SET code = coalesce(code, 'z'), region = coalesce(region, 'us')",
        )
        .await
        .unwrap();
    let second = run_source(&mut client, &raw, &file, &RunOptions::default())
        .await
        .unwrap();
    assert!(second.stopped.is_empty(), "{:?}", second.stopped);
    let loose = second.tables.iter().find(|t| t.table == "loose").unwrap();
    assert_eq!(loose.rows, 3);
}
