//! Configured sources (`crates/sources`): the stage's entry functions. The
//! CLI (`tributary sources`) and the ingest and load functions are shells
//! over them: they find the source files and each database's URL (an
//! environment variable, or a secret on AWS) and print or answer.

use std::path::Path;

use tokio_postgres::Client;
use tributary_lake::Lake;
use tributary_sources::{
    config::SourceFile,
    ingest::{RunOptions, SourceRun},
    load::LoadRun,
};

use crate::{Error, Result};

/// One run of one source into the raw lake: a file drop takes its new
/// files; a PostgreSQL source connects to `url` (with the variable it came
/// from, which a connection error names) and reads what changed.
pub async fn ingest_source(
    raw: &Lake,
    file: &SourceFile,
    url: Option<(&str, &'static str)>,
    ca_file: Option<&Path>,
    options: &RunOptions,
) -> Result<SourceRun> {
    if file.is_files() {
        return Ok(tributary_sources::files::run_files(raw, file).await?);
    }
    let Some((url, variable)) = url else {
        return Err(Error::SourceConfig(format!(
            "source configuration {}: no connection URL ({} is not set)",
            file.path.display(),
            file.url_env
        )));
    };
    let mut client = crate::db::connect(url, "source", variable, ca_file).await?;
    Ok(tributary_sources::ingest::run_source(&mut client, raw, file, options).await?)
}

/// Applies a source's pending manifests to its warehouse schema,
/// `src_<name>`, one transaction each.
pub async fn load_source(warehouse: &mut Client, raw: &Lake, name: &str) -> Result<LoadRun> {
    Ok(tributary_sources::load::load_source(warehouse, raw, name).await?)
}
