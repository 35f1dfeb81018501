//! Property tests of the manifest reader: any bytes at a manifest key give a
//! manifest or a clear `CorruptManifest` error, never a panic; committed
//! manifests read back as written. `PROPTEST_CASES=100000` for a long run.

use bytes::Bytes;
use proptest::prelude::*;
use tributary_lake::{Error, Lake, Manifest, ManifestLog, RunId, keys};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn json_like() -> impl Strategy<Value = Vec<u8>> {
    // Mostly bytes drawn from JSON's alphabet, so the parser gets deep.
    let alphabet: Vec<u8> =
        br#"{}[]":,0123456789.-+eEtrufalsn \format source seq run_id files state"#.to_vec();
    prop::collection::vec(prop::sample::select(alphabet), 0..400)
}

proptest! {
    #[test]
    fn any_bytes_are_a_manifest_or_a_clear_error(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        json_like(),
    ]) {
        runtime().block_on(async {
            let lake = Lake::from_url("memory://").unwrap();
            lake.put_once(&keys::Log::Totesys.manifest(1), Bytes::from(bytes)).await.unwrap();
            let log = ManifestLog::new(lake, tributary_lake::keys::Log::Totesys);
            match log.read::<serde_json::Value>(1).await {
                Ok(Some(manifest)) => prop_assert_eq!(manifest.seq, 1),
                Ok(None) => prop_assert!(false, "the object exists"),
                Err(Error::CorruptManifest { key, .. }) => prop_assert!(key.ends_with("00000000000000000001.json")),
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
            Ok(())
        })?;
    }

    #[test]
    fn committed_state_reads_back_unchanged(state in prop::collection::btree_map(".{0,12}", any::<i64>(), 0..8)) {
        runtime().block_on(async {
            let log = ManifestLog::new(Lake::from_url("memory://").unwrap(), tributary_lake::keys::Log::Totesys);
            let committed = log.commit(0, &RunId::now(), chrono::Utc::now(), vec![], state.clone()).await.unwrap();
            let read: Manifest<std::collections::BTreeMap<String, i64>> = log.latest().await.unwrap().unwrap();
            prop_assert_eq!(read, committed);
            Ok(())
        })?;
    }
}
