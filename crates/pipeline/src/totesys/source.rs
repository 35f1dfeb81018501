//! Where the totesys ingest learns what to read: the source file with
//! `model = "totesys"` (the repository ships `sources/totesys.toml`).
//!
//! The folder is `TRIBUTARY_SOURCES_DIR` (the functions on AWS:
//! `/var/task/sources`, packaged by `scripts/package.sh`), or `sources/`
//! under the working directory. A deployment with no such file, but with the
//! source's connection set (`TOTESYS_DATABASE_URL` or `TOTESYS_SECRET_ARN`),
//! reads what the star schema needs: each of its tables by `last_updated`,
//! keyed by the catalog's primary key. That is what the shipped file says.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use tributary_sources::config::SourceFile;
use tributary_totesys::{LAST_UPDATED, MODEL_INPUTS, SourceSpec, source::ConfiguredTable};

use crate::{
    Result, Settings,
    config::{TOTESYS_DATABASE_URL, TOTESYS_SECRET_ARN},
};

/// The folder a run looks for source files in.
pub fn sources_dir(settings: &Settings) -> PathBuf {
    settings
        .aws
        .sources_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("sources"))
}

/// The source file that feeds the totesys model among the `*.toml` files of
/// `dir`; `None` when there is none (or no folder). Two such files are an
/// error: which one would be read is not clear. Another source's broken
/// file is that source's failure, not this one's; but with no model file
/// found, a broken file may be it, and its error is returned.
pub fn find(dir: &Path) -> Result<Option<SourceFile>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut found = Vec::new();
    let mut broken = None;
    for (_, file) in SourceFile::read_each(dir)? {
        match file {
            Ok(file) if file.model.as_deref() == Some("totesys") => found.push(file),
            Ok(_) => {}
            Err(error) => broken = broken.or(Some(error)),
        }
    }
    if let (true, Some(error)) = (found.is_empty(), broken) {
        return Err(error.into());
    }
    if found.len() > 1 {
        return Err(tributary_sources::Error::Config {
            file: dir.display().to_string(),
            reason: format!(
                "{} files say model = \"totesys\" ({}); keep one",
                found.len(),
                found
                    .iter()
                    .map(|f| f.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        .into());
    }
    Ok(found.pop())
}

/// What the totesys ingest reads, from the file in the settings' folder or,
/// without one, the star schema's needs.
pub fn configured(settings: &Settings) -> Result<Arc<SourceSpec>> {
    let dir = sources_dir(settings);
    let spec = match find(&dir)? {
        Some(file) => {
            tracing::debug!(file = %file.path.display(), "totesys tables from the source file");
            spec_of(&file)?
        }
        None => {
            tracing::info!(dir = %dir.display(), "no source file with model = \"totesys\": reading the star schema's tables by last_updated");
            model_defaults()
        }
    };
    Ok(Arc::new(spec))
}

/// The ingest's view of a `model = "totesys"` source file. Every table the
/// star schema reads must be configured: without it the facts would lose
/// their dimensions.
pub fn spec_of(file: &SourceFile) -> Result<SourceSpec> {
    // The connection keeps the stack's own settings (the secret's rotation,
    // the endpoint override, TLS): a file naming others would be ignored.
    let connection_ok = file.url_env == TOTESYS_DATABASE_URL
        && file
            .secret_env
            .as_deref()
            .is_none_or(|s| s == TOTESYS_SECRET_ARN);
    if !connection_ok {
        return Err(tributary_sources::Error::Config {
            file: file.path.display().to_string(),
            reason: format!(
                "model = \"totesys\" connects through the stack's own settings: \
                 url_env = \"{TOTESYS_DATABASE_URL}\" (and, on AWS, secret_env = \"{TOTESYS_SECRET_ARN}\")"
            ),
        }
        .into());
    }
    let refuse = |reason: String| -> crate::Error {
        tributary_sources::Error::Config {
            file: file.path.display().to_string(),
            reason,
        }
        .into()
    };
    for (name, table) in &file.tables {
        // Table names become lake keys and catalog table names.
        let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(refuse(format!(
                "[tables.{name}]: a totesys table's name becomes its lake folder and catalog \
                 table: lower-case letters, digits and _"
            )));
        }
        if let Some(model) = tributary_totesys::TableDef::by_name(name) {
            let key = table.primary_key.as_ref().and_then(|k| k.first());
            if table.cursor.as_deref() != Some(LAST_UPDATED)
                || key.is_some_and(|k| k != model.primary_key)
            {
                return Err(refuse(format!(
                    "[tables.{name}]: the star schema reads it by ({}, {LAST_UPDATED}): \
                     cursor = \"{LAST_UPDATED}\" and no other primary_key",
                    model.primary_key
                )));
            }
        }
    }
    let missing: Vec<&str> = MODEL_INPUTS
        .iter()
        .map(|t| t.name)
        .filter(|name| !file.tables.contains_key(*name))
        .collect();
    if !missing.is_empty() {
        return Err(tributary_sources::Error::Config {
            file: file.path.display().to_string(),
            reason: format!(
                "the star schema reads {}: add a [tables.<name>] section with cursor = \"{LAST_UPDATED}\" for each",
                missing.join(", ")
            ),
        }
        .into());
    }
    // The star schema's tables first, parents before children; then any
    // other configured table, by name.
    let mut names: Vec<&str> = MODEL_INPUTS.iter().map(|t| t.name).collect();
    names.extend(
        file.tables
            .keys()
            .map(String::as_str)
            .filter(|name| !MODEL_INPUTS.iter().any(|t| t.name == *name)),
    );
    let tables = names
        .into_iter()
        .map(|name| {
            let table = file.table(name);
            ConfiguredTable {
                name: name.to_string(),
                cursor: table.cursor.unwrap_or_else(|| LAST_UPDATED.to_string()),
                primary_key: table.primary_key.and_then(|k| k.into_iter().next()),
            }
        })
        .collect();
    Ok(SourceSpec {
        schema: file.schema.clone(),
        tables,
    })
}

/// Without a source file: the star schema's tables by `last_updated`.
pub fn model_defaults() -> SourceSpec {
    SourceSpec {
        schema: "public".to_string(),
        tables: MODEL_INPUTS
            .iter()
            .map(|t| ConfiguredTable {
                name: t.name.to_string(),
                cursor: LAST_UPDATED.to_string(),
                primary_key: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceFile {
        SourceFile::parse("totesys", Path::new("sources/totesys.toml"), text).unwrap()
    }

    #[test]
    fn the_shipped_file_reads_what_the_star_schema_needs_and_nothing_else() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sources");
        let file = find(&dir).unwrap().expect("sources/totesys.toml");
        assert_eq!(spec_of(&file).unwrap(), model_defaults());
    }

    #[test]
    fn a_table_the_model_does_not_read_may_be_added_but_none_it_reads_left_out() {
        let mut text = String::from(
            "[source]\nkind = \"postgres\"\nmodel = \"totesys\"\nurl_env = \"TOTESYS_DATABASE_URL\"\nschema = \"ops\"\n",
        );
        for t in &MODEL_INPUTS {
            text.push_str(&format!("[tables.{}]\ncursor = \"last_updated\"\n", t.name));
        }
        text.push_str("[tables.stock]\ncursor = \"changed_at\"\nprimary_key = [\"item_id\"]\n");
        let spec = spec_of(&file(&text)).unwrap();
        assert_eq!(spec.schema, "ops");
        assert_eq!(spec.tables.len(), 12);
        assert_eq!(spec.tables[0].name, "address");
        let stock = spec.table("stock").unwrap();
        assert_eq!(stock.cursor, "changed_at");
        assert_eq!(stock.primary_key.as_deref(), Some("item_id"));

        let elsewhere = text.replace("TOTESYS_DATABASE_URL", "OPS_DATABASE_URL");
        let error = spec_of(&file(&elsewhere)).unwrap_err().to_string();
        assert!(
            error.contains("url_env = \"TOTESYS_DATABASE_URL\""),
            "{error}"
        );

        let recut = text.replace(
            "[tables.payment]\ncursor = \"last_updated\"",
            "[tables.payment]\ncursor = \"created_at\"",
        );
        let error = spec_of(&file(&recut)).unwrap_err().to_string();
        assert!(
            error.contains("reads it by (payment_id, last_updated)"),
            "{error}"
        );
        let odd = format!("{text}[tables.\"Stock-Items\"]\ncursor = \"at\"\n");
        let error = spec_of(&file(&odd)).unwrap_err().to_string();
        assert!(error.contains("lower-case letters"), "{error}");

        let without_payment = text.replace("[tables.payment]\ncursor = \"last_updated\"\n", "");
        let error = spec_of(&file(&without_payment)).unwrap_err().to_string();
        assert!(error.contains("the star schema reads payment"), "{error}");
    }

    #[test]
    fn two_files_for_the_model_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sources/totesys.toml");
        std::fs::copy(&shipped, dir.path().join("totesys.toml")).unwrap();
        std::fs::copy(&shipped, dir.path().join("ops.toml")).unwrap();
        let error = find(dir.path()).unwrap_err().to_string();
        assert!(error.contains("2 files say model = \"totesys\""), "{error}");
        assert!(find(&dir.path().join("absent")).unwrap().is_none());

        // Another source's broken file is not the totesys ingest's concern;
        // with no model file found, it may be the model's, and fails.
        std::fs::remove_file(dir.path().join("ops.toml")).unwrap();
        std::fs::write(dir.path().join("olist.toml"), "[source]\nkind = 'mysql'\n").unwrap();
        assert!(find(dir.path()).unwrap().is_some());
        std::fs::remove_file(dir.path().join("totesys.toml")).unwrap();
        let error = find(dir.path()).unwrap_err().to_string();
        assert!(error.contains("olist.toml"), "{error}");
    }
}
