//! Shared fixtures for Tributary's tests: a fresh database per test on the
//! local stack, the real totesys snapshots from `../shared`, an independent
//! Parquet reader (pyarrow), faulty object stores and a wired pipeline.
//!
//! It builds no AWS SDK, so the core crates' tests stay quick to compile; the
//! moto_server helpers live in the end-to-end crate (`tests/support/aws.rs`).
//!
//! Tests that need the stack skip with a message when it is absent, unless
//! `TRIBUTARY_REQUIRE_STACK=1` (set by `make test`), where absence fails.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::Command,
};

pub mod faults;
pub mod pipeline;

use bytes::Bytes;
use futures_util::{SinkExt, pin_mut};
use tokio_postgres::{Client, NoTls};

/// Whether a missing stack or fixture is a failure rather than a skip.
pub fn stack_required() -> bool {
    std::env::var("TRIBUTARY_REQUIRE_STACK").is_ok_and(|v| v == "1")
}

/// Skips (or, under `make test`, fails) a test whose prerequisite is absent.
pub fn skip(reason: &str) {
    if stack_required() {
        panic!("required test prerequisite missing: {reason}");
    }
    eprintln!("SKIP: {reason}");
}

/// The URL of the local stack's maintenance database.
fn admin_url() -> Option<String> {
    if let Ok(url) = std::env::var("TRIBUTARY_PG_ADMIN_URL") {
        return Some(url);
    }
    let url = std::env::var("TOTESYS_DATABASE_URL").ok()?;
    let (base, _) = url.rsplit_once('/')?;
    Some(format!("{base}/postgres"))
}

/// A database of its own for one test, dropped afterwards.
pub struct TestDb {
    /// Connection URL of the test database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `t_<label>_<random>`; `None` (after a skip message) without a stack.
    pub async fn create(label: &str) -> Option<TestDb> {
        let Some(admin_url) = admin_url() else {
            skip(
                "no PostgreSQL: run `scripts/local-stack.sh start` and `eval \"$(scripts/local-stack.sh env)\"`, or `make test`",
            );
            return None;
        };
        let admin = match connect(&admin_url).await {
            Ok(client) => client,
            Err(e) => {
                skip(&format!(
                    "cannot reach the local stack's PostgreSQL at {admin_url}: {e}"
                ));
                return None;
            }
        };
        let name = format!("t_{label}_{:08x}", rand::random::<u32>());
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("admin URL has a database");
        Some(TestDb {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        })
    }

    /// A new connection to the test database.
    pub async fn connect(&self) -> Client {
        connect(&self.url).await.expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = connect(&admin_url).await.ok()?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Connects without TLS (the local stack is loopback only).
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `../shared/totesys`, or `None` after a skip message.
pub fn shared_totesys() -> Option<PathBuf> {
    shared("totesys")
}

/// `../shared/<name>` (real data kept outside the repository: totesys,
/// olist, pagila), or `None` after a skip message.
pub fn shared(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../../shared/{name}"));
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(&format!(
            "{} is absent; the real-data tests need ../shared beside the checkout",
            dir.display()
        ));
        None
    }
}

/// Runs a psql script against `url` (gunzipped first when it ends in
/// `.gz`), with `-v name=value` variables; panics with psql's message.
pub fn psql_file(url: &str, file: &Path, variables: &[(&str, &str)]) {
    let vars: String = variables
        .iter()
        .map(|(k, v)| format!(" -v {k}='{v}'"))
        .collect();
    let command = if file.extension().is_some_and(|e| e == "gz") {
        format!(
            "gunzip -c '{}' | psql -q -v ON_ERROR_STOP=1{vars} '{url}' >/dev/null",
            file.display()
        )
    } else {
        format!(
            "psql -q -v ON_ERROR_STOP=1{vars} '{url}' -f '{}' >/dev/null",
            file.display()
        )
    };
    let out = std::process::Command::new("sh")
        .args(["-c", &command])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An order-independent fingerprint of a table's rows as PostgreSQL prints
/// them: (row count, md5 of the sorted rows).
pub async fn table_fingerprint(client: &Client, table: &str) -> (i64, String) {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"
            ),
            &[],
        )
        .await
        .expect("fingerprint a table");
    (row.get(0), row.get(1))
}

/// Loads a gzipped pg_dump data file (COPY … FROM stdin blocks) into
/// `schema`'s tables of the same names.
pub async fn load_dump(client: &Client, dump: &Path, schema: &str) {
    let file = std::fs::File::open(dump).expect("open dump");
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    let mut lines = reader.lines();
    while let Some(line) = lines.next() {
        let line = line.expect("read dump");
        let Some(rest) = line.strip_prefix("COPY public.") else {
            continue;
        };
        let statement = format!(
            "COPY {schema}.{}",
            rest.trim_end_matches(';')
                .replace("FROM stdin", "FROM STDIN")
        );
        let mut data = Vec::new();
        for row in lines.by_ref() {
            let row = row.expect("read dump");
            if row == "\\." {
                break;
            }
            data.extend_from_slice(row.as_bytes());
            data.push(b'\n');
        }
        let sink = client
            .copy_in::<_, Bytes>(statement.as_str())
            .await
            .expect("start COPY");
        pin_mut!(sink);
        sink.send(Bytes::from(data)).await.expect("send COPY data");
        sink.finish().await.expect("finish COPY");
    }
}

