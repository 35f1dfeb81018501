//! `tributary`: run Tributary's stages locally, against local files or AWS.

use std::{collections::HashMap, process::ExitCode, time::Duration};

mod bench_markets;
mod fx;
mod markets;
mod source;
mod sources;
mod stages;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use tributary_pipeline::{
    Settings,
    alerts::LogAlerts,
    config::{
        COINCAP_API_KEY, TOTESYS_DATABASE_URL, TRIBUTARY_COINCAP_URL, TRIBUTARY_LOOKBACK,
        TRIBUTARY_MERCADO_URL, TRIBUTARY_PROCESSED_URL, TRIBUTARY_RAW_URL, WAREHOUSE_DATABASE_URL,
    },
    run::{CycleReport, Pipeline},
    status::ingest_status,
    totesys::ingest::{IngestOptions, IngestReport, IngestRequest, ingest, ingest_options},
    totesys::load::{LoadReport, load},
    totesys::transform::{TransformReport, TransformRequest, transform},
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
    /// Queue a backfill in the raw lake for the next scheduled ingest (on
    /// AWS: never collides with the schedule), or show the queue.
    Backfill(BackfillArgs),
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
    /// Compare source, raw lake, processed lake and warehouse (totesys, and the
    /// markets when they hold data); exit 1 on any difference.
    Reconcile(RunArgs),
    /// Crypto trades: poll Mercado Bitcoin → stream → raw → processed → warehouse.
    Markets(MarketsArgs),
    /// Exchange rates (ECB reference rates): today's, or a backfill, into the
    /// raw lake as received, then fact_exchange_rate in the warehouse.
    Fx(fx::FxArgs),
    /// Serve a simulated Mercado Bitcoin API on loopback (for the demo and
    /// tests), with CoinCap and exchange rates (URLs printed in that order).
    Replay(ReplayArgs),
    /// Benchmark the market poller at real scale (409 symbols, a burst, the
    /// API's rate limits) in accelerated simulated time; prints staleness and
    /// request figures.
    BenchMarkets(bench_markets::BenchMarketsArgs),
    /// Every source declared in sources/<name>.toml (any PostgreSQL
    /// database): changes into the raw lake, then into the warehouse
    /// schema src_<name>.
    Sources(sources::SourcesArgs),
    /// Make up an Olist marketplace database (all nine tables) for a demo
    /// or a benchmark, or apply a month of its business.
    GenerateOlist(sources::GenerateOlistArgs),
    /// The processed lake's Apache Iceberg tables: publish pending transform
    /// manifests, compact and expire (maintain), or describe them.
    Iceberg(IcebergArgs),
    /// Benchmark floor of the transform, after a first transform: decode the
    /// raw files it read and encode its output again, side by side, no work.
    #[command(hide = true)]
    BenchTransformFloor(TransformArgs),
}

#[derive(Args)]
struct MarketsArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Mercado Bitcoin API base URL [env: TRIBUTARY_MERCADO_URL; default: the public API]
    #[arg(long, value_name = "URL")]
    mercado_url: Option<String>,
    /// CoinCap v3 API base URL, used when COINCAP_API_KEY is set [env: TRIBUTARY_COINCAP_URL]
    #[arg(long, value_name = "URL")]
    coincap_url: Option<String>,
    /// First, keep the daily candles of every crypto symbol since this day
    /// (the history before polling; e.g. 2020-01-01), then run as usual.
    #[arg(long, value_name = "DAY")]
    history_since: Option<chrono::NaiveDate>,
}

#[derive(Args)]
struct ReplayArgs {
    /// Loopback port (0: any free one; the URL is printed first).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Crypto symbols to simulate; above 8, the real-scale activity mix
    /// (quiet and busy symbols, a burst after 5 min) with Mercado Bitcoin's
    /// rate limits enforced (e.g. 409).
    #[arg(long, default_value_t = 5)]
    symbols: usize,
    /// Publish new trades this often.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    every: Duration,
    /// Stop after this long; default: until Ctrl-C.
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[derive(Args)]
struct IcebergArgs {
    #[command(subcommand)]
    command: IcebergCommand,
}

#[derive(Subcommand)]
enum IcebergCommand {
    /// Commit every transform manifest the tables have not seen (the
    /// transform does this after each run).
    Publish {
        #[command(flatten)]
        locations: Locations,
    },
    /// Merge small files into files of about --target-mb per partition, then
    /// expire snapshots older than --keep-hours and delete what only they
    /// reached.
    Maintain {
        /// Target size of a compacted file, in MB.
        #[arg(long, default_value_t = 128)]
        target_mb: u64,
        /// Keep snapshots at least this many hours (time travel, readers of
        /// a recent snapshot).
        #[arg(long, default_value_t = 6)]
        keep_hours: u64,
        #[command(flatten)]
        locations: Locations,
    },
    /// Per table: snapshot, files, average file size, rows.
    Describe {
        #[command(flatten)]
        locations: Locations,
    },
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
    /// One bounded run, as one function invocation does, then exit (by
    /// default runs follow one another until nothing is left).
    #[arg(long)]
    one_run: bool,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    locations: Locations,
    /// One bounded run, as one function invocation does, then exit (by
    /// default runs follow one another until nothing is left).
    #[arg(long)]
    one_run: bool,
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
    /// One bounded run, as one function invocation does, then exit (by
    /// default runs follow one another until nothing is left).
    #[arg(long)]
    one_run: bool,
}

#[derive(Args)]
struct BackfillArgs {
    #[command(flatten)]
    locations: Locations,
    /// Only these tables (comma separated); default all 11.
    #[arg(long, value_delimiter = ',', value_name = "TABLE,…")]
    tables: Option<Vec<String>>,
    /// Re-extract rows changed after this time (RFC 3339).
    #[arg(long, value_name = "TIME", required_unless_present = "status")]
    since: Option<DateTime<Utc>>,
    /// Show the queued backfills and how each ended, instead of queueing one.
    #[arg(long, conflicts_with_all = ["tables", "since"])]
    status: bool,
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
    tributary_pipeline::limit_malloc_arenas();
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

use markets::{run_markets, run_replay};
use source::{run_backfill, run_generate, run_ingest, run_simulate, run_status};
use stages::{run_cycles, run_load, run_reconcile, run_transform, run_warehouse_init};

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ingest(args) => run_ingest(args).await,
        Command::Backfill(args) => run_backfill(args).await,
        Command::Generate(args) => run_generate(args).await,
        Command::Simulate(args) => run_simulate(args).await,
        Command::Status(args) => run_status(args).await,
        Command::Transform(args) => run_transform(args).await,
        Command::Load(args) => run_load(args).await,
        Command::Sources(args) => sources::run_sources(args).await,
        Command::GenerateOlist(args) => sources::run_generate_olist(args).await,
        Command::Run(args) => run_cycles(args).await,
        Command::Warehouse(WarehouseCommand::Init(args)) => run_warehouse_init(args).await,
        Command::Reconcile(args) => run_reconcile(args).await,
        Command::Markets(args) => run_markets(args).await,
        Command::Fx(args) => fx::run_fx_command(args).await,
        Command::Replay(args) => run_replay(args).await,
        Command::BenchMarkets(args) => bench_markets::run_bench_markets(args).await,
        Command::BenchTransformFloor(args) => stages::run_transform_floor(args).await,
        Command::Iceberg(args) => stages::run_iceberg(args).await,
    }
}
