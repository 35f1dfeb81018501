//! Source files: one TOML file per source, `sources/<name>.toml`.
//!
//! ```toml
//! [source]
//! kind = "postgres"                 # or "files" (below)
//! url_env = "OLIST_DATABASE_URL"    # the variable holding the connection URL
//! # secret_env = "OLIST_SECRET_ARN" # or (on AWS) the variable holding the ARN
//! #                                 # of a Secrets Manager secret, RDS JSON shape
//! schema = "public"                 # default "public"
//! include = ["*"]                   # table name patterns (* and ?), default all
//! exclude = ["tmp_*"]               # default none
//! deletes_every = "1h"              # key-set comparison for deletes; "off" never
//! trust_statistics = true           # skip tables whose change counters did not move
//! # model = "totesys"               # feeds the built-in totesys star schema (below)
//!
//! [tables.order_payments]
//! primary_key = ["order_id", "payment_sequential"]   # default: the catalog's
//! cursor = "updated_at"             # a timestamp column; default: transaction ids
//! partition = "payment_date"        # a date or timestamp: the processed table's months
//!
//! [tables.products.types]
//! product_weight_g = "bigint"       # read the column cast to this type
//! ```
//!
//! A file drop (see [`crate::files`]):
//!
//! ```toml
//! [source]
//! kind = "files"
//! landing_url = "s3://drops/acme"   # or file:///srv/landing
//!
//! [tables.orders]
//! pattern = "orders/*.csv"
//! format = "csv"                    # or "jsonl", "parquet"
//! primary_key = ["order_id"]
//! columns = ["order_id text", "amount numeric(10,2)", "op text"]
//! deletes = { column = "op", values = ["D"] }   # or "snapshot"; default none
//! ```
//!
//! A source with `model = "totesys"` feeds the built-in totesys star schema
//! rather than a `src_<name>` schema: its raw files keep the layout the
//! star schema's transform reads (`totesys/<table>/date=…/`), and it is read
//! by its cursors, with the late-commit check. Its tables are exactly its
//! `[tables.<name>]` sections, each naming its `cursor`; the tables the star
//! schema reads must be among them (see `sources/totesys.toml`).
//!
//! Unknown keys are errors (a typo must not silently change what is read).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{Error, Result};

/// How often deletes are looked for when the file does not say.
pub const DEFAULT_DELETES_EVERY: Duration = Duration::from_secs(3600);

/// One declared source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    /// Its name (the file's stem): the raw lake folder `sources/<name>/`
    /// and the warehouse schema `src_<name>`.
    pub name: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// The environment variable that holds the connection URL (PostgreSQL
    /// sources; empty for file drops, and for a source read only through
    /// its secret).
    pub url_env: String,
    /// The environment variable that holds the ARN of a Secrets Manager
    /// secret in the RDS JSON shape (host, port, username, password,
    /// dbname): how the functions on AWS find a PostgreSQL source. When
    /// both are set, the URL variable wins where it is set.
    pub secret_env: Option<String>,
    /// Where files are dropped (`kind = "files"`): a lake URL,
    /// `file:///…` or `s3://bucket/prefix`.
    pub landing_url: Option<String>,
    /// The PostgreSQL schema whose tables are read.
    pub schema: String,
    /// Table name patterns to read.
    pub include: Vec<String>,
    /// Table name patterns to leave out.
    pub exclude: Vec<String>,
    /// How often deletes are looked for (`None`: never).
    pub deletes_every: Option<Duration>,
    /// Whether a table whose statistics show no change since the last read
    /// is left unread (see [`crate::ingest::READ_AT_LEAST_EVERY`]).
    pub trust_statistics: bool,
    /// Per table overrides, by table name.
    pub tables: BTreeMap<String, TableOverride>,
    /// The built-in model this source feeds (`"totesys"`), if any: then the
    /// generic path leaves it alone, and the model's own stages read it.
    pub model: Option<String>,
}

