//! Hostile text survives the whole pipeline unchanged, and nothing a user
//! supplies becomes an identifier.

use tributary_e2e::pipeline::Stack;
use tributary_pipeline::totesys::ingest::{IngestRequest, ingest};

fn hostile_strings() -> Vec<String> {
    vec![
        "O'Brien; DROP TABLE dim_staff; --".to_string(),
        "\"quoted\" \\ back\\slash /* comment */ $$ dollar $$".to_string(),
        "tab\there\nnewline\r\nand a NUL-free end".to_string(),
        "Zoë Ñandú — 東京 — 🚀🦀 — עברית".to_string(),
        format!("{}🚀", "long ünicode ".repeat(800)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_round_trips_unchanged_into_the_warehouse() {
    let Some(mut stack) = Stack::generated("hostile", 5).await else {
        return;
    };
    stack.cycle().await;
    let strings = hostile_strings();
    assert!(strings[4].len() > 10 * 1024);
    for (i, text) in strings.iter().enumerate() {
        let address_id = (i + 1) as i32;
        stack
            .source
            .execute(
                "UPDATE address SET address_line_1 = $1, city = $1, last_updated = (now() AT TIME ZONE 'UTC')::timestamp(3) WHERE address_id = $2",
                &[text, &address_id],
            )
            .await
            .unwrap();
        stack
            .source
            .execute(
                "UPDATE design SET design_name = $1, last_updated = (now() AT TIME ZONE 'UTC')::timestamp(3) WHERE design_id = $2",
                &[text, &address_id],
            )
            .await
            .unwrap();
    }
    stack.cycle().await;
    for (i, text) in strings.iter().enumerate() {
        let id = (i + 1) as i32;
        let location = stack
            .warehouse
            .query_one(
                "SELECT address_line_1, city FROM dim_location WHERE location_id = $1",
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(&location.get::<_, String>(0), text);
        assert_eq!(&location.get::<_, String>(1), text);
        let design = stack
            .warehouse
            .query_one(
                "SELECT design_name FROM dim_design WHERE design_id = $1",
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(&design.get::<_, String>(0), text);
        // Counterparties at that address carry it too.
        let counterparties = stack
            .warehouse
            .query(
                "SELECT counterparty_legal_address_line_1 FROM dim_counterparty d \
                 WHERE counterparty_legal_city = $1",
                &[text],
            )
            .await
            .unwrap();
        for row in counterparties {
            assert_eq!(&row.get::<_, String>(0), text);
        }
    }
    let staff: i64 = stack
        .warehouse
        .query_one("SELECT count(*) FROM dim_staff", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(staff, 20, "no statement was injected");
    stack.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_names_in_requests_never_reach_sql() {
    let Some(mut stack) = Stack::generated("identifiers", 2).await else {
        return;
    };
    for name in [
        "payment; DROP TABLE payment",
        "pg_catalog.pg_authid",
        "\"payment\"",
        "PAYMENT",
        "",
    ] {
        let request = IngestRequest {
            tables: Some(vec![name.to_string()]),
            since: None,
        };
        let err = ingest(
            &mut stack.source,
            &stack.raw,
            &stack.options,
            &request,
            &stack.alerts,
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().starts_with("unknown table"),
            "{name}: {err}"
        );
    }
    // A request's typo is the caller's to see: nothing was alerted.
    assert!(stack.alerts.sent().is_empty(), "{:?}", stack.alerts.sent());
    let payments: i64 = stack
        .source
        .query_one("SELECT count(*) FROM payment", &[])
        .await
        .unwrap()
        .get(0);
    assert!(payments > 0, "the payment table is intact");
    for malformed in [
        "{\"tables\": \"payment\"}",
        "{\"since\": \"yesterday\"}",
        "{\"rebuild\": true}",
        "[",
        "{\"tables\": [1]}",
    ] {
        let parsed: Result<IngestRequest, _> = serde_json::from_str(malformed);
        assert!(parsed.is_err(), "{malformed} must be refused");
    }
}
