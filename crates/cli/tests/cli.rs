//! The `tributary` binary as a user meets it: errors, help, and a local run.

mod support;

use std::process::{Command, Output};

use support::{Installation, tributary};
use tributary_testkit::{TestDb, temp_lake};

/// The one `error:` line of a failed run.
fn error_line(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure, got {output:?}");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line in {stderr:?}");
    errors[0].to_string()
}

#[test]
fn a_missing_database_url_names_the_variable_and_an_example() {
    let lake = tempfile::tempdir().unwrap();
    let raw = format!("file://{}", lake.path().display());
    let line = error_line(&tributary(&["ingest", "--raw-url", &raw], &[]));
    assert!(
        line.starts_with("error: TOTESYS_DATABASE_URL is not set"),
        "{line}"
    );
    assert!(
        line.contains("example: TOTESYS_DATABASE_URL=postgres://"),
        "{line}"
    );
}

#[test]
fn a_malformed_lake_url_names_the_variable() {
    let line = error_line(&tributary(
        &["ingest"],
        &[
            ("TRIBUTARY_RAW_URL", "my-bucket/raw"),
            ("TOTESYS_DATABASE_URL", "postgres://x@127.0.0.1:1/t"),
        ],
    ));
    assert!(
        line.starts_with("error: TRIBUTARY_RAW_URL is not a URL"),
        "{line}"
    );
    let line = error_line(&tributary(&["status", "--raw-url", "gs://bucket/raw"], &[]));
    assert!(
        line.contains("TRIBUTARY_RAW_URL has unsupported scheme \"gs\""),
        "{line}"
    );
}

#[test]
fn flags_override_the_environment() {
    let lake = tempfile::tempdir().unwrap();
    let raw = format!("file://{}", lake.path().display());
    let line = error_line(&tributary(
        &["ingest", "--raw-url", &raw],
        &[("TRIBUTARY_RAW_URL", "not a url")],
    ));
    assert!(
        line.contains("TOTESYS_DATABASE_URL"),
        "the flag replaced the bad variable: {line}"
    );
}

#[test]
fn an_unreachable_database_is_one_line_without_the_password() {
    let lake = tempfile::tempdir().unwrap();
    let raw = format!("file://{}", lake.path().display());
    let output = tributary(
        &["ingest", "--raw-url", &raw],
        &[(
            "TOTESYS_DATABASE_URL",
            "postgres://etl:s3cret-pw@127.0.0.1:1/totesys",
        )],
    );
    let line = error_line(&output);
    assert!(
        line.starts_with("error: cannot connect to the totesys database at 127.0.0.1:1/totesys (from TOTESYS_DATABASE_URL)"),
        "{line}"
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains("s3cret-pw"), "the password leaked: {all}");
    let line = error_line(&tributary(&["generate", "--totesys-url", "mysql://x"], &[]));
    assert!(
        line.contains("TOTESYS_DATABASE_URL is not a valid PostgreSQL URL"),
        "{line}"
    );
}