/// What a source file may say about one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOverride {
    /// The key columns, when the catalog has no primary key or another is meant.
    #[serde(default)]
    pub primary_key: Option<Vec<String>>,
    /// A timestamp column that every change moves forward; without one,
    /// changes are found by transaction id.
    #[serde(default)]
    pub cursor: Option<String>,
    /// A date or timestamp column (a business date) that partitions the
    /// table's processed Iceberg table by month; unpartitioned without one.
    /// Checked against the table's columns on every run: a column that is
    /// missing or of another type stops the table.
    #[serde(default)]
    pub partition: Option<String>,
    /// Columns read cast to another PostgreSQL type (column → type).
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// File drops: the landing keys of this table (`*` and `?`).
    #[serde(default)]
    pub pattern: Option<String>,
    /// File drops: `csv` (with a header row), `jsonl` (one object a line)
    /// or `parquet` (columns found by name).
    #[serde(default)]
    pub format: Option<String>,
    /// File drops: the declared schema, in order, as `"name type"`
    /// (`"amount numeric(10,2)"`).
    #[serde(default)]
    pub columns: Vec<String>,
    /// File drops: how deletes arrive (none when absent).
    #[serde(default)]
    pub deletes: Option<FileDeletes>,
}

/// How a file table says a row is gone.
///
/// ```toml
/// deletes = "snapshot"                          # each file is the whole table
/// deletes = { column = "op", values = ["D"] }   # a change feed's operation column
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FileDeletes {
    /// `"snapshot"`: every file is the whole table as of its drop, so a
    /// key of the last snapshot (or of an earlier file of the same run)
    /// that the newest file (in landing-key order) lacks is deleted.
    Mode(String),
    /// A row whose `column` holds one of `values` deletes its key rather
    /// than being a row; within a run the last row of a key, in file and
    /// line order, decides.
    Marker {
        /// The declared column holding the operation.
        column: String,
        /// Its values that mean "deleted" (compared as text).
        values: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    source: RawSource,
    #[serde(default)]
    tables: BTreeMap<String, TableOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: String,
    #[serde(default)]
    url_env: String,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    landing_url: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    deletes_every: Option<String>,
    #[serde(default)]
    trust_statistics: Option<bool>,
    #[serde(default)]
    model: Option<String>,
}

impl SourceFile {
    /// Reads and checks one source file.
    pub fn read(path: &Path) -> Result<SourceFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            file: path.display().to_string(),
            reason: format!("cannot be read: {e}"),
        })?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        Self::parse(&name, path, &text)
    }

    /// Parses the text of a source file named `name`.
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<SourceFile> {
        let fail = |reason: String| Error::Config {
            file: path.display().to_string(),
            reason,
        };
        if name.is_empty()
            || name.len() > 40
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(fail(format!(
                "the file's name {name:?} names the source: use lower-case letters, digits and _ (at most 40), e.g. sources/olist.toml"
            )));
        }
        let raw: RawFile = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        match raw.source.kind.as_str() {
            "postgres" => {
                if let Some((table, _)) = raw.tables.iter().find(|(_, t)| {
                    t.pattern.is_some()
                        || t.format.is_some()
                        || !t.columns.is_empty()
                        || t.deletes.is_some()
                }) {
                    return Err(fail(format!(
                        "[tables.{table}]: pattern, format, columns and deletes are for kind = \"files\" \
                         (a postgres source finds deletes itself: deletes_every)"
                    )));
                }
                if raw.source.landing_url.is_some() {
                    return Err(fail(
                        "landing_url is for kind = \"files\"; a postgres source names url_env"
                            .to_string(),
                    ));
                }
            }
            "files" => {
                crate::files::check_config(&raw.source.landing_url, &raw.tables).map_err(fail)?;
                if raw.source.secret_env.is_some() || !raw.source.url_env.is_empty() {
                    return Err(fail(
                        "url_env and secret_env are for kind = \"postgres\"; a files source names landing_url"
                            .to_string(),
                    ));
                }
            }
            other => {
                return Err(fail(format!(
                    "kind = {other:?} is not a source kind; use \"postgres\" or \"files\""
                )));
            }
        }
        if let Some(variable) = [&raw.source.url_env]
            .into_iter()
            .chain(raw.source.secret_env.as_ref())
            .find(|v| !v.is_empty() && !is_variable_name(v))
        {
            return Err(fail(format!(
                "{variable:?} is not an environment variable name: use capitals, digits and _ (e.g. OLIST_DATABASE_URL)"
            )));
        }
        if raw.source.kind == "postgres"
            && raw.source.url_env.is_empty()
            && raw.source.secret_env.as_deref().is_none_or(str::is_empty)
        {
            return Err(fail(
                "url_env names the environment variable holding the connection URL \
                 (or, on AWS, secret_env the one holding the ARN of its secret)"
                    .to_string(),
            ));
        }
        if let Some(model) = &raw.source.model {
            check_model(model, &raw).map_err(fail)?;
        }
        let deletes_every = match raw.source.deletes_every.as_deref() {
            None => Some(DEFAULT_DELETES_EVERY),
            Some("off") => None,
            Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
                fail(format!(
                    "deletes_every = {text:?}: {e} (e.g. \"10m\", \"1h\" or \"off\")"
                ))
            })?),
        };
        for (table, o) in &raw.tables {
            if o.primary_key.as_ref().is_some_and(|k| k.is_empty()) {
                return Err(fail(format!(
                    "[tables.{table}] primary_key is empty: name at least one column"
                )));
            }
            if o.partition.as_ref().is_some_and(|c| c.trim().is_empty()) {
                return Err(fail(format!(
                    "[tables.{table}] partition is empty: name a date or timestamp column, or remove the line"
                )));
            }
        }
        Ok(SourceFile {
            name: name.to_string(),
            path: path.to_path_buf(),
            url_env: raw.source.url_env,
            secret_env: raw.source.secret_env.filter(|v| !v.is_empty()),
            landing_url: raw.source.landing_url,
            schema: raw.source.schema.unwrap_or_else(|| "public".to_string()),
            include: raw.source.include.unwrap_or_else(|| vec!["*".to_string()]),
            exclude: raw.source.exclude,
            deletes_every,
            trust_statistics: raw.source.trust_statistics.unwrap_or(true),
            tables: raw.tables,
            model: raw.source.model,
        })
    }

    /// Every `*.toml` file of `dir`, by name; the first that cannot be read
    /// fails the whole.
    pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>> {
        Self::read_each(dir)?
            .into_iter()
            .map(|(_, file)| file)
            .collect()
    }

    /// Every `*.toml` file of `dir`, by name, each read on its own: a caller
    /// that runs one source need not fail for another's broken file. Fails
    /// only when the folder cannot be listed.
    pub fn read_each(dir: &Path) -> Result<Vec<(PathBuf, Result<SourceFile>)>> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::Config {
            file: dir.display().to_string(),
            reason: format!("cannot be listed: {e}"),
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|path| {
                let file = Self::read(&path);
                (path, file)
            })
            .collect())
    }

    /// Whether table `name` is read: some include pattern matches and no
    /// exclude pattern does.
    pub fn selects(&self, name: &str) -> bool {
        self.include.iter().any(|p| glob(p, name)) && !self.exclude.iter().any(|p| glob(p, name))
    }

    /// The connection URL, from the environment.
    pub fn url(&self) -> Result<String> {
        if self.url_env.is_empty() {
            return Err(Error::Config {
                file: self.path.display().to_string(),
                reason: format!(
                    "the connection URL comes from a secret (secret_env = {:?}), which only the functions on AWS read; add url_env to run it here",
                    self.secret_env.as_deref().unwrap_or_default()
                ),
            });
        }
        std::env::var(&self.url_env).map_err(|_| Error::Config {
            file: self.path.display().to_string(),
            reason: format!(
                "{} is not set: export it with the source's connection URL",
                self.url_env
            ),
        })
    }

    /// Where a file drop lands on S3: `(bucket, key prefix)` of an
    /// `s3://bucket/prefix` landing URL (the prefix without slashes at
    /// either end; empty for a whole bucket). `None` for a database source
    /// or a landing folder elsewhere.
    pub fn s3_landing(&self) -> Option<(String, String)> {
        let rest = self.landing_url.as_deref()?.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.trim_matches('/').to_string()))
    }

    /// The landing key (relative to the landing URL) of object `key` of
    /// S3 bucket `bucket`, when it is one a table of this file drop reads:
    /// under the landing prefix and matching a table's pattern.
    pub fn landing_key(&self, bucket: &str, key: &str) -> Option<String> {
        let (landing_bucket, prefix) = self.s3_landing()?;
        if landing_bucket != bucket {
            return None;
        }
        let relative = if prefix.is_empty() {
            key
        } else {
            key.strip_prefix(prefix.as_str())?.strip_prefix('/')?
        };
        self.tables
            .values()
            .filter_map(|t| t.pattern.as_deref())
            .any(|pattern| glob(pattern, relative))
            .then(|| relative.to_string())
    }

    /// Whether this is a file drop (`kind = "files"`), not a database.
    pub fn is_files(&self) -> bool {
        self.landing_url.is_some()
    }

    /// The overrides of `table` (none: the defaults).
    pub fn table(&self, table: &str) -> TableOverride {
        self.tables.get(table).cloned().unwrap_or_default()
    }
}

