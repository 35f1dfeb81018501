//! `tributary`: run Tributary's stages locally, against local files or AWS.

use std::{collections::HashMap, process::ExitCode, time::Duration};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use tributary_pipeline::{
    Settings,
    alerts::LogAlerts,
    ingest::{IngestOptions, IngestReport, IngestRequest, ingest},
    load::{LoadReport, load},
    run::{CycleReport, Pipeline},
    settings::{
        TOTESYS_DATABASE_URL, TRIBUTARY_LOOKBACK, TRIBUTARY_PROCESSED_URL, TRIBUTARY_RAW_URL,
        WAREHOUSE_DATABASE_URL,
    },
    status::ingest_status,
    transform::{TransformReport, TransformRequest, transform},
};
use tributary_totesys::{
    generate::{GenerateOptions, generate},
    simulate::{SimulateOptions, simulate},
};

/// Serverless ELT for the totesys database, run locally.
#[derive(Parser)]
#[command(name = "tributary", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Extract changed rows of the totesys tables into the raw lake.
    Ingest(IngestArgs),
    /// Create the totesys schema and fill it with realistic data.
    Generate(GenerateArgs),
    /// Keep inserting orders and paying payments like the live system.
    Simulate(SimulateArgs),
    /// Show per table: watermark, rows in the last run, last run time, age.
    Status(StatusArgs),
    /// Turn raw manifests not yet transformed into the star schema (Parquet).
    Transform(TransformArgs),
    /// Apply processed manifests not yet loaded to the warehouse.
    Load(LoadArgs),
    /// Ingest → transform → load once, or on a schedule with --every.
    Run(RunArgs),
    /// Manage the warehouse database.
    #[command(subcommand)]
    Warehouse(WarehouseCommand),
    /// Compare source, raw lake, processed lake and warehouse; exit 1 on any difference.
    Reconcile(RunArgs),
    /// Crypto trades: poll Mercado Bitcoin → stream → raw → processed → warehouse.
    Markets(MarketsArgs),
    /// Serve a simulated Mercado Bitcoin API on loopback (for the demo and tests).
    Replay(ReplayArgs),
}

#[derive(Args)]
struct MarketsArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Mercado Bitcoin API base URL.
    #[arg(
        long,
        env = "TRIBUTARY_MERCADO_URL",
        default_value = "https://api.mercadobitcoin.net/api/v4"
    )]
    mercado_url: String,
}

