//! Transform and load on generated data: joined dimensions follow their
//! parents, dim_date grows, bad rows are quarantined, crashes and repeats
//! leave the warehouse as an uninterrupted run would, and a rebuild equals
//! the incremental runs.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;
use tributary_e2e::pipeline::{Stack, text_rows};
use tributary_lake::{Lake, Log, Manifest, ManifestLog, keys, parquet::decode};
use tributary_pipeline::{
    totesys::ingest::{IngestRequest, ingest},
    totesys::load::load,
    totesys::transform::{TransformRequest, TransformState, transform},
};
use tributary_totesys::row_fingerprint;
use tributary_warehouse::WAREHOUSE_TABLES;

async fn generated(label: &str) -> Option<Stack> {
    Stack::generated(label, 20).await
}

/// A whole warehouse table as text rows, without the warehouse's record numbers.
async fn table_rows(client: &Client, table: &str) -> Vec<Vec<Option<String>>> {
    let def = WAREHOUSE_TABLES.iter().find(|t| t.name == table).unwrap();
    let columns: Vec<String> = def
        .columns
        .iter()
        .map(|c| format!("{}::text", c.name))
        .collect();
    let mut rows = text_rows(
        client,
        &format!("SELECT {} FROM {table}", columns.join(", ")),
    )
    .await;
    rows.sort();
    rows
}