/// What a source feeding a built-in model may say.
fn check_model(model: &str, raw: &RawFile) -> std::result::Result<(), String> {
    if model != "totesys" {
        return Err(format!(
            "model = {model:?} is not a built-in model; the one there is is \"totesys\""
        ));
    }
    let source = &raw.source;
    if source.kind != "postgres" {
        return Err(
            "model = \"totesys\" reads a PostgreSQL database: kind = \"postgres\"".to_string(),
        );
    }
    if source.include.is_some() || !source.exclude.is_empty() {
        return Err(
            "model = \"totesys\" reads exactly its [tables.<name>] sections: \
                    remove include and exclude"
                .to_string(),
        );
    }
    if source.deletes_every.is_some() || source.trust_statistics.is_some() {
        return Err(
            "model = \"totesys\" keeps every version by its cursor and looks for \
                    no deletes: remove deletes_every and trust_statistics"
                .to_string(),
        );
    }
    if raw.tables.is_empty() {
        return Err(
            "model = \"totesys\" needs its tables: one [tables.<name>] each, \
                    with cursor = \"last_updated\""
                .to_string(),
        );
    }
    for (table, o) in &raw.tables {
        if o.cursor.is_none() {
            return Err(format!(
                "[tables.{table}] names no cursor: the totesys model reads every table by a \
                 timestamp column (cursor = \"last_updated\")"
            ));
        }
        if o.primary_key.as_ref().is_some_and(|k| k.len() != 1) {
            return Err(format!(
                "[tables.{table}] primary_key: the totesys model reads by one integer key column"
            ));
        }
        if !o.types.is_empty() {
            return Err(format!(
                "[tables.{table}.types]: the totesys model reads its columns as they are; \
                 read this table through a source without a model to cast columns"
            ));
        }
        if let Some(column) = &o.partition {
            return Err(format!(
                "[tables.{table}] partition = {column:?}: the totesys star schema partitions its \
                 facts by created_date itself; remove the line"
            ));
        }
    }
    Ok(())
}

