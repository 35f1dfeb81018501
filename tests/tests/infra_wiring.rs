//! Static checks of the deployment wiring in `infra/*.tf`.
//!
//! `terraform validate` needs the provider registry, which these machines
//! cannot reach, and checkov checks hygiene, not wiring. So this test parses
//! the Terraform with hcl-rs and checks what a wrong deploy would silently get
//! wrong: a function without an alarm, a bucket notification Lambda may not
//! accept, a zip that no binary builds, a raw bucket without Object Lock, a
//! `*` grant, a schedule that runs before the secrets are filled in, a
//! dead-letter queue nobody should replay, a dev stack `make destroy` cannot
//! remove, TLS to RDS without the CA bundle. Variables and locals are
//! evaluated with hcl-rs (`eval_context`) to check what a setting such as
//! `environment = "dev"` actually yields. Each check returns the problems it
//! found; the real infra must have none, and the negative tests feed each
//! check a small broken snippet to show that it can fail. The last tests run
//! `make deploy` and `scripts/deploy.sh` themselves, with stand-ins for the
//! tools a deploy goes on to use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::expr::{Expression, FuncCall, ObjectKey, TemplateExpr};
use hcl::{Block, Body};

// ------------------------------------------------------------------ loading

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Top-level blocks of one HCL source.
fn parse(source: &str) -> Vec<Block> {
    let body: Body = hcl::from_str(source).expect("valid HCL");
    body.into_blocks().collect()
}

/// Top-level blocks of every `infra/*.tf`, in file-name order.
fn infra() -> Vec<Block> {
    let dir = repo_root().join("infra");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "tf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .tf files in {}", dir.display());
    files
        .iter()
        .flat_map(|path| {
            let source = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let body: Body = hcl::from_str(&source)
                .unwrap_or_else(|e| panic!("{} is not valid HCL: {e}", path.display()));
            body.into_blocks().collect::<Vec<_>>()
        })
        .collect()
}

/// The `[[bin]]` names of crates/lambdas/Cargo.toml.
fn lambda_binaries() -> BTreeSet<String> {
    let path = repo_root().join("crates/lambdas/Cargo.toml");
    let manifest = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    bin_names(&manifest)
}

/// Line-level reading of `[[bin]] name = "…"` (the manifest is plain enough).
fn bin_names(manifest: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
            continue;
        }
        if !in_bin {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            names.insert(value.trim().trim_matches('"').to_string());
            in_bin = false;
        }
    }
    names
}

// ------------------------------------------------------------------ helpers

/// `resource "<kind>" "<name>"` blocks of one kind, as (name, body).
fn resources<'a>(blocks: &'a [Block], kind: &str) -> Vec<(&'a str, &'a Body)> {
    labelled(blocks, "resource", kind)
}

/// `data "<kind>" "<name>"` blocks of one kind, as (name, body).
fn data_sources<'a>(blocks: &'a [Block], kind: &str) -> Vec<(&'a str, &'a Body)> {
    labelled(blocks, "data", kind)
}

use tf_iam::{attr, labelled, nested};

/// An expression as Terraform source text.
fn text(expr: &Expression) -> String {
    expr.to_string()
}

/// The value of a string literal (a quoted string, with or without
/// interpolations, as written).
fn string(expr: &Expression) -> Option<String> {
    match expr {
        Expression::String(s) => Some(s.clone()),
        Expression::TemplateExpr(template) => match template.as_ref() {
            TemplateExpr::QuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// String literals of an array, or of a single string.
fn strings(expr: &Expression) -> Vec<String> {
    match expr {
        Expression::Array(items) => items.iter().filter_map(string).collect(),
        other => string(other).into_iter().collect(),
    }
}

fn is_true(expr: Option<&Expression>) -> bool {
    matches!(expr, Some(Expression::Bool(true)))
}

fn number(expr: Option<&Expression>) -> Option<u64> {
    match expr {
        Some(Expression::Number(n)) => n.as_u64(),
        _ => None,
    }
}

/// Names `X` of every reference `<kind>.X` in some Terraform text.
fn refs(text: &str, kind: &str) -> BTreeSet<String> {
    let needle = format!("{kind}.");
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut names = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(&needle) {
        let start = from + at;
        from = start + needle.len();
        if text[..start].chars().next_back().is_some_and(ident) {
            continue;
        }
        let name: String = text[from..].chars().take_while(|&c| ident(c)).collect();
        if !name.is_empty() {
            names.insert(name);
        }
    }
    names
}

fn object_get<'a>(expr: &'a Expression, key: &str) -> Option<&'a Expression> {
    match expr {
        Expression::Object(object) => object
            .iter()
            .find(|(k, _)| key_text(k) == key)
            .map(|(_, v)| v),
        _ => None,
    }
}

fn key_text(key: &ObjectKey) -> String {
    key.to_string().trim_matches('"').to_string()
}

/// Every `locals` entry, by name.
fn locals(blocks: &[Block]) -> BTreeMap<String, &Expression> {
    blocks
        .iter()
        .filter(|b| b.identifier() == "locals")
        .flat_map(|b| b.body().attributes())
        .map(|a| (a.key().to_string(), a.expr()))
        .collect()
}

/// The object a `for_each` iterates: written inline, or a `local.NAME`.
fn for_each_object<'a>(
    body: &'a Body,
    locals: &BTreeMap<String, &'a Expression>,
) -> Option<&'a Expression> {
    let expr = attr(body, "for_each")?;
    match expr {
        Expression::Object(_) => Some(expr),
        other => {
            let name = refs(&text(other), "local").into_iter().next()?;
            locals
                .get(&name)
                .copied()
                .filter(|e| matches!(e, Expression::Object(_)))
        }
    }
}

/// The workspace binary a function's `filename` names: `<dir>/<bin>/bootstrap.zip`.
fn zip_binary(filename: &str) -> Option<&str> {
    let dir = filename.strip_suffix("/bootstrap.zip")?;
    dir.rsplit('/').next().filter(|bin| !bin.is_empty())
}

/// Function resource name → binary it deploys (when its filename says).
fn function_binaries(blocks: &[Block]) -> BTreeMap<String, String> {
    resources(blocks, "aws_lambda_function")
        .into_iter()
        .filter_map(|(name, body)| {
            let filename = string(attr(body, "filename")?)?;
            Some((name.to_string(), zip_binary(&filename)?.to_string()))
        })
        .collect()
}

// ------------------------------------------------------------------- checks

/// 1. Every function has an `Errors` alarm (directly, or through a `for_each`
///    map whose values are the functions) that notifies the SNS topic.
fn check_error_alarms(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    let locals = locals(blocks);
    let functions: BTreeSet<String> = resources(blocks, "aws_lambda_function")
        .into_iter()
        .map(|(name, _)| name.to_string())
        .collect();
    let mut covered = BTreeSet::new();
    for (name, body) in resources(blocks, "aws_cloudwatch_metric_alarm") {
        let metric = attr(body, "metric_name").and_then(string);
        let namespace = attr(body, "namespace").and_then(string);
        if metric.as_deref() != Some("Errors") || namespace.as_deref() != Some("AWS/Lambda") {
            continue;
        }
        for actions in ["alarm_actions", "ok_actions"] {
            let target = attr(body, actions).map(text).unwrap_or_default();
            if refs(&target, "aws_sns_topic").is_empty() {
                problems.push(format!(
                    "alarm {name}: {actions} does not reference the SNS topic"
                ));
            }
        }
        let Some(function) = attr(body, "dimensions").and_then(|d| object_get(d, "FunctionName"))
        else {
            problems.push(format!("alarm {name}: no FunctionName dimension"));
            continue;
        };
        let function = text(function);
        let direct = refs(&function, "aws_lambda_function");
        if !direct.is_empty() {
            covered.extend(direct);
        } else if function.contains("each.value") {
            match for_each_object(body, &locals) {
                Some(Expression::Object(map)) => {
                    for (key, value) in map.iter() {
                        let targets = refs(&text(value), "aws_lambda_function");
                        if targets.is_empty() {
                            problems.push(format!(
                                "alarm {name}: for_each entry {} is not a function",
                                key_text(key)
                            ));
                        }
                        covered.extend(targets);
                    }
                }
                _ => problems.push(format!(
                    "alarm {name}: FunctionName uses each.value but for_each is not a resolvable map"
                )),
            }
        } else {
            problems.push(format!(
                "alarm {name}: FunctionName {function} references no function"
            ));
        }
    }
    for function in functions.difference(&covered) {
        problems.push(format!(
            "aws_lambda_function.{function} has no Errors alarm"
        ));
    }
    problems
}

/// Every alarm, of any kind, mails the topic both ways.
fn check_alarms_notify_topic(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, body) in resources(blocks, "aws_cloudwatch_metric_alarm") {
        for actions in ["alarm_actions", "ok_actions"] {
            let target = attr(body, actions).map(text).unwrap_or_default();
            if refs(&target, "aws_sns_topic").is_empty() {
                problems.push(format!(
                    "alarm {name}: {actions} does not reference the SNS topic"
                ));
            }
        }
    }
    problems
}

/// 2. Every function deploys `<dir>/<bin>/bootstrap.zip` of a workspace binary
///    (hash of the same file, handler bootstrap), and every binary is deployed.
fn check_lambda_binaries(blocks: &[Block], bins: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut deployed = BTreeSet::new();
    for (name, body) in resources(blocks, "aws_lambda_function") {
        let Some(filename) = attr(body, "filename").and_then(string) else {
            problems.push(format!("aws_lambda_function.{name}: no filename string"));
            continue;
        };
        match zip_binary(&filename) {
            Some(bin) if bins.contains(bin) => {
                deployed.insert(bin.to_string());
            }
            Some(bin) => problems.push(format!(
                "aws_lambda_function.{name}: {filename} names {bin:?}, not a binary of crates/lambdas ({bins:?})"
            )),
            None => problems.push(format!(
                "aws_lambda_function.{name}: {filename} is not <dir>/<bin>/bootstrap.zip"
            )),
        }
        let hash = attr(body, "source_code_hash").map(text).unwrap_or_default();
        if !(hash.contains("filebase64sha256") && hash.contains(&filename)) {
            problems.push(format!(
                "aws_lambda_function.{name}: source_code_hash is not filebase64sha256 of {filename}"
            ));
        }
        if attr(body, "handler").and_then(string).as_deref() != Some("bootstrap") {
            problems.push(format!(
                "aws_lambda_function.{name}: handler is not bootstrap"
            ));
        }
    }
    for bin in bins.difference(&deployed) {
        problems.push(format!(
            "binary {bin} is deployed by no aws_lambda_function"
        ));
    }
    problems
}