async fn warehouse_contents(client: &Client) -> BTreeMap<&'static str, Vec<Vec<Option<String>>>> {
    let mut all = BTreeMap::new();
    for table in &WAREHOUSE_TABLES {
        all.insert(table.name, table_rows(client, table.name).await);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_change_and_a_department_rename_reach_dim_counterparty_and_dim_staff() {
    let Some(mut stack) = generated("joined_dims").await else {
        return;
    };
    stack.cycle().await;
    let (address, department): (i32, i32) = {
        let row = stack
            .source
            .query_one(
                "SELECT c.legal_address_id, s.department_id FROM counterparty c, staff s ORDER BY c.counterparty_id, s.staff_id LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    stack
        .source
        .execute(
            "UPDATE address SET city = 'Nowhere-on-Sea', phone = '0000 111111', last_updated = (now() AT TIME ZONE 'UTC')::timestamp(3) WHERE address_id = $1",
            &[&address],
        )
        .await
        .unwrap();
    stack
        .source
        .execute(
            "UPDATE department SET department_name = 'Renamed Dept', last_updated = (now() AT TIME ZONE 'UTC')::timestamp(3) WHERE department_id = $1",
            &[&department],
        )
        .await
        .unwrap();
    let report = stack.cycle().await;
    let users: i64 = stack
        .source
        .query_one(
            "SELECT count(*) FROM counterparty WHERE legal_address_id = $1",
            &[&address],
        )
        .await
        .unwrap()
        .get(0);
    let members: i64 = stack
        .source
        .query_one(
            "SELECT count(*) FROM staff WHERE department_id = $1",
            &[&department],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        report.transform.rows.get("dim_counterparty").copied(),
        Some(users as u64),
        "every counterparty at the address re-emitted"
    );
    assert_eq!(
        report.transform.rows.get("dim_staff").copied(),
        Some(members as u64),
        "every member of the department re-emitted"
    );
    assert_eq!(report.transform.rows.get("dim_location").copied(), Some(1));
    let moved = stack
        .warehouse_rows("SELECT count(*)::text FROM dim_counterparty WHERE counterparty_legal_city = 'Nowhere-on-Sea' AND counterparty_legal_phone_number = '0000 111111'")
        .await;
    assert_eq!(moved[0][0].as_deref(), Some(users.to_string().as_str()));
    let renamed = stack
        .warehouse_rows(
            "SELECT count(*)::text FROM dim_staff WHERE department_name = 'Renamed Dept'",
        )
        .await;
    assert_eq!(renamed[0][0].as_deref(), Some(members.to_string().as_str()));
    let location = stack
        .warehouse
        .query_one(
            "SELECT city FROM dim_location WHERE location_id = $1",
            &[&address],
        )
        .await
        .unwrap();
    assert_eq!(location.get::<_, String>(0), "Nowhere-on-Sea");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_agreed_years_ahead_loads_and_dim_date_grows_to_cover_it() {
    let Some(mut stack) = generated("far_dates").await else {
        return;
    };
    stack.cycle().await;
    stack
        .source
        .batch_execute(
            "INSERT INTO sales_order (created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id) \
             VALUES ((now() AT TIME ZONE 'UTC')::timestamp(3), (now() AT TIME ZONE 'UTC')::timestamp(3), 1, 1, 1, 5000, 3.50, 1, '2031-07-01', '2032-02-29', 1)",
        )
        .await
        .unwrap();
    let report = stack.cycle().await;
    assert_eq!(
        report.transform.rows.get("fact_sales_order").copied(),
        Some(1)
    );
    let far = stack
        .warehouse_rows("SELECT date_id::text, day_name, month_name, quarter::text, day_of_week::text FROM dim_date WHERE date_id >= '2031-01-01' ORDER BY date_id")
        .await;
    assert_eq!(
        far,
        vec![
            vec![
                Some("2031-07-01".into()),
                Some("Tuesday".into()),
                Some("July".into()),
                Some("3".into()),
                Some("2".into())
            ],
            vec![
                Some("2032-02-29".into()),
                Some("Sunday".into()),
                Some("February".into()),
                Some("1".into()),
                Some("7".into())
            ],
        ]
    );
    let loaded = stack
        .warehouse_rows("SELECT agreed_delivery_date::text FROM fact_sales_order WHERE agreed_payment_date = '2032-02-29'")
        .await;
    assert_eq!(loaded, vec![vec![Some("2031-07-01".to_string())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sales_order_whose_delivery_date_is_not_a_date_is_quarantined_and_the_rest_load() {
    let Some(mut stack) = generated("quarantine").await else {
        return;
    };
    stack.cycle().await;
    let bad: i32 = stack
        .source
        .query_one(
            "INSERT INTO sales_order (created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id) \
             VALUES ((now() AT TIME ZONE 'UTC')::timestamp(3), (now() AT TIME ZONE 'UTC')::timestamp(3), 1, 1, 1, 5000, 3.50, 1, 'next Tuesday', '2024-01-01', 1) RETURNING sales_order_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for _ in 0..2 {
        stack
            .source
            .batch_execute(
                "INSERT INTO sales_order (created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id) \
                 VALUES ((now() AT TIME ZONE 'UTC')::timestamp(3), (now() AT TIME ZONE 'UTC')::timestamp(3), 2, 2, 2, 7000, 2.50, 2, '2024-01-02', '2024-01-03', 2)",
            )
            .await
            .unwrap();
    }
    let report = stack.cycle().await;
    assert_eq!(
        report.transform.quarantined.get("sales_order").copied(),
        Some(1)
    );
    assert_eq!(
        report.transform.rows.get("fact_sales_order").copied(),
        Some(2),
        "the good orders load"
    );
    let in_warehouse = stack
        .warehouse_rows(&format!(
            "SELECT count(*)::text FROM fact_sales_order WHERE sales_order_id = {bad}"
        ))
        .await;
    assert_eq!(in_warehouse[0][0].as_deref(), Some("0"));

    let key = keys::quarantine("totesys", "sales_order", &report.transform.run_id);
    let lines = String::from_utf8(stack.raw.get(&key).await.unwrap().to_vec()).unwrap();
    let record: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(record["key"], serde_json::json!(bad));
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("agreed_delivery_date \"next Tuesday\" is not a date")
    );
    assert_eq!(record["row"]["agreed_delivery_date"], "next Tuesday");
    let alerts = stack.alerts.sent();
    assert!(
        alerts.iter().any(|a| a.stage == "transform"
            && a.table.as_deref() == Some("sales_order")
            && a.message.contains("quarantined")),
        "{alerts:?}"
    );
    // Reconcile counts the quarantined version as accounted for, not as lost.
    stack.assert_reconciled().await;

    // A fact lost behind the pipeline's back is found, named and alerted.
    stack
        .warehouse
        .batch_execute("DELETE FROM fact_payment WHERE payment_record_id = (SELECT max(payment_record_id) FROM fact_payment)")
        .await
        .unwrap();
    let report = stack.reconcile().await;
    let lost: Vec<_> = report
        .comparisons
        .iter()
        .filter(|c| !c.is_clean())
        .collect();
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert_eq!(
        (lost[0].table, lost[0].layers, lost[0].missing),
        ("fact_payment", "processed → warehouse", 1)
    );
    assert_ne!(lost[0].checksums.0, lost[0].checksums.1);
    assert!(
        stack
            .alerts
            .sent()
            .iter()
            .any(|a| a.stage == "reconcile" && a.message.contains("fact_payment"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_before_its_manifest_ends_like_an_uninterrupted_run() {
    let Some(mut crashed) = generated("crash_a").await else {
        return;
    };
    let Some(mut clean) = Stack::new("crash_b").await else {
        return;
    };
    // Both pipelines read the same source.
    clean.source = crashed.source_db.connect().await;

    clean.cycle().await;

    // Ingest and transform write their files, then "die" before the manifest:
    // the manifest objects are removed, which is what a crash leaves.
    ingest(
        &mut crashed.source,
        &crashed.raw,
        &crashed.options,
        &IngestRequest::default(),
        &crashed.alerts,
    )
    .await
    .unwrap();
    transform(
        &crashed.raw,
        &crashed.processed,
        &TransformRequest::default(),
        &crashed.alerts,
    )
    .await
    .unwrap();
    let raw_dir = crashed.dirs.0.path().to_path_buf();
    let processed_dir = crashed.dirs.1.path().to_path_buf();
    std::fs::remove_file(raw_dir.join(Log::Totesys.manifest(1))).unwrap();
    std::fs::remove_file(processed_dir.join(Log::Transform.manifest(1))).unwrap();
    let orphans = crashed.raw.list("totesys").await.unwrap().len();
    assert!(orphans > 0, "the killed run left data files behind");

    crashed.cycle().await;
    assert_eq!(
        warehouse_contents(&crashed.warehouse).await,
        warehouse_contents(&clean.warehouse).await
    );

    // Loading the same manifest again changes nothing.
    let before = warehouse_contents(&crashed.warehouse).await;
    crashed
        .warehouse
        .batch_execute("DELETE FROM tributary.load_log")
        .await
        .unwrap();
    let again = load(&mut crashed.warehouse, &crashed.processed, &crashed.alerts)
        .await
        .unwrap();
    assert!(!again.manifests.is_empty());
    assert_eq!(
        again.rows(),
        0,
        "re-applied manifests insert or change nothing"
    );
    assert_eq!(warehouse_contents(&crashed.warehouse).await, before);
}

/// Per warehouse table in `seqs`' files: the set of row fingerprints; for
/// dimensions only the newest row per key counts.
async fn processed_rows(lake: &Lake, seqs: &[u64]) -> BTreeMap<String, BTreeSet<u64>> {
    let log = ManifestLog::new(lake.clone(), Log::Transform);
    let mut facts: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut dims: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for seq in seqs {
        let manifest: Manifest<TransformState> = log.read(*seq).await.unwrap().unwrap();
        for file in &manifest.files {
            let (_, batches) = decode(lake.get(&file.key).await.unwrap()).unwrap();
            for batch in &batches {
                for row in 0..batch.num_rows() {
                    let print = row_fingerprint(batch, row);
                    if file.table.starts_with("fact_") || file.table == "dim_date" {
                        facts.entry(file.table.clone()).or_default().insert(print);
                    } else {
                        // The dimension's own key (not the first field of
                        // the rendered object, whose fields are sorted).
                        let key_column = tributary_warehouse::WarehouseTable::by_name(&file.table)
                            .expect("a warehouse table")
                            .key;
                        let key =
                            tributary_warehouse::transform::render_row(&batch.slice(row, 1), 0)
                                .get(key_column)
                                .map(|v| v.to_string())
                                .unwrap_or_default();
                        assert_ne!(key, "", "{} row without its key", file.table);
                        dims.entry(file.table.clone())
                            .or_default()
                            .insert(key, print);
                    }
                }
            }
        }
    }
    for (table, latest) in dims {
        facts.insert(table, latest.into_values().collect());
    }
    facts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_recomputes_the_dimensions_and_repeats_no_fact_version() {
    use rand::SeedableRng;
    use tributary_totesys::simulate::{change_reference_rows, flip_due_payments, insert_order};
    let Some(mut stack) = generated("rebuild").await else {
        return;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    stack.cycle().await;
    for round in 0..3 {
        for _ in 0..5 {
            insert_order(&mut stack.source, &mut rng).await.unwrap();
        }
        change_reference_rows(&stack.source, &mut rng)
            .await
            .unwrap();
        if round == 1 {
            stack
                .source
                .batch_execute("UPDATE payment SET created_at = created_at - interval '9 days' WHERE payment_id IN (SELECT payment_id FROM payment WHERE NOT paid LIMIT 4)")
                .await
                .unwrap();
            flip_due_payments(&stack.source).await.unwrap();
        }
        stack.cycle().await;
    }
    let log = ManifestLog::new(stack.processed.clone(), Log::Transform);
    let incremental: Vec<u64> = (1..=log.latest_seq().await.unwrap()).collect();
    let rebuilt = transform(
        &stack.raw,
        &stack.processed,
        &TransformRequest { rebuild: true },
        &stack.alerts,
    )
    .await
    .unwrap();
    let rebuilt_seq = rebuilt.seq.unwrap();
    assert_eq!(
        rebuilt_seq,
        incremental.len() as u64 + 1,
        "a rebuild commits a new manifest"
    );
    // Dimensions are recomputed from raw and equal the incremental result;
    // every fact version is already in the processed lake, so none is
    // written again (nor its dates).
    let rebuilt_rows = processed_rows(&stack.processed, &[rebuilt_seq]).await;
    let incremental_rows = processed_rows(&stack.processed, &incremental).await;
    let mut facts = 0;
    for (table, rows) in &incremental_rows {
        if table.starts_with("fact_") || table == "dim_date" {
            assert!(
                rebuilt_rows.get(table).is_none_or(BTreeSet::is_empty),
                "{table} written again by the rebuild"
            );
            facts += if table == "dim_date" {
                0
            } else {
                rows.len() as u64
            };
        } else {
            assert_eq!(rebuilt_rows.get(table), Some(rows), "{table}");
        }
    }
    assert_eq!(rebuilt.repeats.values().sum::<u64>(), facts);
    let before = warehouse_contents(&stack.warehouse).await;
    let loaded = stack.load().await.unwrap();
    assert_eq!(loaded.rows(), 0, "loading the rebuild changes nothing");
    assert_eq!(warehouse_contents(&stack.warehouse).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_flows_through_without_duplicating_facts() {
    let Some(mut stack) = generated("backfill_flow").await else {
        return;
    };
    stack.cycle().await;
    let before = warehouse_contents(&stack.warehouse).await;
    let request: IngestRequest = serde_json::from_value(
        serde_json::json!({"tables": ["payment", "sales_order"], "since": "2000-01-01T00:00:00Z"}),
    )
    .unwrap();
    let backfill = ingest(
        &mut stack.source,
        &stack.raw,
        &stack.options,
        &request,
        &stack.alerts,
    )
    .await
    .unwrap();
    assert!(backfill.rows() > 0, "the backfill re-read rows");
    // The next cycle's transform reads the backfill and its own ingest together.
    let cycle = stack.cycle().await;
    assert_eq!(cycle.transform.inputs.len(), 2);
    assert_eq!(
        cycle.load.rows(),
        0,
        "every re-read version is already in the warehouse"
    );
    assert_eq!(warehouse_contents(&stack.warehouse).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_the_warehouse_without_changing_it() {
    use tributary_pipeline::status::downstream_status;
    let Some(mut stack) = Stack::new("status").await else {
        return;
    };
    let before = downstream_status(&stack.processed, Some(&stack.warehouse))
        .await
        .unwrap();
    assert_eq!((before.processed, before.loaded_through), (None, Some(0)));
    let schema: Option<String> = stack
        .warehouse
        .query_one("SELECT to_regclass('tributary.load_log')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema, None, "a status look created nothing");

    tributary_totesys::generate::generate(
        &mut stack.source,
        &tributary_totesys::generate::GenerateOptions {
            seed: 1,
            scale: 1,
            days: 2,
            until_ms: chrono::Utc::now().timestamp_millis(),
        },
    )
    .await
    .unwrap();
    stack.cycle().await;
    let after = downstream_status(&stack.processed, Some(&stack.warehouse))
        .await
        .unwrap();
    assert_eq!(after.processed.map(|(seq, _)| seq), Some(1));
    assert_eq!(after.loaded_through, Some(1));
}

/// The load function holds no grant on the raw bucket: the freshness lag it
/// reports must come from the processed lake and the warehouse alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_freshness_lag_needs_only_the_processed_lake_and_the_warehouse() {
    use tributary_pipeline::status::freshness_lag;
    let Some(mut stack) = generated("lag").await else {
        return;
    };
    stack.cycle().await;
    let raw_manifest: Manifest<serde_json::Value> =
        ManifestLog::new(stack.raw.clone(), Log::Totesys)
            .latest()
            .await
            .unwrap()
            .unwrap();
    // The raw lake is gone: a reader of it would fail.
    std::fs::remove_dir_all(stack.dirs.0.path()).unwrap();
    let lag = freshness_lag(&stack.processed, &stack.warehouse)
        .await
        .unwrap()
        .expect("a lag once a manifest is loaded");
    let expected = (chrono::Utc::now() - raw_manifest.committed_at)
        .to_std()
        .unwrap();
    assert!(
        lag <= expected && expected - lag < std::time::Duration::from_secs(5),
        "lag {lag:?} is the age of the ingest manifest behind the load ({expected:?})"
    );
}
