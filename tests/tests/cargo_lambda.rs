//! A function binary under the real Lambda runtime API emulator:
//! `cargo lambda watch` serves the runtime API and runs `stream-sink`;
//! `cargo lambda invoke --data-file` sends the committed Kinesis fixture.
//! The test then reads what the function wrote to the (local) raw lake.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tributary_e2e::{skip, temp_lake};
use tributary_lake::{Lake, ManifestLog};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops `cargo lambda watch` and the function it started.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        // The watcher runs in its own process group: end all of it.
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn invoke(port: u16, fixture: &Path) -> String {
    let out = Command::new("cargo")
        .args([
            "lambda",
            "invoke",
            "stream-sink",
            "--invoke-port",
            &port.to_string(),
            "--data-file",
        ])
        .arg(fixture)
        .current_dir(workspace())
        .output()
        .expect("cargo lambda invoke");
    assert!(
        out.status.success(),
        "cargo lambda invoke failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn stream_sink_runs_under_cargo_lambda_watch_and_answers_an_invoke() {
    let has_cargo_lambda = Command::new("cargo")
        .args(["lambda", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_lambda {
        skip(
            "cargo-lambda is not installed: python3 -m pip install cargo-lambda (make test installs it)",
        );
        return;
    }
    // Build the binary as the watcher will (one package, one bin: its own
    // feature set), so the first invoke does not wait on a compile.
    let built = Command::new("cargo")
        .args(["build", "-p", "tributary-lambdas", "--bin", "stream-sink"])
        .current_dir(workspace())
        .status()
        .expect("cargo build");
    assert!(built.success(), "cargo build of stream-sink failed");
    let (_raw_dir, raw_url) = temp_lake();
    let (_processed_dir, processed_url) = temp_lake();
    let port = free_port();
    let mut command = Command::new("cargo");
    command
        .args([
            "lambda",
            "watch",
            "--ignore-changes",
            "--invoke-port",
            &port.to_string(),
        ])
        .args(["-p", "tributary-lambdas", "--bin", "stream-sink"])
        .current_dir(workspace())
        .env("TRIBUTARY_RAW_URL", &raw_url)
        .env("TRIBUTARY_PROCESSED_URL", &processed_url)
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env_remove("TRIBUTARY_ALERT_TOPIC_ARN")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let _watch = Watch(command.spawn().expect("start cargo lambda watch"));

    // The emulator listens first; the function is built and started on the
    // first invoke (a warm build cache makes that seconds).
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "cargo lambda watch did not listen"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let fixture = workspace().join("crates/lambdas/fixtures/stream-sink-kinesis.json");
    let first = invoke(port, &fixture);
    let response: serde_json::Value = serde_json::from_str(first.trim()).expect("JSON response");
    assert_eq!(response, serde_json::json!({"batchItemFailures": []}));

    // What the function wrote: one batch object, one manifest.
    let raw = Lake::from_url(&raw_url).unwrap();
    let objects = raw.list("markets/mercado_bitcoin/trades/").await.unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(
        objects[0].contains("date=2025-11-22/shardId-000000000000-49590338271490256608559692538361571095921575989136588898"),
        "{objects:?}"
    );
    let log = ManifestLog::new(raw.clone(), tributary_pipeline::stream_sink::SOURCE);
    assert_eq!(log.latest_seq().await.unwrap(), 1);

    // Redelivery through the same warm function writes nothing new.
    let again = invoke(port, &fixture);
    assert_eq!(again.trim(), first.trim());
    assert_eq!(
        raw.list("markets/mercado_bitcoin/trades/").await.unwrap(),
        objects
    );
    assert_eq!(log.latest_seq().await.unwrap(), 1);
}
