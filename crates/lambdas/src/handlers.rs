//! One handler per function: read the event, call the pipeline, record the
//! figures, answer with a short JSON summary (what `cargo lambda invoke`
//! and `aws lambda invoke` print).

use std::time::Duration;

use serde_json::{Value, json};
use tributary_pipeline::{
    catalog::sync_pending,
    markets::load::load_markets,
    markets::poll::{PollOptions, poll_during},
    markets::sink::sink_batch,
    markets::transform::transform_markets,
    metrics::{FreshnessLag, record},
    status::freshness_lag,
    totesys::ingest::{IngestRequest, ingest},
    totesys::load::load,
    totesys::requests::run_pending,
    totesys::transform::{TransformRequest, transform},
};

use crate::{
    Context, Failure,
    context::Connection,
    events::{
        IngestEvent, LoadEvent, SourcesRequest, TransformEvent, ingest_event, kinesis_records,
        load_event, transform_event,
    },
    sources::Outcome,
};
use chrono::NaiveDate;
use tributary_markets::{fx::Frankfurter, http::RetryPolicy};
use tributary_pipeline::fx::{FxDays, run_fx};
use tributary_sources::ingest::RunOptions;

/// How often one scheduled ingest invocation polls the markets.
pub const POLL_EVERY: Duration = Duration::from_secs(15);
/// Time kept free at the end of an invocation.
const MARGIN: Duration = Duration::from_secs(5);

/// Drops a connection after a failed run so the next one reconnects: a
/// broken or mid-transaction connection is never reused.
fn after_failure(slot: &mut Connection<'_>) {
    **slot = None;
}

/// `ingest`: a schedule runs every table incrementally, then every
/// configured source ([`crate::sources`]), then polls the markets until
/// shortly before the next schedule; a backfill re-extracts the named
/// tables since a time; `{"sources": […]}` runs the named configured
/// sources, and an S3 event of the landing bucket the file drops that read
/// its objects. A source outage does not stop the other sources or the
/// market polls: the errors are returned after them.
pub async fn ingest_handler(
    ctx: &Context,
    event: &Value,
    deadline: Option<std::time::SystemTime>,
) -> Result<Value, Failure> {
    let started = std::time::Instant::now();
    let parsed = ingest_event(event)?;
    let request = match &parsed {
        IngestEvent::Scheduled => IngestRequest::default(),
        IngestEvent::Backfill(request) => request.clone(),
        IngestEvent::History(request) => {
            let Some(markets) = &ctx.markets else {
                return Err(Failure::bad_event(
                    "candles need the markets configured: TRIBUTARY_STREAM_NAME is not set",
                ));
            };
            let state = tributary_pipeline::markets::history::backfill_history(
                &markets.mercado,
                &ctx.raw,
                request,
            )
            .await?;
            return Ok(json!({
                "candles": state.candles.values().sum::<u64>(),
                "symbols": state.candles.len(),
            }));
        }
        IngestEvent::Sources(request) => return Box::pin(sources_by_hand(ctx, request)).await,
        IngestEvent::Landed(objects) => return Box::pin(landed(ctx, objects)).await,
    };
    let scheduled = matches!(parsed, IngestEvent::Scheduled);
    let (queued, totesys) = Box::pin(ingest_totesys(ctx, &request, scheduled)).await;
    let mut summary = match &totesys {
        Ok(report) => {
            record(ctx.metrics.as_ref(), report);
            json!({
                "run_id": report.run_id.as_str(),
                "manifest": report.seq,
                "rows": report.rows(),
                "tables": report.tables.iter().filter(|t| t.rows > 0)
                    .map(|t| json!({"table": t.table, "rows": t.rows})).collect::<Vec<_>>(),
                // A backfill larger than one invocation: invoke the same
                // request again to read the next part.
                "backfill_pending": report.backfill_pending,
                "first_loads_pending": report.first_loads_pending,
            })
        }
        Err(_) => json!({}),
    };
    // The configured sources, after totesys and before the market polls,
    // whose budget below counts the time they took.
    let mut sources = Outcome::default();
    if scheduled && !ctx.sources.is_empty() {
        sources = Box::pin(ctx.sources.ingest(ctx, None, &RunOptions::default())).await;
        summary["sources"] = Value::Object(sources.summary.clone());
    }
    if let (IngestEvent::Scheduled, Some(markets)) = (&parsed, &ctx.markets) {
        let remaining = deadline
            .and_then(|d| d.duration_since(std::time::SystemTime::now()).ok())
            .unwrap_or(ctx.schedule_period);
        // End before the next schedule fires: with reserved concurrency 1
        // an overlapping invocation would be throttled and queued.
        let budget = remaining
            .min(ctx.schedule_period.saturating_sub(started.elapsed()))
            .saturating_sub(MARGIN);
        let options = PollOptions::for_ticks_every(POLL_EVERY);
        let polls = Box::pin(poll_during(
            &markets.mercado,
            markets.coincap.as_ref(),
            markets.stream.as_ref(),
            &ctx.raw,
            &options,
            ctx.alerts.as_ref(),
            budget,
            POLL_EVERY,
        ))
        .await?;
        let trades: u64 = polls.iter().map(|p| p.trades).sum();
        record(ctx.metrics.as_ref(), &polls);
        summary["market_polls"] = json!(polls.len());
        summary["trades"] = json!(trades);
    }
    totesys.map_err(Failure::from)?;
    queued.map_err(Failure::from)?;
    if let Some(failure) = sources.failure() {
        return Err(failure);
    }
    Ok(summary)
}

