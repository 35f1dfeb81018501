//! The processed lake's Iceberg tables read by independent readers
//! (PyIceberg, and DuckDB over the files PyIceberg plans) hold exactly the
//! rows of the warehouse: every fact version once, every dimension's current
//! row once, after changes, a failed publication and a rebuild.

use std::{collections::BTreeMap, path::Path, process::Command, sync::Arc};

use tributary_e2e::pipeline::{Stack, text_rows};
use tributary_lake::Lake;
use tributary_pipeline::{
    lakehouse,
    totesys::transform::{TransformRequest, transform},
};
use tributary_testkit::faults::{Fault, FaultyStore, Trigger};

use tributary_warehouse::tables::{WAREHOUSE_TABLES, WType, WarehouseTable};

/// Columns whose text is the same in PostgreSQL and in JSON from Python:
/// integers, text, dates and money.
fn comparable(table: &WarehouseTable) -> Vec<&'static str> {
    table
        .columns
        .iter()
        .filter(|c| {
            matches!(
                c.ty,
                WType::Int | WType::BigInt | WType::Text | WType::Date | WType::Money
            )
        })
        .map(|c| c.name)
        .collect()
}

type Rows = Vec<Vec<Option<String>>>;

/// Every table as PyIceberg and as DuckDB (over the files PyIceberg plans)
/// read it, as sorted text rows of `comparable` columns; `None` when the
/// readers cannot be installed here (a skip, unless the stack is required).
fn read_all(lake_dir: &Path) -> Option<BTreeMap<String, (Rows, Rows)>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/iceberg.sh");
    let wanted: BTreeMap<&str, Vec<&str>> = WAREHOUSE_TABLES
        .iter()
        .map(|t| (t.name, comparable(t)))
        .collect();
    let output = Command::new(script)
        .arg("dump")
        .arg(lake_dir.join("warehouse"))
        .arg(serde_json::to_string(&wanted).unwrap())
        .output()
        .expect("run scripts/iceberg.sh");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("cannot install") {
            tributary_testkit::skip(&stderr);
            return None;
        }
        panic!("scripts/iceberg.sh dump failed: {stderr}");
    }
    let all: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let text = |rows: &serde_json::Value, columns: &[&str]| -> Rows {
        let mut out: Rows = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                columns
                    .iter()
                    .map(|c| match &row[*c] {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                    .collect()
            })
            .collect();
        out.sort();
        out
    };
    Some(
        wanted
            .iter()
            .map(|(table, columns)| {
                let both = &all[*table];
                (
                    table.to_string(),
                    (
                        text(&both["pyiceberg"], columns),
                        text(&both["duckdb"], columns),
                    ),
                )
            })
            .collect(),
    )
}

/// Every table as both readers see it equals the warehouse; returns false
/// when the readers are unavailable.
async fn assert_tables_equal_the_warehouse(stack: &Stack, when: &str) -> bool {
    let Some(read) = read_all(stack.dirs.1.path()) else {
        return false;
    };
    for table in &WAREHOUSE_TABLES {
        let columns = comparable(table);
        let select: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
        let mut expected = text_rows(
            &stack.warehouse,
            &format!("SELECT {} FROM {}", select.join(", "), table.name),
        )
        .await;
        expected.sort();
        let (pyiceberg, duckdb) = &read[table.name];
        assert_eq!(
            pyiceberg.len(),
            expected.len(),
            "{when}: {} rows in PyIceberg vs the warehouse",
            table.name
        );
        assert!(
            *pyiceberg == expected,
            "{when}: {} differs from the warehouse",
            table.name
        );
        assert!(
            duckdb == pyiceberg,
            "{when}: DuckDB and PyIceberg disagree on {}",
            table.name
        );
    }
    true
}