#[test]
fn every_command_has_help() {
    for (command, flag) in [
        ("ingest", "--since"),
        ("generate", "--scale"),
        ("simulate", "--rate"),
        ("status", "--raw-url"),
        ("transform", "--rebuild"),
        ("load", "--warehouse-url"),
        ("run", "--every"),
    ] {
        let output = tributary(&[command, "--help"], &[]);
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(flag), "{command} --help lacks {flag}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_ingest_and_status_work_from_the_command_line() {
    let Some(db) = TestDb::create("cli").await else {
        return;
    };
    let (_dir, raw) = temp_lake();
    let env = [
        ("TOTESYS_DATABASE_URL", db.url.as_str()),
        ("TRIBUTARY_RAW_URL", raw.as_str()),
    ];
    let generated = tributary(&["generate", "--days", "5", "--seed", "9"], &env);
    assert!(generated.status.success(), "{generated:?}");
    assert!(String::from_utf8_lossy(&generated.stdout).contains("sales_order"));
    let again = tributary(&["generate", "--days", "5"], &env);
    assert!(error_line(&again).contains("generate needs an empty database"));

    let ingested = tributary(&["ingest"], &env);
    assert!(ingested.status.success(), "{ingested:?}");
    let text = String::from_utf8_lossy(&ingested.stdout);
    assert!(text.contains("committed manifest 1"), "{text}");

    let status = tributary(&["status"], &env);
    assert!(status.status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("manifest 1"), "{text}");
    for table in ["address", "sales_order", "payment", "transaction"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(table))
            .unwrap_or_else(|| panic!("{table} in {text}"));
        let watermark = line.split_whitespace().nth(1).unwrap_or("-");
        assert!(
            watermark.len() == 10 && watermark.starts_with("20"),
            "{table} has a watermark: {line}"
        );
    }

    let backfill = tributary(
        &[
            "ingest",
            "--tables",
            "payment,staff",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
        &env,
    );
    assert!(backfill.status.success(), "{backfill:?}");
    let text = String::from_utf8_lossy(&backfill.stdout);
    assert!(
        text.contains("payment") && !text.contains("sales_order"),
        "{text}"
    );

    let unknown = tributary(&["ingest", "--tables", "pg_authid"], &env);
    assert!(error_line(&unknown).contains("unknown table \"pg_authid\""));
}

#[test]
fn the_scheduler_survives_failed_cycles() {
    let lake = tempfile::tempdir().unwrap();
    let raw = format!("file://{}/raw", lake.path().display());
    let processed = format!("file://{}/processed", lake.path().display());
    let started = std::time::Instant::now();
    let output = tributary(
        &[
            "run",
            "--every",
            "200ms",
            "--cycles",
            "3",
            "--raw-url",
            &raw,
            "--processed-url",
            &processed,
        ],
        &[
            ("TOTESYS_DATABASE_URL", "postgres://u@127.0.0.1:1/totesys"),
            (
                "WAREHOUSE_DATABASE_URL",
                "postgres://u@127.0.0.1:1/warehouse",
            ),
        ],
    );
    assert!(
        output.status.success(),
        "a failed cycle does not stop the scheduler: {output:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("cycle failed").count(), 3, "{stderr}");
    assert!(
        stderr.contains("cannot connect to the totesys database"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_a_change_from_source_to_warehouse() {
    let Some(installation) = Installation::new("cli_run").await else {
        return;
    };
    let env = installation.env();
    let warehouse = &installation.warehouse;
    assert!(
        tributary(&["generate", "--days", "3"], &env)
            .status
            .success()
    );
    assert!(tributary(&["warehouse", "init"], &env).status.success());
    assert!(
        tributary(&["warehouse", "init"], &env).status.success(),
        "init is idempotent"
    );
    let first = tributary(&["run"], &env);
    assert!(first.status.success(), "{first:?}");
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.contains("cycle: ingested") && text.contains("change-to-warehouse lag"),
        "{text}"
    );
    let client = warehouse.connect().await;
    let facts: i64 = client
        .query_one("SELECT count(*) FROM fact_sales_order", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(facts, 45, "3 days of 15 sales orders");
    assert!(
        text.contains("iceberg: 17 commit(s)"),
        "the run published every star-schema table: {text}"
    );
    let second = tributary(&["run"], &env);
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("no source change"),
        "{second:?}"
    );
    // The tables as the CLI describes them: fact_sales_order holds the 45
    // facts, each dimension at least one row; maintenance leaves them so.
    let describe = |label: &str| {
        let out = tributary(&["iceberg", "describe"], &env);
        assert!(out.status.success(), "{label}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let row = text
            .lines()
            .find(|l| l.starts_with("fact_sales_order "))
            .unwrap_or_else(|| panic!("{label}: {text}"))
            .to_string();
        let columns: Vec<&str> = row.split_whitespace().collect();
        (columns[5].to_string(), text)
    };
    let (rows, text) = describe("after the run");
    assert_eq!(rows, "45", "{text}");
    assert!(
        text.contains("markets_trades") && text.contains("(not published yet)"),
        "{text}"
    );
    let maintained = tributary(&["iceberg", "maintain"], &env);
    assert!(maintained.status.success(), "{maintained:?}");
    assert_eq!(describe("after maintenance").0, "45");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_the_logs() {
    let Some(source) = TestDb::create("cli_secret_src").await else {
        return;
    };
    let Some(warehouse) = TestDb::create("cli_secret_wh").await else {
        return;
    };
    let secret = "Sup3r-Secret-Pw";
    // The local stack trusts loopback, so any password connects; it must
    // still never be printed, even at debug level.
    let with_password = |url: &str| url.replacen("postgres@", &format!("postgres:{secret}@"), 1);
    let (source_url, warehouse_url) = (with_password(&source.url), with_password(&warehouse.url));
    assert!(source_url.contains(secret));
    let (_raw_dir, raw) = temp_lake();
    let (_processed_dir, processed) = temp_lake();
    let env = [
        ("TOTESYS_DATABASE_URL", source_url.as_str()),
        ("WAREHOUSE_DATABASE_URL", warehouse_url.as_str()),
        ("TRIBUTARY_RAW_URL", raw.as_str()),
        ("TRIBUTARY_PROCESSED_URL", processed.as_str()),
        ("RUST_LOG", "debug"),
    ];
    let mut all = String::new();
    for args in [
        &["generate", "--days", "2"][..],
        &["run"],
        &["reconcile"],
        &["status"],
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tributary"));
        command.args(args).env_clear().envs(env);
        let output = command.output().unwrap();
        assert!(output.status.success(), "{args:?}: {output:?}");
        all.push_str(&String::from_utf8_lossy(&output.stdout));
        all.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    assert!(all.len() > 1000, "debug logging produced output");
    assert!(!all.contains(secret), "a password reached the output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_markets_take_trades_to_the_warehouse() {
    use std::io::{BufRead, BufReader};
    let Some(warehouse) = TestDb::create("cli_markets").await else {
        return;
    };
    let mut replay = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args([
            "replay",
            "--for",
            "20s",
            "--symbols",
            "2",
            "--every",
            "200ms",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Keep its stdout open: it prints the Mercado Bitcoin and CoinCap URLs.
    let mut lines = BufReader::new(replay.stdout.take().unwrap());
    let (mut url, mut coincap) = (String::new(), String::new());
    lines.read_line(&mut url).unwrap();
    lines.read_line(&mut coincap).unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && coincap.trim_end().ends_with("/v3"),
        "{url} {coincap}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (_raw_dir, raw) = temp_lake();
    let (_processed_dir, processed) = temp_lake();
    let output = tributary(
        &["markets"],
        &[
            ("TRIBUTARY_MERCADO_URL", url.trim()),
            ("TRIBUTARY_COINCAP_URL", coincap.trim()),
            ("COINCAP_API_KEY", "test-key"),
            ("WAREHOUSE_DATABASE_URL", warehouse.url.as_str()),
            ("TRIBUTARY_RAW_URL", raw.as_str()),
            ("TRIBUTARY_PROCESSED_URL", processed.as_str()),
        ],
    );
    let _ = replay.kill();
    let _ = replay.wait();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("polled 2 symbol(s)"), "{text}");
    let client = warehouse.connect().await;
    let trades: i64 = client
        .query_one("SELECT count(*) FROM fact_trade", &[])
        .await
        .unwrap()
        .get(0);
    assert!(trades > 0);
    let symbols: i64 = client
        .query_one("SELECT count(DISTINCT symbol) FROM fact_trade", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(symbols, 2, "the fan token is not polled");
    let named: i64 = client
        .query_one(
            "SELECT count(*) FROM dim_asset WHERE name IS NOT NULL AND price_usd IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(named, 2, "CoinCap's names and prices reached dim_asset");
    drop(lines);
    let assets = raw.trim_start_matches("file://").to_string() + "/markets/coincap/assets";
    assert!(
        std::path::Path::new(&assets).is_dir(),
        "the CoinCap snapshot was kept"
    );
}