/// 3. Every bucket notification's function lets S3 invoke it, from that bucket,
///    and the notification is created after the permission.
fn check_notification_permissions(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    let permissions = resources(blocks, "aws_lambda_permission");
    for (name, body) in resources(blocks, "aws_s3_bucket_notification") {
        let buckets = refs(
            &attr(body, "bucket").map(text).unwrap_or_default(),
            "aws_s3_bucket",
        );
        let depends_on = attr(body, "depends_on").map(text).unwrap_or_default();
        for target in nested(body, "lambda_function") {
            let functions = refs(
                &attr(target, "lambda_function_arn")
                    .map(text)
                    .unwrap_or_default(),
                "aws_lambda_function",
            );
            let Some(function) = functions.iter().next() else {
                problems.push(format!(
                    "notification {name}: lambda_function_arn references no function"
                ));
                continue;
            };
            let permission = permissions.iter().find(|(_, p)| {
                attr(p, "principal").and_then(string).as_deref() == Some("s3.amazonaws.com")
                    && attr(p, "action").and_then(string).as_deref()
                        == Some("lambda:InvokeFunction")
                    && refs(
                        &attr(p, "function_name").map(text).unwrap_or_default(),
                        "aws_lambda_function",
                    )
                    .contains(function)
            });
            let Some((permission, permission_body)) = permission else {
                problems.push(format!(
                    "notification {name}: no aws_lambda_permission lets s3.amazonaws.com invoke aws_lambda_function.{function}"
                ));
                continue;
            };
            let source = refs(
                &attr(permission_body, "source_arn")
                    .map(text)
                    .unwrap_or_default(),
                "aws_s3_bucket",
            );
            if buckets.is_empty() || source != buckets {
                problems.push(format!(
                    "aws_lambda_permission.{permission}: source_arn is not the bucket of notification {name} ({buckets:?})"
                ));
            }
            if !refs(&depends_on, "aws_lambda_permission").contains(*permission) {
                problems.push(format!(
                    "notification {name}: does not depend on aws_lambda_permission.{permission}"
                ));
            }
        }
    }
    problems
}

/// 4. The raw bucket: Object Lock on, a GOVERNANCE default retention (created
///    in prod only, see `check_environment`), versioning.
fn check_raw_bucket(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    let buckets = resources(blocks, "aws_s3_bucket");
    let Some((_, raw)) = buckets.iter().find(|(name, _)| *name == "raw") else {
        return vec!["no aws_s3_bucket.raw".to_string()];
    };
    if !is_true(attr(raw, "object_lock_enabled")) {
        problems.push("aws_s3_bucket.raw: object_lock_enabled is not true".to_string());
    }
    let of_raw = |body: &Body| {
        refs(
            &attr(body, "bucket").map(text).unwrap_or_default(),
            "aws_s3_bucket",
        )
        .contains("raw")
    };
    let governance = resources(blocks, "aws_s3_bucket_object_lock_configuration")
        .into_iter()
        .filter(|(_, body)| of_raw(body))
        .flat_map(|(_, body)| nested(body, "rule"))
        .flat_map(|rule| nested(rule, "default_retention"))
        .any(|retention| {
            attr(retention, "mode").and_then(string).as_deref() == Some("GOVERNANCE")
                && (attr(retention, "days").is_some() || attr(retention, "years").is_some())
        });
    if !governance {
        problems.push(
            "aws_s3_bucket.raw: no object lock configuration with a GOVERNANCE default retention"
                .to_string(),
        );
    }
    let versioned = resources(blocks, "aws_s3_bucket_versioning")
        .into_iter()
        .filter(|(_, body)| of_raw(body))
        .flat_map(|(_, body)| nested(body, "versioning_configuration"))
        .any(|conf| attr(conf, "status").and_then(string).as_deref() == Some("Enabled"));
    if !versioned {
        problems.push("aws_s3_bucket.raw: versioning is not Enabled".to_string());
    }
    problems
}

fn wildcard_action(action: &str) -> bool {
    action == "*" || action == "*:*"
}

/// 5. No Allow statement grants `*` (or `*:*`) on resource `*`, neither in
///    `aws_iam_policy_document` data sources nor in `jsonencode` policies.
fn check_no_wildcard_grants(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, body) in data_sources(blocks, "aws_iam_policy_document") {
        for statement in nested(body, "statement") {
            let effect = attr(statement, "effect")
                .and_then(string)
                .unwrap_or_else(|| "Allow".to_string());
            let actions = attr(statement, "actions").map(strings).unwrap_or_default();
            let resources = attr(statement, "resources")
                .map(strings)
                .unwrap_or_default();
            if effect == "Allow"
                && actions.iter().any(|a| wildcard_action(a))
                && resources.iter().any(|r| r == "*")
            {
                problems.push(format!(
                    "data.aws_iam_policy_document.{name}: a statement allows {actions:?} on \"*\""
                ));
            }
        }
    }
    for block in blocks {
        let owner = std::iter::once(block.identifier())
            .chain(block.labels().iter().map(|l| l.as_str()))
            .collect::<Vec<_>>()
            .join(".");
        walk_json_policies(block.body(), &owner, &mut problems);
    }
    problems
}

fn walk_json_policies(body: &Body, owner: &str, problems: &mut Vec<String>) {
    for attribute in body.attributes() {
        if let Expression::FuncCall(call) = attribute.expr() {
            check_jsonencode(call, &format!("{owner}.{}", attribute.key()), problems);
        }
    }
    for block in body.blocks() {
        walk_json_policies(block.body(), owner, problems);
    }
}

fn check_jsonencode(call: &FuncCall, at: &str, problems: &mut Vec<String>) {
    if call.name.name.as_str() != "jsonencode" {
        return;
    }
    let Some(statements) = call
        .args
        .first()
        .and_then(|doc| object_get(doc, "Statement"))
    else {
        return;
    };
    let statements = match statements {
        Expression::Array(items) => items.iter().collect::<Vec<_>>(),
        single => vec![single],
    };
    for statement in statements {
        let field = |key: &str| object_get(statement, key).map(strings).unwrap_or_default();
        let effect = field("Effect");
        let actions = field("Action");
        let resources = field("Resource");
        if effect.iter().any(|e| e == "Allow")
            && actions.iter().any(|a| wildcard_action(a))
            && resources.iter().any(|r| r == "*")
        {
            problems.push(format!("{at}: a statement allows {actions:?} on \"*\""));
        }
    }
}

/// 6. Runtime and architecture of every function; one-at-a-time ingest and load.
fn check_function_settings(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    let binaries = function_binaries(blocks);
    for (name, body) in resources(blocks, "aws_lambda_function") {
        if attr(body, "runtime").and_then(string).as_deref() != Some("provided.al2023") {
            problems.push(format!(
                "aws_lambda_function.{name}: runtime is not provided.al2023"
            ));
        }
        if attr(body, "architectures").map(strings) != Some(vec!["arm64".to_string()]) {
            problems.push(format!(
                "aws_lambda_function.{name}: architectures is not [\"arm64\"]"
            ));
        }
        let bin = binaries.get(name).map(String::as_str);
        if matches!(bin, Some("ingest" | "load"))
            && number(attr(body, "reserved_concurrent_executions")) != Some(1)
        {
            problems.push(format!(
                "aws_lambda_function.{name}: reserved_concurrent_executions is not 1"
            ));
        }
    }
    for bin in ["ingest", "load"] {
        if !binaries.values().any(|b| b == bin) {
            problems.push(format!("no function deploys {bin}"));
        }
    }
    problems
}

/// 7. The Kinesis mapping reports partial failures, bisects failing batches,
///    sends what it gives up on somewhere, and feeds stream-sink.
fn check_stream_mapping(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    let binaries = function_binaries(blocks);
    let mappings = resources(blocks, "aws_lambda_event_source_mapping");
    if mappings.is_empty() {
        problems.push("no aws_lambda_event_source_mapping".to_string());
    }
    for (name, body) in mappings {
        let types = attr(body, "function_response_types")
            .map(strings)
            .unwrap_or_default();
        if !types.iter().any(|t| t == "ReportBatchItemFailures") {
            problems.push(format!(
                "aws_lambda_event_source_mapping.{name}: no ReportBatchItemFailures"
            ));
        }
        if !is_true(attr(body, "bisect_batch_on_function_error")) {
            problems.push(format!(
                "aws_lambda_event_source_mapping.{name}: bisect_batch_on_function_error is not true"
            ));
        }
        let on_failure = nested(body, "destination_config")
            .into_iter()
            .flat_map(|d| nested(d, "on_failure"))
            .any(|f| attr(f, "destination_arn").is_some());
        if !on_failure {
            problems.push(format!(
                "aws_lambda_event_source_mapping.{name}: no on_failure destination"
            ));
        }
        let targets = refs(
            &attr(body, "function_name").map(text).unwrap_or_default(),
            "aws_lambda_function",
        );
        if !targets
            .iter()
            .any(|t| binaries.get(t).map(String::as_str) == Some("stream-sink"))
        {
            problems.push(format!(
                "aws_lambda_event_source_mapping.{name}: does not feed the stream-sink function"
            ));
        }
    }
    problems
}

fn assert_none(check: &str, problems: Vec<String>) {
    for problem in &problems {
        eprintln!("{check}: {problem}");
    }
    assert!(
        problems.is_empty(),
        "{check}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ------------------------------------------------------------ the real infra

#[test]
fn every_function_has_an_errors_alarm_to_the_topic() {
    assert_none("errors alarms", check_error_alarms(&infra()));
}

#[test]
fn every_alarm_notifies_the_topic() {
    assert_none("alarm actions", check_alarms_notify_topic(&infra()));
}

#[test]
fn every_function_deploys_a_workspace_binary() {
    let bins = lambda_binaries();
    assert_eq!(
        bins,
        ["ingest", "load", "stream-sink", "transform"]
            .map(String::from)
            .into(),
        "the [[bin]]s of crates/lambdas"
    );
    assert_none("binaries", check_lambda_binaries(&infra(), &bins));
}

#[test]
fn every_bucket_notification_may_invoke_its_function() {
    let blocks = infra();
    assert!(
        !resources(&blocks, "aws_s3_bucket_notification").is_empty(),
        "no bucket notifications at all"
    );
    assert_none("notifications", check_notification_permissions(&blocks));
}

#[test]
fn raw_bucket_is_object_locked_and_versioned() {
    assert_none("raw bucket", check_raw_bucket(&infra()));
}

#[test]
fn no_policy_grants_everything_on_everything() {
    let blocks = infra();
    assert!(
        !data_sources(&blocks, "aws_iam_policy_document").is_empty(),
        "no policy documents found: the check would be vacuous"
    );
    assert_none("wildcards", check_no_wildcard_grants(&blocks));
}

#[test]
fn functions_are_arm64_al2023_and_ingest_load_run_one_at_a_time() {
    assert_none("function settings", check_function_settings(&infra()));
}

#[test]
fn stream_mapping_reports_partial_failures_and_bisects() {
    assert_none("stream mapping", check_stream_mapping(&infra()));
}

// ------------------------------------------- the checks can fail (negatives)

const TWO_FUNCTIONS: &str = r#"
resource "aws_sns_topic" "alerts" {}
resource "aws_lambda_function" "ingest" {
  filename         = "${var.dir}/ingest/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.dir}/ingest/bootstrap.zip")
  handler          = "bootstrap"
}
resource "aws_lambda_function" "load" {
  filename         = "${var.dir}/load/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.dir}/load/bootstrap.zip")
  handler          = "bootstrap"
}
"#;

