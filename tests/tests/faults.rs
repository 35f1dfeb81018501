//! Fault injection over the real local stack. For each fault: run the
//! pipeline, inject the fault, let the next run heal, then assert that
//! reconcile finds every row version in every layer once, and that an alert
//! was raised where one should be.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use rand::SeedableRng;
use tributary_e2e::{
    connect,
    faults::{Fault, FaultyStore, Trigger},
    pipeline::Stack,
};
use tributary_lake::{Lake, Log};
use tributary_pipeline::{
    Error,
    totesys::ingest::{IngestRequest, ingest},
    totesys::load::load,
    totesys::transform::{TransformRequest, transform},
};
use tributary_totesys::simulate::{flip_due_payments, insert_order};

/// The same storage as `lake`, with one fault injected.
fn faulty(lake: &Lake, trigger: Trigger, fault: Fault) -> (Lake, Arc<FaultyStore>) {
    let store = FaultyStore::new(Arc::clone(lake.store()), trigger, fault);
    let wrapped = Lake::with_store(store.clone(), "", lake.url()).unwrap();
    (wrapped, store)
}

fn put(fragment: &str, nth: usize) -> Trigger {
    Trigger {
        on_put: true,
        fragment: fragment.to_string(),
        nth,
    }
}

/// Some live changes: orders (with transactions and payments) and flips.
async fn changes(stack: &mut Stack, orders: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(orders as u64);
    for _ in 0..orders {
        insert_order(&mut stack.source, &mut rng).await.unwrap();
    }
    flip_due_payments(&stack.source).await.unwrap();
}

/// A hook that terminates the backend `pid` of the database at `url`.
fn terminate(url: String, pid: i32) -> Fault {
    Fault::Hook(Box::new(move || {
        Box::pin(async move {
            let admin = connect(&url).await.unwrap();
            admin
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .unwrap();
        })
    }))
}