/// `{"sources": ["olist"]}`: the named configured sources, now.
async fn sources_by_hand(ctx: &Context, request: &SourcesRequest) -> Result<Value, Failure> {
    let known = ctx.sources.names();
    let unknown: Vec<&str> = request
        .sources
        .iter()
        .map(String::as_str)
        .filter(|name| !known.contains(name))
        .collect();
    if let Some(modelled) = unknown.iter().find(|name| ctx.sources.is_modelled(name)) {
        return Err(Failure::bad_event(format!(
            "{modelled} feeds the built-in star schema: the scheduled ingest reads it; \
             a backfill is {{\"tables\": [\"payment\"], \"since\": \"2024-01-01T00:00:00Z\"}}"
        )));
    }
    if !unknown.is_empty() {
        return Err(Failure::bad_event(format!(
            "no source file for {unknown:?} among the deployed ones (TRIBUTARY_SOURCES_DIR): {known:?}"
        )));
    }
    let options = RunOptions {
        accept_schema: request.accept_schema.clone(),
        check_deletes: request.check_deletes,
    };
    let outcome = ctx
        .sources
        .ingest(ctx, Some(&request.sources), &options)
        .await;
    if let Some(failure) = outcome.failure() {
        return Err(failure);
    }
    Ok(json!({ "sources": outcome.summary }))
}

/// An S3 event of the landing bucket: each file drop that reads one of its
/// objects runs (taking every new file, so a repeated or late event finds
/// nothing new and commits nothing); objects no file drop reads are
/// ignored and named in the response.
async fn landed(ctx: &Context, objects: &[(String, String)]) -> Result<Value, Failure> {
    let (routed, ignored) = ctx.sources.route_landed(objects);
    if !ignored.is_empty() {
        tracing::info!(objects = ?ignored, "landed objects no file drop reads: ignored");
    }
    let names: Vec<String> = routed.keys().cloned().collect();
    let outcome = if names.is_empty() {
        Outcome::default()
    } else {
        ctx.sources
            .ingest(ctx, Some(&names), &RunOptions::default())
            .await
    };
    if let Some(failure) = outcome.failure() {
        return Err(failure);
    }
    let mut summary = json!({ "sources": outcome.summary, "ignored": ignored });
    for (name, keys) in routed {
        summary["sources"][name.as_str()]["landed"] = json!(keys);
    }
    Ok(summary)
}