#[test]
fn a_function_without_an_errors_alarm_is_reported() {
    let blocks = parse(&format!(
        r#"{TWO_FUNCTIONS}
resource "aws_cloudwatch_metric_alarm" "ingest_errors" {{
  namespace     = "AWS/Lambda"
  metric_name   = "Errors"
  dimensions    = {{ FunctionName = aws_lambda_function.ingest.function_name }}
  alarm_actions = [aws_sns_topic.alerts.arn]
  ok_actions    = [aws_sns_topic.alerts.arn]
}}
"#
    ));
    let problems = check_error_alarms(&blocks);
    assert_eq!(
        problems,
        vec!["aws_lambda_function.load has no Errors alarm".to_string()]
    );
}

#[test]
fn a_for_each_alarm_map_missing_a_function_is_reported() {
    let blocks = parse(&format!(
        r#"{TWO_FUNCTIONS}
locals {{
  functions = {{
    ingest = aws_lambda_function.ingest
  }}
}}
resource "aws_cloudwatch_metric_alarm" "errors" {{
  for_each      = local.functions
  namespace     = "AWS/Lambda"
  metric_name   = "Errors"
  dimensions    = {{ FunctionName = each.value.function_name }}
  alarm_actions = [aws_sns_topic.alerts.arn]
}}
"#
    ));
    let problems = check_error_alarms(&blocks);
    assert!(
        problems.contains(&"aws_lambda_function.load has no Errors alarm".to_string()),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"alarm errors: ok_actions does not reference the SNS topic".to_string()),
        "{problems:?}"
    );
    assert!(
        !problems
            .iter()
            .any(|p| p.contains("aws_lambda_function.ingest")),
        "{problems:?}"
    );
}