fn alerted(stack: &Stack, stage: &str, needle: &str) -> bool {
    stack
        .alerts
        .sent()
        .iter()
        .any(|a| a.stage == stage && a.message.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_going_away_mid_extract_heals_on_the_next_run() {
    let Some(mut stack) = Stack::generated("fault_source", 10).await else {
        return;
    };
    stack.cycle().await;
    changes(&mut stack, 8).await;
    let pid: i32 = stack
        .source
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let (raw, fault) = faulty(
        &stack.raw,
        put("totesys/", 1),
        terminate(stack.source_db.url.clone(), pid),
    );
    let failed = ingest(
        &mut stack.source,
        &raw,
        &stack.options,
        &IngestRequest::default(),
        &stack.alerts,
    )
    .await;
    assert_eq!(fault.fired(), 1);
    assert!(
        failed.is_err(),
        "the run must fail, not commit a partial snapshot"
    );
    assert!(
        alerted(&stack, "ingest", "ingest failed"),
        "{:?}",
        stack.alerts.sent()
    );

    stack.source = stack.source_db.connect().await;
    stack.cycle().await;
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_mid_transform_heals_on_the_next_run() {
    let Some(mut stack) = Stack::generated("fault_put", 10).await else {
        return;
    };
    stack.cycle().await;
    changes(&mut stack, 8).await;
    stack.ingest().await.unwrap();
    let (processed, fault) = faulty(&stack.processed, put("warehouse/fact_", 2), Fault::Fail);
    let failed = transform(
        &stack.raw,
        &processed,
        &TransformRequest::default(),
        &stack.alerts,
    )
    .await;
    assert_eq!(fault.fired(), 1);
    assert!(failed.is_err());
    assert!(
        alerted(&stack, "transform", "injected failure"),
        "{:?}",
        stack.alerts.sent()
    );
    stack.cycle().await;
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dying_between_data_files_and_manifest_leaves_nothing_visible() {
    let Some(mut stack) = Stack::generated("fault_manifest", 10).await else {
        return;
    };
    stack.cycle().await;
    changes(&mut stack, 6).await;
    let (raw, _) = faulty(&stack.raw, put("_manifests/", 1), Fault::Fail);
    assert!(
        ingest(
            &mut stack.source,
            &raw,
            &stack.options,
            &IngestRequest::default(),
            &stack.alerts
        )
        .await
        .is_err()
    );
    stack.cycle().await;
    changes(&mut stack, 6).await;
    stack.ingest().await.unwrap();
    let (processed, _) = faulty(&stack.processed, put("_manifests/", 1), Fault::Fail);
    assert!(
        transform(
            &stack.raw,
            &processed,
            &TransformRequest::default(),
            &stack.alerts
        )
        .await
        .is_err()
    );
    stack.cycle().await;
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warehouse_connection_dropping_mid_load_heals_on_the_next_run() {
    let Some(mut stack) = Stack::generated("fault_load", 10).await else {
        return;
    };
    stack.cycle().await;
    changes(&mut stack, 8).await;
    stack.ingest().await.unwrap();
    stack.transform().await.unwrap();
    let pid: i32 = stack
        .warehouse
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let trigger = Trigger {
        on_put: false,
        fragment: "warehouse/fact_payment".into(),
        nth: 1,
    };
    let (processed, fault) = faulty(
        &stack.processed,
        trigger,
        terminate(stack.warehouse_db.url.clone(), pid),
    );
    let failed = load(&mut stack.warehouse, &processed, &stack.alerts).await;
    assert_eq!(fault.fired(), 1);
    assert!(failed.is_err());
    assert!(
        alerted(&stack, "load", "load failed"),
        "{:?}",
        stack.alerts.sent()
    );
    stack.warehouse = stack.warehouse_db.connect().await;
    stack.cycle().await;
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_out_of_order_triggers_are_harmless() {
    let Some(mut stack) = Stack::generated("fault_events", 10).await else {
        return;
    };
    stack.cycle().await;
    for _ in 0..2 {
        changes(&mut stack, 4).await;
        stack.ingest().await.unwrap();
    }
    // A load triggered before its transform, then the same event twice.
    assert_eq!(stack.load().await.unwrap().rows(), 0);
    let first = stack.transform().await.unwrap();
    assert_eq!(
        first.inputs.len(),
        2,
        "both raw manifests, in order, in one run"
    );
    let again = stack.transform().await.unwrap();
    assert_eq!(again.seq, None, "the repeat finds nothing new");
    stack.load().await.unwrap();
    assert_eq!(stack.load().await.unwrap().manifests.len(), 0);
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_runs_at_once_lose_and_duplicate_nothing() {
    let Some(mut stack) = Stack::generated("fault_race", 10).await else {
        return;
    };
    let mut other = stack.source_db.connect().await;
    stack.cycle().await;
    changes(&mut stack, 6).await;
    let request = IngestRequest::default();
    let (a, b) = tokio::join!(
        ingest(
            &mut stack.source,
            &stack.raw,
            &stack.options,
            &request,
            &stack.alerts
        ),
        ingest(
            &mut other,
            &stack.raw,
            &stack.options,
            &request,
            &stack.alerts
        ),
    );
    assert!(a.is_ok() || b.is_ok());
    stack.cycle().await;
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_stamped_in_the_future_does_not_hold_back_later_changes() {
    let Some(mut stack) = Stack::generated("fault_future", 10).await else {
        return;
    };
    stack.options.late_check_every = Duration::from_secs(3600);
    stack.cycle().await;
    stack
        .source
        .batch_execute(
            "UPDATE address SET phone = '9999 999999', last_updated = (now() AT TIME ZONE 'UTC')::timestamp(3) + interval '1 year' WHERE address_id = 3",
        )
        .await
        .unwrap();
    stack.cycle().await;
    assert!(
        stack
            .alerts
            .sent()
            .iter()
            .any(|a| a.table.as_deref() == Some("address")
                && a.message.contains("after the source's clock")),
        "{:?}",
        stack.alerts.sent()
    );
    // Ordinary changes after it still flow with the lookback alone.
    stack
        .source
        .batch_execute("UPDATE address SET city = 'Later', last_updated = (now() AT TIME ZONE 'UTC')::timestamp(3) WHERE address_id = 4")
        .await
        .unwrap();
    changes(&mut stack, 5).await;
    let later = stack.cycle().await;
    assert!(
        later
            .ingest
            .tables
            .iter()
            .any(|t| t.table == "address" && t.rows == 1)
    );
    assert!(
        later
            .ingest
            .tables
            .iter()
            .any(|t| t.table == "sales_order" && t.rows > 0)
            || later
                .ingest
                .tables
                .iter()
                .any(|t| t.table == "purchase_order" && t.rows > 0)
    );
    let again = stack.cycle().await;
    assert_eq!(again.ingest.rows(), 0, "the future row is not read twice");
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_manifest_stops_the_stage_with_a_clear_error_and_an_alert() {
    let Some(mut stack) = Stack::generated("fault_corrupt", 5).await else {
        return;
    };
    stack.cycle().await;
    let key = Log::Totesys.manifest(2);
    stack
        .raw
        .put_once(&key, Bytes::from_static(b"{\"format\": 1, \"trunc"))
        .await
        .unwrap();
    let err = stack.ingest().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Lake(tributary_lake::Error::CorruptManifest { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&key), "{err}");
    assert!(!err.is_retryable(), "no guessing: a person must look");
    assert!(
        alerted(&stack, "ingest", "is corrupt"),
        "{:?}",
        stack.alerts.sent()
    );
    assert!(
        !stack.raw.exists(&Log::Totesys.manifest(3)).await.unwrap(),
        "nothing committed past it"
    );
}
