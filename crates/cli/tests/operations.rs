//! Every documented operation (a backfill, a rebuild, live changes, a commit
//! that arrives late, an upgrade from a lake without a version index) leaves
//! each fact version in the processed lake once, and `reconcile` clean.

mod support;

use support::{Installation, succeeds, tributary};
use tributary_lake::{Log, Manifest, ManifestLog, RunId};
use tributary_pipeline::totesys::{
    ingest::{IngestRequest, ingest},
    transform::{TransformRequest, TransformState, transform},
};
use tributary_testkit::pipeline::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_operations_leave_every_layer_equal() {
    let Some(installation) = Installation::new("ops").await else {
        return;
    };
    let env = installation.env();
    let source = &installation.source;
    succeeds(&["generate", "--days", "20", "--seed", "3"], &env);
    succeeds(&["warehouse", "init"], &env);
    succeeds(&["run"], &env);
    let clean = succeeds(&["reconcile"], &env);
    assert!(
        clean.contains("every row version is in every layer, once"),
        "{clean}"
    );

    // A backfill re-reads every payment: none of them is written again.
    let payments: i64 = source
        .connect()
        .await
        .query_one("SELECT count(*) FROM payment", &[])
        .await
        .unwrap()
        .get(0);
    assert!(payments > 100, "{payments} payments generated");
    succeeds(
        &[
            "ingest",
            "--tables",
            "payment",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
        &env,
    );
    let run = succeeds(&["run"], &env);
    assert!(
        run.contains(&format!(
            "transformed 0 fact rows ({payments} version(s) read again were already in the processed lake)"
        )),
        "{run}"
    );
    succeeds(&["reconcile"], &env);

    // Live changes, then a rebuild from every raw manifest.
    succeeds(
        &[
            "simulate",
            "--rate",
            "1200",
            "--for",
            "2s",
            "--churn-every",
            "5",
        ],
        &env,
    );
    succeeds(&["run"], &env);
    succeeds(&["reconcile"], &env);
    let rebuild = succeeds(&["transform", "--rebuild"], &env);
    let fact_rows: Vec<&str> = rebuild
        .lines()
        .map(str::split_whitespace)
        .filter_map(
            |mut words| match (words.next(), words.next(), words.next()) {
                (Some(table), Some(rows), None) if table.starts_with("fact_") => Some(rows),
                _ => None,
            },
        )
        .collect();
    assert_eq!(
        fact_rows,
        ["0", "0", "0"],
        "a rebuild writes no fact again: {rebuild}"
    );
    assert!(
        rebuild.contains("already in the processed lake"),
        "{rebuild}"
    );
    succeeds(&["load"], &env);
    succeeds(&["reconcile"], &env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_never_seen_is_still_written() {
    let Some(mut stack) = Stack::generated("ops_older", 10).await else {
        return;
    };
    stack.cycle().await;
    // A change committed with a `last_updated` older than the newest payment
    // (a clock behind, a long transaction): below the high-water mark, but new.
    let changed = stack
        .source
        .query_one(
            "UPDATE payment SET payment_amount = payment_amount + 1,
                    last_updated = last_updated + interval '1 millisecond'
              WHERE payment_id = (SELECT min(payment_id) FROM payment)
              RETURNING payment_id, payment_amount::text",
            &[],
        )
        .await
        .unwrap();
    let (id, amount): (i32, String) = (changed.get(0), changed.get(1));
    let report = stack.cycle().await;
    assert_eq!(
        report.transform.fact_rows(),
        1,
        "{:?}",
        report.transform.rows
    );
    assert!(
        report.transform.repeats.is_empty(),
        "{:?}",
        report.transform.repeats
    );
    let rows = stack
        .warehouse_rows(&format!(
            "SELECT payment_amount::text FROM fact_payment WHERE payment_id = {id} ORDER BY last_updated_date, last_updated_time"
        ))
        .await;
    assert_eq!(rows.last().unwrap()[0].as_deref(), Some(amount.as_str()));
    assert_eq!(rows.len(), 2, "both versions, each once: {rows:?}");
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_from_before_the_version_index_gets_one_and_no_repeats() {
    let Some(mut stack) = Stack::generated("ops_upgrade", 10).await else {
        return;
    };
    stack.cycle().await;
    // What an older release committed: the same state without the index.
    let log = ManifestLog::new(stack.processed.clone(), Log::Transform);
    let latest: Manifest<TransformState> = log.latest().await.unwrap().unwrap();
    assert!(latest.state.versions.is_some());
    let mut old_state = latest.state.clone();
    old_state.versions = None;
    let run = RunId::now();
    log.commit(latest.seq, &run, chrono::Utc::now(), Vec::new(), old_state)
        .await
        .unwrap();

    let request = IngestRequest {
        tables: Some(vec!["sales_order".to_string()]),
        since: Some("2000-01-01T00:00:00Z".parse().unwrap()),
    };
    let backfill = ingest(
        &mut stack.source,
        &stack.raw,
        &stack.options,
        &request,
        &stack.alerts,
    )
    .await
    .unwrap();
    assert!(backfill.rows() > 0);
    let report = transform(
        &stack.raw,
        &stack.processed,
        &TransformRequest::default(),
        &stack.alerts,
    )
    .await
    .unwrap();
    assert_eq!(report.fact_rows(), 0, "{:?}", report.rows);
    assert_eq!(
        report.repeats.get("fact_sales_order").copied(),
        Some(backfill.rows()),
        "every re-read order is found in the index built from the old lake"
    );
    let now: Manifest<TransformState> = log.latest().await.unwrap().unwrap();
    let index = now.state.versions.expect("the index is kept from now on");
    assert!(!index["fact_sales_order"].buckets.is_empty());
    stack.load().await.unwrap();
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_difference_comes_with_advice_that_clears_it() {
    let Some(installation) = Installation::new("ops_advice").await else {
        return;
    };
    let env = installation.env();
    let warehouse = &installation.warehouse;
    succeeds(&["generate", "--days", "5", "--seed", "4"], &env);
    succeeds(&["warehouse", "init"], &env);
    succeeds(&["run"], &env);

    // Behind: ingested, not yet transformed.
    succeeds(
        &[
            "simulate",
            "--rate",
            "1200",
            "--for",
            "1s",
            "--churn-every",
            "0",
        ],
        &env,
    );
    succeeds(&["ingest"], &env);
    let behind = tributary(&["reconcile"], &env);
    assert!(!behind.status.success());
    let text = String::from_utf8_lossy(&behind.stdout);
    assert!(
        text.contains("the transform is behind") && text.contains("run `tributary transform`"),
        "{text}"
    );
    succeeds(&["run"], &env);
    succeeds(&["reconcile"], &env);

    // Wrong: rows deleted in the warehouse by hand.
    let client = warehouse.connect().await;
    client
        .batch_execute(
            "DELETE FROM fact_payment WHERE payment_id IN (SELECT payment_id FROM fact_payment LIMIT 3);
             DELETE FROM fact_sales_order WHERE design_id = (SELECT min(design_id) FROM dim_design);
             DELETE FROM dim_design WHERE design_id = (SELECT min(design_id) FROM dim_design);",
        )
        .await
        .unwrap();
    let wrong = tributary(&["reconcile"], &env);
    assert!(!wrong.status.success());
    let text = String::from_utf8_lossy(&wrong.stdout);
    assert!(text.contains("DELETE FROM tributary.load_log"), "{text}");
    let design_line = text
        .lines()
        .find(|l| l.starts_with("dim_design") && l.contains("DIFFERS"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        design_line.contains("missing id ") && !design_line.contains("1970"),
        "a dimension difference shows the id, not a time: {design_line}"
    );
    // Following the advice clears it.
    client
        .batch_execute("DELETE FROM tributary.load_log")
        .await
        .unwrap();
    succeeds(&["load"], &env);
    let fixed = tributary(&["reconcile"], &env);
    let text = String::from_utf8_lossy(&fixed.stdout);
    assert!(fixed.status.success(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_backfill_runs_with_the_next_scheduled_run() {
    let Some(installation) = Installation::new("ops_queue").await else {
        return;
    };
    let env = installation.env();
    succeeds(&["generate", "--days", "5", "--seed", "6"], &env);
    succeeds(&["warehouse", "init"], &env);
    succeeds(&["run"], &env);
    let typo = tributary(
        &[
            "backfill",
            "--tables",
            "payments",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
        &env,
    );
    assert!(!typo.status.success(), "a table typo fails when queueing");
    assert!(String::from_utf8_lossy(&typo.stderr).contains("unknown table \"payments\""));
    let queued = succeeds(
        &[
            "backfill",
            "--tables",
            "payment",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
        &env,
    );
    assert!(queued.contains("queued backfill"), "{queued}");
    let pending = succeeds(&["backfill", "--status"], &env);
    assert!(
        pending.contains("payment since 2000-01-01") && pending.contains("pending (0 attempt(s)"),
        "{pending}"
    );
    let run = succeeds(&["run"], &env);
    assert!(
        run.contains("already in the processed lake"),
        "the queued backfill ran first: {run}"
    );
    let status = succeeds(&["backfill", "--status"], &env);
    assert!(
        status.contains("done by run") && !status.contains("pending"),
        "{status}"
    );
    let again = succeeds(&["run"], &env);
    assert!(
        !again.contains("read again"),
        "a done backfill does not run twice: {again}"
    );
    succeeds(&["reconcile"], &env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_backfill_that_keeps_failing_is_given_up_with_an_alert() {
    use tributary_pipeline::totesys::requests::{MAX_ATTEMPTS, queue, run_pending, statuses};
    let Some(mut stack) = Stack::generated("ops_queue_fail", 3).await else {
        return;
    };
    stack.cycle().await;
    let request = IngestRequest {
        tables: Some(vec!["payment".to_string()]),
        since: Some("2000-01-01T00:00:00Z".parse().unwrap()),
    };
    queue(&stack.raw, &request, &stack.options.source)
        .await
        .unwrap();
    stack
        .source
        .batch_execute("ALTER TABLE payment RENAME TO payment_away")
        .await
        .unwrap();
    for _ in 0..MAX_ATTEMPTS {
        assert!(
            run_pending(&mut stack.source, &stack.raw, &stack.options, &stack.alerts)
                .await
                .is_err()
        );
    }
    let done = run_pending(&mut stack.source, &stack.raw, &stack.options, &stack.alerts)
        .await
        .unwrap();
    assert!(done.is_empty());
    let status = statuses(&stack.raw).await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].attempts, MAX_ATTEMPTS);
    assert_eq!(status[0].outcome.as_ref().unwrap().status, "given up");
    assert!(
        stack
            .alerts
            .sent()
            .iter()
            .any(|a| a.message.contains("given up after 3 failed runs")),
        "{:?}",
        stack.alerts.sent()
    );
    stack
        .source
        .batch_execute("ALTER TABLE payment_away RENAME TO payment")
        .await
        .unwrap();
    // A request nobody can read (written by hand) is given up at once and
    // does not hold the queue.
    stack
        .raw
        .put_once(
            "_requests/ingest/00000000T000000000Z-hand.json",
            bytes::Bytes::from_static(b"{\"tables\": \"payment\"}"),
        )
        .await
        .unwrap();
    let done = run_pending(&mut stack.source, &stack.raw, &stack.options, &stack.alerts)
        .await
        .unwrap();
    assert!(done.is_empty());
    assert!(
        stack.alerts.sent().iter().any(|a| a
            .message
            .contains("00000000T000000000Z-hand cannot be read")),
        "{:?}",
        stack.alerts.sent()
    );
    assert!(
        run_pending(&mut stack.source, &stack.raw, &stack.options, &stack.alerts)
            .await
            .unwrap()
            .is_empty()
    );
    stack.cycle().await;
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_compactions_in_one_run_write_different_objects() {
    use rand::SeedableRng;
    use tributary_pipeline::totesys::versions::Segment;
    let Some(mut stack) = Stack::generated("ops_compact", 3).await else {
        return;
    };
    stack.cycle().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..3 {
        tributary_totesys::simulate::insert_order(&mut stack.source, &mut rng)
            .await
            .unwrap();
    }
    stack.cycle().await;
    let log = ManifestLog::new(stack.processed.clone(), Log::Transform);
    let segments_of = |manifest: &Manifest<TransformState>| -> Vec<Segment> {
        manifest
            .files
            .iter()
            .filter(|f| f.table == "fact_sales_order")
            .map(|f| Segment {
                key: f.key.clone(),
                min_ms: i64::MIN,
                max_ms: i64::MAX,
                rows: f.rows,
            })
            .collect()
    };
    let latest: Manifest<TransformState> = log.latest().await.unwrap().unwrap();
    let earlier: Manifest<TransformState> = log.read(latest.seq - 1).await.unwrap().unwrap();
    let (old, new) = (segments_of(&earlier), segments_of(&latest));
    assert!(!old.is_empty() && !new.is_empty());
    // As an upgrade run does: fold what was there, then what this run wrote,
    // both under one run id; the second bucket differs from the first.
    let mut index = tributary_pipeline::totesys::versions::FactVersions {
        segments: old,
        ..Default::default()
    };
    let run = RunId::now();
    index
        .compact(&stack.processed, "fact_sales_order", "sales_order_id", &run)
        .await
        .unwrap();
    let first = index.buckets.clone();
    index.segments = new;
    index
        .compact(&stack.processed, "fact_sales_order", "sales_order_id", &run)
        .await
        .expect("a second compaction in the same run does not collide with the first");
    assert_ne!(first, index.buckets);
    assert_eq!(index.compactions, 2);
}

/// With a small `TRIBUTARY_INGEST_MAX_ROWS`, `--one-run` does one bounded
/// run as one function invocation does and says what is left; without it
/// the commands go on until nothing is, and every layer agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_command_reads_a_first_load_in_parts_and_says_what_is_left() {
    let Some(installation) = Installation::new("ops_parts").await else {
        return;
    };
    let base = installation.env();
    let mut env = base.to_vec();
    env.push(("TRIBUTARY_INGEST_MAX_ROWS", "150"));
    succeeds(&["generate", "--days", "10", "--seed", "4"], &env);
    succeeds(&["warehouse", "init"], &env);
    let first = succeeds(&["ingest", "--one-run"], &env);
    assert!(first.contains("goes on in parts"), "{first}");
    assert_eq!(first.matches("committed manifest").count(), 1, "{first}");
    let second = succeeds(&["ingest", "--one-run"], &env);
    assert_eq!(second.matches("committed manifest").count(), 1, "{second}");
    // Small manifests go together (within 1M rows); one run commits one.
    let transformed = succeeds(&["transform", "--one-run"], &env);
    assert_eq!(
        transformed.matches("committed manifest").count(),
        1,
        "{transformed}"
    );
    let rest = succeeds(&["ingest"], &env);
    assert!(rest.matches("committed manifest").count() > 1, "{rest}");
    assert!(!rest.contains("goes on in parts: the next run"), "{rest}");
    let all = succeeds(&["transform"], &env);
    assert!(
        all.contains("nothing new") || !all.contains("left"),
        "{all}"
    );
    succeeds(&["load"], &env);
    // A backfill over the bound, by hand: one part per invocation with
    // --one-run, the same request going on where the last stopped; then
    // the rest at once.
    let since = [
        "ingest",
        "--tables",
        "sales_order",
        "--since",
        "2000-01-01T00:00:00Z",
    ];
    let mut smaller = base.to_vec();
    smaller.push(("TRIBUTARY_INGEST_MAX_ROWS", "60"));
    let part = succeeds(&[&since[..], &["--one-run"]].concat(), &smaller);
    assert!(
        part.contains("backfill of sales_order goes on in parts"),
        "{part}"
    );
    let rows = |out: &str| -> u64 {
        out.lines()
            .filter(|l| l.starts_with("sales_order "))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(rows(&part), 60, "{part}");
    let rest = succeeds(&since, &smaller);
    assert!(rest.matches("committed manifest").count() > 1, "{rest}");
    let orders: i64 = installation
        .source
        .connect()
        .await
        .query_one("SELECT count(*) FROM sales_order", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows(&part) + rows(&rest),
        orders as u64,
        "every order once across the parts"
    );
    succeeds(&["transform"], &env);
    succeeds(&["load"], &env);
    let clean = succeeds(&["reconcile"], &env);
    assert!(
        clean.contains("every row version is in every layer, once"),
        "{clean}"
    );
}
