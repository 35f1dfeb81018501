//! The dashboards (dashboards/, Streamlit) render every page in headless
//! Chromium over a warehouse the CLI loaded: sales, payments and exchange
//! rates from a generated totesys, trades from the replay. A page that
//! misses a chart or shows a query error fails the test, and a warehouse
//! missing a view shows that error.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{Installation, succeeds};

/// (name, url path, title, charts it draws).
const PAGES: [(&str, &str, &str, u64); 3] = [
    ("sales", "/", "Sales in GBP", 4),
    ("payments", "/payments", "Payments and delivery", 3),
    ("crypto", "/crypto", "Crypto markets", 3),
];

/// Chromium, or `None` after saying what to install (a failure under
/// `TRIBUTARY_REQUIRE_STACK=1`).
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .filter_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .next();
    if found.is_none() {
        let message = "no Chromium to render the dashboards: apt-get install chromium";
        assert!(
            std::env::var("TRIBUTARY_REQUIRE_STACK").as_deref() != Ok("1"),
            "{message}"
        );
        eprintln!("skipping: {message}");
    }
    found
}

/// `scripts/dashboard.sh check` over `warehouse`: the render report.
fn render(warehouse: &str, pages: &str, screenshots: &Path) -> serde_json::Map<String, Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dashboard.sh");
    let output = Command::new(script)
        .args(["check", "--screenshots"])
        .arg(screenshots)
        .env("WAREHOUSE_DATABASE_URL", warehouse)
        .env("TRIBUTARY_DASHBOARD_PAGES", pages)
        .output()
        .expect("run scripts/dashboard.sh");
    assert!(
        output.status.success(),
        "scripts/dashboard.sh check failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_page_draws_its_charts_without_errors() {
    let Some(install) = Installation::new("dashboard").await else {
        return;
    };
    let Some(_) = chromium() else {
        return;
    };
    let env = install.env();
    succeeds(&["generate", "--days", "90", "--seed", "11"], &env);
    succeeds(&["warehouse", "init"], &env);
    succeeds(&["run"], &env);

    // Trades and exchange rates from the replay (it prints the Mercado
    // Bitcoin, CoinCap and exchange-rate URLs, one per line).
    let mut replay = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args([
            "replay",
            "--for",
            "30s",
            "--symbols",
            "3",
            "--every",
            "200ms",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(replay.stdout.take().unwrap());
    let mut urls = [String::new(), String::new(), String::new()];
    for url in &mut urls {
        lines.read_line(url).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let mut markets = env.to_vec();
    markets.extend([
        ("TRIBUTARY_MERCADO_URL", urls[0].trim()),
        ("TRIBUTARY_COINCAP_URL", urls[1].trim()),
        ("COINCAP_API_KEY", "test-key"),
        ("TRIBUTARY_FX_URL", urls[2].trim()),
    ]);
    succeeds(&["markets"], &markets);
    succeeds(&["fx", "--for-facts"], &markets);
    let _ = replay.kill();
    let _ = replay.wait();
    drop(lines);

    let shots = tempfile::tempdir().unwrap();
    let pages = PAGES.map(|p| format!("{}={}", p.0, p.1)).join(",");
    let report = render(&install.warehouse.url, &pages, shots.path());
    for (page, _, title, charts) in PAGES {
        let seen = &report[page];
        eprintln!(
            "{page}: cold {} ms, warm {} ms",
            seen["load_ms"], seen["warm_load_ms"]
        );
        assert_eq!(seen["exceptions"], Value::Array(vec![]), "{page}: {seen}");
        assert_eq!(seen["dialogs"], Value::Array(vec![]), "{page}: {seen}");
        assert_eq!(seen["title"], title, "{page}: {seen}");
        assert_eq!(
            seen["charts"], charts,
            "{page}: every chart is there: {seen}"
        );
        assert_eq!(
            seen["drawn"], charts,
            "{page}: every chart is drawn: {seen}"
        );
        assert!(seen["load_ms"].is_u64(), "{page} finished loading: {seen}");
        let png = std::fs::read(seen["screenshot"].as_str().unwrap()).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "{page}: a screenshot with something in it ({} bytes)",
            png.len()
        );
    }
    assert!(
        report["crypto"]["metrics"].as_u64() == Some(3),
        "a latest price per polled coin: {}",
        report["crypto"]
    );

    // A warehouse without the reporting views (say, never `warehouse
    // init`-ed after an upgrade): the page shows the error, and the check
    // sees it.
    install
        .warehouse
        .connect()
        .await
        .batch_execute("DROP VIEW agg_sales_daily_reporting")
        .await
        .unwrap();
    let broken = render(&install.warehouse.url, "sales=/", shots.path());
    let text = broken["sales"]["exceptions"].to_string();
    assert!(
        text.contains("agg_sales_daily_reporting") && text.contains("does not exist"),
        "the missing view is shown: {}",
        broken["sales"]
    );
    assert_eq!(broken["sales"]["charts"], 0, "{}", broken["sales"]);
}
