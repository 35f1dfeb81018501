//! TLS to PostgreSQL against the local stack's real TLS listener.

use std::path::PathBuf;

use tributary_e2e::{TestDb, skip};
use tributary_pipeline::{Error, db::connect};

fn stack_ca() -> Option<PathBuf> {
    match std::env::var("TRIBUTARY_TEST_PG_CA") {
        Ok(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            skip(
                "the local stack has no TLS certificate (TRIBUTARY_TEST_PG_CA unset; is openssl installed?)",
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_used_and_verified_when_required() {
    let Some(ca) = stack_ca() else { return };
    let Some(db) = TestDb::create("tls").await else {
        return;
    };
    // `localhost` matches the certificate's name; the IP would too.
    let url = format!(
        "{}?sslmode=require",
        db.url.replace("127.0.0.1", "localhost")
    );
    let client = connect(&url, "totesys", "TOTESYS_DATABASE_URL", Some(&ca))
        .await
        .unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the session is encrypted");

    // Without the stack's CA the certificate is not trusted: a clear refusal.
    let err = connect(&url, "totesys", "TOTESYS_DATABASE_URL", None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("cannot connect to the totesys database") && text.contains("certificate"),
        "{text}"
    );

    // A database on this machine may still go without TLS when not asked for.
    let plain = connect(&db.url, "totesys", "TOTESYS_DATABASE_URL", None)
        .await
        .unwrap();
    let ssl: bool = plain
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!ssl);
}
