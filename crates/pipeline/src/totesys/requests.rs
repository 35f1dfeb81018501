//! Backfills queued in the raw lake and run by the next scheduled ingest.
//!
//! On AWS the ingest function runs one at a time and is busy for most of
//! every minute, so a backfill invoked by hand collides with the schedule.
//! Instead `tributary backfill` writes the request (the same JSON an invoke
//! would carry) to `_requests/ingest/<id>.json`; each scheduled ingest runs
//! the pending ones, oldest first, before its own incremental run, and
//! records how each ended under `outcomes/`. A request larger than one run
//! (`TRIBUTARY_INGEST_MAX_ROWS`) is read in parts, one per schedule, each
//! recorded under `parts/`; the requests behind it wait. A request that
//! fails is tried again by the next schedule, up to [`MAX_ATTEMPTS`] failed
//! runs, then given up with an alert that says how to split it. Nothing is ever deleted: the raw
//! bucket keeps what was asked and what happened.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use tributary_lake::{Lake, RunId, keys};

use crate::{
    Result,
    alerts::{Alert, Alerts},
    totesys::ingest::{
        BACKFILL_STAGE, IngestOptions, IngestReport, IngestRequest, STAGE, ingest, selected_tables,
    },
};

/// Runs that may take up one request before it is given up.
pub const MAX_ATTEMPTS: usize = 3;

/// One queued backfill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedBackfill {
    /// What to re-extract.
    pub request: IngestRequest,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
}

/// How a queued backfill ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillOutcome {
    /// `done` or `given up`.
    pub status: String,
    /// The ingest run that did it (or the last that tried).
    pub run_id: String,
    /// The raw manifest it committed.
    pub manifest: Option<u64>,
    /// Rows re-extracted.
    pub rows: u64,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
}

/// One request and what became of it, for `tributary backfill --status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestStatus {
    /// Its id (sorts by time).
    pub id: String,
    /// The request.
    pub queued: QueuedBackfill,
    /// Runs that took it up so far.
    pub attempts: usize,
    /// Runs that read a part of it (and committed), when it is read in parts.
    pub parts: usize,
    /// How it ended, once it has.
    pub outcome: Option<BackfillOutcome>,
}

/// Queues `request` for the next scheduled ingest; returns its id. The
/// tables are checked against the configured ones now, so a typo fails
/// here and not a minute later.
pub async fn queue(
    raw: &Lake,
    request: &IngestRequest,
    source: &tributary_totesys::SourceSpec,
) -> Result<String> {
    selected_tables(request, source)?;
    let id = RunId::now().to_string();
    let queued = QueuedBackfill {
        request: request.clone(),
        queued_at: Utc::now(),
    };
    raw.put_once(
        &keys::ingest_request(&id),
        Bytes::from(serde_json::to_vec_pretty(&queued)?),
    )
    .await?;
    Ok(id)
}

/// What one listing of the queue says about one request.
#[derive(Debug, Default, Clone, Copy)]
struct Listed {
    attempts: usize,
    parts: usize,
    ended: bool,
}

impl Listed {
    /// Runs that took it up and neither finished it nor committed a part.
    fn failed(&self) -> usize {
        self.attempts.saturating_sub(self.parts)
    }
}

/// What one listing of the queue says, per request id. One LIST, no GET.
#[derive(Debug, Default)]
struct Listing {
    ids: std::collections::BTreeMap<String, Listed>,
}

