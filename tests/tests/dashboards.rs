//! Every dashboard query in sql/dashboard runs on a loaded warehouse and
//! agrees with the source where a plain-SQL cross-check exists.

use std::path::Path;

use chrono::Utc;
use tributary_e2e::pipeline::{Stack, text_rows};
use tributary_totesys::generate::{GenerateOptions, generate};

fn dashboard_queries() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/dashboard");
    let mut queries: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains("markets"))
        })
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    queries.sort();
    queries
}

/// Runs a dashboard query with every column cast to text.
async fn run(stack: &Stack, sql: &str) -> Vec<Vec<Option<String>>> {
    let body = sql.trim().trim_end_matches(';');
    let rows = stack
        .warehouse
        .query(&format!("SELECT to_jsonb(q)::text FROM ({body}) q"), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    rows.iter()
        .map(|r| vec![r.get::<_, Option<String>>(0)])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_and_agrees_with_the_source() {
    let Some(mut stack) = Stack::new("dashboards").await else {
        return;
    };
    generate(
        &mut stack.source,
        &GenerateOptions {
            seed: 8,
            scale: 1,
            days: 120,
            until_ms: Utc::now().timestamp_millis(),
        },
    )
    .await
    .unwrap();
    stack.cycle().await;
    let queries = dashboard_queries();
    assert_eq!(
        queries.len(),
        6,
        "{:?}",
        queries.iter().map(|q| &q.0).collect::<Vec<_>>()
    );
    for (name, sql) in &queries {
        let rows = run(&stack, sql).await;
        assert!(!rows.is_empty(), "{name} returned nothing");
    }

    // Cross-checks against plain SQL over the source.
    let total = |rows: Vec<Vec<Option<String>>>| rows[0][0].clone();
    let sales_sql = &queries[0].1.replace("LIMIT 36", "");
    let dashboard_total = total(
        text_rows(
            &stack.warehouse,
            &format!(
                "SELECT sum(sales_value)::text FROM ({}) q",
                sales_sql.trim().trim_end_matches(';')
            ),
        )
        .await,
    );
    let source_total = total(
        stack
            .source_rows("SELECT sum(units_sold * unit_price)::text FROM sales_order")
            .await,
    );
    assert_eq!(
        dashboard_total, source_total,
        "sales value by month adds up to the source"
    );

    let outstanding = total(
        text_rows(
            &stack.warehouse,
            &format!(
                "SELECT sum(payments)::text FROM ({}) q",
                queries[4].1.trim().trim_end_matches(';')
            ),
        )
        .await,
    );
    let unpaid = total(
        stack
            .source_rows("SELECT count(*)::text FROM payment WHERE NOT paid")
            .await,
    );
    assert_eq!(outstanding, unpaid, "outstanding payments match the source");
}
