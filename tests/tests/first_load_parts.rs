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
