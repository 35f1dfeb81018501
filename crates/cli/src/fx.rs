//! `tributary fx`: the ECB's daily exchange rates into the raw lake (as
//! received), then `fact_exchange_rate` in the warehouse.

use super::*;
use crate::stages::on_schedule;
use chrono::NaiveDate;
use tributary_pipeline::{
    config::{TRIBUTARY_FX_URL, TRIBUTARY_REPORTING_CURRENCY},
    fx::{FxDays, run_fx},
};

#[derive(Args)]
pub(crate) struct FxArgs {
    #[command(flatten)]
    locations: Locations,
    /// First day to backfill (default: today, the daily poll).
    #[arg(long, value_name = "DAY", conflicts_with = "for_facts")]
    backfill_from: Option<NaiveDate>,
    /// Last day to backfill (default: today).
    #[arg(long, value_name = "DAY", requires = "backfill_from")]
    backfill_to: Option<NaiveDate>,
    /// Backfill the days the warehouse facts convert at: their first to
    /// last created_date.
    #[arg(long)]
    for_facts: bool,
    /// Exchange-rate API base URL [env: TRIBUTARY_FX_URL; default: the public Frankfurter API]
    #[arg(long, value_name = "URL")]
    fx_url: Option<String>,
    /// The currency amounts are converted into [env: TRIBUTARY_REPORTING_CURRENCY; default: GBP]
    #[arg(long, value_name = "CODE")]
    reporting_currency: Option<String>,
    /// Repeat every interval (e.g. 24h: the daily poll) until Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    every: Option<Duration>,
    /// Stop after this many cycles (with --every).
    #[arg(long, value_name = "N")]
    cycles: Option<u64>,
}

pub(crate) async fn run_fx_command(args: FxArgs) -> anyhow::Result<()> {
    let settings = args.locations.settings(&[
        (TRIBUTARY_FX_URL, args.fx_url.clone()),
        (
            TRIBUTARY_REPORTING_CURRENCY,
            args.reporting_currency.clone(),
        ),
    ])?;
    let raw = settings.raw_lake()?;
    let fx = tributary_markets::fx::Frankfurter::new(
        &settings.fx.url,
        tributary_markets::http::RetryPolicy::default(),
    );
    let reporting = settings.fx.reporting_currency.clone();
    let cycle = || async {
        let today = Utc::now().date_naive();
        let mut warehouse = settings.connect_warehouse().await?;
        let days = if args.for_facts {
            FxDays::ForFacts
        } else {
            let from = args.backfill_from.unwrap_or(today);
            FxDays::Range(from, args.backfill_to.unwrap_or(today.max(from)))
        };
        let report = run_fx(&fx, &raw, &mut warehouse, days, &reporting, today).await?;
        let (Some((from, to)), Some(ingested), Some(applied)) =
            (report.days, report.ingested, report.applied)
        else {
            println!("fx: the warehouse has no facts: nothing to backfill");
            return Ok(());
        };
        println!(
            "fx: {from}..{to} into {reporting}: asked {} month(s) ({} complete kept before), {} new raw reply(ies){}; {} rate(s): {} new, {} changed{}",
            ingested.fetched,
            ingested.skipped,
            ingested.written,
            ingested
                .manifest
                .map(|seq| format!(", manifest {seq}"))
                .unwrap_or_default(),
            applied.rows,
            applied.applied.inserted,
            applied.applied.updated,
            if applied.applied.cleared > 0 {
                format!(
                    ", {} deleted (the reporting currency changed)",
                    applied.applied.cleared
                )
            } else {
                String::new()
            },
        );
        if !applied.uncovered.is_empty() {
            println!(
                "fx: {} day(s) without rates (not published or not fetched yet), first {}",
                applied.uncovered.len(),
                applied.uncovered[0]
            );
        }
        if let Some(failure) = ingested.failure {
            return Err(anyhow::Error::new(failure).context(
                "fx: a request failed; the months before it were kept and applied; run again to fetch the rest",
            ));
        }
        Ok(())
    };
    match args.every {
        None => cycle().await,
        Some(every) => on_schedule(every, args.cycles, cycle).await,
    }
}
