//! Configured sources (`crates/sources`) on AWS.
//!
//! The source files are deployed with the code (`scripts/package.sh` puts a
//! `sources/` folder into the ingest and load zips; `TRIBUTARY_SOURCES_DIR`
//! names it) and read once per cold start, with the variables they name.
//! A file that cannot be read is reported on every ingest run, as a failure
//! of that source only.
//!
//! - The ingest function runs them: on its schedule every source (a
//!   PostgreSQL source reads what changed; a file drop takes its new files,
//!   so the schedule is also the retry of a landing event that was
//!   throttled or failed), on `{"sources": ["olist"]}` the named ones, and
//!   on an S3 event of the landing bucket the file drops that read its keys.
//! - The load function applies every source's pending manifests to its
//!   warehouse schema, `src_<name>`.
//!
//! Each source runs as its own stage (`source <name>`): a failure is logged
//! and alerted once, the other sources and totesys go on, and the
//! invocation fails at the end; the next success sends the recovery notice.

use std::{collections::BTreeMap, path::Path};

use serde_json::{Value, json};
use tributary_pipeline::sources::{ingest_source, load_source};
use tributary_pipeline::{
    alerts::Alert,
    config::DbEndpoint,
    stage::{Stage, intern},
};
use tributary_sources::{
    config::SourceFile,
    ingest::{RunOptions, SourceRun},
    load::{LoadRun, warehouse_schema},
};

use crate::{Context, Failure};

/// The source files a function was deployed with.
#[derive(Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
    /// Files that cannot be read: (the source's name, why).
    broken: Vec<(String, String)>,
    /// The values of the variables the files name (`url_env`, `secret_env`).
    variables: BTreeMap<String, String>,
    /// Sources that feed a built-in model (`model = "totesys"`): read by
    /// that model's stages, not here.
    modelled: Vec<String>,
}

/// What a set of source runs did: a summary per source, and the failures
/// (already logged and alerted by their stage).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per source name: its figures, or `{"error": …}`.
    pub summary: serde_json::Map<String, Value>,
    /// (source, error) of each source that failed.
    pub failures: Vec<(String, tributary_pipeline::Error)>,
}

impl Outcome {
    /// The failure the invocation ends with, when a source failed: every
    /// failed source named, retryable only when each of them is.
    pub fn failure(&self) -> Option<Failure> {
        if self.failures.is_empty() {
            return None;
        }
        let retryable = self.failures.iter().all(|(_, e)| e.is_retryable());
        let detail: Vec<String> = self
            .failures
            .iter()
            .map(|(name, error)| format!("source {name}: {error}"))
            .collect();
        Some(Failure {
            retryable,
            kind: "Source",
            message: format!(
                "{} configured source(s) failed (the others went on): {}",
                self.failures.len(),
                detail.join("; ")
            ),
        })
    }
}

/// The stage a source runs as in the ingest function.
fn ingest_stage(name: &str) -> Stage {
    Stage {
        name: intern(&format!("source {name}")),
        retryable: "the other sources and totesys went on; the next scheduled ingest reads this source again",
        needs_fix: "fix the source file (deployed with the code: package and deploy again), its secret or the table named above; the other sources and totesys went on",
    }
}

/// The stage a source's warehouse load runs as in the load function.
fn load_stage(name: &str) -> Stage {
    Stage {
        name: intern(&format!("source {name}")),
        retryable: "the other sources went on; the next load applies what is pending",
        needs_fix: "the other sources went on; fix what the message names, then the next load applies what is pending",
    }
}

impl Sources {
    /// Every `*.toml` of `dir` (none when `dir` is not given or does not
    /// exist: no source was packaged), with the values `lookup` gives the
    /// variables they name.
    pub fn read(dir: Option<&Path>, lookup: &impl Fn(&str) -> Option<String>) -> Sources {
        let mut sources = Sources::default();
        let Some(dir) = dir else {
            return sources;
        };
        let files = match SourceFile::read_each(dir) {
            Ok(files) => files,
            Err(error) => {
                tracing::info!(dir = %dir.display(), %error, "no source files: no configured source runs");
                return sources;
            }
        };
        for (path, file) in files {
            match file {
                Ok(file) => {
                    for variable in [Some(&file.url_env), file.secret_env.as_ref()]
                        .into_iter()
                        .flatten()
                        .filter(|v| !v.is_empty())
                    {
                        if let Some(value) = lookup(variable)
                            .map(|v| v.trim().to_string())
                            .filter(|v| !v.is_empty())
                        {
                            sources.variables.insert(variable.clone(), value);
                        }
                    }
                    if file.model.is_some() {
                        // The totesys stage reads it (it reads the folder
                        // itself on every run).
                        sources.modelled.push(file.name);
                        continue;
                    }
                    sources.files.push(file);
                }
                Err(error) => {
                    let name = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    sources.broken.push((name, error.to_string()));
                }
            }
        }
        tracing::info!(
            sources = ?sources.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            unreadable = ?sources.broken.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            "configured sources"
        );
        sources
    }

