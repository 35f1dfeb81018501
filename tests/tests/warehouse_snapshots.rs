//! The warehouse built from the real totesys snapshots equals what plain SQL
//! over the source says it should be (../shared/totesys; skipped when absent).

use tributary_e2e::{
    apply_staged_snapshot, pipeline::Stack, read_parquet_independently, stage_snapshot,
};
use tributary_lake::{Log, Manifest, ManifestLog};
use tributary_pipeline::totesys::transform::TransformState;

/// (warehouse table, SQL over the warehouse, the same rows by plain SQL over the source).
fn expectations() -> Vec<(&'static str, String, String)> {
    let fact_keys = |id: &str| format!("ORDER BY 1, 4, 5 -- {id}");
    vec![
        (
            "dim_location",
            "SELECT location_id::text, address_line_1, address_line_2, district, city, postal_code, country, phone FROM dim_location ORDER BY location_id".into(),
            "SELECT address_id::text, address_line_1, address_line_2, district, city, postal_code, country, phone FROM address ORDER BY address_id".into(),
        ),
        (
            "dim_counterparty",
            "SELECT counterparty_id::text, counterparty_legal_name, counterparty_legal_address_line_1, counterparty_legal_address_line_2, counterparty_legal_district, counterparty_legal_city, counterparty_legal_postal_code, counterparty_legal_country, counterparty_legal_phone_number FROM dim_counterparty ORDER BY 1::int".into(),
            "SELECT c.counterparty_id::text, c.counterparty_legal_name, a.address_line_1, a.address_line_2, a.district, a.city, a.postal_code, a.country, a.phone FROM counterparty c JOIN address a ON a.address_id = c.legal_address_id ORDER BY c.counterparty_id".into(),
        ),
        (
            "dim_staff",
            "SELECT staff_id::text, first_name, last_name, department_name, location, email_address FROM dim_staff ORDER BY staff_id".into(),
            "SELECT s.staff_id::text, s.first_name, s.last_name, d.department_name, d.location, s.email_address FROM staff s JOIN department d USING (department_id) ORDER BY s.staff_id".into(),
        ),
        (
            "dim_currency",
            "SELECT currency_id::text, currency_code, currency_name FROM dim_currency ORDER BY currency_id".into(),
            "SELECT currency_id::text, currency_code, CASE currency_code WHEN 'GBP' THEN 'Pound Sterling' WHEN 'USD' THEN 'US Dollar' WHEN 'EUR' THEN 'Euro' END FROM currency ORDER BY currency_id".into(),
        ),
        (
            "dim_design",
            "SELECT design_id::text, design_name, file_location, file_name FROM dim_design ORDER BY design_id".into(),
            "SELECT design_id::text, design_name, file_location, file_name FROM design ORDER BY design_id".into(),
        ),
        (
            "dim_payment_type",
            "SELECT payment_type_id::text, payment_type_name FROM dim_payment_type ORDER BY 1".into(),
            "SELECT payment_type_id::text, payment_type_name::text FROM payment_type ORDER BY payment_type_id".into(),
        ),
        (
            "dim_transaction",
            "SELECT transaction_id::text, transaction_type, sales_order_id::text, purchase_order_id::text FROM dim_transaction ORDER BY transaction_id".into(),
            "SELECT transaction_id::text, transaction_type::text, sales_order_id::text, purchase_order_id::text FROM transaction ORDER BY transaction_id".into(),
        ),
        (
            "fact_sales_order",
            format!("SELECT sales_order_id::text, created_date::text, created_time::text, last_updated_date::text, last_updated_time::text, sales_staff_id::text, counterparty_id::text, units_sold::text, unit_price::text, currency_id::text, design_id::text, agreed_payment_date::text, agreed_delivery_date::text, agreed_delivery_location_id::text FROM fact_sales_order {}", fact_keys("sales")).replace("ORDER BY 1, 4, 5", "ORDER BY sales_order_id, last_updated_date, last_updated_time"),
            "SELECT sales_order_id::text, created_at::date::text, created_at::time::text, last_updated::date::text, last_updated::time::text, staff_id::text, counterparty_id::text, units_sold::text, unit_price::text, currency_id::text, design_id::text, agreed_payment_date::date::text, agreed_delivery_date::date::text, agreed_delivery_location_id::text FROM sales_order".into(),
        ),
        (
            "fact_purchase_order",
            "SELECT purchase_order_id::text, created_date::text, created_time::text, last_updated_date::text, last_updated_time::text, staff_id::text, counterparty_id::text, item_code, item_quantity::text, item_unit_price::text, currency_id::text, agreed_delivery_date::text, agreed_payment_date::text, agreed_delivery_location_id::text FROM fact_purchase_order ORDER BY purchase_order_id, last_updated_date, last_updated_time".into(),
            "SELECT purchase_order_id::text, created_at::date::text, created_at::time::text, last_updated::date::text, last_updated::time::text, staff_id::text, counterparty_id::text, item_code, item_quantity::text, item_unit_price::text, currency_id::text, agreed_delivery_date::date::text, agreed_payment_date::date::text, agreed_delivery_location_id::text FROM purchase_order".into(),
        ),
        (
            "fact_payment",
            "SELECT payment_id::text, created_date::text, created_time::text, last_updated_date::text, last_updated_time::text, transaction_id::text, counterparty_id::text, payment_amount::text, currency_id::text, payment_type_id::text, paid::text, payment_date::text FROM fact_payment ORDER BY payment_id, last_updated_date, last_updated_time".into(),
            "SELECT payment_id::text, created_at::date::text, created_at::time::text, last_updated::date::text, last_updated::time::text, transaction_id::text, counterparty_id::text, payment_amount::text, currency_id::text, payment_type_id::text, paid::text, payment_date::date::text FROM payment".into(),
        ),
        (
            "dim_date",
            "SELECT date_id::text, year::text, month::text, day::text, day_of_week::text, day_name, month_name, quarter::text FROM dim_date ORDER BY date_id".into(),
            "WITH d AS ( \
               SELECT created_at::date AS d FROM sales_order UNION SELECT last_updated::date FROM sales_order \
               UNION SELECT agreed_payment_date::date FROM sales_order UNION SELECT agreed_delivery_date::date FROM sales_order \
               UNION SELECT created_at::date FROM purchase_order UNION SELECT last_updated::date FROM purchase_order \
               UNION SELECT agreed_payment_date::date FROM purchase_order UNION SELECT agreed_delivery_date::date FROM purchase_order \
               UNION SELECT created_at::date FROM payment UNION SELECT last_updated::date FROM payment \
               UNION SELECT payment_date::date FROM payment) \
             SELECT d::text, extract(year FROM d)::int::text, extract(month FROM d)::int::text, extract(day FROM d)::int::text, \
                    extract(isodow FROM d)::int::text, trim(to_char(d, 'Day')), trim(to_char(d, 'Month')), extract(quarter FROM d)::int::text \
             FROM d ORDER BY d".into(),
        ),
    ]
}

