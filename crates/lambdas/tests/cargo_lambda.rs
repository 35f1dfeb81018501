//! A function binary under the real Lambda runtime API emulator:
//! `cargo lambda watch --only-lambda-apis` serves the runtime API, the test
//! starts the `stream-sink` binary this package's test build already made
//! (so no second build with another feature set), and `cargo lambda invoke
//! --data-file` sends the committed Kinesis fixture. The test then reads
//! what the function wrote to the (local) raw lake.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tributary_lake::{Lake, ManifestLog};
use tributary_testkit::{skip, temp_lake};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops a child started in its own process group, and all of that group.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn spawn_group(command: &mut Command) -> Group {
    std::os::unix::process::CommandExt::process_group(command, 0);
    Group(command.spawn().expect("start child"))
}

/// Sends the fixture through the emulator and returns the function's answer;
/// fails (instead of hanging) when no answer comes within a minute.
fn invoke(port: u16, fixture: &Path) -> String {
    let mut child = Command::new("cargo")
        .args(["lambda", "invoke", "--invoke-port"])
        .arg(port.to_string())
        .arg("--data-file")
        .arg(fixture)
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo lambda invoke");
    let started = Instant::now();
    while child.try_wait().expect("wait for invoke").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("cargo lambda invoke got no answer within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("invoke output");
    assert!(
        out.status.success(),
        "cargo lambda invoke failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_built_stream_sink_answers_invokes_from_the_cargo_lambda_emulator() {
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
    let (_raw_dir, raw_url) = temp_lake();
    let (_processed_dir, processed_url) = temp_lake();
    let port = free_port();
    // The emulator alone: it serves the runtime API and takes invokes.
    let _emulator = spawn_group(
        Command::new("cargo")
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-port"])
            .arg(port.to_string())
            .args(["-p", "tributary-lambdas"])
            .current_dir(workspace())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "cargo lambda watch did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The function: the binary cargo built for this test, as Lambda starts
    // it, told where the runtime API is (the emulator's default function).
    let _function = spawn_group(
        Command::new(env!("CARGO_BIN_EXE_stream-sink"))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("TRIBUTARY_RAW_URL", &raw_url)
            .env("TRIBUTARY_PROCESSED_URL", &processed_url)
            .env_remove("TRIBUTARY_ALERT_TOPIC_ARN")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
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
    let log = ManifestLog::new(raw.clone(), tributary_lake::Log::MarketsTrades);
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
