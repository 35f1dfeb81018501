//! A first extract larger than one run's bound (`TRIBUTARY_INGEST_MAX_ROWS`)
//! arrives in bounded parts, one manifest per run, while the source keeps
//! changing, and every layer ends up equal to the source.

use rand::SeedableRng;
use tributary_e2e::pipeline::Stack;
use tributary_lake::{Log, Manifest, ManifestLog};
use tributary_pipeline::totesys::ingest::IngestState;
use tributary_totesys::simulate::insert_order;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_larger_than_a_run_comes_in_bounded_parts_and_misses_nothing() {
    let Some(mut stack) = Stack::generated("first_parts", 10).await else {
        return;
    };
    let bound = 120;
    stack.options.max_rows = bound;
    // No lookback or late-commit check to lean on: what the parts miss,
    // only the first load's own hand-over (the watermark it leaves) brings.
    stack.options.lookback = std::time::Duration::from_millis(1);
    stack.options.late_check_every = std::time::Duration::from_secs(3600);
    let source_rows: i64 = stack
        .source
        .query_one(
            "SELECT (SELECT count(*) FROM sales_order) + (SELECT count(*) FROM purchase_order) \
                  + (SELECT count(*) FROM payment) + (SELECT count(*) FROM transaction)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        source_rows > 4 * bound as i64,
        "enough rows for several parts"
    );

    let mut runs = 0;
    let mut changed_mid_load = false;
    loop {
        let report = stack.ingest().await.expect("ingest part");
        runs += 1;
        assert!(
            report.rows() <= bound,
            "run {runs} read {} rows, over the bound {bound}",
            report.rows()
        );
        // Each part goes on through transform and load, as on AWS.
        stack.transform().await.expect("transform part");
        stack.load().await.expect("load part");
        let log = ManifestLog::new(stack.raw.clone(), Log::Totesys);
        let latest: Manifest<IngestState> = log.latest().await.unwrap().unwrap();
        let payments_in_parts = latest
            .state
            .tables
            .get("payment")
            .is_some_and(|t| t.first_load.is_some());
        if payments_in_parts && !changed_mid_load {
            changed_mid_load = true;
            // While payment is read in parts: change a payment already read,
            // then add orders (payments with keys past the cursor, stamped
            // after the change, which a later part reads). Both must arrive.
            stack
                .source
                .batch_execute(
                    "UPDATE payment SET paid = NOT paid, last_updated = now() \
                      WHERE payment_id = (SELECT min(payment_id) FROM payment)",
                )
                .await
                .unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            for _ in 0..5 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                insert_order(&mut stack.source, &mut rng).await.unwrap();
            }
        }
        if report.first_loads_pending.is_empty() {
            break;
        }
        assert!(runs < 100, "the parts never end");
    }
    assert!(
        runs >= 4,
        "only {runs} run(s): the bound did not split the load"
    );
    assert!(changed_mid_load, "payment was never read in parts");

    let log = ManifestLog::new(stack.raw.clone(), Log::Totesys);
    let last: Manifest<IngestState> = log.latest().await.unwrap().unwrap();
    for (table, state) in &last.state.tables {
        assert!(state.first_load.is_none(), "{table} still loading");
        assert!(state.watermark.is_some(), "{table} has no watermark");
    }
    // The next ordinary run picks up what changed while the parts were read.
    stack.options.max_rows = 5_000_000;
    stack.cycle().await;
    stack.assert_reconciled().await;
    let quarantined = stack
        .alerts
        .sent()
        .into_iter()
        .filter(|a| a.message.contains("quarantined"))
        .count();
    assert_eq!(quarantined, 0, "a part referenced rows not yet read");
    let changed = stack
        .warehouse_rows(
            "SELECT count(*)::text FROM fact_payment f \
              WHERE f.payment_id = (SELECT min(payment_id) FROM fact_payment)",
        )
        .await;
    assert_eq!(
        changed[0][0].as_deref(),
        Some("2"),
        "both versions of the payment changed mid-load are facts"
    );
}

/// A queued backfill larger than one run is read in parts, one per
/// scheduled run, each row once; the requests behind it wait their turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_larger_than_a_run_comes_in_parts_one_per_schedule() {
    use tributary_pipeline::totesys::{
        ingest::IngestRequest,
        requests::{queue, run_pending, statuses},
    };
    let Some(mut stack) = Stack::generated("backfill_parts", 6).await else {
        return;
    };
    // A first load without bound, then the backfill with one.
    stack.ingest().await.expect("first load");
    let since: chrono::DateTime<chrono::Utc> = "2000-01-01T00:00:00Z".parse().unwrap();
    let every_row: i64 = stack
        .source
        .query_one(
            "SELECT (SELECT count(*) FROM sales_order) + (SELECT count(*) FROM payment) \
                  + (SELECT count(*) FROM address)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // About five parts.
    let bound = (every_row as u64).div_ceil(5);
    assert!(bound > 10, "too few rows for parts: {every_row}");
    stack.options.max_rows = bound;
    let tables = ["sales_order", "payment", "address"]
        .map(String::from)
        .to_vec();
    let first = queue(
        &stack.raw,
        &IngestRequest {
            tables: Some(tables.clone()),
            since: Some(since),
        },
        &stack.options.source,
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = queue(
        &stack.raw,
        &IngestRequest {
            tables: Some(vec!["currency".to_string()]),
            since: Some(since),
        },
        &stack.options.source,
    )
    .await
    .unwrap();

    let mut runs = 0;
    let mut backfilled = 0u64;
    loop {
        let done = run_pending(&mut stack.source, &stack.raw, &stack.options, &stack.alerts)
            .await
            .expect("a part of the backfill");
        runs += 1;
        let all = statuses(&stack.raw).await.unwrap();
        let (a, b) = (&all[0], &all[1]);
        assert_eq!(
            (a.id.as_str(), b.id.as_str()),
            (first.as_str(), second.as_str())
        );
        if let Some(outcome) = &a.outcome {
            assert_eq!(done.len(), 2, "the last part, then the request behind it");
            backfilled += done[0].1.rows();
            assert!(done[0].1.backfill_pending.is_empty());
            assert_eq!(outcome.status, "done");
            assert_eq!(b.outcome.as_ref().map(|o| o.status.as_str()), Some("done"));
            break;
        } else {
            assert_eq!(
                done.len(),
                1,
                "one part per schedule, the next request waits"
            );
            assert_eq!(a.parts, runs, "each run's part is recorded");
            assert!(
                b.outcome.is_none() && b.attempts == 0,
                "the second request waits"
            );
            let report = &done[0].1;
            assert!(report.rows() <= bound, "a part read {} rows", report.rows());
            assert!(!report.backfill_pending.is_empty());
            backfilled += report.rows();
        }
        // The scheduled run goes on between parts.
        stack.ingest().await.expect("scheduled ingest");
        stack.transform().await.expect("transform");
        stack.load().await.expect("load");
        assert!(runs < 100, "the parts never end");
    }
    assert!(runs >= 4, "only {runs} run(s): the bound did not split it");
    assert_eq!(
        backfilled, every_row as u64,
        "every row after `since` read once across the parts"
    );
    let log = ManifestLog::new(stack.raw.clone(), Log::Totesys);
    let last: Manifest<IngestState> = log.latest().await.unwrap().unwrap();
    assert!(
        last.state.backfills.is_empty(),
        "a finished backfill leaves no progress behind: {:?}",
        last.state.backfills
    );
    // Versions the lake already had are not loaded twice.
    stack.cycle().await;
    stack.assert_reconciled().await;
}