    /// The names of every source file, readable or not.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .files
            .iter()
            .map(|f| f.name.as_str())
            .chain(self.broken.iter().map(|(n, _)| n.as_str()))
            .collect();
        names.sort_unstable();
        names
    }

    /// Whether `name` is a source feeding a built-in model.
    pub fn is_modelled(&self, name: &str) -> bool {
        self.modelled.iter().any(|m| m == name)
    }

    /// Whether no source file was deployed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.broken.is_empty()
    }

    /// The file drops that read the objects an S3 event names (by bucket
    /// and key): their names, each with the landing keys it reads; and the
    /// keys no file drop reads (`bucket/key`).
    pub fn route_landed(
        &self,
        objects: &[(String, String)],
    ) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
        let mut routed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut ignored = Vec::new();
        for (bucket, key) in objects {
            let mut claimed = false;
            for file in &self.files {
                if let Some(landing_key) = file.landing_key(bucket, key) {
                    routed
                        .entry(file.name.clone())
                        .or_default()
                        .push(landing_key);
                    claimed = true;
                }
            }
            if !claimed {
                ignored.push(format!("{bucket}/{key}"));
            }
        }
        (routed, ignored)
    }

    /// The connection URL of a PostgreSQL source, and the variable it came
    /// from: `url_env` where it is set, else the secret `secret_env` names
    /// (read on every run, so a rotated password is picked up at once).
    async fn url(
        &self,
        ctx: &Context,
        file: &SourceFile,
    ) -> tributary_pipeline::Result<(String, &'static str)> {
        if let Some(url) = self.variables.get(&file.url_env) {
            return Ok((url.clone(), intern(&file.url_env)));
        }
        if let Some(variable) = &file.secret_env
            && let Some(arn) = self.variables.get(variable)
        {
            let endpoint = DbEndpoint {
                host_variable: intern(&format!("\"host\" in the secret {variable} names")),
                ..DbEndpoint::default()
            };
            let url = tributary_aws::secrets::database_url(
                &ctx.secrets_client,
                arn,
                &endpoint,
                &file.name,
            )
            .await?;
            return Ok((url, intern(variable)));
        }
        let named: Vec<&str> = [Some(file.url_env.as_str()), file.secret_env.as_deref()]
            .into_iter()
            .flatten()
            .filter(|v| !v.is_empty())
            .collect();
        Err(tributary_pipeline::Error::SourceConfig(format!(
            "source configuration {}: {} is not set in the function's environment (on AWS: Terraform's source_secrets, e.g. source_secrets = {{ {} = \"arn:aws:secretsmanager:…\" }})",
            file.path.display(),
            named.join(" nor "),
            file.secret_env.as_deref().unwrap_or("OLIST_SECRET_ARN"),
        )))
    }

    /// One run of one source into the raw lake.
    async fn run_one(
        &self,
        ctx: &Context,
        file: &SourceFile,
        options: &RunOptions,
    ) -> tributary_pipeline::Result<SourceRun> {
        let url = if file.is_files() {
            None
        } else {
            Some(self.url(ctx, file).await?)
        };
        ingest_source(
            &ctx.raw,
            file,
            url.as_ref().map(|(u, v)| (u.as_str(), *v)),
            ctx.settings.pg_ca_file.as_deref(),
            options,
        )
        .await
    }

    /// Runs the sources `names` selects (every one when `None`) into the
    /// raw lake, one after another, each as its own stage.
    pub async fn ingest(
        &self,
        ctx: &Context,
        names: Option<&[String]>,
        options: &RunOptions,
    ) -> Outcome {
        let wanted = |name: &str| names.is_none_or(|n| n.iter().any(|w| w == name));
        let mut outcome = Outcome::default();
        for (name, reason) in self.broken.iter().filter(|(n, _)| wanted(n)) {
            let error = tributary_pipeline::Error::SourceConfig(reason.clone());
            ingest_stage(name)
                .failed(ctx.alerts.as_ref(), "-", &error)
                .await;
            outcome
                .summary
                .insert(name.clone(), json!({"error": error.to_string()}));
            outcome.failures.push((name.clone(), error));
        }
        for file in self.files.iter().filter(|f| wanted(&f.name)) {
            let stage = ingest_stage(&file.name);
            let result = stage
                .run(ctx.alerts.as_ref(), |_| self.run_one(ctx, file, options))
                .await;
            match result {
                Ok(run) => {
                    for stop in &run.stopped {
                        ctx.alerts
                            .send(&Alert {
                                stage: stage.name,
                                run_id: run.run_id.to_string(),
                                table: Some(format!("{}.{}", run.source, stop.table)),
                                message: format!("{} stopped: {}", stop.table, stop.reason),
                                action: format!(
                                    "the other tables went on; accept the change by invoking the ingest function with {{\"sources\": [\"{}\"], \"accept_schema\": [\"{}\"]}}, or revert it at the source",
                                    run.source, stop.table
                                ),
                            })
                            .await;
                    }
                    outcome
                        .summary
                        .insert(file.name.clone(), run_summary(&run, file.is_files()));
                }
                Err(error) => {
                    outcome
                        .summary
                        .insert(file.name.clone(), json!({"error": error.to_string()}));
                    outcome.failures.push((file.name.clone(), error));
                }
            }
        }
        outcome
    }

    /// Applies every readable source's pending manifests to its warehouse
    /// schema, `src_<name>`, each as its own stage, on the kept warehouse
    /// connection (dropped after a failure, so the next source reconnects).
    pub async fn load(&self, ctx: &Context) -> Outcome {
        let mut outcome = Outcome::default();
        for (name, reason) in &self.broken {
            tracing::warn!(source = %name, %reason, "source file unreadable: its pending manifests are not applied (the ingest function alerts it)");
        }
        for file in &self.files {
            let result = load_stage(&file.name)
                .run(ctx.alerts.as_ref(), |_| load_one(ctx, &file.name))
                .await;
            match result {
                Ok(run) => {
                    outcome
                        .summary
                        .insert(file.name.clone(), load_summary(&file.name, &run));
                }
                Err(error) => {
                    outcome
                        .summary
                        .insert(file.name.clone(), json!({"error": error.to_string()}));
                    outcome.failures.push((file.name.clone(), error));
                }
            }
        }
        outcome
    }
}

