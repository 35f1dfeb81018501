//! The IAM policies of `infra/iam.tf` (and the functions' environment of
//! `infra/functions.tf`) rendered with hcl-rs as `terraform apply` renders
//! them, for given names of the stack's resources; and an evaluator that
//! says whether a rendered policy allows an action on a resource.
//!
//! Terraform knows a resource's `arn` only after it exists, so a rendering
//! binds `aws_s3_bucket.raw.arn`, `aws_sns_topic.alerts.arn`, … from
//! [`Names`]; `var.*` are the variables' defaults (overridable), `local.*`
//! are evaluated from them as far as the functions declared here allow
//! (overridable too), and `data.aws_iam_policy_document.<name>.json` is each
//! document rendered in turn, so `source_policy_documents` and `for_each`
//! (`each.key`) work as in Terraform.
//!
//! Used by `crates/lambdas/tests/least_privilege.rs` (the policies moto
//! enforces) and, through `#[path]`, by `tests/tests/infra_wiring.rs` (the
//! static check of the resources each function's calls reach).

#![allow(dead_code)]

use std::{collections::BTreeMap, path::Path};

use hcl::{
    Block, Body, Expression, Value,
    eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType},
};
use serde_json::{Value as Json, json};

/// Top-level blocks of every `*.tf` in `dir`, in file-name order.
pub(crate) fn load(dir: &Path) -> Vec<Block> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "tf"))
        .collect();
    files.sort();
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

/// What a rendering calls the stack's resources (what Terraform would only
/// know after creating them).
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) partition: String,
    pub(crate) region: String,
    pub(crate) account_id: String,
    pub(crate) raw_bucket: String,
    pub(crate) processed_bucket: String,
    /// The stack's landing bucket (`aws_s3_bucket.landing`, `count`: one
    /// while `var.landing_bucket` is empty).
    pub(crate) landing_bucket: String,
    pub(crate) alerts_topic: String,
    pub(crate) kms_key_id: String,
    pub(crate) totesys_secret_arn: String,
    pub(crate) warehouse_secret_arn: String,
    /// `aws_secretsmanager_secret.coincap` has `count`: none or one.
    pub(crate) coincap_secret_arn: Option<String>,
    pub(crate) stream: String,
    pub(crate) glue_database: String,
    pub(crate) transform_dlq: String,
    pub(crate) stream_sink_failures: String,
}

impl Names {
    /// Readable names for static checks (`tributary` in eu-west-2).
    pub(crate) fn symbolic() -> Names {
        let secret = |name: &str| {
            format!("arn:aws:secretsmanager:eu-west-2:123456789012:secret:tributary/{name}-AbCdEf")
        };
        Names {
            partition: "aws".into(),
            region: "eu-west-2".into(),
            account_id: "123456789012".into(),
            raw_bucket: "tributary-raw".into(),
            processed_bucket: "tributary-processed".into(),
            landing_bucket: "tributary-landing".into(),
            alerts_topic: "tributary-alerts".into(),
            kms_key_id: "0000aaaa-1111-2222-3333-444455556666".into(),
            totesys_secret_arn: secret("totesys"),
            warehouse_secret_arn: secret("warehouse"),
            coincap_secret_arn: Some(secret("coincap")),
            stream: "tributary-markets".into(),
            glue_database: "tributary".into(),
            transform_dlq: "tributary-transform-dlq".into(),
            stream_sink_failures: "tributary-stream-sink-failures".into(),
        }
    }

    fn regional(&self, service: &str, rest: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{rest}",
            self.partition, self.region, self.account_id
        )
    }

    /// `arn:aws:s3:::<bucket or bucket/key>`.
    pub(crate) fn s3(&self, bucket_or_object: &str) -> String {
        format!("arn:{}:s3:::{bucket_or_object}", self.partition)
    }

    pub(crate) fn topic_arn(&self) -> String {
        self.regional("sns", &self.alerts_topic)
    }

    pub(crate) fn stream_arn(&self) -> String {
        self.regional("kinesis", &format!("stream/{}", self.stream))
    }

    pub(crate) fn queue_arn(&self, queue: &str) -> String {
        self.regional("sqs", queue)
    }

    pub(crate) fn glue_catalog_arn(&self) -> String {
        self.regional("glue", "catalog")
    }

    pub(crate) fn glue_database_arn(&self) -> String {
        self.regional("glue", &format!("database/{}", self.glue_database))
    }

    pub(crate) fn glue_table_arn(&self, table: &str) -> String {
        self.regional("glue", &format!("table/{}/{table}", self.glue_database))
    }

    pub(crate) fn log_group_arn(&self, function_name: &str) -> String {
        self.regional("logs", &format!("log-group:/aws/lambda/{function_name}"))
    }

    pub(crate) fn kms_key_arn(&self) -> String {
        self.regional("kms", &format!("key/{}", self.kms_key_id))
    }
}

