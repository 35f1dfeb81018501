//! `sources`: every source declared in a folder of source files, into the
//! raw lake, the processed lake's Iceberg tables and the warehouse.

use std::path::PathBuf;

use tributary_pipeline::{
    alerts::{Alert, Alerts},
    sources::{ingest_source, load_source},
};
use tributary_sources::{config::SourceFile, ingest::RunOptions, load::warehouse_schema};

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
    /// Leave the warehouse as it is
    #[arg(long)]
    no_load: bool,
    /// Leave the processed lake's Iceberg tables as they are (`tributary
    /// iceberg publish` or the next run publishes what this one read)
    #[arg(long)]
    no_publish: bool,
    /// After the run, write each source's dbt sources file,
    /// `<DIR>/<name>/_sources.yml`, from the schema the run recorded
    #[arg(long, value_name = "DIR")]
    dbt_models: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct GenerateOlistArgs {
    /// The environment variable holding the Olist database's URL
    #[arg(long, default_value = "OLIST_DATABASE_URL")]
    url_env: String,
    /// Paid-for orders to make up (about two items each), in an empty
    /// database
    #[arg(long, default_value_t = 20_000, conflicts_with_all = ["month", "next_month"])]
    orders: u64,
    /// Instead: apply month number N of business to the existing tables
    /// (new orders, deliveries, purged cancellations, withdrawn reviews)
    #[arg(long, value_name = "N", conflicts_with = "next_month")]
    month: Option<u32>,
    /// Instead: apply the first month not yet applied
    #[arg(long)]
    next_month: bool,
}

/// Makes up an Olist database, or a month of its business.
pub(crate) async fn run_generate_olist(args: GenerateOlistArgs) -> anyhow::Result<()> {
    let url = std::env::var(&args.url_env)
        .with_context(|| format!("set {} to the Olist database's URL", args.url_env))?;
    let variable: &'static str = Box::leak(args.url_env.clone().into_boxed_str());
    let client = tributary_pipeline::db::connect(&url, "olist", variable, None).await?;
    let started = std::time::Instant::now();
    let month = match args.month {
        Some(month) => Some(month),
        None if args.next_month => Some(tributary_sources::olist::next_month(&client).await?),
        None => None,
    };
    match month {
        Some(month) => {
            tributary_sources::olist::apply_month(&client, month).await?;
            println!(
                "olist: month {month} applied in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        None => {
            let exists: bool = client
                .query_one("SELECT to_regclass('public.orders') IS NOT NULL", &[])
                .await?
                .get(0);
            anyhow::ensure!(
                !exists,
                "the database in {} already has an orders table: generate into an empty database",
                args.url_env
            );
            tributary_sources::olist::generate(&client, args.orders).await?;
            println!(
                "olist: generated in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    for row in client
        .query(
            "SELECT c.relname::text, c.reltuples::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1",
            &[],
        )
        .await?
    {
        let (table, rows): (String, i64) = (row.get(0), row.get(1));
        println!("{table:<36} {:>10}", rows.max(0));
    }
    Ok(())
}

pub(crate) async fn run_sources(args: SourcesArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[])?;
    let raw = settings.raw_lake()?;
    let processed = settings.processed_lake()?;
    let mut files = SourceFile::read_dir(&args.dir)?;
    if let Some(modelled) = files
        .iter()
        .find(|f| f.model.is_some() && args.source.as_ref() == Some(&f.name))
    {
        anyhow::bail!(
            "{} feeds the built-in {} star schema: `tributary ingest` (or `tributary run`) reads it",
            modelled.path.display(),
            modelled.model.as_deref().unwrap_or_default()
        );
    }
    // A source feeding a built-in model is read by that model's stages.
    files.retain(|f| f.model.is_none());
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
    let mut unpublished = 0;
    for file in &files {
        let url = if file.is_files() {
            None
        } else {
            // The variable's name is the file's; the connection error names it.
            let variable: &'static str = Box::leak(file.url_env.clone().into_boxed_str());
            Some((file.url()?, variable))
        };
        let run = ingest_source(
            &raw,
            file,
            url.as_ref().map(|(u, v)| (u.as_str(), *v)),
            settings.pg_ca_file.as_deref(),
            &options,
        )
        .await?;
        if !run.committed {
            let nothing = if file.is_files() {
                "no new file"
            } else {
                "nothing changed"
            };
            println!(
                "source {}: {nothing} (manifest {} stays the latest)",
                run.source, run.seq
            );
        } else {
            println!(
                "source {}: run {} committed manifest {}",
                run.source, run.run_id, run.seq
            );
        }
        println!("{:<32} {:>10} {:>8}  note", "table", "rows", "deletes");
        for t in &run.tables {
            let mut note = Vec::new();
            if t.unchanged && file.is_files() {
                note.push("no new file".to_string());
            } else if t.unchanged {
                note.push("unchanged since the last read (statistics)".to_string());
            } else if !t.checked_deletes && !file.is_files() {
                note.push("deletes not checked this run".to_string());
            }
            if t.quarantined > 0 {
                note.push(format!(
                    "{} row(s) quarantined: see {}/_quarantine/",
                    t.quarantined, t.table
                ));
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
        // The processed lake's Iceberg tables of the source (Athena's
        // view of it), then the warehouse.
        let published = if args.no_publish {
            Default::default()
        } else {
            match tributary_pipeline::source_tables::run_publication(
                &raw, &processed, &file.name, None, &LogAlerts,
            )
            .await
            {
                Ok(published) => published,
                // Alerted by its stage; the warehouse load goes on.
                Err(error) => {
                    println!("lakehouse: NOT PUBLISHED: {error}");
                    unpublished += 1;
                    Default::default()
                }
            }
        };
        if !published.commits.is_empty() {
            let mut tables: Vec<&str> = published.commits.iter().map(|c| c.0.as_str()).collect();
            tables.dedup();
            println!(
                "lakehouse: {} Iceberg table(s) published from {} manifest(s) in {:.2}s: {}",
                tables.len(),
                published.manifests.len(),
                published.elapsed.as_secs_f64(),
                tables.join(", ")
            );
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
    if let Some(dir) = &args.dbt_models {
        for file in &files {
            let yaml = tributary_sources::dbt::latest_sources_yaml(&raw, &file.name).await?;
            let folder = dir.join(&file.name);
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("create {}", folder.display()))?;
            let path = folder.join("_sources.yml");
            std::fs::write(&path, yaml).with_context(|| format!("write {}", path.display()))?;
            println!("dbt sources: {}", path.display());
        }
    }
    anyhow::ensure!(stopped == 0, "{stopped} table(s) stopped (see above)");
    anyhow::ensure!(
        unpublished == 0,
        "{unpublished} source(s) not fully published to the processed lake (see above)"
    );
    Ok(())
}