async fn load_one(ctx: &Context, name: &str) -> tributary_pipeline::Result<LoadRun> {
    let mut slot = ctx.warehouse().await?;
    let client = slot.as_mut().expect("connected");
    let loaded = load_source(client, &ctx.raw, name).await;
    if loaded.is_err() {
        *slot = None;
    }
    loaded
}

/// What the response says about one source run.
fn run_summary(run: &SourceRun, files: bool) -> Value {
    let changed: Vec<Value> = run
        .tables
        .iter()
        .filter(|t| t.rows > 0 || t.deletes > 0 || t.quarantined > 0)
        .map(|t| {
            let mut table = json!({"table": t.table, "rows": t.rows});
            if t.deletes > 0 {
                table["deletes"] = json!(t.deletes);
            }
            if t.quarantined > 0 {
                table["quarantined"] = json!(t.quarantined);
            }
            if !t.added_columns.is_empty() {
                table["added_columns"] = json!(t.added_columns);
            }
            table
        })
        .collect();
    let mut summary = json!({
        "kind": if files { "files" } else { "postgres" },
        "run_id": run.run_id.as_str(),
        "committed": run.committed,
        "manifest": run.seq,
        "rows": run.tables.iter().map(|t| t.rows).sum::<u64>(),
        "deletes": run.tables.iter().map(|t| t.deletes).sum::<u64>(),
        "quarantined": run.tables.iter().map(|t| t.quarantined).sum::<u64>(),
        "tables": changed,
    });
    if !run.stopped.is_empty() {
        summary["stopped"] = run
            .stopped
            .iter()
            .map(|s| json!({"table": s.table, "reason": s.reason}))
            .collect();
    }
    summary
}

/// What the response says about one source's warehouse load.
fn load_summary(name: &str, run: &LoadRun) -> Value {
    json!({
        "schema": warehouse_schema(name),
        "manifests": run.manifests,
        "rows": run.rows.values().sum::<u64>(),
        "deleted": run.deleted.values().sum::<u64>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_totesys_file_is_left_to_its_own_stage() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sources/totesys.toml");
        std::fs::copy(shipped, dir.path().join("totesys.toml")).unwrap();
        std::fs::write(
            dir.path().join("shop.toml"),
            "[source]\nkind = \"postgres\"\nurl_env = \"SHOP_DATABASE_URL\"\n",
        )
        .unwrap();
        let sources = Sources::read(Some(dir.path()), &|_| None);
        assert_eq!(sources.names(), ["shop"]);
        assert!(sources.is_modelled("totesys") && !sources.is_modelled("shop"));
    }
}
