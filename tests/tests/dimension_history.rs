//! Type 2 history of the dimensions.
//!
//! On the real totesys snapshots (../shared/totesys; skipped when absent):
//! the 2024-02-23 snapshot, then the source brought to 2024-11-15. Every
//! entity whose dimension row changed gains exactly one version, the old
//! one says what the first snapshot said, the current one what the
//! dimension says; facts join the versions valid when they were last
//! updated; a rebuild gives the same history, keys included.
//!
//! On generated churn: rounds of address, staff, department and
//! counterparty changes (some through a joined table, one that no
//! dimension carries), each followed by a cycle; every entity's versions
//! are the dimension rows the source showed round after round.

use std::collections::BTreeMap;

use tributary_e2e::{apply_staged_snapshot, pipeline::Stack, stage_snapshot};
use tributary_pipeline::totesys::transform::{TransformRequest, transform};

/// A history table, its entity key, the dimension columns it repeats, and
/// the same columns by plain SQL over the source tables of schema `{s}`.
struct History {
    table: &'static str,
    dimension: &'static str,
    key: &'static str,
    columns: &'static str,
    source: &'static str,
}

const HISTORIES: [History; 6] = [
    History {
        table: "dim_location_history",
        dimension: "dim_location",
        key: "location_id",
        columns: "location_id::text, address_line_1, address_line_2, district, city, postal_code, country, phone",
        source: "SELECT address_id::text, address_line_1, address_line_2, district, city, postal_code, country, phone FROM {s}.address",
    },
    History {
        table: "dim_counterparty_history",
        dimension: "dim_counterparty",
        key: "counterparty_id",
        columns: "counterparty_id::text, counterparty_legal_name, counterparty_legal_address_line_1, counterparty_legal_address_line_2, counterparty_legal_district, counterparty_legal_city, counterparty_legal_postal_code, counterparty_legal_country, counterparty_legal_phone_number",
        source: "SELECT c.counterparty_id::text, c.counterparty_legal_name, a.address_line_1, a.address_line_2, a.district, a.city, a.postal_code, a.country, a.phone FROM {s}.counterparty c JOIN {s}.address a ON a.address_id = c.legal_address_id",
    },
    History {
        table: "dim_staff_history",
        dimension: "dim_staff",
        key: "staff_id",
        columns: "staff_id::text, first_name, last_name, department_name, location, email_address",
        source: "SELECT s.staff_id::text, s.first_name, s.last_name, d.department_name, d.location, s.email_address FROM {s}.staff s JOIN {s}.department d USING (department_id)",
    },
    History {
        table: "dim_currency_history",
        dimension: "dim_currency",
        key: "currency_id",
        columns: "currency_id::text, currency_code",
        source: "SELECT currency_id::text, currency_code FROM {s}.currency",
    },
    History {
        table: "dim_design_history",
        dimension: "dim_design",
        key: "design_id",
        columns: "design_id::text, design_name, file_location, file_name",
        source: "SELECT design_id::text, design_name, file_location, file_name FROM {s}.design",
    },
    History {
        table: "dim_payment_type_history",
        dimension: "dim_payment_type",
        key: "payment_type_id",
        columns: "payment_type_id::text, payment_type_name",
        source: "SELECT payment_type_id::text, payment_type_name::text FROM {s}.payment_type",
    },
];

type Rows = Vec<Vec<Option<String>>>;

/// Rows per entity id.
type ByEntity = BTreeMap<String, Rows>;

/// Rows by their first column (the entity id).
fn by_id(rows: Rows) -> ByEntity {
    let mut out = ByEntity::new();
    for row in rows {
        out.entry(row[0].clone().unwrap_or_default())
            .or_default()
            .push(row);
    }
    out
}

