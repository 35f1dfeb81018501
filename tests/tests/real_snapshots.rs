//! Ingest of the real totesys snapshots (../shared/totesys; skipped when absent).

use std::{collections::HashMap, path::PathBuf, time::Duration};

use tokio_postgres::Client;
use tributary_e2e::{
    TestDb, apply_staged_snapshot, load_dump, read_parquet_independently, shared_totesys,
    stage_snapshot, temp_lake,
};
use tributary_lake::{Lake, Log, Manifest, ManifestLog};
use tributary_pipeline::{
    alerts::RecordedAlerts,
    totesys::ingest::{IngestOptions, IngestReport, IngestRequest, IngestState, ingest},
};
use tributary_totesys::{MODEL_INPUTS, PgType, TableDef};

fn options() -> IngestOptions {
    IngestOptions {
        lookback: Duration::from_secs(600),
        // Small batches and files so the real data spans several of each.
        batch_rows: 4_000,
        file_rows: 6_000,
        late_check_every: Duration::ZERO,
        max_rows: 5_000_000,
        source: std::sync::Arc::new(tributary_testkit::pipeline::shipped_totesys_source()),
    }
}

fn arrow_type_name(pg: PgType) -> &'static str {
    match pg {
        PgType::Int4 => "int32",
        PgType::Text | PgType::Enum => "string",
        PgType::Timestamp => "timestamp[ms]",
        PgType::Numeric { .. } => "decimal128(10, 2)",
        PgType::Bool => "bool",
    }
}

/// The source table as text, rendered like the independent reader renders it.
async fn source_rows(client: &Client, schema: &str, table: &TableDef) -> Vec<Vec<Option<String>>> {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.pg {
            PgType::Timestamp => format!("to_char(\"{0}\", 'YYYY-MM-DD HH24:MI:SS.MS')", c.name),
            _ => format!("\"{}\"::text", c.name),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM {schema}.\"{}\" t ORDER BY t.\"{}\"",
        columns.join(", "),
        table.name,
        table.primary_key
    );
    client
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (0..table.columns.len()).map(|i| row.get(i)).collect())
        .collect()
}

async fn run_files(
    lake: &Lake,
    dir: &std::path::Path,
    report: &IngestReport,
) -> HashMap<String, Vec<PathBuf>> {
    let manifest: Manifest<IngestState> = ManifestLog::new(lake.clone(), Log::Totesys)
        .read(report.seq)
        .await
        .unwrap()
        .unwrap();
    let mut files: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for file in manifest.files {
        files
            .entry(file.table)
            .or_default()
            .push(dir.join(&file.key));
    }
    files
}