async fn business(stack: &mut Stack, seed: u64) {
    tributary_totesys::simulate::simulate(
        &mut stack.source,
        &tributary_totesys::simulate::SimulateOptions {
            orders_per_minute: 2_400.0,
            duration: Some(std::time::Duration::from_millis(500)),
            seed,
            churn_every: 5,
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    stack
        .source
        .batch_execute(
            "UPDATE payment SET paid = true, last_updated = now() AT TIME ZONE 'UTC' \
             WHERE payment_id IN (SELECT payment_id FROM payment WHERE NOT paid ORDER BY payment_id LIMIT 7)",
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_hold_the_warehouse_rows_after_changes_a_failed_publication_and_a_rebuild() {
    let Some(mut stack) = Stack::generated("iceberg_tables", 40).await else {
        return;
    };
    let first = stack.cycle().await;
    let published = first.transform.published.as_ref().expect("a publication");
    assert!(
        published.commits.len() >= WAREHOUSE_TABLES.len(),
        "a first load commits every table: {:?}",
        published.commits
    );
    if !assert_tables_equal_the_warehouse(&stack, "first load").await {
        return;
    }
    // Facts are partitioned by the month of created_date: no fact file
    // spans two months, so none had to be split.
    let catalog = tributary_iceberg::Catalog::new(stack.processed.clone());
    for name in ["fact_sales_order", "fact_purchase_order", "fact_payment"] {
        let table = catalog
            .load(&format!("warehouse/{name}"))
            .await
            .unwrap()
            .unwrap();
        let files = catalog.data_files(&table).await.unwrap();
        assert!(
            files
                .iter()
                .all(|f| !f.file_path().contains("/data/split-")),
            "{name}: the transform writes one month per file"
        );
        let months: std::collections::BTreeSet<String> = files
            .iter()
            .map(|f| format!("{:?}", f.partition()))
            .collect();
        assert!(
            months.len() >= 2,
            "{name}: 40 days span two months or more: {months:?}"
        );
    }

    // Changes: new orders, address and staff moves, payments paid.
    business(&mut stack, 3).await;
    stack.cycle().await;
    assert_tables_equal_the_warehouse(&stack, "after changes").await;

    // A publication that fails at its first table version: the transform
    // committed (the load goes on), and the next run publishes everything.
    business(&mut stack, 4).await;
    let ingest = stack.ingest().await.unwrap();
    assert!(ingest.seq > 0);
    let faulty = FaultyStore::new(
        stack.processed.store().clone(),
        Trigger {
            on_put: true,
            fragment: ".metadata.json".into(),
            nth: 1,
        },
        Fault::Fail,
    );
    let faulty_lake =
        Lake::with_store(faulty.clone() as Arc<_>, "", stack.processed.url()).unwrap();
    let failed = transform(
        &stack.raw,
        &faulty_lake,
        &TransformRequest::default(),
        &stack.alerts,
    )
    .await
    .expect("the transform commits whatever the publication does");
    assert!(failed.seq.is_some(), "the run committed");
    assert!(failed.published.is_none(), "the publication failed");
    assert!(faulty.fired() > 0);
    let stages: Vec<&str> = stack.alerts.sent().iter().map(|a| a.stage).collect();
    assert!(
        stages.contains(&lakehouse::STAGE.name),
        "the failed publication alerted: {stages:?}"
    );
    stack.load().await.unwrap();
    let caught_up = stack.transform().await.unwrap();
    let published = caught_up.published.expect("a publication");
    assert!(caught_up.seq.is_none(), "nothing new to transform");
    assert!(
        !published.commits.is_empty(),
        "the next run published what the failed one left"
    );
    assert_tables_equal_the_warehouse(&stack, "after a failed publication").await;

    // A rebuild recomputes every dimension from raw: still one current row
    // per key, and no fact version twice.
    let rebuilt = transform(
        &stack.raw,
        &stack.processed,
        &TransformRequest { rebuild: true },
        &stack.alerts,
    )
    .await
    .unwrap();
    assert!(rebuilt.published.unwrap().rewritten_files > 0);
    stack.load().await.unwrap();
    assert_tables_equal_the_warehouse(&stack, "after a rebuild").await;

    // A publication that reads every manifest again (a hint from the
    // start) finds each table's watermark and commits nothing.
    let names: Vec<&str> = WAREHOUSE_TABLES.iter().map(|t| t.name).collect();
    let hint = serde_json::json!({"seq": 0, "tables": names});
    stack
        .processed
        .put_replace(
            lakehouse::PUBLISHED_HINT,
            bytes::Bytes::from(hint.to_string()),
        )
        .await
        .unwrap();
    let again = lakehouse::publish(&stack.processed).await.unwrap();
    assert!(again.manifests.len() > 3, "{:?}", again.manifests);
    assert!(again.commits.is_empty(), "{:?}", again.commits);
    // A hint that is not valid (or names other tables) is ignored: reading
    // starts at the lowest table watermark (a table the last manifests did
    // not touch), not at the first manifest.
    stack
        .processed
        .put_replace(lakehouse::PUBLISHED_HINT, bytes::Bytes::from_static(b"0"))
        .await
        .unwrap();
    let from_watermarks = lakehouse::publish(&stack.processed).await.unwrap();
    assert!(from_watermarks.commits.is_empty(), "{from_watermarks:?}");
    assert!(
        from_watermarks.manifests.len() < again.manifests.len(),
        "{from_watermarks:?}"
    );
}