/// `infra/*.tf` evaluated for one set of [`Names`].
pub(crate) struct Rendering<'a> {
    blocks: &'a [Block],
    names: Names,
    vars: hcl::Map<String, Value>,
    locals: hcl::Map<String, Value>,
    docs: hcl::Map<String, Value>,
}

fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

pub(crate) fn attr<'b>(body: &'b Body, key: &str) -> Option<&'b Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// Nested blocks named `ident`, including the `content` of `dynamic "<ident>"`.
pub(crate) fn nested<'b>(body: &'b Body, ident: &str) -> Vec<&'b Body> {
    let mut found = Vec::new();
    for block in body.blocks() {
        if block.identifier() == ident {
            found.push(block.body());
        } else if block.identifier() == "dynamic"
            && block.labels().first().map(|l| l.as_str()) == Some(ident)
        {
            found.extend(
                block
                    .body()
                    .blocks()
                    .filter(|b| b.identifier() == "content")
                    .map(|b| b.body()),
            );
        }
    }
    found
}

pub(crate) fn labelled<'b>(
    blocks: &'b [Block],
    ident: &str,
    kind: &str,
) -> Vec<(&'b str, &'b Body)> {
    blocks
        .iter()
        .filter(|b| b.identifier() == ident)
        .filter(|b| b.labels().first().map(|l| l.as_str()) == Some(kind))
        .filter_map(|b| Some((b.labels().get(1)?.as_str(), b.body())))
        .collect()
}

// The few Terraform functions the rendered expressions call.
fn tf_concat(args: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for arg in args.iter() {
        match arg {
            Value::Array(items) => out.extend(items.iter().cloned()),
            other => return Err(format!("concat takes lists, got {other}")),
        }
    }
    Ok(Value::Array(out))
}

fn tf_merge(args: FuncArgs) -> Result<Value, String> {
    let mut out = hcl::Map::new();
    for arg in args.iter() {
        match arg {
            Value::Object(entries) => out.extend(entries.clone()),
            Value::Null => {}
            other => return Err(format!("merge takes objects, got {other}")),
        }
    }
    Ok(Value::Object(out))
}

fn tf_length(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Array(items) => Ok(Value::from(items.len())),
        Value::Object(entries) => Ok(Value::from(entries.len())),
        Value::String(text) => Ok(Value::from(text.chars().count())),
        other => Err(format!("length of {other}")),
    }
}

fn tf_replace(args: FuncArgs) -> Result<Value, String> {
    match (&args[0], &args[1], &args[2]) {
        (Value::String(text), Value::String(from), Value::String(to)) => {
            Ok(s(text.replace(from.as_str(), to)))
        }
        _ => Err("replace takes three strings".into()),
    }
}