/// An environment variable's name as the files write them: `A_Z0_9`,
/// starting with a letter.
fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `*` (any run) and `?` (any one character) against the whole of `name`.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn matches(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|skip| matches(rest, &n[skip..])),
            Some(('?', rest)) => !n.is_empty() && matches(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && matches(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SourceFile> {
        SourceFile::parse("olist", Path::new("sources/olist.toml"), text)
    }

    #[test]
    fn every_example_source_file_reads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sources");
        let files = SourceFile::read_dir(&dir).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["olist", "pagila", "partner"]);
        let partner = &files[2];
        assert!(partner.landing_url.is_some());
        assert_eq!(partner.table("orders").columns.len(), 5);
    }

    #[test]
    fn the_shipped_totesys_file_feeds_its_model_and_what_a_model_refuses_is_named() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sources/totesys.toml");
        let file = SourceFile::read(&path).unwrap();
        assert_eq!(file.model.as_deref(), Some("totesys"));
        assert_eq!(file.url_env, "TOTESYS_DATABASE_URL");
        assert_eq!(file.tables.len(), 11);
        assert!(
            file.tables
                .values()
                .all(|t| t.cursor.as_deref() == Some("last_updated"))
        );
        let head = "[source]\nkind = \"postgres\"\nurl_env = \"T\"\n";
        for (extra, refusal) in [
            ("model = \"shop\"\n", "not a built-in model"),
            ("model = \"totesys\"\n", "needs its tables"),
            (
                "model = \"totesys\"\ninclude = [\"*\"]\n[tables.a]\ncursor = \"u\"\n",
                "remove include",
            ),
            (
                "model = \"totesys\"\ndeletes_every = \"1h\"\n[tables.a]\ncursor = \"u\"\n",
                "remove deletes_every",
            ),
            ("model = \"totesys\"\n[tables.a]\n", "names no cursor"),
            (
                "model = \"totesys\"\n[tables.a]\ncursor = \"u\"\nprimary_key = [\"x\", \"y\"]\n",
                "one integer key column",
            ),
            (
                "model = \"totesys\"\n[tables.a]\ncursor = \"u\"\n[tables.a.types]\nx = \"text\"\n",
                "as they are",
            ),
        ] {
            let error = parse(&format!("{head}{extra}")).unwrap_err().to_string();
            assert!(error.contains(refusal), "{extra}: {error}");
        }
    }

    #[test]
    fn a_full_file_reads_back_with_its_overrides() {
        let file = parse(
            r#"
[source]
kind = "postgres"
url_env = "OLIST_DATABASE_URL"
include = ["order_*", "products", "sellers"]
exclude = ["order_reviews"]
deletes_every = "10m"

[tables.order_payments]
primary_key = ["order_id", "payment_sequential"]

[tables.products.types]
product_weight_g = "bigint"
"#,
        )
        .unwrap();
        assert_eq!(file.schema, "public");
        assert_eq!(file.deletes_every, Some(Duration::from_secs(600)));
        assert!(file.selects("order_payments") && file.selects("products"));
        assert!(!file.selects("order_reviews") && !file.selects("geolocation"));
        assert_eq!(
            file.table("order_payments").primary_key.unwrap(),
            ["order_id", "payment_sequential"]
        );
        assert_eq!(file.table("products").types["product_weight_g"], "bigint");
        assert_eq!(file.table("sellers"), TableOverride::default());
    }

    #[test]
    fn mistakes_are_named_with_the_fix() {
        let cases = [
            (
                "[source]\nkind = \"mysql\"\nurl_env = \"X\"",
                "not a source kind",
            ),
            (
                "[source]\nkind = \"files\"\nurl_env = \"X\"",
                "needs landing_url",
            ),
            (
                "[source]\nkind = \"postgres\"\nurl_env = \"X\"\nschmea = \"a\"",
                "schmea",
            ),
            (
                "[source]\nkind = \"postgres\"\nurl_env = \"X\"\ndeletes_every = \"soon\"",
                "deletes_every",
            ),
            (
                "[source]\nkind = \"postgres\"\nurl_env = \"X\"\n[tables.t]\nprimary_key = []",
                "primary_key is empty",
            ),
            (
                "[source]\nkind = \"postgres\"\nurl_env = \"X\"\n[tables.t]\ncursr = \"a\"",
                "cursr",
            ),
            ("[source]\nkind = \"postgres\"", "url_env"),
            (
                "[source]\nkind = \"postgres\"\nurl_env = \"X\"\n[tables.t]\ndeletes = \"snapshot\"",
                "deletes_every",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(error.contains("sources/olist.toml"), "{error}");
        }
        let bad_name = SourceFile::parse("Olist DB", Path::new("x"), "").unwrap_err();
        assert!(bad_name.to_string().contains("lower-case"), "{bad_name}");
        let off = parse("[source]\nkind = \"postgres\"\nurl_env = \"X\"\ndeletes_every = \"off\"")
            .unwrap();
        assert_eq!(off.deletes_every, None);
        assert!(
            off.trust_statistics,
            "statistics are trusted unless the file says not"
        );
        let partitioned = parse(
            "[source]\nkind = \"postgres\"\nurl_env = \"X\"\n[tables.t]\npartition = \"paid_at\"",
        )
        .unwrap();
        assert_eq!(partitioned.table("t").partition.as_deref(), Some("paid_at"));
        let empty =
            parse("[source]\nkind = \"postgres\"\nurl_env = \"X\"\n[tables.t]\npartition = \" \"")
                .unwrap_err()
                .to_string();
        assert!(empty.contains("partition is empty"), "{empty}");
        let files = |deletes: &str| {
            parse(&format!(
                "[source]\nkind = \"files\"\nlanding_url = \"file:///x\"\n[tables.t]\n\
                 pattern = \"t/*.csv\"\nformat = \"csv\"\nprimary_key = [\"id\"]\n\
                 columns = [\"id bigint\", \"op text\", \"at date\"]\ndeletes = {deletes}"
            ))
        };
        assert!(files("\"snapshot\"").is_ok());
        assert!(files("{ column = \"op\", values = [\"D\"] }").is_ok());
        for (deletes, says) in [
            ("\"snapshots\"", "use \"snapshot\""),
            (
                "{ column = \"kind\", values = [\"D\"] }",
                "not among columns",
            ),
            (
                "{ column = \"id\", values = [\"D\"] }",
                "primary_key column",
            ),
            ("{ column = \"op\", values = [] }", "values is empty"),
            ("{ column = \"at\", values = [\"D\"] }", "neither text"),
        ] {
            let error = files(deletes).unwrap_err().to_string();
            assert!(error.contains(says), "{deletes}: {error}");
        }
    }

    #[test]
    fn a_postgres_source_may_name_its_secret_instead_of_its_url() {
        let file =
            parse("[source]\nkind = \"postgres\"\nsecret_env = \"OLIST_SECRET_ARN\"").unwrap();
        assert_eq!(file.secret_env.as_deref(), Some("OLIST_SECRET_ARN"));
        assert_eq!(file.url_env, "");
        let here = file.url().unwrap_err().to_string();
        assert!(
            here.contains("secret_env") && here.contains("OLIST_SECRET_ARN"),
            "{here}"
        );
        let both = parse(
            "[source]\nkind = \"postgres\"\nurl_env = \"OLIST_DATABASE_URL\"\nsecret_env = \"OLIST_SECRET_ARN\"",
        )
        .unwrap();
        assert_eq!(
            (both.url_env.as_str(), both.secret_env.as_deref()),
            ("OLIST_DATABASE_URL", Some("OLIST_SECRET_ARN"))
        );
        for (text, says) in [
            (
                "[source]\nkind = \"postgres\"\nsecret_env = \"olist-secret\"",
                "not an environment variable name",
            ),
            (
                "[source]\nkind = \"files\"\nlanding_url = \"s3://b/p\"\nsecret_env = \"X\"\n\
                 [tables.t]\npattern = \"*.csv\"\nformat = \"csv\"\nprimary_key = [\"id\"]\ncolumns = [\"id bigint\"]",
                "are for kind = \"postgres\"",
            ),
            (
                "[source]\nkind = \"postgres\"\nsecret_env = \"\"",
                "secret_env",
            ),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_file_drop_claims_the_s3_keys_under_its_prefix_that_a_table_reads() {
        let file = SourceFile::parse(
            "partner",
            Path::new("sources/partner.toml"),
            "[source]\nkind = \"files\"\nlanding_url = \"s3://drops/acme/in/\"\n\
             [tables.orders]\npattern = \"orders/*.csv\"\nformat = \"csv\"\nprimary_key = [\"id\"]\ncolumns = [\"id bigint\"]",
        )
        .unwrap();
        assert_eq!(
            file.s3_landing(),
            Some(("drops".to_string(), "acme/in".to_string()))
        );
        assert_eq!(
            file.landing_key("drops", "acme/in/orders/2026-12-01.csv")
                .as_deref(),
            Some("orders/2026-12-01.csv")
        );
        for (bucket, key) in [
            ("other", "acme/in/orders/2026-12-01.csv"),
            ("drops", "acme/in/events/1.jsonl"),
            ("drops", "acme/inside/orders/1.csv"),
            ("drops", "acme/in/orders/1.csv.tmp"),
            ("drops", "orders/1.csv"),
        ] {
            assert_eq!(file.landing_key(bucket, key), None, "{bucket}/{key}");
        }
        let whole_bucket = SourceFile {
            landing_url: Some("s3://drops".to_string()),
            ..file.clone()
        };
        assert_eq!(
            whole_bucket.landing_key("drops", "orders/1.csv").as_deref(),
            Some("orders/1.csv")
        );
        let local = SourceFile {
            landing_url: Some("file:///srv/landing".to_string()),
            ..file
        };
        assert_eq!(local.s3_landing(), None);
        assert_eq!(local.landing_key("drops", "orders/1.csv"), None);
    }

    #[test]
    fn patterns_match_whole_names() {
        assert!(glob("*", "anything"));
        assert!(glob("order_*", "order_items"));
        assert!(!glob("order_*", "orders"));
        assert!(glob("rental_2022_0?", "rental_2022_01"));
        assert!(!glob("rental_2022_0?", "rental_2022_010"));
        assert!(glob("*_payments", "order_payments"));
        assert!(!glob("products", "products_2"));
    }
}
