//! `sources`: every source declared in a folder of source files, into the
//! raw lake and the warehouse.

use std::path::PathBuf;

use tributary_pipeline::alerts::{Alert, Alerts};
use tributary_sources::{
    config::SourceFile,
    ingest::{RunOptions, run_source},
    load::{load_source, warehouse_schema},
};

use super::*;

#[derive(Args)]
pub(crate) struct SourcesArgs {
    #[command(flatten)]
    locations: Locations,
    /// Folder of source files, one `<name>.toml` per source
    #[arg(long, env = "TRIBUTARY_SOURCES_DIR", default_value = "sources")]
    dir: PathBuf,
    /// Only this source (the file's name without .toml)
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// Accept the changed schema of these tables (after reading the alert
    /// that stopped them), comma-separated
    #[arg(long, value_name = "TABLES", value_delimiter = ',')]
    accept_schema: Vec<String>,
    /// Look for deletes now, whatever deletes_every says
    #[arg(long)]
    check_deletes: bool,
    /// Only the raw lake; leave the warehouse as it is
    #[arg(long)]
    no_load: bool,
}

pub(crate) async fn run_sources(args: SourcesArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let raw = settings.raw_lake()?;
    let mut files = SourceFile::read_dir(&args.dir)?;
    if let Some(only) = &args.source {
        files.retain(|f| &f.name == only);
        anyhow::ensure!(
            !files.is_empty(),
            "no source file {}/{only}.toml",
            args.dir.display()
        );
    }
    anyhow::ensure!(
        !files.is_empty(),
        "no source file (*.toml) in {}",
        args.dir.display()
    );
    let options = RunOptions {
        accept_schema: args.accept_schema.clone(),
        check_deletes: args.check_deletes,
    };
    let mut warehouse = if args.no_load {
        None
    } else {
        Some(settings.connect_warehouse().await?)
    };
    let mut stopped = 0;
    for file in &files {
        let url = file.url()?;
        // The variable's name is the file's; the connection error names it.
        let variable: &'static str = Box::leak(file.url_env.clone().into_boxed_str());
        let mut client = tributary_pipeline::db::connect(&url, "source", variable, None).await?;
        let run = run_source(&mut client, &raw, file, &options).await?;
        println!(
            "source {}: run {} committed manifest {}",
            run.source, run.run_id, run.seq
        );
        println!("{:<32} {:>10} {:>8}  note", "table", "rows", "deletes");
        for t in &run.tables {
            let mut note = Vec::new();
            if !t.checked_deletes {
                note.push("deletes not checked this run".to_string());
            }
            if !t.added_columns.is_empty() {
                note.push(format!("new column(s): {}", t.added_columns.join(", ")));
            }
            println!(
                "{:<32} {:>10} {:>8}  {}",
                t.table,
                t.rows,
                t.deletes,
                note.join("; ")
            );
        }
        for stop in &run.stopped {
            stopped += 1;
            LogAlerts
                .send(&Alert {
                    stage: "sources",
                    run_id: run.run_id.to_string(),
                    table: Some(format!("{}.{}", run.source, stop.table)),
                    message: format!("{} stopped: {}", stop.table, stop.reason),
                    action: "the other tables went on; fix or accept as the message says"
                        .to_string(),
                })
                .await;
            println!("{:<32} STOPPED: {}", stop.table, stop.reason);
        }
        if let Some(warehouse) = warehouse.as_mut() {
            let loaded = load_source(warehouse, &raw, &file.name).await?;
            let rows: u64 = loaded.rows.values().sum();
            let deleted: u64 = loaded.deleted.values().sum();
            println!(
                "warehouse schema {}: {} manifest(s) applied, {rows} rows written, {deleted} deleted",
                warehouse_schema(&file.name),
                loaded.manifests.len()
            );
        }
    }
    anyhow::ensure!(stopped == 0, "{stopped} table(s) stopped (see above)");
    Ok(())
}