impl<'a> Rendering<'a> {
    /// Evaluates variables (defaults, then `set_vars`), locals (`set_locals`
    /// first, then every other local that can be evaluated) and every
    /// `aws_iam_policy_document` that can be rendered.
    pub(crate) fn new(
        blocks: &'a [Block],
        names: Names,
        set_vars: &[(&str, Value)],
        set_locals: &[(&str, Value)],
    ) -> Rendering<'a> {
        let mut vars = hcl::Map::new();
        for block in blocks.iter().filter(|b| b.identifier() == "variable") {
            let Some(name) = block.labels().first().map(|l| l.as_str().to_string()) else {
                continue;
            };
            let default = attr(block.body(), "default")
                .and_then(|e| e.evaluate(&Context::new()).ok())
                .unwrap_or(Value::Null);
            vars.insert(name, default);
        }
        for (name, value) in set_vars {
            vars.insert((*name).to_string(), value.clone());
        }
        let mut rendering = Rendering {
            blocks,
            names,
            vars,
            locals: set_locals
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
            docs: hcl::Map::new(),
        };
        let all_locals: Vec<(String, &Expression)> = blocks
            .iter()
            .filter(|b| b.identifier() == "locals")
            .flat_map(|b| b.body().attributes())
            .map(|a| (a.key().to_string(), a.expr()))
            .collect();
        loop {
            let ctx = rendering.context(None);
            let found: Vec<(String, Value)> = all_locals
                .iter()
                .filter(|(name, _)| !rendering.locals.contains_key(name))
                .filter_map(|(name, expr)| Some((name.clone(), expr.evaluate(&ctx).ok()?)))
                .collect();
            if found.is_empty() {
                break;
            }
            rendering.locals.extend(found);
        }
        let documents = labelled(blocks, "data", "aws_iam_policy_document");
        loop {
            let mut progress = false;
            for (name, body) in &documents {
                if rendering.docs.contains_key(*name) {
                    continue;
                }
                if let Ok(value) = rendering.render_data_document(body) {
                    rendering.docs.insert((*name).to_string(), value);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        rendering
    }

    /// The evaluation context: `var`, `local`, `data`, the stack's
    /// resources, `each` when given, and the functions declared here.
    fn context(&self, each: Option<(&str, &Value)>) -> Context<'static> {
        let n = &self.names;
        let mut ctx = Context::new();
        ctx.declare_var("var", Value::Object(self.vars.clone()));
        ctx.declare_var("local", Value::Object(self.locals.clone()));
        ctx.declare_var(
            "data",
            object([
                (
                    "aws_caller_identity",
                    object([("current", object([("account_id", s(&n.account_id))]))]),
                ),
                (
                    "aws_partition",
                    object([("current", object([("partition", s(&n.partition))]))]),
                ),
                (
                    "aws_region",
                    object([(
                        "current",
                        object([("name", s(&n.region)), ("region", s(&n.region))]),
                    )]),
                ),
                ("aws_iam_policy_document", Value::Object(self.docs.clone())),
            ]),
        );
        let bucket =
            |name: &str| object([("arn", s(n.s3(name))), ("bucket", s(name)), ("id", s(name))]);
        ctx.declare_var(
            "aws_s3_bucket",
            object([
                ("raw", bucket(&n.raw_bucket)),
                ("processed", bucket(&n.processed_bucket)),
                ("landing", Value::Array(vec![bucket(&n.landing_bucket)])),
            ]),
        );
        ctx.declare_var(
            "aws_sns_topic",
            object([(
                "alerts",
                object([
                    ("arn", s(n.topic_arn())),
                    ("id", s(n.topic_arn())),
                    ("name", s(&n.alerts_topic)),
                ]),
            )]),
        );
        ctx.declare_var(
            "aws_kms_key",
            object([(
                "main",
                object([
                    ("arn", s(n.kms_key_arn())),
                    ("key_id", s(&n.kms_key_id)),
                    ("id", s(&n.kms_key_id)),
                ]),
            )]),
        );
        let queue = |name: &str| {
            object([
                ("arn", s(n.queue_arn(name))),
                ("name", s(name)),
                ("id", s(name)),
            ])
        };
        ctx.declare_var(
            "aws_sqs_queue",
            object([
                ("transform_dlq", queue(&n.transform_dlq)),
                ("stream_sink_failures", queue(&n.stream_sink_failures)),
            ]),
        );
        ctx.declare_var(
            "aws_kinesis_stream",
            object([(
                "markets",
                object([
                    ("arn", s(n.stream_arn())),
                    ("id", s(n.stream_arn())),
                    ("name", s(&n.stream)),
                ]),
            )]),
        );
        ctx.declare_var(
            "aws_glue_catalog_database",
            object([(
                "lake",
                object([
                    ("arn", s(n.glue_database_arn())),
                    ("name", s(&n.glue_database)),
                    ("id", s(format!("{}:{}", n.account_id, n.glue_database))),
                ]),
            )]),
        );
        let secret = |arn: &str| object([("arn", s(arn)), ("id", s(arn))]);
        ctx.declare_var(
            "aws_secretsmanager_secret",
            object([
                ("totesys", secret(&n.totesys_secret_arn)),
                ("warehouse", secret(&n.warehouse_secret_arn)),
                (
                    "coincap",
                    Value::Array(n.coincap_secret_arn.iter().map(|a| secret(a)).collect()),
                ),
            ]),
        );
        // One log group per function (for_each = local.function_names).
        let log_groups: hcl::Map<String, Value> = match self.locals.get("function_names") {
            Some(Value::Object(functions)) => functions
                .iter()
                .map(|(key, name)| {
                    let name = name.as_str().unwrap_or_default();
                    (
                        key.clone(),
                        object([
                            ("arn", s(n.log_group_arn(name))),
                            ("name", s(format!("/aws/lambda/{name}"))),
                        ]),
                    )
                })
                .collect(),
            _ => hcl::Map::new(),
        };
        ctx.declare_var(
            "aws_cloudwatch_log_group",
            object([("function", Value::Object(log_groups))]),
        );
        if let Some((key, value)) = each {
            ctx.declare_var("each", object([("key", s(key)), ("value", value.clone())]));
        }
        ctx.declare_func(
            "concat",
            FuncDef::builder()
                .variadic_param(ParamType::Any)
                .build(tf_concat),
        );
        ctx.declare_func(
            "merge",
            FuncDef::builder()
                .variadic_param(ParamType::Any)
                .build(tf_merge),
        );
        ctx.declare_func("length", FuncDef::new(tf_length, [ParamType::Any]));
        ctx.declare_func(
            "replace",
            FuncDef::new(
                tf_replace,
                [ParamType::String, ParamType::String, ParamType::String],
            ),
        );
        ctx
    }

    /// Evaluates `expr` (with `each` when given).
    fn eval(&self, expr: &Expression, each: Option<(&str, &Value)>) -> Result<Value, String> {
        expr.evaluate(&self.context(each))
            .map_err(|e| format!("`{expr}`: {e}"))
    }

    /// One `data "aws_iam_policy_document"` block: `{json}`, or with
    /// `for_each` an object of `{json}` per key.
    fn render_data_document(&self, body: &Body) -> Result<Value, String> {
        match attr(body, "for_each") {
            None => Ok(object([("json", s(self.render_document(body, None)?))])),
            Some(expr) => {
                let keys = match self.eval(expr, None)? {
                    Value::Object(entries) => entries,
                    Value::Array(items) => items
                        .into_iter()
                        .map(|v| (v.as_str().unwrap_or_default().to_string(), v))
                        .collect(),
                    other => return Err(format!("for_each over {other}")),
                };
                let mut out = hcl::Map::new();
                for (key, value) in &keys {
                    let json = self.render_document(body, Some((key, value)))?;
                    out.insert(key.clone(), object([("json", s(json))]));
                }
                Ok(Value::Object(out))
            }
        }
    }

    /// A policy document's JSON: the `source_policy_documents` first, then
    /// this document's statements (a statement replaces a source statement
    /// with the same sid), as the AWS provider merges them.
    fn render_document(&self, body: &Body, each: Option<(&str, &Value)>) -> Result<String, String> {
        if attr(body, "override_policy_documents").is_some() || attr(body, "policy_id").is_some() {
            return Err("override_policy_documents/policy_id are not rendered here".into());
        }
        let mut statements: Vec<Json> = Vec::new();
        if let Some(expr) = attr(body, "source_policy_documents") {
            let Value::Array(sources) = self.eval(expr, each)? else {
                return Err("source_policy_documents is not a list".into());
            };
            for source in sources {
                let text = source.as_str().ok_or("a source document is not a string")?;
                let parsed: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
                for statement in parsed["Statement"].as_array().cloned().unwrap_or_default() {
                    let sid = statement["Sid"].as_str().unwrap_or_default();
                    if !sid.is_empty() && statements.iter().any(|s| s["Sid"] == sid) {
                        return Err(format!("duplicate sid {sid} in the source documents"));
                    }
                    statements.push(statement);
                }
            }
        }
        for block in nested(body, "statement") {
            let statement = self.render_statement(block, each)?;
            let sid = statement["Sid"].as_str().unwrap_or_default().to_string();
            match statements
                .iter_mut()
                .find(|s| !sid.is_empty() && s["Sid"] == sid.as_str())
            {
                Some(existing) => *existing = statement,
                None => statements.push(statement),
            }
        }
        Ok(json!({"Version": "2012-10-17", "Statement": statements}).to_string())
    }

    fn strings(
        &self,
        body: &Body,
        key: &str,
        each: Option<(&str, &Value)>,
    ) -> Result<Option<Vec<String>>, String> {
        let Some(expr) = attr(body, key) else {
            return Ok(None);
        };
        let list = match self.eval(expr, each)? {
            Value::Array(items) => items,
            Value::String(text) => vec![Value::String(text)],
            other => return Err(format!("{key} = {other} is not a list of strings")),
        };
        let mut out: Vec<String> = list
            .into_iter()
            .map(|v| match v {
                Value::String(text) => Ok(text),
                other => Err(format!("{key} holds {other}")),
            })
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        Ok(Some(out))
    }

    fn render_statement(&self, body: &Body, each: Option<(&str, &Value)>) -> Result<Json, String> {
        let mut statement = serde_json::Map::new();
        if let Some(expr) = attr(body, "sid") {
            let sid = self.eval(expr, each)?;
            statement.insert("Sid".into(), json!(sid.as_str().unwrap_or_default()));
        }
        let effect = match attr(body, "effect") {
            Some(expr) => self
                .eval(expr, each)?
                .as_str()
                .unwrap_or("Allow")
                .to_string(),
            None => "Allow".to_string(),
        };
        statement.insert("Effect".into(), json!(effect));
        for (key, name) in [
            ("actions", "Action"),
            ("not_actions", "NotAction"),
            ("resources", "Resource"),
            ("not_resources", "NotResource"),
        ] {
            if let Some(values) = self.strings(body, key, each)? {
                statement.insert(name.into(), json!(values));
            }
        }
        for (ident, name) in [
            ("principals", "Principal"),
            ("not_principals", "NotPrincipal"),
        ] {
            let mut principals = serde_json::Map::new();
            for block in nested(body, ident) {
                let kind =
                    self.eval(attr(block, "type").ok_or("principals without type")?, each)?;
                let ids = self
                    .strings(block, "identifiers", each)?
                    .unwrap_or_default();
                principals.insert(kind.as_str().unwrap_or_default().to_string(), json!(ids));
            }
            if !principals.is_empty() {
                statement.insert(name.into(), Json::Object(principals));
            }
        }
        let mut conditions = serde_json::Map::new();
        for block in nested(body, "condition") {
            let test = self.eval(attr(block, "test").ok_or("condition without test")?, each)?;
            let variable = self.eval(
                attr(block, "variable").ok_or("condition without variable")?,
                each,
            )?;
            let values = self.strings(block, "values", each)?.unwrap_or_default();
            conditions
                .entry(test.as_str().unwrap_or_default().to_string())
                .or_insert_with(|| json!({}))[variable.as_str().unwrap_or_default()] =
                json!(values);
        }
        if !conditions.is_empty() {
            statement.insert("Condition".into(), Json::Object(conditions));
        }
        Ok(Json::Object(statement))
    }

    /// The rendered `data.aws_iam_policy_document.<name>` (with `key` for a
    /// `for_each` document), as IAM JSON.
    pub(crate) fn document(&self, name: &str, key: Option<&str>) -> Result<Json, String> {
        let rendered = self.docs.get(name).ok_or_else(|| {
            let why = labelled(self.blocks, "data", "aws_iam_policy_document")
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, body)| match self.render_data_document(body) {
                    Err(e) => e,
                    Ok(_) => "rendered late".into(),
                })
                .unwrap_or_else(|| "no such document".into());
            format!("data.aws_iam_policy_document.{name} cannot be rendered: {why}")
        })?;
        let entry = match key {
            Some(key) => rendered
                .as_object()
                .and_then(|o| o.get(key))
                .ok_or_else(|| format!("{name}[{key:?}] does not exist"))?,
            None => rendered,
        };
        let text = entry
            .as_object()
            .and_then(|o| o.get("json"))
            .and_then(|j| j.as_str())
            .ok_or_else(|| format!("{name} has no json"))?;
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The policy attached to a role: `policy` of the
    /// `aws_iam_role_policy` whose `role` is `aws_iam_role.<role>`.
    pub(crate) fn role_policy(&self, role: &str) -> Result<Json, String> {
        let reference = format!("aws_iam_role.{role}.");
        let (_, body) = labelled(self.blocks, "resource", "aws_iam_role_policy")
            .into_iter()
            .find(|(_, body)| {
                attr(body, "role").is_some_and(|e| e.to_string().starts_with(&reference))
            })
            .ok_or_else(|| format!("no aws_iam_role_policy for aws_iam_role.{role}"))?;
        let policy = self.eval(
            attr(body, "policy").ok_or("role policy without policy")?,
            None,
        )?;
        serde_json::from_str(policy.as_str().ok_or("policy is not a string")?)
            .map_err(|e| e.to_string())
    }