/// What pyarrow read from some Parquet files.
#[derive(Debug)]
pub struct ParquetRead {
    /// Column → Arrow type name, as pyarrow prints it.
    pub schema: serde_json::Map<String, serde_json::Value>,
    /// Rows, every value rendered as text (None for null).
    pub rows: Vec<Vec<Option<String>>>,
}

/// Reads Parquet files with pyarrow: an implementation independent of ours.
pub fn read_parquet_independently(files: &[PathBuf]) -> ParquetRead {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("read_parquet.py");
    let output = Command::new("python3")
        .arg(script)
        .args(files)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "pyarrow reader failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("reader JSON");
    let schema = value["schema"].as_object().cloned().unwrap_or_default();
    let rows = value["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            row.as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .collect();
    ParquetRead { schema, rows }
}

/// `scripts/iceberg.sh <args>`'s output, or `None` when its readers cannot
/// be installed here and the stack is not required.
fn iceberg_sh(args: &[&str]) -> Option<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/iceberg.sh");
    let output = Command::new(script)
        .args(args)
        .output()
        .expect("run scripts/iceberg.sh");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("cannot install") && std::env::var("TRIBUTARY_REQUIRE_STACK").is_err() {
            eprintln!("skipping the PyIceberg and DuckDB check: {stderr}");
            return None;
        }
        panic!("scripts/iceberg.sh {args:?} failed: {stderr}");
    }
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// PyIceberg's rows of the Iceberg table at `table_dir` (its current
/// snapshot), `columns` only, each as its JSON line's text, sorted; `None`
/// when the reader cannot be installed here and the stack is not required.
pub fn iceberg_rows(table_dir: &Path, columns: &str) -> Option<Vec<String>> {
    let dir = table_dir.to_string_lossy();
    let mut rows: Vec<String> = iceberg_sh(&["rows", &dir, "--columns", columns])?
        .lines()
        .map(str::to_string)
        .collect();
    rows.sort();
    Some(rows)
}

/// DuckDB's rows of `sql` over every Iceberg table under `dir` (one view
/// per table folder, over the files PyIceberg plans), as JSON objects;
/// `None` when the readers cannot be installed here and the stack is not
/// required.
pub fn iceberg_query(dir: &Path, sql: &str) -> Option<Vec<serde_json::Value>> {
    let dir = dir.to_string_lossy();
    Some(
        iceberg_sh(&["query", &dir, sql, "--json"])?
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect(),
    )
}

/// The example source file `examples/sources/<name>.toml`, reading every
/// table every run: runs right after a change must see it, and statistics
/// may publish it a second late (the skip has its own test).
pub fn example_source(name: &str) -> tributary_sources::config::SourceFile {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/sources/{name}.toml"));
    let mut file =
        tributary_sources::config::SourceFile::read(&path).expect("the example source file reads");
    file.trust_statistics = false;
    file
}

/// A database `label` holding the real Olist tables (../shared/olist) and
/// the generated companions that fit them, connected; `None` (skipped, or
/// failed under `TRIBUTARY_REQUIRE_STACK=1`) without the data or a server.
pub async fn real_olist(label: &str) -> Option<(TestDb, Client)> {
    let dir = shared("olist")?;
    let db = TestDb::create(label).await?;
    psql_file(&db.url, &dir.join("schema.sql"), &[]);
    psql_file(&db.url, &dir.join("data.sql.gz"), &[]);
    let client = db.connect().await;
    tributary_sources::olist::create_companions(&client)
        .await
        .expect("the companions of the real Olist tables");
    Some((db, client))
}

/// A fresh local lake directory and its `file://` URL.
pub fn temp_lake() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("file://{}", dir.path().display());
    (dir, url)
}

/// Loads a later snapshot into a schema `next` beside the source tables,
/// so a test can compare before applying it with [`apply_staged_snapshot`].
pub async fn stage_snapshot(client: &Client, dump: &Path) {
    client
        .batch_execute("CREATE SCHEMA next")
        .await
        .expect("create schema next");
    for table in &tributary_totesys::MODEL_INPUTS {
        client
            .batch_execute(&format!(
                "CREATE TABLE next.\"{0}\" (LIKE public.\"{0}\")",
                table.name
            ))
            .await
            .expect("create staged table");
    }
    load_dump(client, dump, "next").await;
}

/// Brings the source up to the staged snapshot as its application would:
/// new rows inserted, changed rows updated, identical rows left alone.
pub async fn apply_staged_snapshot(client: &Client) {
    for table in &tributary_totesys::MODEL_INPUTS {
        let columns = &table.columns[1..];
        let names: Vec<String> = columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
        let incoming: Vec<String> = columns
            .iter()
            .map(|c| format!("excluded.\"{}\"", c.name))
            .collect();
        client
            .batch_execute(&format!(
                "INSERT INTO public.\"{0}\" AS cur SELECT * FROM next.\"{0}\" \
                 ON CONFLICT (\"{1}\") DO UPDATE SET ({2}) = ROW({3}) \
                 WHERE ROW(cur.*) IS DISTINCT FROM ROW(excluded.*)",
                table.name,
                table.primary_key,
                names.join(", "),
                incoming.join(", ")
            ))
            .await
            .expect("apply staged snapshot");
    }
}