#[derive(Args)]
struct ReplayArgs {
    /// Loopback port (0: any free one; the URL is printed first).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Crypto symbols to simulate.
    #[arg(long, default_value_t = 5)]
    symbols: usize,
    /// Publish new trades this often.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    every: Duration,
    /// Stop after this long; default: until Ctrl-C.
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[derive(Subcommand)]
enum WarehouseCommand {
    /// Create the star schema and the load log (idempotent).
    Init(LoadArgs),
}

#[derive(Args)]
struct TransformArgs {
    #[command(flatten)]
    locations: Locations,
    /// Recompute the processed lake from all raw data into a new manifest.
    #[arg(long)]
    rebuild: bool,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    locations: Locations,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    locations: Locations,
    /// Repeat every interval (e.g. 60s) until Ctrl-C; a failed cycle is logged and retried.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    every: Option<Duration>,
    /// Stop after this many cycles (with --every).
    #[arg(long, value_name = "N")]
    cycles: Option<u64>,
}

/// Where things are; each flag overrides its environment variable.
#[derive(Args, Clone, Default)]
struct Locations {
    /// Source database URL [env: TOTESYS_DATABASE_URL]
    #[arg(long, value_name = "URL")]
    totesys_url: Option<String>,
    /// Raw lake root: s3://bucket/prefix or file:///abs/path [env: TRIBUTARY_RAW_URL]
    #[arg(long, value_name = "URL")]
    raw_url: Option<String>,
    /// Processed lake root [env: TRIBUTARY_PROCESSED_URL]
    #[arg(long, value_name = "URL")]
    processed_url: Option<String>,
    /// Warehouse database URL [env: WAREHOUSE_DATABASE_URL]
    #[arg(long, value_name = "URL")]
    warehouse_url: Option<String>,
}

impl Locations {
    fn settings(&self, extra: &[(&'static str, Option<String>)]) -> anyhow::Result<Settings> {
        let mut overrides: HashMap<&str, String> = HashMap::new();
        let flags = [
            (TOTESYS_DATABASE_URL, self.totesys_url.clone()),
            (TRIBUTARY_RAW_URL, self.raw_url.clone()),
            (TRIBUTARY_PROCESSED_URL, self.processed_url.clone()),
            (WAREHOUSE_DATABASE_URL, self.warehouse_url.clone()),
        ];
        for (name, value) in flags.into_iter().chain(extra.iter().cloned()) {
            if let Some(value) = value {
                overrides.insert(name, value);
            }
        }
        Ok(Settings::from_lookup(|name| {
            overrides
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        })?)
    }
}

#[derive(Args)]
struct IngestArgs {
    #[command(flatten)]
    locations: Locations,
    /// Only these tables (comma separated); default all 11.
    #[arg(long, value_delimiter = ',', value_name = "TABLE,…")]
    tables: Option<Vec<String>>,
    /// Backfill: re-extract rows changed after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    since: Option<DateTime<Utc>>,
    /// Re-read window before the watermark, e.g. 10m [env: TRIBUTARY_LOOKBACK]
    #[arg(long, value_name = "DURATION")]
    lookback: Option<String>,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    locations: Locations,
    /// Multiply the order history (15 sales and 6 purchase orders a day at 1).
    #[arg(long, default_value_t = 1)]
    scale: u32,
    /// Seed: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Days of history, ending now.
    #[arg(long, default_value_t = 365)]
    days: u32,
}

#[derive(Args)]
struct SimulateArgs {
    #[command(flatten)]
    locations: Locations,
    /// Orders per minute.
    #[arg(long, default_value_t = 30.0)]
    rate: f64,
    /// Stop after this long (e.g. 5m); default: until Ctrl-C.
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Seed for the random choices.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Change one address and move one staff member every N orders (0: never).
    #[arg(long, default_value_t = 50)]
    churn_every: u64,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    locations: Locations,
}

fn main() -> ExitCode {
    // Like other command-line tools, stop quietly when the reader of our
    // output goes away (`tributary status | head`) instead of panicking.
    reset_sigpipe();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain joined, so the cause is on the same line.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

#[cfg(unix)]
fn reset_sigpipe() {
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts; Rust's runtime set it to ignore.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn reset_sigpipe() {}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ingest(args) => run_ingest(args).await,
        Command::Generate(args) => run_generate(args).await,
        Command::Simulate(args) => run_simulate(args).await,
        Command::Status(args) => run_status(args).await,
        Command::Transform(args) => run_transform(args).await,
        Command::Load(args) => run_load(args).await,
        Command::Run(args) => run_cycles(args).await,
        Command::Warehouse(WarehouseCommand::Init(args)) => run_warehouse_init(args).await,
        Command::Reconcile(args) => run_reconcile(args).await,
        Command::Markets(args) => run_markets(args).await,
        Command::Replay(args) => run_replay(args).await,
    }
}

async fn run_markets(args: MarketsArgs) -> anyhow::Result<()> {
    let settings = args.run.locations.settings(&[])?;
    let raw = settings.raw_lake()?;
    let processed = settings.processed_lake()?;
    let mercado = tributary_markets::mercado::MercadoBitcoin::new(
        &args.mercado_url,
        tributary_markets::http::RetryPolicy::default(),
    );
    let local = tokio::sync::Mutex::new(tributary_pipeline::markets_run::LocalMarkets::default());
    let cycle = || async {
        let mut warehouse = settings.connect_warehouse().await?;
        let report = local
            .lock()
            .await
            .cycle(&mercado, &raw, &processed, &mut warehouse, &LogAlerts)
            .await?;
        println!(
            "markets: polled {} symbol(s), {} new trade(s); loaded {} trade(s) and {} daily bar(s) in {:.2}s",
            report.poll.polled.len(),
            report.poll.trades,
            report.loaded.0,
            report.loaded.1,
            report.elapsed.as_secs_f64()
        );
        Ok(())
    };
    match args.run.every {
        None => cycle().await,
        Some(every) => on_schedule(every, args.run.cycles, cycle).await,
    }
}

async fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    use std::io::Write as _;
    const COINS: [(&str, f64); 8] = [
        ("BTC", 488_000.0),
        ("ETH", 12_000.0),
        ("SOL", 800.0),
        ("ADA", 2.5),
        ("XRP", 3.1),
        ("LTC", 420.0),
        ("DOGE", 0.9),
        ("DOT", 25.0),
    ];
    // Trade ids continue from the clock, so a restarted simulator never
    // reuses a (symbol, tid) the warehouse already holds.
    let mut state = tributary_markets::replay::ReplayState {
        first_tid: Utc::now().timestamp_millis(),
        ..Default::default()
    };
    let coins: Vec<(String, f64)> = COINS
        .iter()
        .take(args.symbols.clamp(1, COINS.len()))
        .map(|(coin, price)| (format!("{coin}-BRL"), *price))
        .collect();
    for (symbol, _) in &coins {
        let base = symbol.trim_end_matches("-BRL").to_string();
        state
            .symbols
            .push((symbol.clone(), "CRYPTO".into(), base, "BRL".into()));
    }
    state.symbols.push((
        "TFC-BRL".into(),
        "FAN_TOKEN".into(),
        "TFC".into(),
        "BRL".into(),
    ));
    let server = tributary_markets::replay::ReplayServer::start_on(args.port, state).await?;
    println!("{}", server.mercado_base());
    std::io::stdout().flush()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut prices: Vec<f64> = coins.iter().map(|(_, p)| *p).collect();
    let started = std::time::Instant::now();
    let mut ticker = tokio::time::interval(args.every);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {}
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let now = Utc::now().timestamp();
        for ((symbol, _), price) in coins.iter().zip(prices.iter_mut()) {
            for _ in 0..rng.random_range(1..=3) {
                *price *= 1.0 + rng.random_range(-0.002..0.002);
                let amount = rng.random_range(0.001..2.0);
                let side = if rng.random_bool(0.5) { "buy" } else { "sell" };
                server.publish_trade(
                    symbol,
                    now,
                    &format!("{price:.8}"),
                    &format!("{amount:.8}"),
                    side,
                );
            }
        }
    }
    Ok(())
}

async fn run_reconcile(args: RunArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    match args.every {
        None => reconcile_once(&settings).await,
        Some(every) => on_schedule(every, args.cycles, || reconcile_once(&settings)).await,
    }
}

/// One reconcile: prints the table, alerts and fails on any difference.
async fn reconcile_once(settings: &Settings) -> anyhow::Result<()> {
    let source = settings.connect_totesys().await?;
    let warehouse = settings.connect_warehouse().await?;
    let report = tributary_pipeline::reconcile::reconcile(
        &source,
        &settings.raw_lake()?,
        &settings.processed_lake()?,
        &warehouse,
        &LogAlerts,
    )
    .await?;
    println!(
        "{:<20} {:<22} {:>10} {:>10} {:>8} {:>8}  status",
        "table", "layers", "expected", "actual", "missing", "extra"
    );
    for c in &report.comparisons {
        println!(
            "{:<20} {:<22} {:>10} {:>10} {:>8} {:>8}  {}",
            c.table,
            c.layers,
            c.expected,
            c.actual,
            c.missing,
            c.extra,
            if c.is_clean() {
                "ok".to_string()
            } else {
                format!("DIFFERS ({})", c.example.as_deref().unwrap_or("-"))
            }
        );
    }
    if report.is_clean() {
        println!("reconcile: every row version is in every layer, once");
        Ok(())
    } else {
        let differing = report.comparisons.iter().filter(|c| !c.is_clean()).count();
        anyhow::bail!("reconcile found {differing} difference(s); see the table above")
    }
}

async fn run_transform(args: TransformArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let request = TransformRequest {
        rebuild: args.rebuild,
    };
    let report = transform(
        &settings.raw_lake()?,
        &settings.processed_lake()?,
        &request,
        &LogAlerts,
    )
    .await?;
    print_transform(&report);
    Ok(())
}

fn print_transform(report: &TransformReport) {
    match report.seq {
        None => println!("transform: nothing new in the raw lake"),
        Some(seq) => {
            println!(
                "transform run {} committed manifest {seq} from raw manifests {:?} in {:.2}s",
                report.run_id,
                (report.inputs.first(), report.inputs.last()),
                report.elapsed.as_secs_f64()
            );
            for (table, rows) in &report.rows {
                println!("  {table:<22} {rows:>10}");
            }
            for (table, rows) in &report.quarantined {
                println!("  quarantined {table:<10} {rows:>10}");
            }
        }
    }
}

async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let mut warehouse = settings.connect_warehouse().await?;
    let report = load(&mut warehouse, &settings.processed_lake()?, &LogAlerts).await?;
    print_load(&report);
    Ok(())
}

