//! Delete checks around whole reads: a check that reads the table whole
//! writes no key-set file (the read's own files hold every key and are the
//! next check's key set), yet every delete is found, whether the lake knew
//! keys before the whole read (a re-read) or not (the first run).

use std::path::Path;

use arrow_array::{Array, Int32Array, RecordBatch, StringArray};
use tributary_lake::{Lake, Log, Manifest, ManifestLog, RunId};
use tributary_sources::{
    config::SourceFile,
    ingest::{RunOptions, SourceRun, SourceState, run_source, source_lake},
};
use tributary_testkit::{TestDb, temp_lake};

fn counts(run: &SourceRun) -> (u64, u64, bool) {
    let t = run.tables.iter().find(|t| t.table == "items").unwrap();
    (t.rows, t.deletes, t.checked_deletes)
}

/// The keys of a file's rows (its key relative to the source's folder),
/// sorted.
async fn keys_in(lake: &Lake, key: &str) -> Vec<(String, i32)> {
    let (_, batches) = tributary_lake::parquet::decode(lake.get(key).await.unwrap()).unwrap();
    let mut keys = Vec::new();
    for batch in &batches {
        keys.extend(batch_keys(batch));
    }
    keys.sort();
    keys
}

fn batch_keys(batch: &RecordBatch) -> Vec<(String, i32)> {
    let orders = batch.column_by_name("order_id").unwrap();
    let orders = orders.as_any().downcast_ref::<StringArray>().unwrap();
    let items = batch.column_by_name("item").unwrap();
    let items = items.as_any().downcast_ref::<Int32Array>().unwrap();
    (0..batch.num_rows())
        .map(|i| (orders.value(i).to_string(), items.value(i)))
        .collect()
}

async fn latest(log: &ManifestLog) -> Manifest<SourceState> {
    log.latest().await.unwrap().unwrap()
}

/// The files of a manifest in one table.
fn files_of<'a>(manifest: &'a Manifest<SourceState>, table: &str) -> Vec<&'a str> {
    manifest
        .files
        .iter()
        .filter(|f| f.table == table)
        .map(|f| f.key.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_read_is_its_own_key_set_and_deletes_are_found_after_it() {
    let Some(db) = TestDb::create("key_sets").await else {
        return;
    };
    let mut client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE items (order_id text, item int, v text, PRIMARY KEY (order_id, item)); \
             INSERT INTO items VALUES ('a', 1, 'x'), ('a', 2, 'y'), ('b', 1, 'z');",
        )
        .await
        .unwrap();
    let file = SourceFile::parse(
        "shop",
        Path::new("sources/shop.toml"),
        "[source]\nkind = \"postgres\"\nurl_env = \"SHOP_URL\"\n",
    )
    .unwrap();
    let (_dir, url) = temp_lake();
    let raw = Lake::from_url(&url).unwrap();
    let lake = source_lake(&raw, "shop");
    let log = ManifestLog::new(lake.clone(), Log::Source);
    let check = RunOptions {
        check_deletes: true,
        ..RunOptions::default()
    };

    // 1. The first run reads the table whole and checks: nothing can be
    //    missing, and no key-set file is written beside the data.
    let first = run_source(&mut client, &raw, &file, &check).await.unwrap();
    assert_eq!(counts(&first), (3, 0, true));
    let manifest = latest(&log).await;
    assert!(files_of(&manifest, "items/_keys").is_empty());
    assert!(files_of(&manifest, "items/_deletes").is_empty());
    let state = &manifest.state.tables["items"];
    assert_eq!(state.keys_file, None);
    assert_eq!(state.keys_seq, 0, "manifest 1's files are the key set");
    assert!(state.keys_checked_at.is_some());

    // 2. A row deleted, one added: the first run's data file is what the
    //    lake knows, so the delete is found; this check reads only the keys
    //    and writes them as the new key set.
    client
        .batch_execute("DELETE FROM items WHERE (order_id, item) = ('a', 2); INSERT INTO items VALUES ('c', 1, 'w');")
        .await
        .unwrap();
    let second = run_source(&mut client, &raw, &file, &check).await.unwrap();
    assert_eq!(counts(&second), (1, 1, true));
    let manifest = latest(&log).await;
    let tombstones = files_of(&manifest, "items/_deletes");
    assert_eq!(tombstones.len(), 1);
    assert_eq!(keys_in(&lake, tombstones[0]).await, [("a".to_string(), 2)]);
    let key_set = files_of(&manifest, "items/_keys");
    assert_eq!(key_set.len(), 1);
    assert_eq!(
        keys_in(&lake, key_set[0]).await,
        [
            ("a".to_string(), 1),
            ("b".to_string(), 1),
            ("c".to_string(), 1)
        ]
    );
    let state = &manifest.state.tables["items"];
    assert_eq!(state.keys_file.as_deref(), Some(key_set[0]));
    assert_eq!(state.keys_seq, 2);

    // 3. The source's transaction ids went back (a restored database, as
    //    the state now says): the next run reads the table whole again,
    //    with known keys to compare, and a row deleted meanwhile is found.
    let mut restored = manifest.state.clone();
    restored.tables.get_mut("items").unwrap().snapshot = Some("4000000000:4000000000:".into());
    log.commit(
        manifest.seq,
        &RunId::now(),
        manifest.started_at,
        Vec::new(),
        restored,
    )
    .await
    .unwrap();
    client
        .batch_execute("DELETE FROM items WHERE order_id = 'b'")
        .await
        .unwrap();
    let third = run_source(&mut client, &raw, &file, &check).await.unwrap();
    assert_eq!(counts(&third), (2, 1, true), "read whole: a1 and c1");
    let manifest = latest(&log).await;
    assert!(files_of(&manifest, "items/_keys").is_empty());
    let tombstones = files_of(&manifest, "items/_deletes");
    assert_eq!(keys_in(&lake, tombstones[0]).await, [("b".to_string(), 1)]);
    let state = &manifest.state.tables["items"];
    assert_eq!(state.keys_file, None);
    assert_eq!(state.keys_seq, manifest.seq - 1);

    // 4. After that whole read, its files are the key set: a delete is
    //    found against them, once.
    client
        .batch_execute("DELETE FROM items WHERE order_id = 'c'")
        .await
        .unwrap();
    let fourth = run_source(&mut client, &raw, &file, &check).await.unwrap();
    assert_eq!(counts(&fourth), (0, 1, true));
    let manifest = latest(&log).await;
    let tombstones = files_of(&manifest, "items/_deletes");
    assert_eq!(keys_in(&lake, tombstones[0]).await, [("c".to_string(), 1)]);
    let fifth = run_source(&mut client, &raw, &file, &check).await.unwrap();
    assert_eq!(counts(&fifth), (0, 0, true), "nothing deleted twice");
}