async fn listing(raw: &Lake) -> Result<Listing> {
    let prefix = format!("{}/", keys::INGEST_REQUESTS);
    let mut out = Listing::default();
    for key in raw.list(keys::INGEST_REQUESTS).await? {
        let Some(rest) = key.strip_prefix(&prefix) else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [file] => {
                if let Some(id) = file.strip_suffix(".json") {
                    out.ids.entry(id.to_string()).or_default();
                }
            }
            ["attempts", id, _] => out.ids.entry(id.to_string()).or_default().attempts += 1,
            ["parts", id, _] => out.ids.entry(id.to_string()).or_default().parts += 1,
            ["outcomes", file] => {
                if let Some(id) = file.strip_suffix(".json") {
                    out.ids.entry(id.to_string()).or_default().ended = true;
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Every queued request, oldest first, with its attempts and outcome.
pub async fn statuses(raw: &Lake) -> Result<Vec<RequestStatus>> {
    let mut out = Vec::new();
    for (id, listed) in listing(raw).await?.ids {
        let Some(bytes) = raw.get_opt(&keys::ingest_request(&id)).await? else {
            continue;
        };
        let queued: QueuedBackfill = serde_json::from_slice(&bytes)?;
        let outcome = match raw.get_opt(&keys::ingest_request_outcome(&id)).await? {
            Some(bytes) => Some(serde_json::from_slice(&bytes)?),
            None => None,
        };
        out.push(RequestStatus {
            id,
            queued,
            attempts: listed.attempts,
            parts: listed.parts,
            outcome,
        });
    }
    Ok(out)
}

/// Runs every pending request, oldest first. Stops at the first that fails
/// (the stage has alerted it; the next schedule tries again) and returns
/// that error; a request that failed [`MAX_ATTEMPTS`] runs is given up
/// instead. Stops too after a part of a request read in parts: the next
/// schedule reads the next part.
pub async fn run_pending(
    source: &mut Client,
    raw: &Lake,
    options: &IngestOptions,
    alerts: &dyn Alerts,
) -> Result<Vec<(String, IngestReport)>> {
    let mut done = Vec::new();
    // One LIST a minute; a GET only for the requests still open.
    for (id, listed) in listing(raw)
        .await?
        .ids
        .into_iter()
        .filter(|(_, listed)| !listed.ended)
    {
        let Some(bytes) = raw.get_opt(&keys::ingest_request(&id)).await? else {
            continue;
        };
        let queued = match serde_json::from_slice::<QueuedBackfill>(&bytes) {
            Ok(queued) => queued,
            Err(error) => {
                // Written by hand or by another version: it can never run,
                // and must not hold the queue.
                let unreadable = format!("cannot be read as a backfill request: {error}");
                give_up(raw, &id, None, &unreadable, alerts).await?;
                continue;
            }
        };
        let pending = RequestStatus {
            id,
            queued,
            attempts: listed.attempts,
            parts: listed.parts,
            outcome: None,
        };
        if listed.failed() >= MAX_ATTEMPTS {
            let why = format!("given up after {} failed runs", listed.failed());
            give_up(
                raw,
                &pending.id,
                Some(&pending.queued.request),
                &why,
                alerts,
            )
            .await?;
            continue;
        }
        let attempt = RunId::now();
        raw.put_once(
            &keys::ingest_request_attempt(&pending.id, &attempt),
            Bytes::from_static(b"{}"),
        )
        .await?;
        tracing::info!(stage = STAGE.name, request = %pending.id, attempt = pending.attempts + 1, "running a queued backfill");
        let report = ingest(source, raw, options, &pending.queued.request, alerts).await?;
        if !report.backfill_pending.is_empty() {
            let part = BackfillOutcome {
                status: format!("part read; {} to go on", report.backfill_pending.join(",")),
                run_id: report.run_id.to_string(),
                manifest: Some(report.seq),
                rows: report.rows(),
                finished_at: Utc::now(),
            };
            raw.put_once(
                &keys::ingest_request_part(&pending.id, &attempt),
                Bytes::from(serde_json::to_vec_pretty(&part)?),
            )
            .await?;
            tracing::info!(stage = STAGE.name, request = %pending.id, parts = pending.parts + 1, "queued backfill read in parts: the next schedule reads the next one");
            done.push((pending.id, report));
            break;
        }
        let outcome = BackfillOutcome {
            status: "done".to_string(),
            run_id: report.run_id.to_string(),
            manifest: Some(report.seq),
            rows: report.rows(),
            finished_at: Utc::now(),
        };
        raw.put_once(
            &keys::ingest_request_outcome(&pending.id),
            Bytes::from(serde_json::to_vec_pretty(&outcome)?),
        )
        .await?;
        done.push((pending.id, report));
    }
    Ok(done)
}

async fn give_up(
    raw: &Lake,
    id: &str,
    request: Option<&IngestRequest>,
    why: &str,
    alerts: &dyn Alerts,
) -> Result<()> {
    let outcome = BackfillOutcome {
        status: "given up".to_string(),
        run_id: "-".to_string(),
        manifest: None,
        rows: 0,
        finished_at: Utc::now(),
    };
    raw.put_once(
        &keys::ingest_request_outcome(id),
        Bytes::from(serde_json::to_vec_pretty(&outcome)?),
    )
    .await?;
    alerts
        .send(&Alert {
            stage: BACKFILL_STAGE.name,
            run_id: "-".to_string(),
            table: request.and_then(|r| r.tables.as_ref()).map(|t| t.join(",")),
            message: format!("queued backfill {id} {why}"),
            action: "the earlier alerts name the cause; if it ran out of time, queue it again per table or with a later --since, or raise ingest_timeout_seconds".to_string(),
        })
        .await;
    Ok(())
}
