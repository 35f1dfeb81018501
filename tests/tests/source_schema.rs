//! The totesys source as the catalog describes it, run by run: a column
//! added at the live source flows into the raw lake (recorded in the
//! manifest, declared in the raw catalog) while the star schema goes on as
//! it was; a column the star schema reads that is renamed away stops that
//! table only, with an alert naming it, and once restored the table picks up
//! what changed meanwhile.

use tributary_e2e::pipeline::Stack;
use tributary_lake::{Log, Manifest, ManifestLog};
use tributary_pipeline::totesys::ingest::IngestState;
use tributary_totesys::PgType;

async fn latest_state(stack: &Stack) -> Manifest<IngestState> {
    ManifestLog::new(stack.raw.clone(), Log::Totesys)
        .latest()
        .await
        .unwrap()
        .expect("a totesys manifest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_at_the_source_reaches_the_raw_lake_and_the_star_schema_goes_on() {
    let Some(mut stack) = Stack::generated("schema_added", 3).await else {
        return;
    };
    stack.cycle().await;
    stack
        .source
        .batch_execute(
            "ALTER TABLE payment ADD COLUMN note text; \
             UPDATE payment SET note = 'paid by wire \\ ok', last_updated = now() \
              WHERE payment_id IN (SELECT payment_id FROM payment ORDER BY payment_id LIMIT 5); \
             ALTER TABLE staff ADD COLUMN profile jsonb; \
             UPDATE staff SET profile = '{\"desk\": 7}', last_updated = now() \
              WHERE staff_id = (SELECT min(staff_id) FROM staff);",
        )
        .await
        .unwrap();
    let report = stack.cycle().await;
    assert!(
        report.ingest.stopped.is_empty(),
        "{:?}",
        report.ingest.stopped
    );
    let payment = report
        .ingest
        .tables
        .iter()
        .find(|t| t.table == "payment")
        .unwrap();
    // Exactly the changed payments: the rows of the lookback read again are
    // compared on the columns their kept versions were taken over.
    assert_eq!(payment.rows, 5, "{payment:?}");
    assert_eq!(
        payment.changed_in_place, 0,
        "rows read again with a new column are not changes made in place"
    );

    // Recorded in the manifest, written in the file, read back by pyarrow.
    let manifest = latest_state(&stack).await;
    let columns = &manifest.state.schemas["payment"];
    let note = columns.last().unwrap();
    assert_eq!(
        (note.name.as_str(), note.pg, note.nullable),
        ("note", PgType::Text, true)
    );
    let files: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| f.table == "payment")
        .map(|f| stack.dirs.0.path().join(&f.key))
        .collect();
    let read = tributary_testkit::read_parquet_independently(&files);
    assert_eq!(read.schema["note"], "string");
    // Rows come in the file's column order: the recorded one.
    let position = columns.len() - 1;
    let notes: Vec<_> = read
        .rows
        .iter()
        .filter_map(|r| r[position].clone())
        .collect();
    assert_eq!(notes, vec!["paid by wire \\ ok".to_string(); 5]);

    // A type the extract has no decoding for, in a column the star schema
    // does not read, is kept as its text; the table goes on.
    let profile = manifest.state.schemas["staff"].last().unwrap();
    assert_eq!((profile.name.as_str(), profile.as_text), ("profile", true));
    let staff: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| f.table == "staff")
        .map(|f| stack.dirs.0.path().join(&f.key))
        .collect();
    let read = tributary_testkit::read_parquet_independently(&staff);
    let at = manifest.state.schemas["staff"].len() - 1;
    let profiles: Vec<_> = read.rows.iter().filter_map(|r| r[at].clone()).collect();
    assert_eq!(profiles, ["{\"desk\": 7}"]);

    // The raw catalog declares it; the Iceberg tables and the warehouse do
    // not change, and every layer still equals the source.
    let recorded = tributary_pipeline::catalog::totesys_columns(&stack.raw)
        .await
        .unwrap();
    let specs = tributary_pipeline::catalog::raw_specs(&stack.raw, &recorded);
    let raw_payment = specs
        .iter()
        .find(|s| s.name == "raw_totesys_payment")
        .unwrap();
    assert_eq!(
        raw_payment.columns.last().unwrap(),
        &("note".to_string(), "string".to_string())
    );
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_star_schema_column_renamed_away_stops_that_table_only_until_it_is_back() {
    let Some(mut stack) = Stack::generated("schema_renamed", 3).await else {
        return;
    };
    stack.cycle().await;
    stack
        .source
        .batch_execute(
            "ALTER TABLE payment RENAME COLUMN payment_amount TO amount; \
             UPDATE payment SET last_updated = now() \
              WHERE payment_id = (SELECT min(payment_id) FROM payment); \
             UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now() \
              WHERE sales_order_id = (SELECT min(sales_order_id) FROM sales_order);",
        )
        .await
        .unwrap();
    let before = stack.alerts.sent().len();
    let kept = latest_state(&stack).await.state.tables["payment"].clone();
    let report = stack.cycle().await;
    assert_eq!(
        latest_state(&stack).await.state.tables["payment"],
        kept,
        "a stopped table's state stays where it was"
    );
    let stopped: Vec<_> = report.ingest.stopped.iter().map(|s| &s.table).collect();
    assert_eq!(stopped, ["payment"]);
    assert!(
        report.ingest.stopped[0]
            .reason
            .contains("payment.payment_amount is gone"),
        "{:?}",
        report.ingest.stopped
    );
    let alerts = stack.alerts.sent();
    let alert = alerts[before..]
        .iter()
        .find(|a| a.table.as_deref() == Some("payment"))
        .expect("an alert for the stopped table");
    assert!(alert.message.contains("payment_amount"), "{alert:?}");
    assert!(alert.action.contains("restore it"), "{alert:?}");
    let rows = |name: &str| {
        report
            .ingest
            .tables
            .iter()
            .find(|t| t.table == name)
            .map(|t| t.rows)
    };
    assert_eq!(rows("sales_order"), Some(1), "the other tables go on");
    assert_eq!(rows("payment"), None);

    stack
        .source
        .batch_execute("ALTER TABLE payment RENAME COLUMN amount TO payment_amount")
        .await
        .unwrap();
    let report = stack.cycle().await;
    assert!(report.ingest.stopped.is_empty());
    let payment = report
        .ingest
        .tables
        .iter()
        .find(|t| t.table == "payment")
        .unwrap();
    assert_eq!(payment.rows, 1, "the change made while it was stopped");
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_star_schema_does_not_read_is_extracted_by_its_own_cursor() {
    let Some(mut stack) = Stack::generated("schema_extra", 2).await else {
        return;
    };
    stack
        .source
        .batch_execute(
            "CREATE TABLE stock (item_id int PRIMARY KEY, item text NOT NULL, \
               on_hand numeric(8,0) NOT NULL, counted_at timestamp(3) NOT NULL DEFAULT now()); \
             INSERT INTO stock (item_id, item, on_hand) \
               SELECT i, 'item ' || i, i * 10 FROM generate_series(1, 30) i;",
        )
        .await
        .unwrap();
    let mut source = (*stack.options.source).clone();
    source
        .tables
        .push(tributary_totesys::source::ConfiguredTable {
            name: "stock".to_string(),
            cursor: "counted_at".to_string(),
            primary_key: None,
        });
    stack.options.source = std::sync::Arc::new(source);
    let first = stack.cycle().await;
    let stock = |report: &tributary_pipeline::run::CycleReport| {
        report
            .ingest
            .tables
            .iter()
            .find(|t| t.table == "stock")
            .map(|t| t.rows)
    };
    assert_eq!(stock(&first), Some(30));

    // Three counts later, only they are read again.
    stack
        .source
        .batch_execute(
            "UPDATE stock SET on_hand = on_hand - 1, counted_at = now() WHERE item_id <= 3",
        )
        .await
        .unwrap();
    let second = stack.cycle().await;
    assert_eq!(stock(&second), Some(3));
    let status = tributary_pipeline::status::ingest_status(&stack.raw)
        .await
        .unwrap();
    let listed = status.tables.iter().find(|t| t.table == "stock").unwrap();
    assert_eq!(listed.total_rows, 33);
    // It lands in the raw lake beside the others; the star schema is as it was.
    let manifest = latest_state(&stack).await;
    assert_eq!(manifest.state.schemas["stock"].len(), 4);
    stack.assert_reconciled().await;
}