/// The totesys part of an ingest run on the kept connection, opened once
/// (the stages alert their own failures; this alerts when it cannot open).
/// A scheduled run first runs the backfills queued in the raw lake
/// (`tributary backfill`): never alongside the schedule. One that fails
/// does not hold back the incremental run; its error comes back first so
/// the invocation still fails, and the next schedule tries it again.
async fn ingest_totesys(
    ctx: &Context,
    request: &IngestRequest,
    scheduled: bool,
) -> (
    tributary_pipeline::Result<()>,
    tributary_pipeline::Result<tributary_pipeline::totesys::ingest::IngestReport>,
) {
    // The source file is read on every run (it is small), so a bad one
    // fails here, before anything is read, names itself and is alerted.
    let options = match tributary_pipeline::totesys::ingest::ingest_options(&ctx.settings) {
        Ok(options) => options,
        Err(error) => {
            tributary_pipeline::totesys::ingest::STAGE
                .failed(ctx.alerts.as_ref(), "-", &error)
                .await;
            return (Ok(()), Err(error));
        }
    };
    let mut queued = Ok(());
    if scheduled {
        let mut slot = match open_totesys(ctx).await {
            Ok(slot) => slot,
            Err(error) => return (queued, Err(error)),
        };
        let client = slot.as_mut().expect("connected");
        // Boxed, as is the ingest below: the nested stage futures are deep
        // enough to overflow the compiler's layout query depth otherwise.
        match Box::pin(run_pending(client, &ctx.raw, &options, ctx.alerts.as_ref())).await {
            Ok(done) => done
                .iter()
                .for_each(|(_, report)| record(ctx.metrics.as_ref(), report)),
            Err(error) => {
                after_failure(&mut slot);
                queued = Err(error);
            }
        }
    }
    let mut slot = match open_totesys(ctx).await {
        Ok(slot) => slot,
        Err(error) => return (queued, Err(error)),
    };
    let client = slot.as_mut().expect("connected");
    let result = Box::pin(ingest(
        client,
        &ctx.raw,
        &options,
        request,
        ctx.alerts.as_ref(),
    ))
    .await;
    if result.is_err() {
        after_failure(&mut slot);
    }
    (queued, result)
}

/// The kept source connection, or the reason it cannot be opened, alerted.
async fn open_totesys(ctx: &Context) -> tributary_pipeline::Result<Connection<'_>> {
    match ctx.totesys().await {
        Ok(slot) => Ok(slot),
        Err(error) => {
            tributary_pipeline::totesys::ingest::STAGE
                .cannot_connect(ctx.alerts.as_ref(), &error)
                .await;
            Err(error)
        }
    }
}

/// `transform`: the raw manifests named by S3 events (any order, repeats
/// harmless: the stage consumes whatever is pending), or a rebuild; then
/// the Glue catalog for what was written.
pub async fn transform_handler(ctx: &Context, event: &Value) -> Result<Value, Failure> {
    let raw_prefix = ctx.settings.raw_root.key_prefix();
    let parsed = transform_event(event, raw_prefix)?;
    let no_sources = std::collections::BTreeSet::new();
    let (totesys, markets, rebuild, sources) = match &parsed {
        TransformEvent::Maintain(request) => return maintain_handler(ctx, *request).await,
        TransformEvent::Rebuild => (true, false, true, &no_sources),
        TransformEvent::Manifests(t) => {
            if !t.ignored.is_empty() {
                tracing::info!(keys = ?t.ignored, "keys that are not manifests this stage reads: ignored");
            }
            (t.totesys, t.markets, false, &t.sources)
        }
    };
    let mut summary = json!({});
    if totesys {
        let report = transform(
            &ctx.raw,
            &ctx.processed,
            &TransformRequest { rebuild },
            ctx.alerts.as_ref(),
        )
        .await?;
        record(ctx.metrics.as_ref(), &report);
        summary["totesys"] = json!({
            "run_id": report.run_id.as_str(),
            "manifest": report.seq,
            "raw_manifests": report.inputs,
            "rows": report.rows,
            "quarantined": report.quarantined,
        });
    }
    if markets {
        let report = transform_markets(&ctx.raw, &ctx.processed, ctx.alerts.as_ref()).await?;
        record(ctx.metrics.as_ref(), &report);
        summary["markets"] = json!({
            "manifest": report.seq,
            "trades": report.trades,
            "duplicates": report.duplicates,
            "bars": report.bars,
            "compacted_days": report.compacted_days,
        });
    }
    if ctx.catalog_enabled {
        let tables = sync_pending(
            ctx.catalog.as_ref(),
            &ctx.raw,
            &ctx.processed,
            ctx.alerts.as_ref(),
        )
        .await?;
        summary["catalog_tables"] = json!(tables);
    }
    if !sources.is_empty() {
        summary["sources"] = Box::pin(publish_sources(ctx, sources)).await?;
    }
    Ok(summary)
}