fn sorted_by_key(mut rows: Vec<Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    rows.sort_by_key(|row| row[0].as_deref().and_then(|k| k.parse::<i64>().ok()));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_snapshots_first_run_extracts_everything_then_exactly_the_changes() {
    let Some(shared) = shared_totesys() else {
        return;
    };
    let Some(db) = TestDb::create("snapshots").await else {
        return;
    };
    let mut client = db.connect().await;
    client
        .batch_execute(&std::fs::read_to_string(shared.join("schema.sql")).unwrap())
        .await
        .unwrap();
    load_dump(
        &client,
        &shared.join("snapshot-2024-02-23.sql.gz"),
        "public",
    )
    .await;
    let (dir, url) = temp_lake();
    let lake = Lake::from_url(&url).unwrap();
    let alerts = RecordedAlerts::default();

    // First run: every row of every table, values and types intact.
    let first = ingest(
        &mut client,
        &lake,
        &options(),
        &IngestRequest::default(),
        &alerts,
    )
    .await
    .unwrap();
    assert!(
        alerts.sent().is_empty(),
        "a first run has nothing late: {:?}",
        alerts.sent()
    );
    let first_files = run_files(&lake, dir.path(), &first).await;
    for table in &MODEL_INPUTS {
        let expected = source_rows(&client, "public", table).await;
        let files = first_files.get(table.name).cloned().unwrap_or_default();
        let read = read_parquet_independently(&files);
        for column in table.columns {
            assert_eq!(
                read.schema.get(column.name).and_then(|v| v.as_str()),
                Some(arrow_type_name(column.pg)),
                "{}.{}",
                table.name,
                column.name
            );
        }
        assert_eq!(
            sorted_by_key(read.rows),
            expected,
            "{} differs from the source",
            table.name
        );
    }
    assert!(
        first_files["payment"].len() > 1,
        "the payment extract rolled into several files"
    );

    // Bring the source to the 2024-11-15 snapshot: insert new rows, update changed ones.
    stage_snapshot(&client, &shared.join("snapshot-2024-11-15.sql.gz")).await;
    let mut expected_changes = HashMap::new();
    let mut changed_in_place = HashMap::new();
    for table in &MODEL_INPUTS {
        let changed: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM (SELECT * FROM next.\"{0}\" EXCEPT SELECT * FROM public.\"{0}\") c",
                    table.name
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        expected_changes.insert(table.name, changed as u64);
        // The real source sometimes updates a row without a new last_updated
        // (design.file_location does): such rows must still arrive.
        let in_place: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM next.\"{0}\" n JOIN public.\"{0}\" p \
                     ON n.\"{1}\" = p.\"{1}\" AND n.last_updated = p.last_updated \
                     WHERE ROW(n.*) IS DISTINCT FROM ROW(p.*)",
                    table.name, table.primary_key
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if in_place > 0 {
            changed_in_place.insert(table.name, in_place as u64);
        }
    }
    let flipped: Vec<String> = client
        .query(
            "SELECT n.payment_id::text FROM next.payment n JOIN public.payment p USING (payment_id) \
             WHERE n.paid <> p.paid ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !flipped.is_empty(),
        "the later snapshot has payments that were paid since"
    );
    apply_staged_snapshot(&client).await;

    let second = ingest(
        &mut client,
        &lake,
        &options(),
        &IngestRequest::default(),
        &alerts,
    )
    .await
    .unwrap();
    for report in &second.tables {
        assert_eq!(
            report.rows,
            expected_changes[report.table.as_str()],
            "{}: the second run extracts exactly the new and changed rows",
            report.table
        );
    }
    let second_files = run_files(&lake, dir.path(), &second).await;
    let payments = read_parquet_independently(&second_files["payment"]);
    let paid_column = TableDef::by_name("payment")
        .unwrap()
        .column_index("paid")
        .unwrap();
    for id in &flipped {
        let row = payments
            .rows
            .iter()
            .find(|r| r[0].as_deref() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("flipped payment {id} missing from the second run"));
        assert_eq!(row[paid_column].as_deref(), Some("true"));
    }

    // Changes that kept their last_updated were caught, ingested and reported.
    for (table, count) in &changed_in_place {
        let report = second.tables.iter().find(|t| t.table == *table).unwrap();
        assert!(
            report.late_rows + report.changed_in_place >= *count,
            "{table}: {count} rows changed in place, report {report:?}"
        );
        assert!(
            alerts
                .sent()
                .iter()
                .any(|a| a.table.as_deref() == Some(*table)),
            "{table}: in-place changes raise an alert"
        );
    }

    // Nothing twice: no identical row version in both runs.
    for table in &MODEL_INPUTS {
        let mut files = first_files.get(table.name).cloned().unwrap_or_default();
        files.extend(second_files.get(table.name).cloned().unwrap_or_default());
        let mut rows = read_parquet_independently(&files).rows;
        rows.sort();
        let twice: Vec<_> = rows
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0].clone())
            .collect();
        assert!(
            twice.is_empty(),
            "{} has row versions twice: {twice:?}",
            table.name
        );
    }

    // And a third run finds nothing new and raises nothing.
    let alerts_before = alerts.sent().len();
    let third = ingest(
        &mut client,
        &lake,
        &options(),
        &IngestRequest::default(),
        &alerts,
    )
    .await
    .unwrap();
    assert_eq!(third.rows(), 0);
    assert_eq!(alerts.sent().len(), alerts_before, "{:?}", alerts.sent());
}
