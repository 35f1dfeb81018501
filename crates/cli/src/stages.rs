//! `transform`, `load`, `run`, `warehouse init` and `reconcile`: the stages after ingest, and their schedule.

use super::*;

pub(crate) async fn run_reconcile(args: RunArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    match args.every {
        None => reconcile_once(&settings).await,
        Some(every) => on_schedule(every, args.cycles, || reconcile_once(&settings)).await,
    }
}

/// One reconcile of totesys, then of the markets (no markets rows without
/// markets data): prints the table and the advice for each difference,
/// alerts and fails on any difference.
async fn reconcile_once(settings: &Settings) -> anyhow::Result<()> {
    let source = settings.connect_totesys().await?;
    let warehouse = settings.connect_warehouse().await?;
    let (raw, processed) = (settings.raw_lake()?, settings.processed_lake()?);
    let schema = ingest_options(settings)?.source.schema.clone();
    let mut report = tributary_pipeline::totesys::reconcile::reconcile(
        &source, &schema, &raw, &processed, &warehouse, &LogAlerts,
    )
    .await?;
    report.comparisons.extend(
        tributary_pipeline::markets::reconcile::reconcile_markets(
            &raw, &processed, &warehouse, &LogAlerts,
        )
        .await?,
    );
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
    for c in report.comparisons.iter().filter(|c| !c.is_clean()) {
        if let Some(advice) = &c.advice {
            println!("{} {}: {advice}", c.table, c.layers);
        }
    }
    if report.is_clean() {
        println!("reconcile: every row version is in every layer, once");
        Ok(())
    } else {
        let differing = report.comparisons.iter().filter(|c| !c.is_clean()).count();
        anyhow::bail!("reconcile found {differing} difference(s); see the table above")
    }
}

pub(crate) async fn run_transform(args: TransformArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let request = TransformRequest {
        rebuild: args.rebuild,
    };
    // A run takes on a bounded share of what is pending; here runs follow
    // one another until the processed lake has caught up.
    let (raw, processed) = (settings.raw_lake()?, settings.processed_lake()?);
    let mut request = request;
    loop {
        let report = transform(&raw, &processed, &request, &LogAlerts).await?;
        print_transform(&report);
        if report.pending == 0 || report.seq.is_none() {
            return Ok(());
        }
        println!("transform: {} raw manifest(s) left", report.pending);
        if args.one_run {
            return Ok(());
        }
        request.rebuild = false;
    }
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
                println!("  {table:<26} {rows:>10}");
            }
            for (table, rows) in &report.quarantined {
                println!("  quarantined {table:<10} {rows:>10}");
            }
            for (table, rows) in &report.repeats {
                println!(
                    "  {table:<22} {rows:>10} version(s) read again, already in the processed lake"
                );
            }
            println!("  phases:");
            for (phase, took) in &report.phases {
                println!("    {phase:<48} {:>8.3}s", took.as_secs_f64());
            }
        }
    }
    if let Some(published) = &report.published
        && !published.commits.is_empty()
    {
        print_published(published);
    }
}

fn print_published(published: &tributary_pipeline::lakehouse::PublishReport) {
    let slowest = published
        .commits
        .iter()
        .map(|c| c.2)
        .max()
        .unwrap_or_default();
    println!(
        "iceberg: {} commit(s) from processed manifest(s) {:?} in {:.3}s (slowest commit {:.3}s, {} file(s) rewritten by replaces)",
        published.commits.len(),
        (published.manifests.first(), published.manifests.last()),
        published.elapsed.as_secs_f64(),
        slowest.as_secs_f64(),
        published.rewritten_files
    );
}