fn print_load(report: &LoadReport) {
    if report.manifests.is_empty() {
        println!("load: the warehouse is up to date");
    }
    for manifest in &report.manifests {
        let rows: u64 = manifest.rows.values().sum();
        println!(
            "load: manifest {} applied, {rows} rows inserted or changed",
            manifest.seq
        );
    }
}

async fn run_warehouse_init(args: LoadArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let warehouse = settings.connect_warehouse().await?;
    tributary_pipeline::load::init_warehouse(&warehouse).await?;
    println!("warehouse schema is in place");
    Ok(())
}

async fn run_cycles(args: RunArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let raw = settings.raw_lake()?;
    let processed = settings.processed_lake()?;
    let options = IngestOptions::from(&settings);
    let cycle = || async {
        let report = one_cycle(&settings, &raw, &processed, &options).await?;
        tracing::info!(
            ingested = report.ingest.rows(),
            facts = report.transform.fact_rows(),
            loaded = report.load.rows(),
            lag_ms = report.change_to_warehouse.map(|d| d.as_millis() as u64),
            "cycle done"
        );
        print_cycle(&report);
        Ok(())
    };
    match args.every {
        None => cycle().await,
        Some(every) => on_schedule(every, args.cycles, cycle).await,
    }
}

/// Runs `task` every `every` until Ctrl-C (or `cycles` times). A failed
/// run is logged and the schedule goes on, as a scheduler would retry.
async fn on_schedule<F, Fut>(
    every: Duration,
    cycles: Option<u64>,
    mut task: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut done = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {}
        }
        if let Err(e) = task().await {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            tracing::error!(error = %chain.join(": "), "cycle failed; retrying at the next interval");
        }
        done += 1;
        if cycles.is_some_and(|n| done >= n) {
            break;
        }
    }
    Ok(())
}

