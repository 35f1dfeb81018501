//! `ingest`, `generate`, `simulate` and `status`: the source side.

use super::*;

pub(crate) async fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let settings = args
        .locations
        .settings(&[(TRIBUTARY_LOOKBACK, args.lookback.clone())])?;
    let raw = settings.raw_lake()?;
    let options = ingest_options(&settings)?;
    let request = IngestRequest {
        tables: args.tables,
        since: args.since,
    };
    let mut source = settings.connect_totesys().await?;
    // A first extract larger than TRIBUTARY_INGEST_MAX_ROWS is read in
    // parts, one manifest each; here the parts follow one another (on AWS,
    // each scheduled invocation reads the next).
    loop {
        let report = ingest(&mut source, &raw, &options, &request, &LogAlerts).await?;
        print_ingest(&report);
        if !report.backfill_pending.is_empty() {
            if args.one_run {
                println!(
                    "backfill of {} goes on in parts: run the same request again for the next one",
                    report.backfill_pending.join(", ")
                );
                return Ok(());
            }
            println!(
                "backfill of {} goes on in parts (TRIBUTARY_INGEST_MAX_ROWS={}): next part…",
                report.backfill_pending.join(", "),
                settings.ingest_max_rows
            );
            continue;
        }
        if report.first_loads_pending.is_empty() {
            return Ok(());
        }
        if args.one_run {
            println!(
                "first extract of {} goes on in parts: the next run reads the next one",
                report.first_loads_pending.join(", ")
            );
            return Ok(());
        }
        println!(
            "first extract of {} goes on in parts (TRIBUTARY_INGEST_MAX_ROWS={}): next part…",
            report.first_loads_pending.join(", "),
            settings.ingest_max_rows
        );
    }
}

pub(crate) async fn run_backfill(args: BackfillArgs) -> anyhow::Result<()> {
    use tributary_pipeline::totesys::requests::{queue, statuses};
    let settings = args.locations.settings(&[])?;
    let raw = settings.raw_lake()?;
    if args.status {
        let all = statuses(&raw).await?;
        if all.is_empty() {
            println!("no backfill queued in {}", raw.url());
        }
        for s in all {
            let what = format!(
                "{} since {}",
                s.queued
                    .request
                    .tables
                    .as_ref()
                    .map_or("all tables".to_string(), |t| t.join(",")),
                s.queued
                    .request
                    .since
                    .map_or("-".to_string(), |t| t.to_rfc3339())
            );
            let state = match &s.outcome {
                Some(o) if o.status == "done" => format!(
                    "done by run {}{} (manifest {}, {} rows) at {}",
                    o.run_id,
                    if s.parts > 0 {
                        format!(" after {} part(s)", s.parts)
                    } else {
                        String::new()
                    },
                    o.manifest.unwrap_or(0),
                    o.rows,
                    o.finished_at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                Some(o) => format!("{} after {} attempt(s)", o.status, s.attempts),
                None if s.parts > 0 => format!(
                    "under way: {} part(s) read, one per schedule ({} failed attempt(s))",
                    s.parts,
                    s.attempts.saturating_sub(s.parts)
                ),
                None => format!("pending ({} attempt(s) so far)", s.attempts),
            };
            println!("{}  {what}  {state}", s.id);
        }
        return Ok(());
    }
    let request = IngestRequest {
        tables: args.tables,
        since: args.since,
    };
    let id = queue(&raw, &request, &ingest_options(&settings)?.source).await?;
    println!(
        "queued backfill {id} in {}: the next scheduled ingest (or `tributary run`) runs it before its own run; `tributary backfill --status` shows how it ended",
        raw.url()
    );
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
    for stop in &report.stopped {
        println!(
            "{:<16} not read this run: {}; {}",
            stop.table, stop.reason, stop.action
        );
    }
}

pub(crate) async fn run_generate(args: GenerateArgs) -> anyhow::Result<()> {
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

pub(crate) async fn run_simulate(args: SimulateArgs) -> anyhow::Result<()> {
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

pub(crate) async fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let status = ingest_status(&settings.raw_lake()?).await?;
    if status.seq == 0 {
        println!("nothing ingested yet into {}", settings.raw_root);
        return Ok(());
    }
    println!(
        "raw lake {}: manifest {} committed {}",
        settings.raw_root,
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
    // Downstream: the processed lake, and the warehouse when it is configured.
    let warehouse = match settings.warehouse_database_url() {
        Ok(_) => match settings.connect_warehouse().await {
            Ok(client) => Some(client),
            Err(e) => {
                println!("warehouse: {e}");
                None
            }
        },
        Err(_) => None,
    };
    let downstream = tributary_pipeline::status::downstream_status(
        &settings.processed_lake()?,
        warehouse.as_ref(),
    )
    .await?;
    match downstream.processed {
        Some((seq, at)) => println!(
            "processed lake {}: manifest {seq} committed {}",
            settings.processed_root,
            show_time(Some(at))
        ),
        None => println!(
            "processed lake {}: nothing transformed yet",
            settings.processed_root
        ),
    }
    if let Some(loaded) = downstream.loaded_through {
        let behind = downstream
            .processed
            .map_or(0, |(seq, _)| seq.saturating_sub(loaded));
        println!("warehouse: loaded through processed manifest {loaded} ({behind} behind)");
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