/// `tributary iceberg ...`: the processed lake's Iceberg tables.
pub(crate) async fn run_iceberg(args: IcebergArgs) -> anyhow::Result<()> {
    use tributary_pipeline::lakehouse;
    let (IcebergCommand::Publish { locations }
    | IcebergCommand::Maintain { locations, .. }
    | IcebergCommand::Describe { locations }) = &args.command;
    let settings = locations.settings(&[])?;
    let processed = settings.processed_lake()?;
    match args.command {
        IcebergCommand::Publish { .. } => {
            let published = lakehouse::STAGE
                .run(&LogAlerts, |_| lakehouse::publish(&processed))
                .await?;
            if published.commits.is_empty() {
                println!("iceberg: every star-schema table is up to date");
            } else {
                print_published(&published);
            }
            // The configured sources' tables (`tributary sources` publishes
            // them after each run; this catches up a lake written before).
            let raw = settings.raw_lake()?;
            let mut failed = 0;
            let published =
                tributary_pipeline::source_tables::publish_all(&raw, &processed, None, &LogAlerts)
                    .await;
            for (source, done) in published {
                match done {
                    Ok(done) => println!(
                        "iceberg: source {source}: {} commit(s) from {} manifest(s)",
                        done.commits.len(),
                        done.manifests.len()
                    ),
                    Err(error) => {
                        failed += 1;
                        println!("iceberg: source {source}: {error}");
                    }
                }
            }
            anyhow::ensure!(
                failed == 0,
                "{failed} source(s) not fully published (see above)"
            );
        }
        IcebergCommand::Maintain {
            target_mb,
            keep_hours,
            ..
        } => {
            let options = tributary_iceberg::MaintainOptions {
                target_file_bytes: target_mb * 1024 * 1024,
                keep_snapshots_for: std::time::Duration::from_secs(keep_hours * 3600),
                ..Default::default()
            };
            let done = lakehouse::run_maintenance(
                &settings.raw_lake()?,
                &processed,
                &options,
                &tributary_pipeline::catalog::NoCatalog,
                &LogAlerts,
            )
            .await?;
            println!(
                "{:<26} {:>7} {:>7} {:>10} {:>9} {:>8} {:>8}",
                "table", "files", "after", "rows", "seconds", "expired", "deleted"
            );
            for t in done.tables {
                println!(
                    "{:<26} {:>7} {:>7} {:>10} {:>9.3} {:>8} {:>8}",
                    t.table,
                    t.compaction.files_before,
                    t.compaction.files_after,
                    t.compaction.rows,
                    t.compaction.millis as f64 / 1000.0,
                    t.expiry.expired_snapshots,
                    t.expiry.deleted_files
                );
            }
        }
        IcebergCommand::Describe { .. } => {
            let catalog = tributary_iceberg::Catalog::new(processed.clone());
            println!(
                "{:<26} {:>8} {:>9} {:>7} {:>12} {:>10}  metadata",
                "table", "version", "snapshots", "files", "avg bytes", "rows"
            );
            let mut defs = lakehouse::all_defs();
            defs.extend(
                tributary_pipeline::source_tables::table_defs(&settings.raw_lake()?).await?,
            );
            for def in defs {
                let Some(current) = catalog.load(&def.location).await? else {
                    println!("{:<26} (not published yet)", def.name);
                    continue;
                };
                let files = catalog.data_files(&current).await?;
                let rows: u64 = files.iter().map(|f| f.record_count()).sum();
                let bytes: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
                println!(
                    "{:<26} {:>8} {:>9} {:>7} {:>12} {:>10}  {}",
                    def.name,
                    current.version,
                    current.metadata.snapshots().len(),
                    files.len(),
                    bytes / (files.len() as u64).max(1),
                    rows,
                    catalog.metadata_url(&def.location, &current)
                );
            }
        }
    }
    Ok(())
}

/// `tributary bench-transform-floor`: the transform's floor for benchmarks
/// (after a first transform of the raw lake into the processed lake given).
pub(crate) async fn run_transform_floor(args: TransformArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let floor = tributary_pipeline::totesys::transform::transform_floor(
        &settings.raw_lake()?,
        &settings.processed_lake()?,
    )
    .await?;
    println!(
        "transform floor: {:.3}s to decode {} raw rows and encode {} output rows ({} facts) side by side \
         (decode alone {:.3}s, encode alone {:.3}s)",
        floor.elapsed.as_secs_f64(),
        floor.raw_rows,
        floor.rows,
        floor.fact_rows,
        floor.decode.as_secs_f64(),
        floor.encode.as_secs_f64()
    );
    Ok(())
}

pub(crate) async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let mut warehouse = settings.connect_warehouse().await?;
    let processed = settings.processed_lake()?;
    loop {
        let report = load(&mut warehouse, &processed, &LogAlerts).await?;
        print_load(&report);
        if report.pending == 0 {
            return Ok(());
        }
        println!("load: {} processed manifest(s) left", report.pending);
        if args.one_run {
            return Ok(());
        }
    }
}

fn print_load(report: &LoadReport) {
    if report.manifests.is_empty() {
        println!("load: the warehouse is up to date");
    }
    for manifest in &report.manifests {
        let rows: u64 = manifest.rows.values().sum();
        println!(
            "load: manifest {} applied, {rows} rows inserted or changed; aggregates: {} day(s) recomputed in {:.1} ms",
            manifest.seq,
            manifest.aggregates.days,
            manifest.aggregates.elapsed.as_secs_f64() * 1000.0
        );
    }
}

pub(crate) async fn run_warehouse_init(args: LoadArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let warehouse = settings.connect_warehouse().await?;
    tributary_pipeline::totesys::load::init_warehouse(&warehouse).await?;
    println!("warehouse schema is in place");
    Ok(())
}

pub(crate) async fn run_cycles(args: RunArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let raw = settings.raw_lake()?;
    let processed = settings.processed_lake()?;
    let options = ingest_options(&settings)?;
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
pub(crate) async fn on_schedule<F, Fut>(
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
    let repeats: u64 = report.transform.repeats.values().sum();
    println!(
        "cycle: ingested {} rows (manifest {}), transformed {} fact rows{}, loaded {} rows; {}",
        report.ingest.rows(),
        report.ingest.seq,
        report.transform.fact_rows(),
        if repeats > 0 {
            format!(" ({repeats} version(s) read again were already in the processed lake)")
        } else {
            String::new()
        },
        report.load.rows(),
        match report.change_to_warehouse {
            Some(lag) => format!("change-to-warehouse lag {:.2}s", lag.as_secs_f64()),
            None => "no source change this cycle".to_string(),
        }
    );
    let histories = report
        .transform
        .phases
        .iter()
        .find(|(phase, _)| phase == "dimension histories")
        .map_or(0.0, |(_, took)| took.as_secs_f64() * 1000.0);
    let (days, aggregates_ms) = report.load.manifests.iter().fold((0, 0.0), |(d, ms), m| {
        (
            d + m.aggregates.days,
            ms + m.aggregates.elapsed.as_secs_f64() * 1000.0,
        )
    });
    println!(
        "  dimension histories {histories:.1} ms; aggregates: {days} day(s) recomputed in {aggregates_ms:.1} ms"
    );
    if let Some(published) = &report.transform.published
        && !published.commits.is_empty()
    {
        print!("  ");
        print_published(published);
    }
}