    /// `environment { variables = … }` of `aws_lambda_function.<resource>`.
    pub(crate) fn environment(&self, resource: &str) -> Result<BTreeMap<String, String>, String> {
        let (_, body) = labelled(self.blocks, "resource", "aws_lambda_function")
            .into_iter()
            .find(|(name, _)| *name == resource)
            .ok_or_else(|| format!("no aws_lambda_function.{resource}"))?;
        let environment = nested(body, "environment")
            .into_iter()
            .next()
            .ok_or_else(|| format!("aws_lambda_function.{resource} has no environment"))?;
        let variables = self.eval(
            attr(environment, "variables").ok_or("environment without variables")?,
            None,
        )?;
        let Value::Object(entries) = variables else {
            return Err("variables is not an object".into());
        };
        Ok(entries
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect())
    }
}

// ------------------------------------------------------------ evaluation

/// IAM's wildcard match: `*` any run of characters, `?` exactly one.
pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // matched[j]: pattern[..i] matches text[..j].
    let mut matched = vec![false; t.len() + 1];
    matched[0] = true;
    for &c in &p {
        let mut next = vec![false; t.len() + 1];
        match c {
            '*' => {
                let mut any = false;
                for j in 0..=t.len() {
                    any |= matched[j];
                    next[j] = any;
                }
            }
            _ => {
                for j in 1..=t.len() {
                    next[j] = matched[j - 1] && (c == '?' || c == t[j - 1]);
                }
            }
        }
        matched = next;
    }
    matched[t.len()]
}