/// The configured sources' Iceberg tables, for sources with a new
/// manifest: each published as its own stage (a failure is alerted and the
/// others go on; the invocation fails at the end, and the hourly
/// maintenance publishes whatever a failed one left).
async fn publish_sources(
    ctx: &Context,
    sources: &std::collections::BTreeSet<String>,
) -> Result<Value, Failure> {
    use tributary_pipeline::source_tables::run_publication;
    let catalog = ctx.catalog_enabled.then_some(ctx.catalog.as_ref());
    let mut summary = serde_json::Map::new();
    let mut failed = Vec::new();
    for source in sources {
        match run_publication(
            &ctx.raw,
            &ctx.processed,
            source,
            catalog,
            ctx.alerts.as_ref(),
        )
        .await
        {
            Ok(report) => {
                let tables: std::collections::BTreeSet<&str> =
                    report.commits.iter().map(|c| c.0.as_str()).collect();
                summary.insert(
                    source.clone(),
                    json!({"manifests": report.manifests, "tables": tables}),
                );
            }
            Err(error) => {
                summary.insert(source.clone(), json!({"error": error.to_string()}));
                failed.push((source.clone(), error));
            }
        }
    }
    if failed.is_empty() {
        return Ok(Value::Object(summary));
    }
    let retryable = failed.iter().all(|(_, e)| e.is_retryable());
    let detail: Vec<String> = failed
        .iter()
        .map(|(name, error)| format!("source {name}: {error}"))
        .collect();
    Err(Failure {
        retryable,
        kind: "Publish",
        message: format!(
            "{} source publication(s) failed (the others went on): {}",
            failed.len(),
            detail.join("; ")
        ),
    })
}

/// `{"maintain": {...}}` on the transform function: compaction and expiry
/// of every Iceberg table, then the catalog points at their new versions.
async fn maintain_handler(
    ctx: &Context,
    request: crate::events::MaintainRequest,
) -> Result<Value, Failure> {
    use tributary_pipeline::lakehouse;
    let options = tributary_iceberg::MaintainOptions {
        target_file_bytes: request.target_mb * 1024 * 1024,
        keep_snapshots_for: std::time::Duration::from_secs(request.keep_hours * 3600),
        ..Default::default()
    };
    let no_catalog = tributary_pipeline::catalog::NoCatalog;
    let catalog: &dyn tributary_pipeline::catalog::Catalog = if ctx.catalog_enabled {
        ctx.catalog.as_ref()
    } else {
        &no_catalog
    };
    let done = lakehouse::run_maintenance(
        &ctx.raw,
        &ctx.processed,
        &options,
        catalog,
        ctx.alerts.as_ref(),
    )
    .await?;
    let tables: serde_json::Map<String, Value> = done
        .tables
        .iter()
        .map(|t| {
            (
                t.table.clone(),
                json!({
                    "files_before": t.compaction.files_before,
                    "files_after": t.compaction.files_after,
                    "rows_rewritten": t.compaction.rows,
                    "compaction_ms": t.compaction.millis,
                    "expired_snapshots": t.expiry.expired_snapshots,
                    "deleted_files": t.expiry.deleted_files,
                }),
            )
        })
        .collect();
    Ok(json!({ "maintain": tables }))
}

/// `load`: every pending processed manifest (totesys, then markets), one
/// transaction each, then every configured source's pending manifests into
/// `src_<name>` (one failing source does not hold back the others). Any
/// event form does the same, so repeats are harmless. The daily
/// `{"fx": {}}` runs the exchange rates instead ([`fx_handler`]).
pub async fn load_handler(ctx: &Context, event: &Value) -> Result<Value, Failure> {
    let today = chrono::Utc::now().date_naive();
    match load_event(event, ctx.settings.processed_root.key_prefix(), today)? {
        LoadEvent::Pending => {}
        LoadEvent::Fx(days) => return fx_handler(ctx, days, today).await,
    }
    let mut slot = match ctx.warehouse().await {
        Ok(slot) => slot,
        Err(error) => {
            tributary_pipeline::totesys::load::STAGE
                .cannot_connect(ctx.alerts.as_ref(), &error)
                .await;
            return Err(error.into());
        }
    };
    let client = slot.as_mut().expect("connected");
    let loaded = load_totesys_and_markets(ctx, client).await;
    if loaded.is_err() {
        after_failure(&mut slot);
    }
    // The sources take the connection in turn (and reopen it if it died).
    drop(slot);
    if ctx.sources.is_empty() {
        return loaded.map_err(Failure::from);
    }
    let sources = Box::pin(ctx.sources.load(ctx)).await;
    let mut summary = loaded.map_err(Failure::from)?;
    summary["sources"] = Value::Object(sources.summary.clone());
    if let Some(failure) = sources.failure() {
        return Err(failure);
    }
    Ok(summary)
}