/// One ingest → transform → load. Connections are opened per cycle so a
/// restarted database heals on the next one.
async fn one_cycle(
    settings: &Settings,
    raw: &tributary_lake::Lake,
    processed: &tributary_lake::Lake,
    options: &IngestOptions,
) -> anyhow::Result<CycleReport> {
    let mut source = settings.connect_totesys().await?;
    let mut warehouse = settings.connect_warehouse().await?;
    let report = Pipeline {
        source: &mut source,
        warehouse: &mut warehouse,
        raw,
        processed,
        options,
        alerts: &LogAlerts,
    }
    .cycle()
    .await?;
    Ok(report)
}

fn print_cycle(report: &CycleReport) {
    println!(
        "cycle: ingested {} rows (manifest {}), transformed {} fact rows, loaded {} rows; {}",
        report.ingest.rows(),
        report.ingest.seq,
        report.transform.fact_rows(),
        report.load.rows(),
        match report.change_to_warehouse {
            Some(lag) => format!("change-to-warehouse lag {:.2}s", lag.as_secs_f64()),
            None => "no source change this cycle".to_string(),
        }
    );
}

async fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let settings = args
        .locations
        .settings(&[(TRIBUTARY_LOOKBACK, args.lookback.clone())])?;
    let raw = settings.raw_lake()?;
    let mut source = settings.connect_totesys().await?;
    let request = IngestRequest {
        tables: args.tables,
        since: args.since,
    };
    let report = ingest(
        &mut source,
        &raw,
        &IngestOptions::from(&settings),
        &request,
        &LogAlerts,
    )
    .await?;
    print_ingest(&report);
    Ok(())
}