fn listed(value: &Json) -> Vec<&str> {
    match value {
        Json::String(text) => vec![text.as_str()],
        Json::Array(items) => items.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

fn statement_applies(statement: &Json, action: &str, resource: &str) -> bool {
    let action = action.to_ascii_lowercase();
    let action_matches = |key: &str| {
        listed(&statement[key])
            .iter()
            .any(|p| wildcard(&p.to_ascii_lowercase(), &action))
    };
    let resource_matches = |key: &str| {
        listed(&statement[key])
            .iter()
            .any(|p| wildcard(p, resource))
    };
    let by_action = if statement.get("NotAction").is_some() {
        !action_matches("NotAction")
    } else {
        action_matches("Action")
    };
    let by_resource = if statement.get("NotResource").is_some() {
        !resource_matches("NotResource")
    } else {
        resource_matches("Resource")
    };
    by_action && by_resource
}

/// Whether `policy` allows `action` on `resource` without conditions: an
/// Allow statement matches and no Deny statement does. A statement with a
/// `Condition` allows nothing here (it allows only in some requests) but
/// denies when it is a Deny.
pub(crate) fn allows(policy: &Json, action: &str, resource: &str) -> bool {
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    let matching: Vec<&Json> = statements
        .iter()
        .filter(|s| statement_applies(s, action, resource))
        .collect();
    !matching.iter().any(|s| s["Effect"] == "Deny")
        && matching
            .iter()
            .any(|s| s["Effect"] == "Allow" && s.get("Condition").is_none())
}

/// The sids of the Allow statements that grant `action` on `resource`.
pub(crate) fn granting_sids(policy: &Json, action: &str, resource: &str) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Effect"] == "Allow" && statement_applies(s, action, resource))
        .map(|s| s["Sid"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `policy` without the statement `sid`.
pub(crate) fn without(policy: &Json, sid: &str) -> Json {
    let mut out = policy.clone();
    let statements = out["Statement"].as_array_mut().expect("statements");
    let before = statements.len();
    statements.retain(|s| s["Sid"] != sid);
    assert_eq!(before - 1, statements.len(), "no single statement {sid}");
    out
}

/// Every (action, resource pattern) an Allow statement grants, with its sid.
pub(crate) fn grants(policy: &Json) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for statement in policy["Statement"].as_array().into_iter().flatten() {
        if statement["Effect"] != "Allow" {
            continue;
        }
        let sid = statement["Sid"].as_str().unwrap_or_default();
        for action in listed(&statement["Action"]) {
            for resource in listed(&statement["Resource"]) {
                out.push((sid.to_string(), action.to_string(), resource.to_string()));
            }
        }
    }
    out
}