/// The totesys and markets loads of the load function, and their figures.
async fn load_totesys_and_markets(
    ctx: &Context,
    client: &mut tokio_postgres::Client,
) -> tributary_pipeline::Result<Value> {
    let report = load(client, &ctx.processed, ctx.alerts.as_ref()).await?;
    let markets = load_markets(client, &ctx.processed, ctx.alerts.as_ref()).await?;
    let lag = freshness_lag(&ctx.processed, client).await?;
    record(ctx.metrics.as_ref(), &report);
    record(ctx.metrics.as_ref(), &markets);
    if let Some(lag) = lag {
        record(ctx.metrics.as_ref(), &FreshnessLag(lag));
    }
    Ok(json!({
        "run_id": report.run_id.as_str(),
        "manifests": report.manifests.iter().map(|m| m.seq).collect::<Vec<_>>(),
        "rows": report.rows(),
        "trades": markets.trades,
        "daily_bars": markets.bars,
        "freshness_lag_seconds": lag.map(|l| l.as_secs_f64()),
    }))
}

/// The exchange-rate run of the load function: the API's replies for `days`
/// into the raw lake as received, then `fact_exchange_rate` (the load
/// function holds the warehouse connection the days and the rates need).
/// A failed request still applies what the raw lake holds, then fails the
/// invocation so its alarm fires; the next run asks only for the rest.
async fn fx_handler(ctx: &Context, days: FxDays, today: NaiveDate) -> Result<Value, Failure> {
    let fx = Frankfurter::new(&ctx.settings.fx.url, RetryPolicy::default());
    let reporting = &ctx.settings.fx.reporting_currency;
    let mut slot = ctx.warehouse().await?;
    let client = slot.as_mut().expect("connected");
    let report = match run_fx(&fx, &ctx.raw, client, days, reporting, today).await {
        Ok(report) => report,
        Err(error) => {
            after_failure(&mut slot);
            return Err(error.into());
        }
    };
    let (Some((from, to)), Some(ingested), Some(applied)) =
        (report.days, report.ingested, report.applied)
    else {
        return Ok(json!({"fx": "the warehouse has no facts yet: no days to cover"}));
    };
    if let Some(failure) = ingested.failure {
        let mut failure = Failure::from(tributary_pipeline::Error::from(failure));
        failure.message = format!(
            "fx: {}; the months before it were kept and applied ({from}..{to}); the next run asks for the rest",
            failure.message
        );
        return Err(failure);
    }
    Ok(json!({
        "fx": {
            "from": from.to_string(),
            "to": to.to_string(),
            "reporting_currency": reporting,
            "months_fetched": ingested.fetched,
            "raw_replies_written": ingested.written,
            "manifest": ingested.manifest,
            "rates": applied.rows,
            "inserted": applied.applied.inserted,
            "updated": applied.applied.updated,
            "days_without_rates": applied.uncovered.len(),
        }
    }))
}

/// `stream-sink`: one Kinesis batch → one raw object and a manifest; the
/// response names the records to redeliver (ReportBatchItemFailures).
pub async fn stream_sink_handler(ctx: &Context, event: &Value) -> Result<Value, Failure> {
    let records = kinesis_records(event)?;
    let report = sink_batch(&ctx.raw, &records, ctx.alerts.as_ref()).await;
    record(ctx.metrics.as_ref(), &report);
    let mut response = aws_lambda_events::event::streams::KinesisEventResponse::default();
    for id in &report.batch_item_failures {
        response.add_failure(id.clone());
    }
    serde_json::to_value(response).map_err(|e| Failure::from(tributary_pipeline::Error::from(e)))
}