fn print_ingest(report: &IngestReport) {
    println!(
        "run {} committed manifest {} in {:.2}s",
        report.run_id,
        report.seq,
        report.elapsed.as_secs_f64()
    );
    println!(
        "{:<16} {:>10} {:>6} {:>12} {:>10} {:>6}  watermark",
        "table", "rows", "files", "bytes", "re-read", "late"
    );
    for t in &report.tables {
        println!(
            "{:<16} {:>10} {:>6} {:>12} {:>10} {:>6}  {}",
            t.table,
            t.rows,
            t.files,
            t.bytes,
            t.already_ingested,
            t.late_rows + t.changed_in_place,
            show_time(t.watermark)
        );
    }
}

async fn run_generate(args: GenerateArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let mut client = settings.connect_totesys().await?;
    let options = GenerateOptions {
        seed: args.seed,
        scale: args.scale,
        days: args.days,
        until_ms: Utc::now().timestamp_millis(),
    };
    let started = std::time::Instant::now();
    let report = generate(&mut client, &options).await.context("generate")?;
    for (table, rows) in &report.rows {
        println!("{table:<16} {rows:>10}");
    }
    println!("generated in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn run_simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let mut client = settings.connect_totesys().await?;
    let options = SimulateOptions {
        orders_per_minute: args.rate,
        duration: args.duration,
        seed: args.seed,
        churn_every: args.churn_every,
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = simulate(&mut client, &options, stop)
        .await
        .context("simulate")?;
    println!(
        "inserted {} orders, paid {} payments, changed {} address/staff rows",
        report.orders, report.payments_paid, report.reference_changes
    );
    Ok(())
}

async fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let status = ingest_status(&settings.raw_lake()?).await?;
    if status.seq == 0 {
        println!("nothing ingested yet into {}", settings.raw_url);
        return Ok(());
    }
    println!(
        "raw lake {}: manifest {} committed {}",
        settings.raw_url,
        status.seq,
        show_time(status.committed_at)
    );
    println!(
        "{:<16} {:<24} {:>9} {:<24} {:>10} {:>12}",
        "table", "watermark", "last rows", "last run", "age", "total rows"
    );
    let now = Utc::now();
    for t in &status.tables {
        let age = t.watermark.map_or_else(
            || "-".to_string(),
            |w| {
                let secs = (now - w).num_seconds().max(0) as u64;
                humantime::format_duration(Duration::from_secs(secs)).to_string()
            },
        );
        println!(
            "{:<16} {:<24} {:>9} {:<24} {:>10} {:>12}",
            t.table,
            show_time(t.watermark),
            t.last_run_rows,
            show_time(t.last_run_at),
            first_unit(&age),
            t.total_rows
        );
    }
    Ok(())
}

fn show_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
    )
}

/// "3days 4h 12m 5s" → "3days 4h": enough to judge staleness at a glance.
fn first_unit(age: &str) -> String {
    age.split(' ').take(2).collect::<Vec<_>>().join(" ")
}