async fn history(stack: &Stack, h: &History) -> Rows {
    stack
        .warehouse_rows(&format!(
            "SELECT {}, valid_from::text, valid_to::text, is_current::text, {}_version_id::text \
             FROM {} ORDER BY {}, valid_from",
            h.columns,
            h.key.trim_end_matches("_id"),
            h.table,
            h.key
        ))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_changed_dimension_row_of_the_real_snapshots_gains_exactly_one_version() {
    let Some((mut stack, shared)) = Stack::real_first_snapshot("history").await else {
        return;
    };
    stack.cycle().await;
    for h in &HISTORIES {
        let rows = history(&stack, h).await;
        let ids = by_id(rows.clone());
        assert_eq!(
            rows.len(),
            ids.len(),
            "{}: one version per entity at first",
            h.table
        );
    }

    stage_snapshot(&stack.source, &shared.join("snapshot-2024-11-15.sql.gz")).await;
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    for h in &HISTORIES {
        before.insert(
            h.table,
            by_id(stack.source_rows(&h.source.replace("{s}", "public")).await),
        );
        after.insert(
            h.table,
            by_id(stack.source_rows(&h.source.replace("{s}", "next")).await),
        );
    }
    // Designs the source changed without a new last_updated.
    let unstamped: Vec<String> = stack
        .source_rows(
            "SELECT n.design_id::text FROM next.design n JOIN public.design p USING (design_id) \
             WHERE n.last_updated = p.last_updated AND (n.design_name, n.file_location, n.file_name) \
                   IS DISTINCT FROM (p.design_name, p.file_location, p.file_name)",
        )
        .await
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    let second_read = chrono::Utc::now().naive_utc();
    apply_staged_snapshot(&stack.source).await;
    let second = stack.cycle().await;
    assert!(
        second.transform.quarantined.is_empty(),
        "{:?}",
        second.transform.quarantined
    );

    let mut changed_total = 0;
    let width = |h: &History| h.columns.split(", ").count();
    for h in &HISTORIES {
        let rows = history(&stack, h).await;
        let versions = by_id(rows.clone());
        let current = by_id(
            stack
                .warehouse_rows(&format!("SELECT {} FROM {}", h.columns, h.dimension))
                .await,
        );
        assert_eq!(
            versions.keys().collect::<Vec<_>>(),
            current.keys().collect::<Vec<_>>(),
            "{}: every entity of the dimension has a history",
            h.table
        );
        let n = width(h);
        for (id, list) in &versions {
            // Contiguous intervals; the last, and only it, is current.
            for pair in list.windows(2) {
                assert_eq!(pair[0][n + 1], pair[1][n], "{} {id}: contiguous", h.table);
            }
            for (i, v) in list.iter().enumerate() {
                let last = i + 1 == list.len();
                assert_eq!(
                    v[n + 2].as_deref(),
                    Some(if last { "true" } else { "false" })
                );
                assert_eq!(
                    v[n + 1].is_none(),
                    last,
                    "{} {id}: open only when current",
                    h.table
                );
            }
            let attributes = |row: &Vec<Option<String>>| row[..n].to_vec();
            assert_eq!(
                attributes(list.last().unwrap()),
                current[id][0][..n].to_vec(),
                "{} {id}: the current version is the dimension row",
                h.table
            );
            let old = before[h.table].get(id).map(|r| r[0].clone());
            let new = after[h.table][id][0].clone();
            match old {
                Some(old) if old != new => {
                    changed_total += 1;
                    assert_eq!(
                        list.len(),
                        2,
                        "{} {id}: a changed row gains exactly one version: {list:?}",
                        h.table
                    );
                    assert_eq!(
                        attributes(&list[0]),
                        old,
                        "{} {id}: the old version",
                        h.table
                    );
                    assert_eq!(
                        attributes(&list[1]),
                        new,
                        "{} {id}: the new version",
                        h.table
                    );
                    if h.table == "dim_design_history" && unstamped.contains(id) {
                        let from = chrono::NaiveDateTime::parse_from_str(
                            list[1][n].as_deref().unwrap(),
                            "%Y-%m-%d %H:%M:%S%.f",
                        )
                        .unwrap();
                        assert!(
                            from >= second_read - chrono::Duration::seconds(5),
                            "design {id} changed without a new last_updated: valid from when it was read ({from})"
                        );
                    }
                }
                _ => assert_eq!(list.len(), 1, "{} {id}: unchanged, one version", h.table),
            }
        }
    }
    eprintln!(
        "dimension rows changed between the snapshots: {changed_total}, designs unstamped: {}",
        unstamped.len()
    );
    assert!(
        changed_total > 0,
        "the snapshots differ in some dimension rows"
    );
    assert!(
        !unstamped.is_empty(),
        "the real data changes designs without stamping them"
    );

    // Facts join the versions valid when they were last updated: each fact
    // version once, every one matched.
    for (view, fact) in [
        ("fact_sales_order_as_of", "fact_sales_order"),
        ("fact_purchase_order_as_of", "fact_purchase_order"),
        ("fact_payment_as_of", "fact_payment"),
    ] {
        let counts = stack
            .warehouse_rows(&format!(
                "SELECT (SELECT count(*) FROM {view})::text, (SELECT count(*) FROM {fact})::text, \
                        (SELECT count(*) FROM {view} WHERE counterparty_version_id IS NULL \
                                                    OR currency_version_id IS NULL)::text"
            ))
            .await;
        assert_eq!(
            counts[0][0], counts[0][1],
            "{view}: one row per fact version"
        );
        assert_eq!(
            counts[0][2].as_deref(),
            Some("0"),
            "{view}: every fact finds its versions"
        );
    }
    // A sales order last updated before its counterparty changed sees the old
    // version, one updated since sees the new one.
    let mismatched = stack
        .warehouse_rows(
            "SELECT count(*)::text FROM fact_sales_order_as_of f \
             JOIN dim_counterparty_history h USING (counterparty_version_id) \
             WHERE NOT (h.valid_from <= f.as_of AND (h.valid_to IS NULL OR f.as_of < h.valid_to))",
        )
        .await;
    assert_eq!(mismatched[0][0].as_deref(), Some("0"));

    // A rebuild from the raw lake gives the same history, keys included.
    let mut kept = Vec::new();
    for h in &HISTORIES {
        kept.push(history(&stack, h).await);
    }
    transform(
        &stack.raw,
        &stack.processed,
        &TransformRequest { rebuild: true },
        &stack.alerts,
    )
    .await
    .unwrap();
    stack.load().await.unwrap();
    for (h, kept) in HISTORIES.iter().zip(kept) {
        assert_eq!(
            history(&stack, h).await,
            kept,
            "{}: same after a rebuild",
            h.table
        );
    }
}

/// The history's versions of each entity, attributes only.
async fn attribute_sequences(
    stack: &Stack,
    h: &History,
) -> BTreeMap<String, Vec<Vec<Option<String>>>> {
    let n = h.columns.split(", ").count();
    by_id(history(stack, h).await)
        .into_iter()
        .map(|(id, list)| (id, list.into_iter().map(|r| r[..n].to_vec()).collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_churn_gives_each_entity_the_versions_the_source_showed() {
    let Some(mut stack) = Stack::generated("churn", 20).await else {
        return;
    };
    let histories = [&HISTORIES[0], &HISTORIES[1], &HISTORIES[2]];
    // Per history and entity, the dimension rows the source showed after
    // each round, consecutive repeats folded.
    let mut shown: BTreeMap<&str, ByEntity> = BTreeMap::new();
    let rounds: [&[&str]; 6] = [
        &[],
        &[
            "UPDATE address SET phone = '0000 000001', last_updated = now() AT TIME ZONE 'UTC' WHERE address_id = 3",
            "UPDATE staff SET department_id = 1 + department_id % 8, last_updated = now() AT TIME ZONE 'UTC' WHERE staff_id = 5",
        ],
        // Reaches every staff member of the department, through the join.
        &[
            "UPDATE department SET department_name = department_name || ' (renamed)', last_updated = now() AT TIME ZONE 'UTC' WHERE department_id = 2",
        ],
        &[
            "UPDATE counterparty SET counterparty_legal_name = counterparty_legal_name || ' Ltd', last_updated = now() AT TIME ZONE 'UTC' WHERE counterparty_id = 4",
            "UPDATE address SET city = 'York', last_updated = now() AT TIME ZONE 'UTC' WHERE address_id = 7",
        ],
        &[
            "UPDATE address SET phone = '0000 000002', last_updated = now() AT TIME ZONE 'UTC' WHERE address_id = 3",
            "UPDATE staff SET department_id = 1 + (department_id + 6) % 8, last_updated = now() AT TIME ZONE 'UTC' WHERE staff_id = 5",
        ],
        // A column no dimension carries: no version.
        &[
            "UPDATE counterparty SET commercial_contact = 'Someone Else', last_updated = now() AT TIME ZONE 'UTC' WHERE counterparty_id = 4",
        ],
    ];
    let mut windows = Vec::new();
    for (round, statements) in rounds.iter().enumerate() {
        let started = chrono::Utc::now().naive_utc();
        for statement in *statements {
            stack.source.batch_execute(statement).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        windows.push((started, chrono::Utc::now().naive_utc()));
        for h in histories {
            let rows = by_id(stack.source_rows(&h.source.replace("{s}", "public")).await);
            let entities = shown.entry(h.table).or_default();
            for (id, row) in rows {
                let list = entities.entry(id).or_default();
                if list.last() != Some(&row[0]) {
                    list.push(row[0].clone());
                }
            }
        }
        let report = stack.cycle().await;
        assert!(report.transform.quarantined.is_empty(), "round {round}");
        // Orders between rounds, referencing the entities as they are now.
        tributary_totesys::simulate::simulate(
            &mut stack.source,
            &tributary_totesys::simulate::SimulateOptions {
                orders_per_minute: 1_200.0,
                duration: Some(std::time::Duration::from_millis(300)),
                seed: round as u64,
                churn_every: 0,
            },
            std::future::pending(),
        )
        .await
        .unwrap();
    }
    stack.cycle().await;

    let mut changed = 0;
    for h in histories {
        let got = attribute_sequences(&stack, h).await;
        let want = &shown[h.table];
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{}",
            h.table
        );
        for (id, versions) in want {
            assert_eq!(
                &got[id], versions,
                "{} {id}: the versions the source showed",
                h.table
            );
            changed += versions.len() - 1;
        }
        // Every later version took effect at its change, inside its round.
        let n = h.columns.split(", ").count();
        for (id, list) in by_id(history(&stack, h).await) {
            for version in &list[1..] {
                let from = chrono::NaiveDateTime::parse_from_str(
                    version[n].as_deref().unwrap(),
                    "%Y-%m-%d %H:%M:%S%.f",
                )
                .unwrap();
                assert!(
                    windows.iter().any(|(a, b)| {
                        *a - chrono::Duration::seconds(1) <= from
                            && from <= *b + chrono::Duration::seconds(1)
                    }),
                    "{} {id}: a version from {from} outside every round",
                    h.table
                );
            }
        }
    }
    // Address 3 twice, address 7 (and every counterparty at 3 or 7), staff 5
    // twice, the renamed department's staff, counterparty 4 once.
    assert!(changed >= 7, "{changed} versions beyond the first");
    let staff_renamed = stack
        .warehouse_rows(
            "SELECT count(DISTINCT staff_id)::text FROM dim_staff_history \
             WHERE department_name LIKE '% (renamed)' AND is_current",
        )
        .await;
    assert_ne!(
        staff_renamed[0][0].as_deref(),
        Some("0"),
        "a department rename opens staff versions"
    );

    // Orders last updated since counterparty 4 was renamed see the new name,
    // those before it the old one.
    let wrong = stack
        .warehouse_rows(
            "SELECT count(*)::text FROM fact_sales_order_as_of f \
             WHERE f.counterparty_id = 4 AND (f.as_of >= (SELECT min(valid_from) \
                   FROM dim_counterparty_history WHERE counterparty_id = 4 \
                   AND counterparty_legal_name LIKE '% Ltd')) \
                 <> (f.counterparty_legal_name LIKE '% Ltd')",
        )
        .await;
    assert_eq!(wrong[0][0].as_deref(), Some("0"));
    let unmatched = stack
        .warehouse_rows(
            "SELECT count(*)::text FROM fact_sales_order_as_of \
             WHERE staff_version_id IS NULL OR counterparty_version_id IS NULL \
                OR design_version_id IS NULL OR agreed_delivery_location_version_id IS NULL",
        )
        .await;
    let detail = stack
        .warehouse_rows(
            "SELECT sales_order_id::text, as_of::text, staff_version_id::text, sales_staff_id::text, counterparty_version_id::text, design_version_id::text, design_id::text, agreed_delivery_location_version_id::text, \
             (SELECT string_agg(valid_from::text || '/' || coalesce(valid_to::text, '-'), ',') FROM dim_staff_history h WHERE h.staff_id = f.sales_staff_id), (SELECT string_agg(valid_from::text, ',') FROM dim_counterparty_history h WHERE h.counterparty_id = f.counterparty_id) \
             FROM fact_sales_order_as_of f \
             WHERE staff_version_id IS NULL OR counterparty_version_id IS NULL \
                OR design_version_id IS NULL OR agreed_delivery_location_version_id IS NULL",
        )
        .await;
    assert_eq!(unmatched[0][0].as_deref(), Some("0"), "{detail:?}");
}
