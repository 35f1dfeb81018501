//! What the CLI's test files share: running the binary, and a source, a
//! warehouse and two lakes named by the environment variables a user sets.
#![allow(dead_code)] // each test file uses its own part

use std::process::{Command, Output};

use tributary_testkit::{TestDb, temp_lake};

/// Runs `tributary` with only `env` (and PATH) set, logging at warn.
pub(crate) fn tributary(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tributary"));
    command.args(args).env_clear().env("RUST_LOG", "warn");
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.envs(env.iter().copied());
    command.output().expect("run tributary")
}

/// Runs `tributary`, fails the test with its output unless it succeeds, and
/// returns its stdout.
pub(crate) fn succeeds(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = tributary(args, env);
    assert!(
        output.status.success(),
        "tributary {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fresh source and warehouse database and two empty lakes, as a user's
/// environment names them.
pub(crate) struct Installation {
    /// The source database.
    pub(crate) source: TestDb,
    /// The warehouse database.
    pub(crate) warehouse: TestDb,
    raw: (tempfile::TempDir, String),
    processed: (tempfile::TempDir, String),
}

impl Installation {
    /// `None` (after a skip message) without a local stack.
    pub(crate) async fn new(label: &str) -> Option<Installation> {
        Some(Installation {
            source: TestDb::create(&format!("{label}_src")).await?,
            warehouse: TestDb::create(&format!("{label}_wh")).await?,
            raw: temp_lake(),
            processed: temp_lake(),
        })
    }

    /// `TOTESYS_DATABASE_URL`, `WAREHOUSE_DATABASE_URL`, `TRIBUTARY_RAW_URL`
    /// and `TRIBUTARY_PROCESSED_URL`.
    pub(crate) fn env(&self) -> [(&str, &str); 4] {
        [
            ("TOTESYS_DATABASE_URL", self.source.url.as_str()),
            ("WAREHOUSE_DATABASE_URL", self.warehouse.url.as_str()),
            ("TRIBUTARY_RAW_URL", self.raw.1.as_str()),
            ("TRIBUTARY_PROCESSED_URL", self.processed.1.as_str()),
        ]
    }
}