#[test]
fn a_wildcard_grant_is_reported() {
    let blocks = parse(
        r#"
data "aws_iam_policy_document" "too_much" {
  statement {
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::bucket/*"]
  }
  dynamic "statement" {
    for_each = [1]
    content {
      actions   = ["*"]
      resources = ["*"]
    }
  }
}
data "aws_iam_policy_document" "deny_is_fine" {
  statement {
    effect    = "Deny"
    actions   = ["*"]
    resources = ["*"]
  }
}
resource "aws_iam_role_policy" "inline" {
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "*:*", Resource = ["*"] }]
  })
}
"#,
    );
    let problems = check_no_wildcard_grants(&blocks);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("too_much"), "{problems:?}");
    assert!(
        problems[1].contains("resource.aws_iam_role_policy.inline.policy"),
        "{problems:?}"
    );
}

#[test]
fn a_notification_without_a_permission_is_reported() {
    let blocks = parse(
        r#"
resource "aws_s3_bucket" "raw" {}
resource "aws_s3_bucket" "other" {}
resource "aws_lambda_function" "transform" {}
resource "aws_lambda_permission" "wrong_bucket" {
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.transform.function_name
  principal     = "s3.amazonaws.com"
  source_arn    = aws_s3_bucket.other.arn
}
resource "aws_s3_bucket_notification" "raw" {
  bucket = aws_s3_bucket.raw.id
  lambda_function {
    lambda_function_arn = aws_lambda_function.transform.arn
    events              = ["s3:ObjectCreated:*"]
  }
}
"#,
    );
    let problems = check_notification_permissions(&blocks);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("source_arn is not the bucket")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("does not depend on")),
        "{problems:?}"
    );

    let without = parse(
        r#"
resource "aws_lambda_function" "transform" {}
resource "aws_s3_bucket_notification" "raw" {
  bucket = aws_s3_bucket.raw.id
  lambda_function {
    lambda_function_arn = aws_lambda_function.transform.arn
  }
}
"#,
    );
    assert_eq!(
        check_notification_permissions(&without),
        vec![
            "notification raw: no aws_lambda_permission lets s3.amazonaws.com invoke aws_lambda_function.transform"
                .to_string()
        ]
    );
}

#[test]
fn unknown_binaries_and_wrong_settings_are_reported() {
    let blocks = parse(
        r#"
resource "aws_lambda_function" "ingest" {
  filename                       = "${var.dir}/ingestt/bootstrap.zip"
  source_code_hash               = filebase64sha256("${var.dir}/ingest/bootstrap.zip")
  handler                        = "main"
  runtime                        = "provided.al2"
  architectures                  = ["x86_64"]
  reserved_concurrent_executions = 2
}
"#,
    );
    let bins: BTreeSet<String> = ["ingest", "load"].map(String::from).into();
    let problems = check_lambda_binaries(&blocks, &bins);
    for expected in [
        "names \"ingestt\"",
        "source_code_hash",
        "handler",
        "binary ingest is deployed by no",
        "binary load is deployed by no",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
    let settings = check_function_settings(&blocks);
    for expected in [
        "runtime",
        "architectures",
        "no function deploys ingest",
        "no function deploys load",
    ] {
        assert!(
            settings.iter().any(|p| p.contains(expected)),
            "{expected}: {settings:?}"
        );
    }
}

#[test]
fn an_unlocked_raw_bucket_and_a_bare_mapping_are_reported() {
    let blocks = parse(
        r#"
resource "aws_s3_bucket" "raw" {}
resource "aws_s3_bucket_object_lock_configuration" "raw" {
  bucket = aws_s3_bucket.raw.id
  rule {
    default_retention {
      mode = "COMPLIANCE"
      days = 1
    }
  }
}
resource "aws_s3_bucket_versioning" "raw" {
  bucket = aws_s3_bucket.raw.id
  versioning_configuration {
    status = "Suspended"
  }
}
resource "aws_lambda_event_source_mapping" "sink" {
  function_name = aws_lambda_function.sink.arn
}
"#,
    );
    assert_eq!(
        check_raw_bucket(&blocks).len(),
        3,
        "{:?}",
        check_raw_bucket(&blocks)
    );
    let mapping = check_stream_mapping(&blocks);
    for expected in [
        "ReportBatchItemFailures",
        "bisect_batch_on_function_error",
        "on_failure",
        "stream-sink",
    ] {
        assert!(
            mapping.iter().any(|p| p.contains(expected)),
            "{expected}: {mapping:?}"
        );
    }
}

#[test]
fn bin_names_reads_only_bin_sections() {
    let manifest = r#"
[package]
name = "tributary-lambdas"

[[bin]]
name = "ingest"
path = "src/bin/ingest.rs"

[dependencies]
name = "not-a-bin"

[[bin]]
path = "src/bin/stream_sink.rs"
name = "stream-sink"
"#;
    assert_eq!(
        bin_names(manifest),
        ["ingest", "stream-sink"].map(String::from).into()
    );
}

// ---------------------------------------------- roles allow the code's calls

// The policies rendered from the HCL (`data.aws_iam_policy_document`, with
// `source_policy_documents`, `for_each` and the stack's ARNs bound), shared
// with the enforced run in crates/lambdas/tests/least_privilege.rs.
#[path = "../../crates/lambdas/tests/support/tf_iam.rs"]
mod tf_iam;

/// What each function's code calls (crates/aws, the lakes, the alert gate)
/// and on what. Resources are written short: `raw/<key>` and
/// `processed/<key>` are objects, `raw` and `processed` the buckets, the
/// rest stand for the stack's topic, secrets, stream and Glue catalog
/// (`resolve`). `s3:ListBucket` is the code's reads of missing keys (the
/// next manifest, the alert state): S3 answers them 404 only to a caller
/// allowed to list the bucket, 403 otherwise. A call added to the code
/// without its permission fails on AWS only; the enforced run
/// (least_privilege.rs) catches it too, but needs the local stack.
const CALLS: [(&str, &[(&str, &str)]); 4] = [
    (
        "ingest",
        &[
            (
                "s3:GetObject",
                "raw/_manifests/totesys/00000000000000000001.json",
            ),
            (
                "s3:PutObject",
                "raw/totesys/address/date=2026-11-30/run.parquet",
            ),
            (
                "s3:PutObject",
                "raw/markets/mercado_bitcoin/tickers/date=2026-11-30/t.json.gz",
            ),
            ("s3:ListBucket", "raw"),
            ("secretsmanager:GetSecretValue", "totesys-secret"),
            ("secretsmanager:GetSecretValue", "coincap-secret"),
            ("kinesis:PutRecords", "stream"),
            ("sns:Publish", "topic"),
            ("s3:GetObject", "processed/_alerts/ingest.json"),
            ("s3:PutObject", "processed/_alerts/ingest.json"),
            ("s3:ListBucket", "processed"),
            // Configured sources: a PostgreSQL source into its raw folder,
            // a file drop read from the landing bucket and received as is.
            (
                "s3:GetObject",
                "raw/sources/olist/_manifests/source/00000000000000000001.json",
            ),
            (
                "s3:PutObject",
                "raw/sources/olist/orders/date=2026-12-01/run.parquet",
            ),
            ("s3:GetObject", "landing/partner/orders/2026-12-01.csv"),
            ("s3:ListBucket", "landing"),
        ],
    ),
    (
        "transform",
        &[
            (
                "s3:GetObject",
                "raw/_manifests/totesys/00000000000000000001.json",
            ),
            (
                "s3:GetObject",
                "raw/totesys/address/date=2026-11-30/run.parquet",
            ),
            ("s3:PutObject", "raw/_quarantine/totesys/address/run.jsonl"),
            ("s3:ListBucket", "raw"),
            (
                "s3:GetObject",
                "processed/_manifests/transform/00000000000000000001.json",
            ),
            (
                "s3:PutObject",
                "processed/warehouse/fact_sales_order/date=2026-11-30/run.parquet",
            ),
            ("s3:ListBucket", "processed"),
            // Iceberg maintenance: expired metadata and unreachable data
            // that Iceberg itself wrote.
            (
                "s3:DeleteObject",
                "processed/warehouse/dim_staff/metadata/snap-1-a.avro",
            ),
            (
                "s3:DeleteObject",
                "processed/warehouse/fact_sales_order/data/compact-a-0.parquet",
            ),
            (
                "s3:DeleteObject",
                "processed/markets/trades/metadata/v1.metadata.json",
            ),
            (
                "s3:DeleteObject",
                "processed/markets/ohlcv_daily/data/cow-a-0.parquet",
            ),
            // The configured sources' tables: published from the sources'
            // raw manifests, maintained the same way.
            (
                "s3:GetObject",
                "raw/sources/olist/_manifests/source/00000000000000000001.json",
            ),
            (
                "s3:PutObject",
                "processed/sources/olist/orders/data/0000000001-a-0.parquet",
            ),
            (
                "s3:DeleteObject",
                "processed/sources/olist/orders/metadata/snap-1-a.avro",
            ),
            (
                "s3:DeleteObject",
                "processed/sources/olist/orders/data/compact-a-0.parquet",
            ),
            ("sns:Publish", "topic"),
            ("s3:GetObject", "processed/_alerts/transform.json"),
            ("s3:PutObject", "processed/_alerts/transform.json"),
            ("glue:GetDatabase", "glue-database"),
            ("glue:CreateDatabase", "glue-database"),
            ("glue:GetTable", "glue-table"),
            ("glue:CreateTable", "glue-table"),
            ("glue:UpdateTable", "glue-table"),
        ],
    ),
    (
        "load",
        &[
            (
                "s3:GetObject",
                "processed/_manifests/transform/00000000000000000001.json",
            ),
            (
                "s3:GetObject",
                "processed/warehouse/fact_sales_order/date=2026-11-30/run.parquet",
            ),
            ("s3:ListBucket", "processed"),
            ("secretsmanager:GetSecretValue", "warehouse-secret"),
            ("sns:Publish", "topic"),
            ("s3:GetObject", "processed/_alerts/load.json"),
            ("s3:PutObject", "processed/_alerts/load.json"),
            // The daily exchange-rate run ({"fx": {}}).
            (
                "s3:GetObject",
                "raw/fx/frankfurter/base=EUR/month=2026-11/0123abcd.json",
            ),
            (
                "s3:PutObject",
                "raw/fx/frankfurter/base=EUR/month=2026-11/0123abcd.json",
            ),
            (
                "s3:GetObject",
                "raw/_manifests/fx/00000000000000000001.json",
            ),
            (
                "s3:PutObject",
                "raw/_manifests/fx/00000000000000000001.json",
            ),
            ("s3:ListBucket", "raw"),
            // Configured sources' manifests and files into src_<name>.
            (
                "s3:GetObject",
                "raw/sources/olist/_manifests/source/00000000000000000001.json",
            ),
            (
                "s3:GetObject",
                "raw/sources/olist/orders/date=2026-12-01/run.parquet",
            ),
            (
                "s3:GetObject",
                "raw/sources/partner/orders/_deletes/date=2026-12-01/run.parquet",
            ),
        ],
    ),
    (
        "stream_sink",
        &[
            (
                "s3:GetObject",
                "raw/markets/mercado_bitcoin/trades/date=2026-11-30/batch.jsonl.gz",
            ),
            (
                "s3:PutObject",
                "raw/markets/mercado_bitcoin/trades/date=2026-11-30/batch.jsonl.gz",
            ),
            (
                "s3:PutObject",
                "raw/_manifests/markets/00000000000000000001.json",
            ),
            ("s3:ListBucket", "raw"),
            ("sns:Publish", "topic"),
            ("s3:GetObject", "processed/_alerts/stream-sink.json"),
            ("s3:PutObject", "processed/_alerts/stream-sink.json"),
            ("s3:ListBucket", "processed"),
        ],
    ),
];

/// What AWS does with each role rather than the code: its logs, X-Ray,
/// the stack key on behalf of S3/SNS/Kinesis/Secrets Manager/Logs, the
/// transform's dead-letter queue, the Kinesis event source mapping.
const ON_BEHALF: [(&str, &[(&str, &str)]); 4] = [
    ("ingest", &[]),
    ("transform", &[("sqs:SendMessage", "transform-dlq")]),
    ("load", &[]),
    (
        "stream_sink",
        &[
            ("kinesis:GetRecords", "stream"),
            ("kinesis:GetShardIterator", "stream"),
            ("kinesis:DescribeStream", "stream"),
            ("kinesis:DescribeStreamSummary", "stream"),
            ("kinesis:ListShards", "stream"),
            ("kinesis:ListStreams", "*"),
            ("sqs:SendMessage", "stream-sink-failures"),
        ],
    ),
];

/// The same for every function (`function_base`).
const ON_BEHALF_OF_EVERY_FUNCTION: [(&str, &str); 6] = [
    ("logs:CreateLogStream", "log-stream"),
    ("logs:PutLogEvents", "log-stream"),
    ("xray:PutTraceSegments", "*"),
    ("xray:PutTelemetryRecords", "*"),
    ("kms:Decrypt", "key"),
    ("kms:GenerateDataKey", "key"),
];

/// What each function must not be able to do (another function's data or
/// secrets, the other lake's data, another function's alert state).
const DENIED: [(&str, &[(&str, &str)]); 4] = [
    (
        "ingest",
        &[
            (
                "s3:GetObject",
                "processed/warehouse/fact_sales_order/x.parquet",
            ),
            (
                "s3:PutObject",
                "processed/warehouse/fact_sales_order/x.parquet",
            ),
            ("s3:PutObject", "processed/_alerts/load.json"),
            ("s3:DeleteObject", "raw/totesys/address/x.parquet"),
            ("secretsmanager:GetSecretValue", "warehouse-secret"),
            ("glue:CreateTable", "glue-table"),
            // What partners drop is read, never changed.
            ("s3:PutObject", "landing/partner/orders/2026-12-01.csv"),
            ("s3:DeleteObject", "landing/partner/orders/2026-12-01.csv"),
        ],
    ),
    (
        "transform",
        &[
            ("s3:PutObject", "raw/totesys/address/x.parquet"),
            (
                "s3:PutObject",
                "raw/_manifests/totesys/00000000000000000009.json",
            ),
            ("secretsmanager:GetSecretValue", "totesys-secret"),
            ("secretsmanager:GetSecretValue", "warehouse-secret"),
            ("kinesis:PutRecords", "stream"),
            ("s3:GetObject", "landing/partner/orders/2026-12-01.csv"),
            ("s3:ListBucket", "landing"),
        ],
    ),
    (
        "load",
        &[
            ("s3:GetObject", "raw/totesys/address/x.parquet"),
            ("s3:PutObject", "raw/totesys/address/x.parquet"),
            (
                "s3:PutObject",
                "raw/_manifests/totesys/00000000000000000009.json",
            ),
            (
                "s3:PutObject",
                "processed/warehouse/fact_sales_order/x.parquet",
            ),
            ("s3:PutObject", "processed/_alerts/ingest.json"),
            ("secretsmanager:GetSecretValue", "totesys-secret"),
            ("glue:UpdateTable", "glue-table"),
            // Sources are read into raw by ingest only; landed files too.
            (
                "s3:PutObject",
                "raw/sources/olist/orders/date=2026-12-01/run.parquet",
            ),
            (
                "s3:PutObject",
                "raw/sources/olist/_manifests/source/00000000000000000002.json",
            ),
            ("s3:GetObject", "landing/partner/orders/2026-12-01.csv"),
            ("s3:ListBucket", "landing"),
        ],
    ),
    (
        "stream_sink",
        &[
            ("s3:GetObject", "processed/warehouse/fact_trade/x.parquet"),
            ("s3:PutObject", "processed/warehouse/fact_trade/x.parquet"),
            ("secretsmanager:GetSecretValue", "totesys-secret"),
            ("kinesis:PutRecords", "stream"),
            ("s3:GetObject", "landing/partner/orders/2026-12-01.csv"),
        ],
    ),
];

/// The ARNs a short resource stands for (Glue authorizes a table call on
/// the catalog, the database and the table; a database call on the first
/// two).
fn resolve(names: &tf_iam::Names, function: &str, at: &str) -> Vec<String> {
    let raw = &names.raw_bucket;
    let processed = &names.processed_bucket;
    match at {
        "*" => vec!["*".into()],
        "topic" => vec![names.topic_arn()],
        "stream" => vec![names.stream_arn()],
        "totesys-secret" => vec![names.totesys_secret_arn.clone()],
        "warehouse-secret" => vec![names.warehouse_secret_arn.clone()],
        "coincap-secret" => names.coincap_secret_arn.iter().cloned().collect(),
        "transform-dlq" => vec![names.queue_arn(&names.transform_dlq)],
        "stream-sink-failures" => vec![names.queue_arn(&names.stream_sink_failures)],
        "key" => vec![names.kms_key_arn()],
        "log-stream" => vec![format!(
            "{}:log-stream:2026/11/30/[$LATEST]0123",
            names.log_group_arn(&format!("tributary-{}", function.replace('_', "-")))
        )],
        "glue-database" => vec![names.glue_catalog_arn(), names.glue_database_arn()],
        "glue-table" => vec![
            names.glue_catalog_arn(),
            names.glue_database_arn(),
            names.glue_table_arn("fact_sales_order"),
        ],
        "raw" => vec![names.s3(raw)],
        "processed" => vec![names.s3(processed)],
        "landing" => vec![names.s3(&names.landing_bucket)],
        other => match other.split_once('/') {
            Some(("raw", key)) => vec![names.s3(&format!("{raw}/{key}"))],
            Some(("landing", key)) => {
                vec![names.s3(&format!("{}/{key}", names.landing_bucket))]
            }
            Some(("processed", key)) => vec![names.s3(&format!("{processed}/{key}"))],
            _ => panic!("unknown resource {other}"),
        },
    }
}

fn entries<'a>(
    table: &[(&str, &'a [(&'a str, &'a str)])],
    function: &str,
) -> &'a [(&'a str, &'a str)] {
    table
        .iter()
        .find(|(f, _)| *f == function)
        .map(|(_, e)| *e)
        .unwrap_or_default()
}

/// The rendered `data.aws_iam_policy_document.<function>` of each function,
/// with the symbolic names of `tf_iam::Names::symbolic()`.
fn role_documents(blocks: &[Block]) -> Vec<(&'static str, Result<serde_json::Value, String>)> {
    let rendering = tf_iam::Rendering::new(blocks, tf_iam::Names::symbolic(), &[], &[]);
    CALLS
        .iter()
        .map(|(function, _)| (*function, rendering.document(function, None)))
        .collect()
}

/// Every call of the code (and of AWS on the role's behalf) is allowed by
/// the function's policy on the resources it touches.
fn check_calls_are_allowed(blocks: &[Block]) -> Vec<String> {
    let names = tf_iam::Names::symbolic();
    let mut problems = Vec::new();
    for (function, document) in role_documents(blocks) {
        let policy = match document {
            Ok(policy) => policy,
            Err(e) => {
                problems.push(format!("{function}: {e}"));
                continue;
            }
        };
        let calls = entries(&CALLS, function)
            .iter()
            .chain(entries(&ON_BEHALF, function))
            .chain(&ON_BEHALF_OF_EVERY_FUNCTION);
        for (action, at) in calls {
            for resource in resolve(&names, function, at) {
                if !tf_iam::allows(&policy, action, &resource) {
                    problems.push(format!(
                        "{function}: the code calls {action} on {resource}, its policy does not allow it"
                    ));
                }
            }
        }
    }
    problems
}

/// Least privilege, statically: every (action, resource) a function's policy
/// grants is used by one of its calls (or by AWS on its behalf), and what
/// it must not reach (`DENIED`) is refused.
fn check_grants_are_needed(blocks: &[Block]) -> Vec<String> {
    let names = tf_iam::Names::symbolic();
    let mut problems = Vec::new();
    for (function, document) in role_documents(blocks) {
        let Ok(policy) = document else {
            continue;
        };
        let calls: Vec<(&str, String)> = entries(&CALLS, function)
            .iter()
            .chain(entries(&ON_BEHALF, function))
            .chain(&ON_BEHALF_OF_EVERY_FUNCTION)
            .flat_map(|(action, at)| {
                resolve(&names, function, at)
                    .into_iter()
                    .map(move |resource| (*action, resource))
            })
            .collect();
        for (sid, action, pattern) in tf_iam::grants(&policy) {
            if inert(&action, &pattern) {
                continue;
            }
            let used = calls.iter().any(|(a, resource)| {
                tf_iam::wildcard(&action.to_ascii_lowercase(), &a.to_ascii_lowercase())
                    && tf_iam::wildcard(&pattern, resource)
            });
            if !used {
                problems.push(format!(
                    "{function}: {sid} grants {action} on {pattern}, which no call of the code (or of AWS for the role) uses"
                ));
            }
        }
        for (action, at) in entries(&DENIED, function) {
            for resource in resolve(&names, function, at) {
                if tf_iam::allows(&policy, action, &resource) {
                    problems.push(format!(
                        "{function}: may {action} on {resource}, which it has no business with"
                    ));
                }
            }
        }
    }
    problems
}

/// Whether a grant names a resource type its action never applies to (IAM
/// ignores it): a Glue database call on a table ARN, an S3 bucket call on
/// objects or an object call on a bucket. A statement that lists both
/// kinds of resource for both kinds of action grants no more than it should.
fn inert(action: &str, pattern: &str) -> bool {
    let object = pattern.starts_with("arn:aws:s3:::") && pattern.contains('/');
    match action {
        "glue:GetDatabase" | "glue:CreateDatabase" => pattern.contains(":table/"),
        "s3:ListBucket" => object,
        a if a.starts_with("s3:") => pattern.starts_with("arn:aws:s3:::") && !object,
        _ => false,
    }
}

#[test]
fn every_role_allows_the_calls_its_code_makes() {
    assert_none("calls allowed", check_calls_are_allowed(&infra()));
}

#[test]
fn no_role_is_granted_more_than_its_code_calls() {
    assert_none("grants needed", check_grants_are_needed(&infra()));
}

/// The configured sources' variables: `source_secrets` reaches the ingest
/// function's environment and only its role; `landing_bucket` moves the
/// landing grants to the bucket given (and the stack creates none); the
/// landing events and their permission exist once `landing_prefixes` names
/// a prefix, one notification per prefix.
#[test]
fn configured_sources_follow_their_variables() {
    use hcl::eval::Evaluate;
    let blocks = infra();
    let names = tf_iam::Names::symbolic();
    let secret = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:olist-AbCdEf";
    let source_secrets = hcl::Value::Object(
        [("OLIST_SECRET_ARN".to_string(), hcl::Value::from(secret))]
            .into_iter()
            .collect(),
    );
    let rendering = tf_iam::Rendering::new(
        &blocks,
        names.clone(),
        &[("source_secrets", source_secrets)],
        &[("ingest_period", hcl::Value::from("60s"))],
    );
    for (function, role) in [
        ("ingest", "ingest"),
        ("transform", "transform"),
        ("load", "load"),
        ("stream-sink", "stream_sink"),
    ] {
        let policy = rendering.role_policy(role).unwrap();
        assert_eq!(
            tf_iam::allows(&policy, "secretsmanager:GetSecretValue", secret),
            function == "ingest",
            "{function} and the olist secret: {policy:#}"
        );
    }
    let ingest = rendering.environment("ingest").unwrap();
    let load = rendering.environment("load").unwrap();
    assert_eq!(
        ingest.get("OLIST_SECRET_ARN").map(String::as_str),
        Some(secret)
    );
    assert!(!load.contains_key("OLIST_SECRET_ARN"), "{load:?}");
    for env in [&ingest, &load] {
        assert_eq!(
            env.get("TRIBUTARY_SOURCES_DIR").map(String::as_str),
            Some("/var/task/sources"),
            "{env:?}"
        );
    }

    // An existing landing bucket: the grants follow it.
    let given = tf_iam::Rendering::new(
        &blocks,
        names.clone(),
        &[("landing_bucket", hcl::Value::from("acme-drops"))],
        &[],
    );
    let policy = given.role_policy("ingest").unwrap();
    assert!(tf_iam::allows(
        &policy,
        "s3:GetObject",
        "arn:aws:s3:::acme-drops/partner/a.csv"
    ));
    assert!(tf_iam::allows(
        &policy,
        "s3:ListBucket",
        "arn:aws:s3:::acme-drops"
    ));
    assert!(!tf_iam::allows(
        &policy,
        "s3:GetObject",
        &names.s3("tributary-landing/partner/a.csv")
    ));

    fn length(args: hcl::eval::FuncArgs) -> Result<hcl::Value, String> {
        match &args[0] {
            hcl::Value::Array(items) => Ok(hcl::Value::from(items.len())),
            other => Err(format!("length of {other}")),
        }
    }
    let count = |kind: &str, name: &str, set: &[(&str, hcl::Value)]| {
        let mut ctx = eval_context(&blocks, set);
        ctx.declare_func(
            "length",
            hcl::eval::FuncDef::new(length, [hcl::eval::ParamType::Any]),
        );
        let (_, body) = resources(&blocks, kind)
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no {kind}.{name}"));
        attr(body, "count")
            .and_then(|e| e.evaluate(&ctx).ok())
            .and_then(|v| v.as_u64())
    };
    let prefixes = (
        "landing_prefixes",
        hcl::Value::from(vec!["partner/", "acme/"]),
    );
    for (kind, name) in [
        ("aws_s3_bucket_notification", "landing"),
        ("aws_lambda_permission", "ingest_from_landing_bucket"),
    ] {
        assert_eq!(count(kind, name, &[]), Some(0), "{kind}.{name}");
        assert_eq!(
            count(kind, name, std::slice::from_ref(&prefixes)),
            Some(1),
            "{kind}.{name}"
        );
    }
    assert_eq!(count("aws_s3_bucket", "landing", &[]), Some(1));
    assert_eq!(
        count(
            "aws_s3_bucket",
            "landing",
            &[("landing_bucket", hcl::Value::from("acme-drops"))]
        ),
        Some(0)
    );
    let (_, notification) = resources(&blocks, "aws_s3_bucket_notification")
        .into_iter()
        .find(|(n, _)| *n == "landing")
        .unwrap();
    let dynamic = notification
        .blocks()
        .find(|b| b.identifier() == "dynamic")
        .expect("one lambda_function per landing prefix");
    assert_eq!(
        attr(dynamic.body(), "for_each").map(text).as_deref(),
        Some("var.landing_prefixes")
    );
    let target = &nested(notification, "lambda_function")[0];
    assert!(
        refs(
            &attr(target, "lambda_function_arn")
                .map(text)
                .unwrap_or_default(),
            "aws_lambda_function"
        )
        .contains("ingest")
    );
    assert_eq!(
        attr(target, "filter_prefix").map(text).as_deref(),
        Some("lambda_function.value")
    );
}

#[test]
fn a_call_without_its_permission_is_reported() {
    let blocks = parse(
        r#"
data "aws_iam_policy_document" "transform" {
  statement {
    actions   = ["glue:GetTable", "glue:CreateTable"]
    resources = ["*"]
  }
  statement {
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.processed.arn}/*"]
  }
}
"#,
    );
    let problems = check_calls_are_allowed(&blocks);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("transform: the code calls glue:UpdateTable on arn:aws:glue:eu-west-2:123456789012:catalog")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains(
            "transform: the code calls s3:GetObject on arn:aws:s3:::tributary-raw/_manifests/totesys/"
        )),
        "a grant on the wrong bucket is a missing one: {problems:?}"
    );
    assert!(
        problems.iter().any(
            |p| p.starts_with("ingest: data.aws_iam_policy_document.ingest cannot be rendered")
        ),
        "{problems:?}"
    );
}

#[test]
fn a_grant_beyond_the_code_is_reported() {
    let blocks = parse(
        r#"
data "aws_iam_policy_document" "load" {
  statement {
    sid       = "ReadLakes"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.processed.arn}/*", "${aws_s3_bucket.raw.arn}/totesys/*"]
  }
  statement {
    sid       = "Catalog"
    actions   = ["glue:GetTables"]
    resources = ["*"]
  }
}
"#,
    );
    let problems = check_grants_are_needed(&blocks);
    assert!(
        problems.iter().any(|p| p
            == "load: ReadLakes grants s3:GetObject on arn:aws:s3:::tributary-raw/totesys/*, which no call of the code (or of AWS for the role) uses"),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("load: may s3:GetObject on arn:aws:s3:::tributary-raw/totesys/")),
        "the load reads no extracted source data (only the exchange rates it keeps): {problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("load: Catalog grants glue:GetTables on *")),
        "{problems:?}"
    );
}

#[test]
fn the_base_document_is_rendered_into_every_role_with_its_own_key() {
    let names = tf_iam::Names::symbolic();
    for (function, document) in role_documents(&infra()) {
        let policy = document.unwrap_or_else(|e| panic!("{function}: {e}"));
        let own = function.replace('_', "-");
        let sids: Vec<&str> = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["Sid"].as_str())
            .collect();
        for base in [
            "WriteOwnLogs",
            "PublishAlerts",
            "KeepAlertState",
            "FindAlertState",
        ] {
            assert!(sids.contains(&base), "{function}: {sids:?}");
        }
        let others = ["ingest", "transform", "load", "stream-sink"]
            .into_iter()
            .filter(|f| *f != own);
        for other in others {
            let state = names.s3(&format!("tributary-processed/_alerts/{other}.json"));
            let log = format!("{}:*", names.log_group_arn(&format!("tributary-{other}")));
            assert!(
                !tf_iam::granting_sids(&policy, "s3:PutObject", &state)
                    .contains(&"KeepAlertState".to_string()),
                "{function} keeps {other}'s alert state"
            );
            assert!(
                !tf_iam::allows(&policy, "logs:PutLogEvents", &log),
                "{function} writes {other}'s logs"
            );
        }
    }
}

// ------------------------------------------ evaluating variables and locals

/// A context in which `var.*` holds every variable's default, overridden by
/// `set`, and `local.*` every local that depends only on variables and other
/// locals (those calling functions or naming resources are left out).
fn eval_context(blocks: &[Block], set: &[(&str, hcl::Value)]) -> hcl::eval::Context<'static> {
    use hcl::eval::{Context, Evaluate};
    let mut vars = hcl::Map::new();
    for block in blocks.iter().filter(|b| b.identifier() == "variable") {
        let Some(name) = block.labels().first().map(|l| l.as_str().to_string()) else {
            continue;
        };
        let default = attr(block.body(), "default")
            .and_then(|e| e.evaluate(&Context::new()).ok())
            .unwrap_or(hcl::Value::Null);
        vars.insert(name, default);
    }
    for (name, value) in set {
        vars.insert((*name).to_string(), value.clone());
    }
    let all = locals(blocks);
    let mut known = hcl::Map::new();
    loop {
        let mut ctx = Context::new();
        ctx.declare_var("var", hcl::Value::Object(vars.clone()));
        ctx.declare_var("local", hcl::Value::Object(known.clone()));
        let found: Vec<(String, hcl::Value)> = all
            .iter()
            .filter(|(name, _)| !known.contains_key(*name))
            .filter_map(|(name, expr)| Some((name.clone(), expr.evaluate(&ctx).ok()?)))
            .collect();
        if found.is_empty() {
            return ctx;
        }
        known.extend(found);
    }
}

/// The value of an attribute of `body` in `ctx`; `None` when it is absent or
/// cannot be evaluated there.
fn eval_attr(body: &Body, key: &str, ctx: &hcl::eval::Context) -> Option<hcl::Value> {
    use hcl::eval::Evaluate;
    attr(body, key)?.evaluate(ctx).ok()
}

fn variable_default(blocks: &[Block], name: &str) -> Option<hcl::Value> {
    use hcl::eval::Evaluate;
    let block = blocks.iter().find(|b| {
        b.identifier() == "variable" && b.labels().first().map(|l| l.as_str()) == Some(name)
    })?;
    attr(block.body(), "default")?
        .evaluate(&hcl::eval::Context::new())
        .ok()
}

// ---------------------------------------------------- schedules start off

/// 8. Every schedule (EventBridge rule with a schedule expression, EventBridge
///    Scheduler schedule) is DISABLED unless `var.enable_schedules`, which
///    defaults to false; alarms that count silence as breaching (nothing runs
///    while the schedules are off) send nothing until then.
fn check_schedules(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    if variable_default(blocks, "enable_schedules") != Some(hcl::Value::Bool(false)) {
        problems.push("variable enable_schedules does not default to false".to_string());
    }
    let off = eval_context(blocks, &[]);
    let on = eval_context(blocks, &[("enable_schedules", hcl::Value::Bool(true))]);
    let mut schedules = Vec::new();
    for (name, body) in resources(blocks, "aws_cloudwatch_event_rule") {
        if attr(body, "schedule_expression").is_some() {
            schedules.push((format!("aws_cloudwatch_event_rule.{name}"), body));
        }
    }
    for (name, body) in resources(blocks, "aws_scheduler_schedule") {
        schedules.push((format!("aws_scheduler_schedule.{name}"), body));
    }
    if schedules.is_empty() {
        problems.push("no schedules at all: the check would be vacuous".to_string());
    }
    for (name, body) in schedules {
        if attr(body, "is_enabled").is_some() {
            problems.push(format!("{name}: uses is_enabled (deprecated), not state"));
        }
        let Some(state) = attr(body, "state") else {
            problems.push(format!(
                "{name}: no state, so it is ENABLED from the first apply"
            ));
            continue;
        };
        if !refs(&text(state), "var").contains("enable_schedules") {
            problems.push(format!(
                "{name}: state does not depend on var.enable_schedules"
            ));
        }
        let value = |ctx| eval_attr(body, "state", ctx).and_then(|v| v.as_str().map(String::from));
        if value(&off).as_deref() != Some("DISABLED") {
            problems.push(format!(
                "{name}: not DISABLED while enable_schedules is false"
            ));
        }
        if value(&on).as_deref() != Some("ENABLED") {
            problems.push(format!("{name}: not ENABLED when enable_schedules is true"));
        }
    }
    for (name, body) in resources(blocks, "aws_cloudwatch_metric_alarm") {
        if attr(body, "treat_missing_data").and_then(string).as_deref() != Some("breaching") {
            continue;
        }
        let muted = eval_attr(body, "actions_enabled", &off) == Some(hcl::Value::Bool(false));
        let armed = eval_attr(body, "actions_enabled", &on) == Some(hcl::Value::Bool(true));
        if !(muted && armed) {
            problems.push(format!(
                "alarm {name}: treats silence as breaching but notifies while the schedules are off (actions_enabled should follow var.enable_schedules)"
            ));
        }
    }
    problems
}

#[test]
fn schedules_are_disabled_until_enable_schedules() {
    assert_none("schedules", check_schedules(&infra()));
}

#[test]
fn an_always_on_schedule_is_reported() {
    let blocks = parse(
        r#"
variable "enable_schedules" {
  type    = bool
  default = true
}
resource "aws_cloudwatch_event_rule" "bare" {
  schedule_expression = "rate(1 minute)"
}
resource "aws_cloudwatch_event_rule" "fixed" {
  schedule_expression = "rate(1 minute)"
  state               = "ENABLED"
}
resource "aws_cloudwatch_event_rule" "old" {
  schedule_expression = "rate(1 minute)"
  is_enabled          = var.enable_schedules
  state               = var.enable_schedules ? "ENABLED" : "DISABLED"
}
resource "aws_cloudwatch_event_rule" "pattern_only" {
  event_pattern = "{}"
}
resource "aws_cloudwatch_metric_alarm" "stalled" {
  treat_missing_data = "breaching"
}
"#,
    );
    let problems = check_schedules(&blocks);
    for expected in [
        "enable_schedules does not default to false",
        "aws_cloudwatch_event_rule.bare: no state",
        "aws_cloudwatch_event_rule.fixed: state does not depend on var.enable_schedules",
        "aws_cloudwatch_event_rule.fixed: not DISABLED",
        "aws_cloudwatch_event_rule.old: uses is_enabled",
        "alarm stalled: treats silence as breaching",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
    // The default is true here, so even the conditional rule starts ENABLED.
    assert!(
        problems
            .iter()
            .any(|p| p.contains("aws_cloudwatch_event_rule.old: not DISABLED")),
        "{problems:?}"
    );
    assert!(
        !problems.iter().any(|p| p.contains("pattern_only")),
        "{problems:?}"
    );
}

// ------------------------------------------- dead-letter queues where useful

/// How each function is started: by a schedule, by S3 events, by an event
/// source mapping (synchronously).
#[derive(Debug, Default)]
struct Triggers {
    schedule: bool,
    s3: bool,
    mapping: bool,
}

fn triggers(blocks: &[Block]) -> BTreeMap<String, Triggers> {
    let mut found: BTreeMap<String, Triggers> = resources(blocks, "aws_lambda_function")
        .into_iter()
        .map(|(name, _)| (name.to_string(), Triggers::default()))
        .collect();
    let scheduled_rules: BTreeSet<&str> = resources(blocks, "aws_cloudwatch_event_rule")
        .into_iter()
        .filter(|(_, body)| attr(body, "schedule_expression").is_some())
        .map(|(name, _)| name)
        .collect();
    let function_refs = |body: &Body, key: &str| {
        refs(
            &attr(body, key).map(text).unwrap_or_default(),
            "aws_lambda_function",
        )
    };
    for (_, body) in resources(blocks, "aws_cloudwatch_event_target") {
        let rules = refs(
            &attr(body, "rule").map(text).unwrap_or_default(),
            "aws_cloudwatch_event_rule",
        );
        // A schedule that sends its own event (`input`, e.g. the hourly
        // `{"maintain": {}}`) does other work than the function's default
        // run, so its next tick retries nothing else.
        if rules.iter().any(|r| scheduled_rules.contains(r.as_str()))
            && attr(body, "input").is_none()
        {
            for function in function_refs(body, "arn") {
                found.entry(function).or_default().schedule = true;
            }
        }
    }
    for (_, body) in resources(blocks, "aws_scheduler_schedule") {
        for target in nested(body, "target") {
            for function in function_refs(target, "arn") {
                found.entry(function).or_default().schedule = true;
            }
        }
    }
    for (_, body) in resources(blocks, "aws_s3_bucket_notification") {
        for target in nested(body, "lambda_function") {
            for function in function_refs(target, "lambda_function_arn") {
                found.entry(function).or_default().s3 = true;
            }
        }
    }
    for (_, body) in resources(blocks, "aws_lambda_event_source_mapping") {
        for function in function_refs(body, "function_name") {
            found.entry(function).or_default().mapping = true;
        }
    }
    found
}

/// The queue a function's asynchronous failures go to: its
/// `dead_letter_config`, or an `on_failure` destination of its event invoke
/// config (resource names of `aws_sqs_queue`, empty for none).
fn dead_letter_queues(blocks: &[Block], function: &str) -> BTreeSet<String> {
    let mut queues = BTreeSet::new();
    if let Some((_, body)) = resources(blocks, "aws_lambda_function")
        .into_iter()
        .find(|(name, _)| *name == function)
    {
        for dlq in nested(body, "dead_letter_config") {
            queues.extend(refs(
                &attr(dlq, "target_arn").map(text).unwrap_or_default(),
                "aws_sqs_queue",
            ));
            if attr(dlq, "target_arn").is_some() && queues.is_empty() {
                queues.insert("(not an aws_sqs_queue)".to_string());
            }
        }
    }
    for (_, body) in resources(blocks, "aws_lambda_function_event_invoke_config") {
        let of_function = refs(
            &attr(body, "function_name").map(text).unwrap_or_default(),
            "aws_lambda_function",
        )
        .contains(function);
        if !of_function {
            continue;
        }
        for on_failure in nested(body, "destination_config")
            .into_iter()
            .flat_map(|d| nested(d, "on_failure"))
        {
            queues.extend(refs(
                &attr(on_failure, "destination")
                    .map(text)
                    .unwrap_or_default(),
                "aws_sqs_queue",
            ));
        }
    }
    queues
}

/// Whether the role of `function` may send to `queue`: some statement of the
/// policy document attached to that role allows sqs:SendMessage on it.
fn role_may_send(blocks: &[Block], function: &str, queue: &str) -> bool {
    let Some((_, body)) = resources(blocks, "aws_lambda_function")
        .into_iter()
        .find(|(name, _)| *name == function)
    else {
        return false;
    };
    let roles = refs(
        &attr(body, "role").map(text).unwrap_or_default(),
        "aws_iam_role",
    );
    let documents: BTreeSet<String> = resources(blocks, "aws_iam_role_policy")
        .into_iter()
        .filter(|(_, p)| {
            !refs(
                &attr(p, "role").map(text).unwrap_or_default(),
                "aws_iam_role",
            )
            .is_disjoint(&roles)
        })
        .flat_map(|(_, p)| {
            refs(
                &attr(p, "policy").map(text).unwrap_or_default(),
                "data.aws_iam_policy_document",
            )
        })
        .collect();
    data_sources(blocks, "aws_iam_policy_document")
        .into_iter()
        .filter(|(name, _)| documents.contains(*name))
        .flat_map(|(_, body)| nested(body, "statement"))
        .any(|statement| {
            attr(statement, "actions")
                .map(strings)
                .unwrap_or_default()
                .iter()
                .any(|a| a == "sqs:SendMessage")
                && refs(
                    &attr(statement, "resources").map(text).unwrap_or_default(),
                    "aws_sqs_queue",
                )
                .contains(queue)
        })
}

/// 9. A dead-letter queue only where a replay does what nothing else will:
///    a scheduled function has none (the next tick retries), a function
///    invoked only by an event source mapping has none (a function DLQ never
///    receives synchronous events), a function started only by S3 events has
///    one, and may send to it.
fn check_dead_letters(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    for (function, how) in triggers(blocks) {
        let queues = dead_letter_queues(blocks, &function);
        if how.schedule && !queues.is_empty() {
            problems.push(format!(
                "aws_lambda_function.{function}: started by a schedule, whose next tick is the retry, yet failures go to {queues:?}"
            ));
        }
        if how.mapping && !how.schedule && !how.s3 && !queues.is_empty() {
            problems.push(format!(
                "aws_lambda_function.{function}: invoked synchronously by an event source mapping, so a function dead-letter queue ({queues:?}) never receives anything; use the mapping's on_failure"
            ));
        }
        if how.s3 && !how.schedule && queues.is_empty() {
            problems.push(format!(
                "aws_lambda_function.{function}: started only by S3 events and nothing keeps a failed one: no dead-letter queue"
            ));
        }
        for queue in &queues {
            if !role_may_send(blocks, &function, queue) {
                problems.push(format!(
                    "aws_lambda_function.{function}: its role may not sqs:SendMessage to its dead-letter queue aws_sqs_queue.{queue}"
                ));
            }
        }
    }
    problems
}

#[test]
fn dead_letter_queues_only_where_a_replay_helps() {
    let blocks = infra();
    let how = triggers(&blocks);
    assert!(
        how.get("ingest").is_some_and(|t| t.schedule)
            && how.get("transform").is_some_and(|t| t.s3 && !t.schedule)
            && how.get("stream_sink").is_some_and(|t| t.mapping),
        "the triggers were not found as expected: {how:?}"
    );
    assert_none("dead letters", check_dead_letters(&blocks));
}

#[test]
fn a_dead_letter_queue_in_the_wrong_place_is_reported() {
    let blocks = parse(
        r#"
resource "aws_sqs_queue" "dlq" {}
resource "aws_iam_role" "tick" {}
resource "aws_lambda_function" "tick" {
  role = aws_iam_role.tick.arn
  dead_letter_config {
    target_arn = aws_sqs_queue.dlq.arn
  }
}
resource "aws_cloudwatch_event_rule" "tick" {
  schedule_expression = "rate(1 minute)"
}
resource "aws_cloudwatch_event_target" "tick" {
  rule = aws_cloudwatch_event_rule.tick.name
  arn  = aws_lambda_function.tick.arn
}
resource "aws_lambda_function" "on_upload" {}
resource "aws_s3_bucket_notification" "uploads" {
  lambda_function {
    lambda_function_arn = aws_lambda_function.on_upload.arn
  }
}
resource "aws_lambda_function" "sink" {}
resource "aws_lambda_function_event_invoke_config" "sink" {
  function_name = aws_lambda_function.sink.function_name
  destination_config {
    on_failure {
      destination = aws_sqs_queue.dlq.arn
    }
  }
}
resource "aws_lambda_event_source_mapping" "sink" {
  function_name = aws_lambda_function.sink.arn
}
"#,
    );
    let problems = check_dead_letters(&blocks);
    for expected in [
        "aws_lambda_function.tick: started by a schedule",
        "aws_lambda_function.tick: its role may not sqs:SendMessage",
        "aws_lambda_function.on_upload: started only by S3 events",
        "aws_lambda_function.sink: invoked synchronously",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
}

// ------------------------------------------------ dev tears down, prod stays

/// 10. `environment = "dev"` makes the stack destroyable in one go (buckets
///     emptied, no default Object Lock, secrets without a recovery window,
///     the shortest KMS window); the default, prod, keeps all of it.
fn check_environment(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    if variable_default(blocks, "environment").and_then(|v| v.as_str().map(String::from))
        != Some("prod".to_string())
    {
        problems.push("variable environment does not default to \"prod\"".to_string());
    }
    let dev = eval_context(blocks, &[("environment", hcl::Value::from("dev"))]);
    let prod = eval_context(blocks, &[]);
    let number = |v: Option<hcl::Value>| v.and_then(|v| v.as_u64());
    let buckets = resources(blocks, "aws_s3_bucket");
    if buckets.is_empty() {
        problems.push("no buckets: the check would be vacuous".to_string());
    }
    for (name, body) in buckets {
        if eval_attr(body, "force_destroy", &dev) != Some(hcl::Value::Bool(true)) {
            problems.push(format!(
                "aws_s3_bucket.{name}: force_destroy is not true in dev"
            ));
        }
        if eval_attr(body, "force_destroy", &prod) == Some(hcl::Value::Bool(true)) {
            problems.push(format!("aws_s3_bucket.{name}: force_destroy in prod"));
        }
    }
    for (name, body) in resources(blocks, "aws_s3_bucket_object_lock_configuration") {
        // No default retention in dev: a locked version stops force_destroy
        // unless the deployer may bypass governance retention.
        if number(eval_attr(body, "count", &dev)) != Some(0) {
            problems.push(format!(
                "aws_s3_bucket_object_lock_configuration.{name}: still created in dev"
            ));
        }
        if attr(body, "count").is_some() && number(eval_attr(body, "count", &prod)) != Some(1) {
            problems.push(format!(
                "aws_s3_bucket_object_lock_configuration.{name}: not created in prod"
            ));
        }
    }
    let secrets = resources(blocks, "aws_secretsmanager_secret");
    if secrets.is_empty() {
        problems.push("no secrets: the check would be vacuous".to_string());
    }
    for (name, body) in secrets {
        if number(eval_attr(body, "recovery_window_in_days", &dev)) != Some(0) {
            problems.push(format!(
                "aws_secretsmanager_secret.{name}: recovery_window_in_days is not 0 in dev"
            ));
        }
        // Absent means the AWS default, 30 days.
        let kept = attr(body, "recovery_window_in_days")
            .map(|_| number(eval_attr(body, "recovery_window_in_days", &prod)).unwrap_or(0))
            .unwrap_or(30);
        if kept < 7 {
            problems.push(format!(
                "aws_secretsmanager_secret.{name}: recovery window of {kept} days in prod"
            ));
        }
    }
    for (name, body) in resources(blocks, "aws_kms_key") {
        if number(eval_attr(body, "deletion_window_in_days", &dev)) != Some(7) {
            problems.push(format!(
                "aws_kms_key.{name}: deletion_window_in_days is not 7 in dev"
            ));
        }
        if number(eval_attr(body, "deletion_window_in_days", &prod)) != Some(30) {
            problems.push(format!(
                "aws_kms_key.{name}: deletion_window_in_days is not 30 in prod"
            ));
        }
    }
    problems
}

#[test]
fn dev_can_be_destroyed_and_prod_keeps_its_data() {
    assert_none("environment", check_environment(&infra()));
}

#[test]
fn a_dev_stack_that_cannot_be_destroyed_is_reported() {
    let blocks = parse(
        r#"
variable "environment" {
  default = "dev"
}
locals {
  dev = var.environment == "dev"
}
resource "aws_s3_bucket" "kept" {}
resource "aws_s3_bucket" "always" {
  force_destroy = true
}
resource "aws_s3_bucket_object_lock_configuration" "raw" {}
resource "aws_secretsmanager_secret" "s" {
  recovery_window_in_days = local.dev ? 7 : 30
}
resource "aws_kms_key" "k" {
  deletion_window_in_days = 30
}
"#,
    );
    let problems = check_environment(&blocks);
    for expected in [
        "environment does not default to \"prod\"",
        "aws_s3_bucket.kept: force_destroy is not true in dev",
        "aws_s3_bucket.always: force_destroy in prod",
        "object_lock_configuration.raw: still created in dev",
        "aws_secretsmanager_secret.s: recovery_window_in_days is not 0 in dev",
        "aws_kms_key.k: deletion_window_in_days is not 7 in dev",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
}

// ------------------------------------------------- TLS to RDS, by default

/// 11. By default ingest and load trust the packaged RDS CA bundle
///     (`TRIBUTARY_PG_CA_FILE`), and refuse to plan when it was not packaged.
fn check_database_tls(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    if variable_default(blocks, "pg_ca_in_zip") != Some(hcl::Value::Bool(true)) {
        problems.push("variable pg_ca_in_zip does not default to true".to_string());
    }
    let ctx = eval_context(blocks, &[]);
    let binaries = function_binaries(blocks);
    for (name, body) in resources(blocks, "aws_lambda_function") {
        if !matches!(
            binaries.get(name).map(String::as_str),
            Some("ingest" | "load")
        ) {
            continue;
        }
        // The environment is a merge() of locals and literals: look for a
        // local that names the CA file by default.
        let variables = nested(body, "environment")
            .into_iter()
            .filter_map(|e| attr(e, "variables"))
            .map(text)
            .collect::<String>();
        let ca_file = refs(&variables, "local").into_iter().any(|local| {
            use hcl::eval::Evaluate;
            let Some(expr) = locals(blocks).get(&local).copied() else {
                return false;
            };
            match expr.evaluate(&ctx) {
                Ok(hcl::Value::Object(map)) => map
                    .get("TRIBUTARY_PG_CA_FILE")
                    .is_some_and(|v| v.as_str() == Some("/var/task/pg-ca.pem")),
                _ => false,
            }
        });
        if !ca_file {
            problems.push(format!(
                "aws_lambda_function.{name}: TRIBUTARY_PG_CA_FILE=/var/task/pg-ca.pem is not in its environment by default"
            ));
        }
        let guarded = nested(body, "lifecycle")
            .into_iter()
            .flat_map(|l| nested(l, "precondition"))
            .any(|p| {
                refs(&attr(p, "condition").map(text).unwrap_or_default(), "var")
                    .contains("pg_ca_in_zip")
            });
        if !guarded {
            problems.push(format!(
                "aws_lambda_function.{name}: no precondition that the CA bundle was packaged"
            ));
        }
    }
    problems
}

#[test]
fn tls_to_rds_is_verified_against_the_packaged_bundle_by_default() {
    assert_none("database TLS", check_database_tls(&infra()));
}

#[test]
fn an_unverified_default_is_reported() {
    let blocks = parse(
        r#"
variable "pg_ca_in_zip" {
  default = false
}
locals {
  tls = var.pg_ca_in_zip ? { TRIBUTARY_PG_CA_FILE = "/var/task/pg-ca.pem" } : {}
}
resource "aws_lambda_function" "ingest" {
  filename = "${var.dir}/ingest/bootstrap.zip"
  environment {
    variables = merge(local.tls, { A = "b" })
  }
}
"#,
    );
    let problems = check_database_tls(&blocks);
    for expected in [
        "pg_ca_in_zip does not default to true",
        "TRIBUTARY_PG_CA_FILE=/var/task/pg-ca.pem is not in its environment",
        "no precondition",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
}

// ------------------------------------------- make deploy / make destroy

/// Runs `program args` in the repository with a clean environment: `env`
/// only, PATH first through a directory of stand-ins for the tools a deploy
/// goes on to use (terraform; cargo, rustup and python3 of the packaging),
/// which record being called and fail: nothing may get that far when a check
/// refuses.
fn run_deploy(program: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String, bool) {
    let stubs = tempfile::tempdir().expect("temp dir");
    let called = stubs.path().join("called");
    for tool in ["terraform", "cargo", "rustup", "python3"] {
        let path = stubs.path().join(tool);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho {tool} \"$@\" >> '{}'\nexit 1\n",
                called.display()
            ),
        )
        .expect("write stub");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        stubs.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", path)
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        called.exists(),
    )
}

/// An infra/terraform.tfvars on this machine may set alert_email, which
/// rightly stands in for ALERT_EMAIL.
fn tfvars_sets_alert_email() -> bool {
    std::fs::read_to_string(repo_root().join("infra/terraform.tfvars"))
        .is_ok_and(|s| s.lines().any(|l| l.trim_start().starts_with("alert_email")))
}

#[test]
fn make_deploy_refuses_without_the_rds_ca_bundle() {
    let (code, stdout, stderr, called) = run_deploy(
        "make",
        &["deploy"],
        &[("ALERT_EMAIL", "oncall@example.com")],
    );
    assert_ne!(code, 0, "make deploy went ahead:\n{stdout}\n{stderr}");
    assert!(!called, "the deploy went on before the refusal:\n{stderr}");
    let refusal: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("deploy:"))
        .collect();
    assert_eq!(refusal.len(), 1, "one line of refusal expected:\n{stderr}");
    for needed in ["PG_CA_BUNDLE=", "global-bundle.pem", "PG_CA_BUNDLE=none"] {
        assert!(refusal[0].contains(needed), "{needed}: {}", refusal[0]);
    }

    // The bundle must be a file of PEM certificates.
    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("bundle.txt");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    for bundle in [
        dir.path().join("missing.pem").display().to_string(),
        not_pem.display().to_string(),
    ] {
        let (code, _, stderr, called) = run_deploy(
            "scripts/deploy.sh",
            &["deploy"],
            &[
                ("ALERT_EMAIL", "oncall@example.com"),
                ("PG_CA_BUNDLE", &bundle),
            ],
        );
        assert!(code != 0 && !called, "{bundle} accepted:\n{stderr}");
        assert!(
            stderr.trim().lines().count() == 1 && stderr.contains(&bundle),
            "one line naming {bundle}:\n{stderr}"
        );
    }

    if tfvars_sets_alert_email() {
        eprintln!(
            "infra/terraform.tfvars sets alert_email: the ALERT_EMAIL refusal is not checked here"
        );
    } else {
        let (code, _, stderr, called) = run_deploy(
            "scripts/deploy.sh",
            &["deploy"],
            &[("PG_CA_BUNDLE", "none")],
        );
        assert!(
            code != 0 && !called,
            "deployed without ALERT_EMAIL:\n{stderr}"
        );
        assert!(stderr.contains("ALERT_EMAIL="), "{stderr}");
    }
}

#[test]
fn deploy_and_destroy_pass_the_same_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bundle = dir.path().join("global-bundle.pem");
    std::fs::write(
        &bundle,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let tfvars = dir.path().join("dev.tfvars");
    std::fs::write(&tfvars, "environment = \"dev\"\n").expect("write");
    let tfvars = tfvars.display().to_string();
    let flags = |action: &str, bundle: &str| {
        let (code, stdout, stderr, called) = run_deploy(
            "scripts/deploy.sh",
            &["flags", action],
            &[
                ("ALERT_EMAIL", "oncall@example.com"),
                ("PG_CA_BUNDLE", bundle),
                ("TFVARS", &tfvars),
            ],
        );
        assert!(code == 0 && !called, "flags {action}:\n{stderr}");
        stdout.lines().map(String::from).collect::<Vec<_>>()
    };

    let with_bundle = flags("deploy", &bundle.display().to_string());
    assert!(
        with_bundle.contains(&"-var=pg_ca_in_zip=true".to_string()),
        "{with_bundle:?}"
    );
    let without = flags("deploy", "none");
    assert!(
        without.contains(&"-var=pg_ca_in_zip=false".to_string()),
        "{without:?}"
    );
    // destroy takes pg_ca_in_zip from the last package; everything else is
    // what deploy passes.
    let destroy = flags("destroy", "");
    let not_ca = |flags: &[String]| {
        flags
            .iter()
            .filter(|f| !f.starts_with("-var=pg_ca_in_zip="))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(not_ca(&destroy), not_ca(&without));
    assert!(
        destroy.iter().any(|f| f.starts_with("-var=pg_ca_in_zip=")),
        "{destroy:?}"
    );
    for expected in [
        "-var=alert_email=oncall@example.com".to_string(),
        format!("-var-file={tfvars}"),
    ] {
        assert!(destroy.contains(&expected), "{expected}: {destroy:?}");
    }
}

// ----------------------------------------------------- environment variables

/// The variable names the settings read (`pub const X: &str = "X"` in
/// `crates/pipeline/src/config.rs`).
fn settings_variables() -> BTreeSet<String> {
    let source =
        std::fs::read_to_string(repo_root().join("crates/pipeline/src/config.rs")).unwrap();
    source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|rest| rest.split_once(": &str = \""))
        .filter_map(|(name, value)| {
            let value = value.strip_suffix("\";")?;
            (name == value).then(|| value.to_string())
        })
        .collect()
}

/// Upper-case object keys in Terraform text: the environment variables a
/// function is given (in `variables = {…}` literals and the locals merged in).
fn environment_keys(tf: &str) -> BTreeSet<String> {
    tf.lines()
        .flat_map(|line| line.split(['{', ',']))
        .filter_map(|part| part.trim().split_once('='))
        .map(|(key, _)| key.trim())
        .filter(|key| {
            key.len() > 2
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && key.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        })
        .map(str::to_string)
        .collect()
}

/// Variables read by libraries rather than the settings: the log filter
/// and the AWS SDK's checksum choice.
const RUNTIME_VARIABLES: [&str; 2] = ["RUST_LOG", "AWS_CHECKSUM_ALGORITHM"];

fn check_environment_names(tf: &str, known: &BTreeSet<String>) -> Vec<String> {
    environment_keys(tf)
        .into_iter()
        .filter(|key| !known.contains(key) && !RUNTIME_VARIABLES.contains(&key.as_str()))
        .map(|key| {
            format!("a function is given {key}, which no setting reads (typo? see crates/pipeline/src/config.rs)")
        })
        .collect()
}

#[test]
fn every_environment_variable_a_function_gets_is_one_the_settings_read() {
    let tf = std::fs::read_to_string(repo_root().join("infra/functions.tf")).unwrap();
    let known = settings_variables();
    assert!(
        known.contains("WAREHOUSE_DB_HOST") && known.len() > 20,
        "{known:?}"
    );
    let given = environment_keys(&tf);
    for expected in [
        "TOTESYS_SECRET_ARN",
        "WAREHOUSE_SECRET_ARN",
        "TOTESYS_DB_HOST",
        "WAREHOUSE_DB_HOST",
        "WAREHOUSE_DB_PORT",
        "TRIBUTARY_PG_CA_FILE",
    ] {
        assert!(
            given.contains(expected),
            "functions.tf sets {expected}: {given:?}"
        );
    }
    assert_none("environment names", check_environment_names(&tf, &known));
}

#[test]
fn a_misspelt_environment_variable_is_reported() {
    let known = settings_variables();
    let problems = check_environment_names(
        "variables = {\n  WAREHOUSE_SECRET_ARN = x\n  WAREHOUSE_DB_HOTS = y\n}",
        &known,
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("WAREHOUSE_DB_HOTS"));
}

#[test]
fn every_function_may_keep_its_alert_state_and_only_its_own() {
    let tf = std::fs::read_to_string(repo_root().join("infra/iam.tf")).unwrap();
    let statement = tf
        .split("statement {")
        .find(|s| s.contains("\"KeepAlertState\""))
        .expect("a KeepAlertState statement in the policy every function gets");
    assert!(
        statement.contains("s3:GetObject") && statement.contains("s3:PutObject"),
        "{statement}"
    );
    assert!(
        statement.contains("aws_s3_bucket.processed.arn}/_alerts/${each.key}.json"),
        "scoped to the function's own object: {statement}"
    );
}