/// Rows ordered by their first column as a number (ids) or text (dates), then the rest.
fn sorted(mut rows: Vec<Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    rows.sort_by(|a, b| {
        let key = |r: &Vec<Option<String>>| r[0].as_deref().and_then(|v| v.parse::<i64>().ok());
        key(a).cmp(&key(b)).then_with(|| a.cmp(b))
    });
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_snapshots_become_the_star_schema_plain_sql_predicts() {
    let Some((mut stack, shared)) = Stack::real_first_snapshot("star").await else {
        return;
    };

    let first = stack.cycle().await;
    assert!(
        first.transform.quarantined.is_empty(),
        "{:?}",
        first.transform.quarantined
    );
    for (table, actual, expected) in expectations() {
        let got = sorted(stack.warehouse_rows(&actual).await);
        let want = sorted(stack.source_rows(&expected).await);
        assert!(!want.is_empty(), "{table}: the snapshot has rows");
        assert_eq!(got.len(), want.len(), "{table}: row count");
        assert!(
            got == want,
            "{table} differs from the source, first difference: {:?}",
            got.iter().zip(&want).find(|(g, w)| g != w)
        );
    }

    // The processed Parquet, read by pyarrow, has the declared types and the same values.
    let manifest: Manifest<TransformState> =
        ManifestLog::new(stack.processed.clone(), Log::Transform)
            .latest()
            .await
            .unwrap()
            .unwrap();
    let files: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| f.table == "fact_payment")
        .map(|f| stack.dirs.1.path().join(&f.key))
        .collect();
    let read = read_parquet_independently(&files);
    for (column, ty) in [
        ("payment_id", "int32"),
        ("created_date", "date32[day]"),
        // Microseconds since midnight: Athena has no type for Iceberg `time`.
        ("created_time", "int64"),
        ("payment_amount", "decimal128(10, 2)"),
        ("paid", "bool"),
        ("payment_date", "date32[day]"),
    ] {
        assert_eq!(
            read.schema.get(column).and_then(|v| v.as_str()),
            Some(ty),
            "{column}"
        );
    }
    let parquet_rows = sorted(read.rows);
    let source = sorted(stack
        .source_rows(
            "SELECT payment_id::text, created_at::date::text, \
             (extract(epoch FROM created_at::time) * 1000000)::bigint::text, \
             last_updated::date::text, (extract(epoch FROM last_updated::time) * 1000000)::bigint::text, \
             transaction_id::text, \
             counterparty_id::text, payment_amount::text, currency_id::text, payment_type_id::text, paid::text, \
             payment_date::date::text FROM payment",
        )
        .await);
    assert_eq!(parquet_rows.len(), source.len());
    assert!(
        parquet_rows == source,
        "processed fact_payment differs from the source: {:?}",
        parquet_rows.iter().zip(&source).find(|(p, s)| p != s)
    );

    // Bring the source to the 2024-11-15 snapshot: new rows inserted, changed rows updated.
    stage_snapshot(&stack.source, &shared.join("snapshot-2024-11-15.sql.gz")).await;
    let versions_before: i64 = stack
        .warehouse
        .query_one("SELECT count(*) FROM fact_payment", &[])
        .await
        .unwrap()
        .get(0);
    let changed_payments: i64 = stack
        .source
        .query_one(
            "SELECT count(*) FROM next.payment n LEFT JOIN public.payment p USING (payment_id) \
             WHERE p.payment_id IS NULL OR n.last_updated <> p.last_updated",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Keep the first snapshot's fact versions to compare against later.
    let old_versions = stack
        .source_rows("SELECT payment_id::text, last_updated::text FROM payment ORDER BY 1, 2")
        .await;
    apply_staged_snapshot(&stack.source).await;
    let second = stack.cycle().await;
    assert!(
        second.transform.quarantined.is_empty(),
        "{:?}",
        second.transform.quarantined
    );

    // Every changed payment gained exactly one fact version; nothing duplicated.
    let versions_after: i64 = stack
        .warehouse
        .query_one("SELECT count(*) FROM fact_payment", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions_after - versions_before, changed_payments);
    let current = stack
        .source_rows("SELECT payment_id::text, last_updated::text FROM payment ORDER BY 1, 2")
        .await;
    let mut expected_versions: Vec<_> = old_versions.into_iter().chain(current).collect();
    expected_versions.sort();
    expected_versions.dedup();
    let warehouse_versions = stack
        .warehouse_rows(
            "SELECT payment_id::text, (last_updated_date + last_updated_time)::text FROM fact_payment ORDER BY 1, 2",
        )
        .await;
    let mut warehouse_versions = warehouse_versions;
    warehouse_versions.sort();
    assert!(
        warehouse_versions == expected_versions,
        "fact_payment holds exactly every version once"
    );

    // Dimensions are current, and the newest fact version of each order matches the source.
    for (table, actual, expected) in expectations() {
        if table.starts_with("dim_") && table != "dim_date" {
            let got = sorted(stack.warehouse_rows(&actual).await);
            let want = sorted(stack.source_rows(&expected).await);
            assert!(
                got == want,
                "{table} is not current after the second snapshot"
            );
        }
    }
    let latest = stack
        .warehouse_rows(
            "SELECT DISTINCT ON (payment_id) payment_id::text, paid::text FROM fact_payment \
             ORDER BY payment_id, last_updated_date DESC, last_updated_time DESC",
        )
        .await;
    let source_paid = stack
        .source_rows("SELECT payment_id::text, paid::text FROM payment ORDER BY payment_id")
        .await;
    let latest = sorted(latest);
    assert!(
        latest == sorted(source_paid),
        "the newest payment versions say what the source says"
    );

    // A third cycle changes nothing.
    let third = stack.cycle().await;
    assert_eq!(third.load.rows(), 0);
}
