//! Least privilege, proven by running: each of the four function binaries
//! does its real work against a moto_server that enforces IAM, signed with
//! the keys of an IAM user that holds nothing but that function's role
//! policy as `infra/iam.tf` renders it; and the same binary fails with
//! AccessDenied when one statement of that policy is removed.
//!
//! # How it runs
//!
//! * A moto_server of its own on a free port (never the shared local-stack
//!   one: IAM enforcement is server-wide). It starts with
//!   `INITIAL_NO_AUTH_ACTION_COUNT` high so the test can create buckets,
//!   topic, secrets, stream, Glue database and IAM users unauthenticated,
//!   then switches enforcement on for every later request
//!   (`POST /moto-api/reset-auth` with `0`, which sets the same counter)
//!   and starts moto's request recorder.
//! * The policies: `infra/*.tf` parsed and evaluated with hcl-rs
//!   (`support/tf_iam.rs`): the `aws_iam_role_policy` of each role, i.e.
//!   `data.aws_iam_policy_document.<function>` merged with its
//!   `source_policy_documents` (`function_base[each.key]`, the VPC document
//!   when `local.in_vpc`), with `aws_s3_bucket.raw.arn`, the topic, secret,
//!   stream, queue, Glue and log-group ARNs bound to this test's resources
//!   and `local.partition`/`region`/`account_id` to moto's `aws`,
//!   `us-east-1`, `123456789012`. Each becomes an inline user policy
//!   (Version 2012-10-17, Sid/Effect/Action/Resource) of its own user.
//! * The functions: the binaries cargo built for this test
//!   (`CARGO_BIN_EXE_<bin>`), each in its own process with a cleared
//!   environment: `environment.variables` of its `aws_lambda_function` in
//!   `infra/functions.tf` (evaluated the same way), its user's keys,
//!   `AWS_ENDPOINT_URL` of this moto and the `AWS_LAMBDA_*` variables Lambda
//!   sets, served events by a minimal Lambda Runtime API in this test (the
//!   protocol of `scripts/lambda-runtime-bench.py`; it also sets the
//!   deadline, which bounds the ingest's market polling). Sources: real
//!   PostgreSQL from the local stack (secrets in the RDS shape) and the
//!   markets replay server; alerts go to an HTTP subscription of the topic.
//! * Configured sources: a folder of source files in the test's directory
//!   (`TRIBUTARY_SOURCES_DIR`, for the full users; the users without a
//!   statement run without it, as before): a PostgreSQL source (`shop`, a
//!   database of its own) found through its RDS-shaped secret
//!   (`secret_env`, its ARN bound to Terraform's `source_secrets`), and a
//!   file drop (`partner`) in the landing bucket, taken by the ingest
//!   function on the landing bucket's S3 event.
//!
//! # What moto_server (5.x) enforces, and what this test adds
//!
//! Checked with one user per case (an Allow on the resource's ARN, on `*`,
//! on another ARN, and no grant):
//!
//! * S3: signature, action and resource (`arn:aws:s3:::bucket` for bucket
//!   operations, `arn:aws:s3:::bucket/key` for objects; HEAD is
//!   `s3:GetObject`). Full coverage, once the shim (`MOTO_SHIM`) fixes
//!   moto's signature check for keys with `=` and adds what moto lacks:
//!   S3 answers a missing key with 404 only to a caller allowed
//!   `s3:ListBucket`, with 403 to any other.
//! * SQS: signature, action and queue ARN. The functions never call SQS
//!   themselves (Lambda writes the dead-letter and on-failure queues).
//! * SNS, Secrets Manager, Kinesis, Glue, CloudWatch Logs, KMS: signature
//!   and action only. moto evaluates those requests against resource `*`,
//!   so a statement scoped to an ARN never matches there. The policy moto
//!   gets has those statements' `Resource` widened to `*` (`for_moto`), and
//!   this test checks the resources itself: every request recorded by moto
//!   is matched against the rendered, unwidened policy.
//! * Conditions: moto has no request context for them and treats an unmet
//!   condition as an explicit Deny, so a statement with a `Condition` would
//!   be left out of moto's copy (`infra/iam.tf` has none today).
//! * Not exercised: what AWS, not the binary, does with the role — writing
//!   its logs (`WriteOwnLogs`), X-Ray (`Tracing`), KMS on behalf of S3, SNS,
//!   Kinesis and Secrets Manager (`UseStackKey`: moto does not encrypt), the
//!   transform's dead-letter queue and the stream mapping's failure queue,
//!   VPC interfaces. The Kinesis event source mapping's reads are emulated
//!   by this test with the stream-sink's own keys. Resource policies
//!   (bucket, topic, key) are not modelled by moto.
//!
//! Every grant the run does not exercise must be listed, with its reason,
//! in `NOT_EXERCISED`: a grant that nothing uses and nothing explains fails
//! the test (an excessive grant), as does a call outside the policy (a
//! missing one). `tests/tests/infra_wiring.rs` checks the same policies
//! statically (calls and resources listed by hand, no stack needed).

#[path = "support/tf_iam.rs"]
mod tf_iam;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{SocketAddr, TcpListener as StdListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use tf_iam::{Names, Rendering};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};
use tributary_lake::Log;
use tributary_testkit::{pipeline::Stack, skip};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> Value {
    let path = workspace().join("crates/lambdas/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture json")
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ------------------------------------------------------------ processes

/// A child in its own process group, stopped with all of that group.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn spawn_group(command: &mut Command) -> std::io::Result<Group> {
    std::os::unix::process::CommandExt::process_group(command, 0);
    command.spawn().map(Group)
}

/// A moto_server of this test's own.
struct Moto {
    endpoint: String,
    recording: PathBuf,
    implicit_checks: PathBuf,
    _server: Group,
}

/// moto_server, started from Python with four corrections. The first two
/// are to how moto checks SigV4 signatures: it rebuilds each request from
/// what Flask parsed, which is only right for what botocore sends. Who may
/// do what stays moto's decision, and a wrong secret is still refused
/// (checked when this shim was written).
///
/// * S3 paths arrive with sub-delimiters such as `=` decoded, so every key
///   of the lake's partitions (`date=2026-11-30/…`) failed with
///   SignatureDoesNotMatch, from boto3 as from object_store. The path is
///   re-encoded as S3's canonical URI (RFC 3986 unreserved kept), and the
///   query string is taken as sent (a listing's `prefix=a%2Fb%2F` failed
///   the same way).
/// * Query-protocol bodies (SNS) are re-encoded from the parsed fields
///   (spaces as `+`), so the Rust SDK's `%20` never matched. The bytes
///   received are kept by a WSGI middleware and checked instead.
/// * A refusal of a JSON-protocol call (Kinesis, Glue, Secrets Manager)
///   comes as AWS sends it, a JSON `AccessDeniedException`: moto's XML body
///   reached the SDK as an unreadable error.
/// * What moto lacks: S3 answers a GET or HEAD of a missing key with 404
///   only to a caller allowed `s3:ListBucket` on the bucket, with 403
///   AccessDenied to any other (the lake probes for its next manifest and
///   the alert gate reads its state that way). Each such decision is
///   written to `$TRIBUTARY_IMPLICIT_CHECKS` and counted as an
///   `s3:ListBucket` call.
const MOTO_SHIM: &str = r#"
import io
import json
import os
import sys
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import moto.server
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import JsonRESTError
from moto.iam import access_control
from moto.s3.responses import S3Response


# 1 and 2: sign-check what was sent.
def keep_raw_body(app):
    def wrapped(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["tributary.raw_body"] = body
        return app(environ, start_response)
    return wrapped


_run_simple = moto.server.run_simple
moto.server.run_simple = lambda host, port, app, **kw: _run_simple(
    host, port, keep_raw_body(app), **kw
)
_create = access_control.IAMRequestBase._create_aws_request


def _as_sent(self):
    request = _create(self)
    if isinstance(self, access_control.S3IAMRequest):
        from flask import request as received
        parts = urlsplit(request.url)
        path = quote(unquote(parts.path), safe="/~")
        query = received.environ.get("QUERY_STRING", parts.query)
        request.url = urlunsplit(parts._replace(path=path, query=query))
    else:
        from flask import request as received
        raw = received.environ.get("tributary.raw_body")
        if raw:
            request.data = raw
    return request


access_control.IAMRequestBase._create_aws_request = _as_sent


# 3: a refusal in the request's protocol (moto answers XML to JSON services,
# which the SDKs cannot read as AccessDeniedException).
_deny = access_control.IAMRequest._raise_access_denied


def _deny_in_protocol(self):
    if self._headers.get("X-Amz-Target") or self._headers.get("x-amz-target"):
        raise JsonRESTError(
            "AccessDeniedException",
            f"User: {self._access_key.arn} is not authorized to perform: {self._action}",
        )
    _deny(self)


access_control.IAMRequest._raise_access_denied = _deny_in_protocol


# 4: 404 for a missing key only with s3:ListBucket.
_authorize_s3 = S3Response._authenticate_and_authorize_s3_action
_checks = os.environ.get("TRIBUTARY_IMPLICIT_CHECKS")


def _authorize_like_s3(self, bucket_name=None, key_name=None):
    _authorize_s3(self, bucket_name=bucket_name, key_name=key_name)
    enforced = (
        ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT
    )
    if not (enforced and bucket_name and key_name and self.method in ("GET", "HEAD")):
        return
    if self.data.get("Action") != "GetObject":
        return
    try:
        if key_name in self.backend.get_bucket(bucket_name).keys:
            return
    except Exception:
        return
    allowed = False
    self.data["Action"] = "ListBucket"
    try:
        _authorize_s3(self, bucket_name=bucket_name)
        allowed = True
    finally:
        self.data["Action"] = "GetObject"
        if _checks:
            credential = self.headers.get("Authorization", "").split("Credential=")[-1]
            with open(_checks, "a") as checks:
                checks.write(json.dumps({
                    "key": credential.split("/")[0],
                    "action": "s3:ListBucket",
                    "resource": f"arn:aws:s3:::{bucket_name}",
                    "for": f"{self.method} {key_name}",
                    "allowed": allowed,
                }) + "\n")


S3Response._authenticate_and_authorize_s3_action = _authorize_like_s3

sys.argv[0] = "moto_server"
sys.exit(moto.server.main())
"#;

impl Moto {
    /// Starts one (with `$MOTO_PYTHON`, else `python3`, which must have
    /// moto's server installed); `None` after a skip message when there is
    /// none.
    async fn start(dir: &Path) -> Option<Moto> {
        let python = std::env::var("MOTO_PYTHON").unwrap_or_else(|_| "python3".into());
        let has_moto = Command::new(&python)
            .args(["-c", "import moto.server, moto.iam.access_control"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_moto {
            skip(&format!(
                "no moto_server for {python}: python3 -m pip install 'moto[server]' (scripts/local-stack.sh start installs it), or set MOTO_PYTHON"
            ));
            return None;
        }
        let port = free_port();
        let log = dir.join("moto.log");
        let recording = dir.join("moto-recording.jsonl");
        let implicit_checks = dir.join("implicit-checks.jsonl");
        let file = std::fs::File::create(&log).unwrap();
        let mut server = spawn_group(
            Command::new(&python)
                .args(["-c", MOTO_SHIM, "-H", "127.0.0.1", "-p", &port.to_string()])
                // Unauthenticated until the test switches enforcement on.
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "1000000")
                .env("MOTO_RECORDER_FILEPATH", &recording)
                .env("TRIBUTARY_IMPLICIT_CHECKS", &implicit_checks)
                .env("NO_PROXY", "127.0.0.1,localhost")
                .env("no_proxy", "127.0.0.1,localhost")
                .stdin(Stdio::null())
                .stdout(Stdio::from(file.try_clone().unwrap()))
                .stderr(Stdio::from(file)),
        )
        .unwrap_or_else(|e| panic!("start {python}: {e}"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(format!("{endpoint}/moto-api/")).send().await
                && response.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!(
                    "moto_server exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not answer within 30 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Moto {
            endpoint,
            recording,
            implicit_checks,
            _server: server,
        })
    }

    async fn post(&self, path: &str, body: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.endpoint))
            .header("content-type", "text/plain")
            .body(body.to_string())
            .send()
            .await
            .expect("moto api");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }

    /// From here on every request must be signed by a known key and allowed.
    async fn enforce_iam(&self) {
        self.post("/moto-api/reset-auth", "0").await;
        self.post("/moto-api/recorder/start-recording", "").await;
    }

    /// A plain request before enforcement: moto routes by the credential
    /// scope of the (unchecked) Authorization header.
    fn unsigned(
        &self,
        service: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.endpoint))
            .header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential=setup/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=00"),
            )
    }

    async fn create_bucket(&self, bucket: &str, object_lock: bool) {
        let mut request = self.unsigned("s3", reqwest::Method::PUT, &format!("/{bucket}"));
        if object_lock {
            request = request.header("x-amz-bucket-object-lock-enabled", "true");
        }
        let response = request.send().await.expect("create bucket");
        assert!(
            response.status().is_success(),
            "create bucket {bucket}: {}",
            response.status()
        );
    }

    async fn iam(&self, params: &[(&str, &str)]) -> String {
        let body = [("Version", "2010-05-08")]
            .iter()
            .chain(params)
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .unsigned("iam", reqwest::Method::POST, "/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("iam call");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "iam {params:?}: {status} {text}");
        text
    }

    /// An IAM user whose only permissions are `policy` (inline), and its keys.
    async fn user(&self, name: &str, policy: &Value) -> Keys {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)])
            .await;
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", name),
            ("PolicyDocument", &policy.to_string()),
        ])
        .await;
        let created = self
            .iam(&[("Action", "CreateAccessKey"), ("UserName", name)])
            .await;
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let start = created.find(&open).expect(tag) + open.len();
            let end = created[start..].find('<').unwrap() + start;
            created[start..end].to_string()
        };
        Keys {
            id: field("AccessKeyId"),
            secret: field("SecretAccessKey"),
        }
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An access key of an IAM user in moto.
#[derive(Debug, Clone)]
struct Keys {
    id: String,
    secret: String,
}

/// SDK configuration signing with `keys` against moto.
async fn sdk(endpoint: &str, keys: &Keys) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            &keys.id,
            &keys.secret,
            None,
            None,
            "least-privilege-test",
        ))
        .load()
        .await
}

// ------------------------------------------------------ a little HTTP/1.1

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// One request from a keep-alive connection (Content-Length or chunked).
async fn read_request<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let (mut length, mut chunked) = (0usize, false);
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).await?;
    }
    Ok(Some(Request { method, path, body }))
}

async fn respond<W: AsyncWrite + Unpin>(
    writer: &mut W,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
        if status < 300 { "OK" } else { "Not Found" },
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes()).await?;
    writer.write_all(body).await?;
    writer.flush().await
}

// ------------------------------------------------- the Lambda Runtime API

/// How an invocation ended.
#[derive(Debug)]
enum Outcome {
    /// `POST /runtime/invocation/<id>/response`.
    Response(Value),
    /// `POST /runtime/invocation/<id>/error`.
    Error(Value),
    /// The process exited (after `POST /runtime/init/error`, if any).
    Exited(String),
}

struct Invocation {
    event: Value,
    deadline: SystemTime,
    reply: oneshot::Sender<Outcome>,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>;

/// The Runtime API of one function process: events in, answers out.
struct RuntimeApi {
    address: SocketAddr,
    invocations: mpsc::UnboundedSender<Invocation>,
    init_error: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    async fn start(function_arn: String) -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (invocations, queue) = mpsc::unbounded_channel::<Invocation>();
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        let pending: Pending = Arc::default();
        let init_error = Arc::new(Mutex::new(None));
        let errors = init_error.clone();
        let task = tokio::spawn(async move {
            let mut next_id = 0u64;
            while let Ok((stream, _)) = listener.accept().await {
                next_id += 1_000_000;
                let (queue, pending, errors, arn) = (
                    queue.clone(),
                    pending.clone(),
                    errors.clone(),
                    function_arn.clone(),
                );
                tokio::spawn(async move {
                    let _ = serve_runtime(stream, next_id, queue, pending, errors, arn).await;
                });
            }
        });
        RuntimeApi {
            address,
            invocations,
            init_error,
            task,
        }
    }
}

async fn serve_runtime(
    stream: TcpStream,
    mut next_id: u64,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    pending: Pending,
    init_error: Arc<Mutex<Option<String>>>,
    function_arn: String,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    while let Some(request) = read_request(&mut reader).await? {
        let path = request.path.as_str();
        if request.method == "GET" && path.ends_with("/runtime/invocation/next") {
            let Some(invocation) = queue.lock().await.recv().await else {
                return Ok(());
            };
            next_id += 1;
            let id = format!("request-{next_id}");
            pending.lock().unwrap().insert(id.clone(), invocation.reply);
            let deadline = invocation
                .deadline
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis();
            respond(
                &mut writer,
                200,
                &[
                    ("Content-Type", "application/json".into()),
                    ("Lambda-Runtime-Aws-Request-Id", id),
                    ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                    ("Lambda-Runtime-Invoked-Function-Arn", function_arn.clone()),
                    (
                        "Lambda-Runtime-Trace-Id",
                        "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
                    ),
                ],
                invocation.event.to_string().as_bytes(),
            )
            .await?;
        } else if request.method == "POST" && path.contains("/runtime/invocation/") {
            let rest = path
                .split("/runtime/invocation/")
                .nth(1)
                .unwrap_or_default();
            let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            let body: Value = serde_json::from_slice(&request.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into()));
            let outcome = if kind == "error" {
                Outcome::Error(body)
            } else {
                Outcome::Response(body)
            };
            if let Some(reply) = pending.lock().unwrap().remove(id) {
                let _ = reply.send(outcome);
            }
            respond(&mut writer, 202, &[], br#"{"status":"OK"}"#).await?;
        } else if request.method == "POST" && path.ends_with("/runtime/init/error") {
            *init_error.lock().unwrap() = Some(String::from_utf8_lossy(&request.body).into());
            respond(&mut writer, 202, &[], br#"{"status":"OK"}"#).await?;
        } else {
            respond(&mut writer, 404, &[], b"").await?;
        }
    }
    Ok(())
}

/// One function process under its own Runtime API.
struct Function {
    label: String,
    api: RuntimeApi,
    log: PathBuf,
    process: Group,
}

impl Function {
    /// Starts `binary` with exactly `env` (plus the Runtime API address),
    /// its stdout and stderr in `<dir>/<label>.log`.
    async fn start(
        binary: &str,
        label: &str,
        function_name: &str,
        env: &BTreeMap<String, String>,
        dir: &Path,
    ) -> Function {
        let arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}");
        let api = RuntimeApi::start(arn).await;
        let log = dir.join(format!("{label}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let process = spawn_group(
            Command::new(binary)
                .env_clear()
                .envs(env)
                .env("AWS_LAMBDA_RUNTIME_API", api.address.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::from(file.try_clone().unwrap()))
                .stderr(Stdio::from(file)),
        )
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        Function {
            label: label.to_string(),
            api,
            log,
            process,
        }
    }

    /// Sends one event with a deadline `budget` away; waits for the answer.
    async fn invoke(&mut self, event: &Value, budget: Duration) -> Outcome {
        let (reply, answer) = oneshot::channel();
        self.api
            .invocations
            .send(Invocation {
                event: event.clone(),
                deadline: SystemTime::now() + budget,
                reply,
            })
            .unwrap();
        let started = Instant::now();
        let mut answer = std::pin::pin!(answer);
        loop {
            tokio::select! {
                outcome = &mut answer => return outcome.expect("runtime api"),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if let Ok(Some(status)) = self.process.0.try_wait() {
                let init = self.api.init_error.lock().unwrap().clone();
                return Outcome::Exited(format!(
                    "{status}; init error: {init:?}; log:\n{}",
                    self.log_text()
                ));
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} gave no answer within 60 s; log:\n{}",
                self.label,
                self.log_text()
            );
        }
    }

    /// The answer of a successful invocation.
    async fn succeed(&mut self, event: &Value, budget: Duration) -> Value {
        match self.invoke(event, budget).await {
            Outcome::Response(value) => value,
            Outcome::Exited(how) => panic!("{} exited: {how}", self.label),
            other => panic!(
                "{} failed: {other:?}\nlog:\n{}",
                self.label,
                self.log_text()
            ),
        }
    }

    /// The error of a failed invocation.
    async fn fail(&mut self, event: &Value, budget: Duration) -> Value {
        let before = self.log_text().len();
        match self.invoke(event, budget).await {
            Outcome::Error(value) => {
                let log = self.log_text();
                let errors: Vec<&str> = log
                    .get(before..)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("\"level\":\"ERROR\""))
                    .collect();
                assert_eq!(
                    errors.len(),
                    1,
                    "{}: a failed invocation logs one ERROR line: {errors:#?}",
                    self.label
                );
                value
            }
            Outcome::Exited(how) => panic!("{} exited: {how}", self.label),
            other => panic!(
                "{} did not fail: {other:?}\nlog:\n{}",
                self.label,
                self.log_text()
            ),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails on a log line that says access was refused (a call the
    /// function survived, e.g. a market put that only alerts).
    fn assert_nothing_refused(&self) {
        let refusals = self.refusals();
        assert!(refusals.is_empty(), "{}: {refusals:#?}", self.label);
    }

    /// Log lines that say access was refused, that the alert gate could not
    /// read or write its state, or that SNS refused an alert. A recovery
    /// notice quotes the earlier failure: it is not one.
    fn refusals(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|line| {
                let parsed: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                let message = parsed["fields"]["message"].as_str().unwrap_or_default();
                !(message.starts_with("ALERT ") && message.contains(" recovered"))
            })
            .filter(|line| {
                refused(line)
                    || ["alert state cannot", "could not be published"]
                        .iter()
                        .any(|needle| line.contains(needle))
            })
            .map(str::to_string)
            .collect()
    }
}

// ------------------------------------------------------ the alert inbox

/// An HTTP endpoint subscribed to the alert topic: moto POSTs every
/// notification to it.
struct Inbox {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inbox {
    async fn start() -> Inbox {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (reader, mut writer) = stream.into_split();
                    let mut reader = BufReader::new(reader);
                    while let Ok(Some(request)) = read_request(&mut reader).await {
                        if let Ok(message) = serde_json::from_slice::<Value>(&request.body) {
                            store.lock().unwrap().push(message);
                        }
                        if respond(&mut writer, 200, &[], b"").await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Inbox {
            url,
            received,
            task,
        }
    }

    /// (subject, message) of every notification since the last call.
    fn drain(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.received.lock().unwrap())
            .into_iter()
            .filter(|m| m["Type"] == "Notification")
            .map(|m| {
                (
                    m["Subject"].as_str().unwrap_or_default().to_string(),
                    m["Message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

// ------------------------------------------------------------ policies

/// The four roles: function name (`each.key`), the Terraform name of its
/// role and function resources, its binary, and the statement the negative
/// run goes without.
const FUNCTIONS: [(&str, &str, &str, &str); 4] = [
    (
        "ingest",
        "ingest",
        env!("CARGO_BIN_EXE_ingest"),
        "WriteRawLake",
    ),
    (
        "stream-sink",
        "stream_sink",
        env!("CARGO_BIN_EXE_stream-sink"),
        "WriteRawLake",
    ),
    (
        "transform",
        "transform",
        env!("CARGO_BIN_EXE_transform"),
        "ReadRawLake",
    ),
    (
        "load",
        "load",
        env!("CARGO_BIN_EXE_load"),
        "ReadProcessedLake",
    ),
];

/// Services moto checks by action and resource; any other it checks by
/// action only, against resource `*`.
const RESOURCE_CHECKED_BY_MOTO: [&str; 2] = ["s3", "sqs"];

fn service(action: &str) -> &str {
    action.split(':').next().unwrap_or_default()
}

/// The copy of a rendered policy moto can enforce (see the module docs):
/// statements on services moto checks by action only get `Resource: "*"`;
/// statements with a condition are left out.
fn for_moto(policy: &Value) -> Value {
    let statements: Vec<Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.get("Condition").is_none())
        .map(|s| {
            let actions: Vec<&str> = s["Action"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut s = s.clone();
            if !actions
                .iter()
                .all(|a| RESOURCE_CHECKED_BY_MOTO.contains(&service(a)))
            {
                s["Resource"] = json!("*");
            }
            s
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Grants the run does not exercise, and why they are there anyway. The
/// test fails on a grant neither used nor listed here, and on an entry here
/// that the run did use (the list stays true).
const NOT_EXERCISED: &[(&str, &str, &str, &str)] = &[
    // Done by AWS with the role, not by the binary (module docs).
    (
        "*",
        "WriteOwnLogs",
        "logs:CreateLogStream",
        "Lambda writes the function's logs",
    ),
    (
        "*",
        "WriteOwnLogs",
        "logs:PutLogEvents",
        "Lambda writes the function's logs",
    ),
    (
        "*",
        "Tracing",
        "xray:PutTelemetryRecords",
        "Lambda's X-Ray tracing",
    ),
    (
        "*",
        "Tracing",
        "xray:PutTraceSegments",
        "Lambda's X-Ray tracing",
    ),
    (
        "*",
        "UseStackKey",
        "kms:Decrypt",
        "S3, SNS, Kinesis, Secrets Manager use the key with the caller's rights; moto does not encrypt",
    ),
    (
        "*",
        "UseStackKey",
        "kms:GenerateDataKey",
        "S3, SNS, Kinesis, Secrets Manager use the key with the caller's rights; moto does not encrypt",
    ),
    (
        "transform",
        "DeadLetterFailedEvents",
        "sqs:SendMessage",
        "Lambda sends a failed event to the DLQ with the role",
    ),
    (
        "stream-sink",
        "ReportGivenUpBatches",
        "sqs:SendMessage",
        "the event source mapping's on-failure destination",
    ),
    // Paths this run does not take.
    (
        "transform",
        "QuarantineInRawLake",
        "s3:PutObject",
        "only rows that break the contract are quarantined",
    ),
    (
        "transform",
        "SyncCatalog",
        "glue:CreateDatabase",
        "only when the database Terraform creates is missing",
    ),
    (
        "transform",
        "MaintainIcebergTables",
        "s3:DeleteObject",
        "maintenance deletes only files older than an hour or metadata beyond 20 versions; a run here is younger",
    ),
];

// ------------------------------------------------------ recorded calls

/// One request moto recorded: who signed it, the IAM action and the
/// resources IAM authorizes it on.
#[derive(Debug, Clone)]
struct Call {
    key: String,
    action: String,
    resources: Vec<String>,
}

fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// The calls in moto's recording (signed ones only), and the shim's
/// `s3:ListBucket` decisions on missing keys.
fn recorded_calls(moto: &Moto, names: &Names) -> Vec<Call> {
    let mut calls = Vec::new();
    let implicit = std::fs::read_to_string(&moto.implicit_checks).unwrap_or_default();
    for line in implicit.lines().filter(|l| !l.trim().is_empty()) {
        let check: Value = serde_json::from_str(line).expect("implicit check line");
        calls.push(Call {
            key: check["key"].as_str().unwrap_or_default().to_string(),
            action: check["action"].as_str().unwrap_or_default().to_string(),
            resources: vec![check["resource"].as_str().unwrap_or_default().to_string()],
        });
    }
    let text = std::fs::read_to_string(&moto.recording).unwrap_or_default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).expect("recording line");
        let headers = &entry["headers"];
        let Some(authorization) = header(headers, "Authorization") else {
            continue;
        };
        let Some(scope) = authorization
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split(',').next())
        else {
            continue;
        };
        let scope: Vec<&str> = scope.split('/').collect();
        let (key, service) = (scope[0].to_string(), scope[3]);
        let body = match (entry["body"].as_str(), entry["body_encoded"].as_bool()) {
            (Some(text), Some(true)) => aws_smithy_types::base64::decode(text).unwrap_or_default(),
            (Some(text), _) => text.as_bytes().to_vec(),
            _ => Vec::new(),
        };
        let url = url::Url::parse(entry["url"].as_str().unwrap_or_default()).expect("url");
        let method = entry["method"].as_str().unwrap_or_default();
        let (action, resources) = if service == "s3" {
            s3_call(method, &url, names)
        } else if let Some(target) = header(headers, "X-Amz-Target") {
            let operation = target.rsplit('.').next().unwrap_or_default();
            let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (
                format!("{service}:{operation}"),
                json_resources(service, operation, &params, names),
            )
        } else {
            let params: BTreeMap<String, String> =
                url::form_urlencoded::parse(&body).into_owned().collect();
            let operation = params.get("Action").cloned().unwrap_or_default();
            let resources = match params.get("TopicArn") {
                Some(arn) => vec![arn.clone()],
                None => vec![format!(
                    "? ({service}:{operation} names no resource this test knows)"
                )],
            };
            (format!("{service}:{operation}"), resources)
        };
        calls.push(Call {
            key,
            action,
            resources,
        });
    }
    calls
}

/// An S3 request's action and resource (path-style URLs).
fn s3_call(method: &str, url: &url::Url, names: &Names) -> (String, Vec<String>) {
    let path = url.path().trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((bucket, key)) if !key.is_empty() => (bucket, Some(key)),
        _ => (path.trim_end_matches('/'), None),
    };
    let query: BTreeSet<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    let action = match (method, key.is_some()) {
        ("GET" | "HEAD", true) => "GetObject",
        ("PUT" | "POST", true) => "PutObject",
        ("DELETE", true) if query.contains("uploadId") => "AbortMultipartUpload",
        ("DELETE", true) => "DeleteObject",
        ("GET", false) if query.contains("uploads") => "ListBucketMultipartUploads",
        ("GET", false) if query.contains("versions") => "ListBucketVersions",
        ("GET" | "HEAD", false) => "ListBucket",
        _ => "Unknown",
    };
    let resource = match key {
        Some(key) => {
            let key = percent_decode(key);
            names.s3(&format!("{bucket}/{key}"))
        }
        None => names.s3(bucket),
    };
    (format!("s3:{action}"), vec![resource])
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("k={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The resources IAM authorizes a JSON-protocol request on.
fn json_resources(service: &str, operation: &str, params: &Value, names: &Names) -> Vec<String> {
    let text = |key: &str| params[key].as_str().map(str::to_string);
    let unknown = || {
        vec![format!(
            "? ({service}:{operation} names no resource this test knows)"
        )]
    };
    match service {
        "secretsmanager" => text("SecretId").map(|s| vec![s]).unwrap_or_else(unknown),
        "kinesis" if operation == "ListStreams" => vec!["*".into()],
        "kinesis" => match (text("StreamARN"), text("StreamName")) {
            (Some(arn), _) => vec![arn],
            (None, Some(name)) => vec![format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}")],
            _ => unknown(),
        },
        "glue" => {
            // Glue authorizes a table or partition call on the catalog, the
            // database and the table; a database call on the first two.
            let database = text("DatabaseName")
                .or_else(|| params["DatabaseInput"]["Name"].as_str().map(str::to_string))
                .or_else(|| text("Name"));
            let table = text("TableName")
                .or_else(|| params["TableInput"]["Name"].as_str().map(str::to_string));
            let Some(database) = database else {
                return unknown();
            };
            let glue = Names {
                glue_database: database,
                ..names.clone()
            };
            let mut out = vec![glue.glue_catalog_arn(), glue.glue_database_arn()];
            if let Some(table) = table {
                out.push(glue.glue_table_arn(&table));
            }
            out
        }
        _ => unknown(),
    }
}

// ------------------------------------------------------------- the test

/// The test's directory (function and moto logs, moto's recording), kept
/// and named when the test fails.
struct Scratch(Option<tempfile::TempDir>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("logs of the failed run kept in {}", dir.keep().display());
        }
    }
}

/// An RDS-shaped secret for the database at `url`; its ARN.
async fn rds_secret(client: &aws_sdk_secretsmanager::Client, name: &str, url: &str) -> String {
    let parsed: tokio_postgres::Config = url.parse().expect("database url");
    let host = match &parsed.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let secret = json!({
        "engine": "postgres",
        "host": host,
        "port": parsed.get_ports().first().copied().unwrap_or(5432),
        "username": parsed.get_user().unwrap_or("postgres"),
        "password": parsed.get_password().map(|p| String::from_utf8_lossy(p).to_string()).unwrap_or_default(),
        "dbname": parsed.get_dbname().unwrap_or_default(),
    });
    create_secret(client, name, &secret.to_string()).await
}

async fn create_secret(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> String {
    client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("secret arn")
}

/// An S3 notification fixture moved to `bucket` and the given keys.
fn s3_event(fixture_name: &str, bucket: &str, keys: &[String]) -> Value {
    let template = fixture(fixture_name)["Records"][0].clone();
    let records: Vec<Value> = keys
        .iter()
        .map(|key| {
            let mut record = template.clone();
            record["awsRegion"] = json!(REGION);
            record["s3"]["bucket"]["name"] = json!(bucket);
            record["s3"]["bucket"]["arn"] = json!(format!("arn:aws:s3:::{bucket}"));
            record["s3"]["object"]["key"] = json!(key);
            record
        })
        .collect();
    json!({ "Records": records })
}

/// What the Kinesis event source mapping does with the stream-sink's role:
/// reads the stream's first shard from the start and builds the event (in
/// the shape of the committed fixture).
async fn kinesis_event(config: &aws_config::SdkConfig, names: &Names) -> Value {
    let kinesis = aws_sdk_kinesis::Client::new(config);
    let arn = names.stream_arn();
    kinesis.list_streams().send().await.expect("ListStreams");
    kinesis
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .expect("DescribeStream");
    kinesis
        .describe_stream_summary()
        .stream_arn(&arn)
        .send()
        .await
        .expect("DescribeStreamSummary");
    let shards = kinesis
        .list_shards()
        .stream_arn(&arn)
        .send()
        .await
        .expect("ListShards");
    let shard = shards.shards()[0].shard_id().to_string();
    let iterator = kinesis
        .get_shard_iterator()
        .stream_arn(&arn)
        .shard_id(&shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator
        .unwrap();
    let got = kinesis
        .get_records()
        .stream_arn(&arn)
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords");
    assert!(
        !got.records().is_empty(),
        "the ingest put records on the stream"
    );
    let template = fixture("stream-sink-kinesis.json")["Records"][0].clone();
    let records: Vec<Value> = got
        .records()
        .iter()
        .map(|r| {
            let mut record = template.clone();
            record["kinesis"]["partitionKey"] = json!(r.partition_key());
            record["kinesis"]["sequenceNumber"] = json!(r.sequence_number());
            record["kinesis"]["data"] = json!(aws_smithy_types::base64::encode(r.data().as_ref()));
            record["eventID"] = json!(format!("{shard}:{}", r.sequence_number()));
            record["eventSourceARN"] = json!(arn);
            record["awsRegion"] = json!(REGION);
            record["invokeIdentityArn"] =
                json!(format!("arn:aws:iam::{ACCOUNT}:role/tributary-stream-sink"));
            record
        })
        .collect();
    json!({ "Records": records })
}

/// Whether an error or log text is IAM refusing a call: S3's 403 (HEAD
/// has no body to name the code) or an AccessDenied code.
fn refused(text: &str) -> bool {
    ["AccessDenied", "Access Denied", "403 Forbidden"]
        .iter()
        .any(|needle| text.contains(needle))
}

fn message(error: &Value) -> String {
    error["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_function_works_with_only_its_own_grants_and_fails_without_one() {
    let Some(stack) = Stack::generated("least_privilege", 1).await else {
        return;
    };
    let scratch = Scratch(Some(
        tempfile::Builder::new()
            .prefix("least-privilege-")
            .tempdir()
            .unwrap(),
    ));
    let dir = scratch.0.as_ref().unwrap();
    let Some(moto) = Moto::start(dir.path()).await else {
        return;
    };
    let started = Instant::now();

    // --- The stack's resources, created before IAM is enforced.
    let setup = sdk(
        &moto.endpoint,
        &Keys {
            id: "setup".into(),
            secret: "setup".into(),
        },
    )
    .await;
    let (raw_bucket, processed_bucket) = ("tributary-raw-lp", "tributary-processed-lp");
    let landing_bucket = "tributary-landing-lp";
    moto.create_bucket(raw_bucket, true).await;
    moto.create_bucket(processed_bucket, false).await;
    moto.create_bucket(landing_bucket, false).await;
    let inbox = Inbox::start().await;
    let sns = aws_sdk_sns::Client::new(&setup);
    let topic = sns
        .create_topic()
        .name("tributary-alerts")
        .send()
        .await
        .expect("create topic")
        .topic_arn
        .unwrap();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("http")
        .endpoint(&inbox.url)
        .send()
        .await
        .expect("subscribe the inbox");
    let secrets = aws_sdk_secretsmanager::Client::new(&setup);
    let totesys_secret = rds_secret(&secrets, "tributary/totesys", &stack.source_db.url).await;
    let warehouse_secret =
        rds_secret(&secrets, "tributary/warehouse", &stack.warehouse_db.url).await;
    let coincap_secret = create_secret(
        &secrets,
        "tributary/coincap",
        r#"{"api_key":"least-privilege"}"#,
    )
    .await;
    // --- Configured sources: a PostgreSQL database read through its
    // secret, and a file drop whose file is in the landing bucket already
    // (dropped by a partner: put before IAM is enforced).
    let Some(shop_db) = tributary_testkit::TestDb::create("lp_shop").await else {
        return;
    };
    shop_db
        .connect()
        .await
        .batch_execute(
            "CREATE TABLE shops (id int PRIMARY KEY, name text NOT NULL, opened date); \
             INSERT INTO shops SELECT i, 'shop ' || i, DATE '2026-01-01' + i FROM generate_series(1, 5) i;",
        )
        .await
        .unwrap();
    let shop_secret = rds_secret(&secrets, "tributary/shop", &shop_db.url).await;
    let sources_dir = dir.path().join("sources");
    std::fs::create_dir_all(&sources_dir).unwrap();
    std::fs::write(
        sources_dir.join("shop.toml"),
        "[source]\nkind = \"postgres\"\nsecret_env = \"SHOP_SECRET_ARN\"\n\
         [tables.shops]\npartition = \"opened\"\n",
    )
    .unwrap();
    std::fs::write(
        sources_dir.join("partner.toml"),
        format!(
            "[source]\nkind = \"files\"\nlanding_url = \"s3://{landing_bucket}/partner\"\n\n\
             [tables.orders]\npattern = \"orders/*.csv\"\nformat = \"csv\"\nprimary_key = [\"order_id\"]\n\
             columns = [\"order_id text\", \"amount numeric(10,2)\"]\n"
        ),
    )
    .unwrap();
    let dropped = "partner/orders/2026-12-01.csv";
    let put = moto
        .unsigned(
            "s3",
            reqwest::Method::PUT,
            &format!("/{landing_bucket}/{dropped}"),
        )
        .body("order_id,amount\nA1,10.50\nA2,7.25\nA3,1.00\n")
        .send()
        .await
        .expect("drop a file");
    assert!(put.status().is_success(), "drop a file: {}", put.status());
    aws_sdk_kinesis::Client::new(&setup)
        .create_stream()
        .stream_name("tributary-markets")
        .shard_count(1)
        .send()
        .await
        .expect("create stream");
    let glue_database = "tributary_lp";
    aws_sdk_glue::Client::new(&setup)
        .create_database()
        .database_input(
            aws_sdk_glue::types::DatabaseInput::builder()
                .name(glue_database)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create glue database");
    let names = Names {
        partition: "aws".into(),
        region: REGION.into(),
        account_id: ACCOUNT.into(),
        raw_bucket: raw_bucket.into(),
        processed_bucket: processed_bucket.into(),
        landing_bucket: landing_bucket.into(),
        alerts_topic: "tributary-alerts".into(),
        kms_key_id: "0000aaaa-1111-2222-3333-444455556666".into(),
        totesys_secret_arn: totesys_secret,
        warehouse_secret_arn: warehouse_secret,
        coincap_secret_arn: Some(coincap_secret),
        stream: "tributary-markets".into(),
        glue_database: glue_database.into(),
        transform_dlq: "tributary-transform-dlq".into(),
        stream_sink_failures: "tributary-stream-sink-failures".into(),
    };
    assert_eq!(
        names.topic_arn(),
        topic,
        "the topic ARN as Terraform would bind it"
    );

    // --- Policies and environments as infra/*.tf renders them.
    let blocks = tf_iam::load(&workspace().join("infra"));
    let rendering = Rendering::new(
        &blocks,
        names.clone(),
        // The local stack's PostgreSQL is on loopback, not RDS. The shop
        // source's secret as Terraform's source_secrets names it.
        &[
            ("pg_ca_in_zip", hcl::Value::Bool(false)),
            (
                "source_secrets",
                hcl::Value::Object(
                    [(
                        "SHOP_SECRET_ARN".to_string(),
                        hcl::Value::from(shop_secret.clone()),
                    )]
                    .into_iter()
                    .collect(),
                ),
            ),
            (
                "landing_prefixes",
                hcl::Value::Array(vec![hcl::Value::from("partner/")]),
            ),
        ],
        // regexall() is not declared here; the default schedule,
        // rate(1 minute), gives 60s.
        &[("ingest_period", hcl::Value::from("60s"))],
    );
    let mut policies = BTreeMap::new();
    // Access key → (function, the statement its user goes without).
    let mut owners: HashMap<String, (&str, Option<&str>)> = HashMap::new();
    let mut keys = BTreeMap::new();
    let mut denied_keys = BTreeMap::new();
    for (function, role, _, removed) in FUNCTIONS {
        let policy = rendering
            .role_policy(role)
            .unwrap_or_else(|e| panic!("aws_iam_role.{role}: {e}"));
        let user = moto
            .user(&format!("tributary-{function}"), &for_moto(&policy))
            .await;
        let reduced = tf_iam::without(&policy, removed);
        let denied = moto
            .user(
                &format!("tributary-{function}-without-{removed}"),
                &for_moto(&reduced),
            )
            .await;
        owners.insert(user.id.clone(), (function, None));
        owners.insert(denied.id.clone(), (function, Some(removed)));
        keys.insert(function, user);
        denied_keys.insert(function, denied);
        policies.insert(function, policy);
    }
    // A key for the check that enforcement is on and signatures are
    // checked (with the shim's corrections): not one of the functions'.
    let probe = moto
        .user(
            "enforcement-probe",
            &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": ["kinesis:ListStreams"], "Resource": "*"}]}),
        )
        .await;
    moto.enforce_iam().await;
    let forged = Keys {
        id: probe.id.clone(),
        secret: format!("{}x", probe.secret),
    };
    for (keys, allowed) in [(&probe, true), (&forged, false)] {
        let listed = aws_sdk_kinesis::Client::new(&sdk(&moto.endpoint, keys).await)
            .list_streams()
            .send()
            .await;
        assert_eq!(listed.is_ok(), allowed, "{listed:?}");
    }
    let unauthorized = aws_sdk_kinesis::Client::new(&sdk(&moto.endpoint, &probe).await)
        .describe_stream_summary()
        .stream_name("tributary-markets")
        .send()
        .await
        .expect_err("only ListStreams is granted");
    assert!(
        format!("{unauthorized:?}").contains("AccessDeniedException"),
        "{unauthorized:?}"
    );

    let replay = tributary_markets::replay::ReplayServer::start({
        let mut state = tributary_markets::replay::ReplayState::default();
        state.symbols.push((
            "BTC-BRL".into(),
            "CRYPTO".into(),
            "BTC".into(),
            "BRL".into(),
        ));
        state
    })
    .await
    .unwrap();
    let environment = |function: &str, resource: &str, keys: &Keys, denied: bool| {
        let mut env = rendering
            .environment(resource)
            .unwrap_or_else(|e| panic!("aws_lambda_function.{resource}: {e}"));
        // The source files as packaged (/var/task/sources in Lambda); a user
        // without a statement runs without them, so its one failure is the
        // removed statement's.
        if env.contains_key("TRIBUTARY_SOURCES_DIR") {
            assert_eq!(env["TRIBUTARY_SOURCES_DIR"], "/var/task/sources");
            if denied {
                env.remove("TRIBUTARY_SOURCES_DIR");
            } else {
                env.insert(
                    "TRIBUTARY_SOURCES_DIR".into(),
                    sources_dir.display().to_string(),
                );
            }
        }
        let name = format!("tributary-{function}");
        for (k, v) in [
            ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", keys.id.clone()),
            ("AWS_SECRET_ACCESS_KEY", keys.secret.clone()),
            ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ] {
            env.insert(k.to_string(), v);
        }
        if function == "ingest" {
            env.insert("TRIBUTARY_MERCADO_URL".into(), replay.mercado_base());
            env.insert("TRIBUTARY_COINCAP_URL".into(), replay.coincap_base());
        }
        if function == "load" {
            env.insert("TRIBUTARY_FX_URL".into(), replay.fx_base());
        }
        env
    };
    let start = |function: &'static str, denied: bool| {
        let (_, resource, binary, removed) =
            FUNCTIONS.into_iter().find(|f| f.0 == function).unwrap();
        let user = if denied {
            &denied_keys[function]
        } else {
            &keys[function]
        };
        let label = if denied {
            format!("{function}-without-{removed}")
        } else {
            function.to_string()
        };
        let env = environment(function, resource, user, denied);
        let dir = dir.path().to_path_buf();
        async move {
            Function::start(binary, &label, &format!("tributary-{function}"), &env, &dir).await
        }
    };
    let access_denied = |error: &Value, label: &str| {
        let text = message(error);
        assert!(
            refused(&text),
            "{label} must fail for want of the removed grant: {error}"
        );
    };
    let alerts_of = |alerts: &[(String, String)], stage: &str, what: &str| {
        alerts
            .iter()
            .filter(|(subject, message)| {
                subject.starts_with(&format!("Tributary {stage}"))
                    && (message.contains(what) || (what == "AccessDenied" && refused(message)))
            })
            .count()
    };
    let schedule = fixture("ingest-schedule.json");
    // A deadline 6 s away leaves the ingest a budget for one market poll.
    let ingest_budget = Duration::from_secs(6);
    let budget = Duration::from_secs(60);

    // --- ingest: without WriteRawLake it cannot write the raw lake.
    let mut ingest_denied = start("ingest", true).await;
    let error = ingest_denied.fail(&schedule, ingest_budget).await;
    access_denied(&error, "ingest without WriteRawLake");
    drop(ingest_denied);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for i in 0..3 {
        replay.publish_trade("BTC-BRL", now - 30 + i, "488900.5", "0.01", "buy");
    }
    let mut ingest = start("ingest", false).await;
    // --- ingest, a file dropped in the landing bucket: its S3 event runs
    // the file source (listing and reading the landing bucket, writing the
    // raw lake); the same event again finds nothing new.
    let landing_event = s3_event(
        "ingest-landing-s3.json",
        landing_bucket,
        &[dropped.to_string(), "elsewhere/readme.txt".to_string()],
    );
    let landed = ingest.succeed(&landing_event, budget).await;
    ingest.assert_nothing_refused();
    let partner = &landed["sources"]["partner"];
    assert_eq!(
        (&partner["committed"], &partner["rows"]),
        (&json!(true), &json!(3)),
        "{landed}"
    );
    assert_eq!(
        landed["ignored"],
        json!([format!("{landing_bucket}/elsewhere/readme.txt")]),
        "{landed}"
    );
    let again = ingest.succeed(&landing_event, budget).await;
    assert_eq!(
        again["sources"]["partner"]["committed"],
        json!(false),
        "{again}"
    );
    let ingested = ingest.succeed(&schedule, ingest_budget).await;
    ingest.assert_nothing_refused();
    assert!(ingested["rows"].as_u64().unwrap_or(0) > 0, "{ingested}");
    // The PostgreSQL source through its secret, after totesys.
    let shop = &ingested["sources"]["shop"];
    assert_eq!(
        (&shop["committed"], &shop["rows"]),
        (&json!(true), &json!(5)),
        "{ingested}"
    );
    assert_eq!(ingested["market_polls"], json!(1), "{ingested}");
    assert_eq!(ingested["trades"], json!(3), "{ingested}");
    let alerts = inbox.drain();
    assert!(
        alerts_of(&alerts, "ingest", "AccessDenied") >= 1,
        "{alerts:#?}"
    );
    assert!(
        alerts_of(&alerts, "ingest", "recovered") >= 1,
        "{alerts:#?}"
    );

    // --- stream-sink: the mapping reads the stream with the function's
    // role; without WriteRawLake the batch comes back as failed.
    let mapping = sdk(&moto.endpoint, &keys["stream-sink"]).await;
    let event = kinesis_event(&mapping, &names).await;
    let mut sink_denied = start("stream-sink", true).await;
    let refused = sink_denied.succeed(&event, budget).await;
    assert_eq!(
        refused["batchItemFailures"].as_array().map(Vec::len),
        Some(1),
        "{refused}"
    );
    drop(sink_denied);
    let alerts = inbox.drain();
    assert_eq!(
        alerts_of(&alerts, "stream-sink", "AccessDenied"),
        1,
        "{alerts:#?}"
    );
    let mut sink = start("stream-sink", false).await;
    let sunk = sink.succeed(&event, budget).await;
    sink.assert_nothing_refused();
    assert_eq!(sunk, json!({"batchItemFailures": []}));
    // Redelivered: already written, nothing new (reads what is there).
    assert_eq!(sink.succeed(&event, budget).await, sunk);

    // --- transform: without ReadRawLake it cannot read the manifests.
    let raw_event = s3_event(
        "transform-s3.json",
        raw_bucket,
        &[Log::Totesys.manifest(1), Log::MarketsTrades.manifest(1)],
    );
    let mut transform_denied = start("transform", true).await;
    let error = transform_denied.fail(&raw_event, budget).await;
    access_denied(&error, "transform without ReadRawLake");
    drop(transform_denied);
    let mut transform = start("transform", false).await;
    let transformed = transform.succeed(&raw_event, budget).await;
    transform.assert_nothing_refused();
    assert!(transformed["totesys"]["manifest"].is_u64(), "{transformed}");
    assert_eq!(transformed["markets"]["trades"], json!(3), "{transformed}");
    assert!(
        transformed["catalog_tables"].as_u64().unwrap_or(0) > 0,
        "{transformed}"
    );
    // The configured sources' new manifests publish their Iceberg tables
    // (shops by the month it opened) and point Glue at them.
    let sources_event = s3_event(
        "transform-s3.json",
        raw_bucket,
        &[
            format!("sources/shop/{}", Log::Source.manifest(1)),
            format!("sources/partner/{}", Log::Source.manifest(1)),
        ],
    );
    let published = transform.succeed(&sources_event, budget).await;
    transform.assert_nothing_refused();
    assert_eq!(
        (
            &published["sources"]["shop"]["tables"],
            &published["sources"]["partner"]["tables"]
        ),
        (&json!(["src_shop_shops"]), &json!(["src_partner_orders"])),
        "{published}"
    );
    // Iceberg maintenance under the same role: reads every table's metadata
    // and files (one run made one file per partition: nothing to merge).
    let maintained = transform
        .succeed(&json!({"maintain": {"target_mb": 1}}), budget)
        .await;
    transform.assert_nothing_refused();
    assert!(
        maintained["maintain"]["dim_staff"]["files_before"].as_u64() >= Some(1),
        "{maintained}"
    );
    assert_eq!(
        maintained["maintain"]["src_shop_shops"]["files_before"],
        json!(1),
        "the five shops opened in January 2026: one month, one file: {maintained}"
    );
    let alerts = inbox.drain();
    assert!(
        alerts_of(&alerts, "transform", "AccessDenied") >= 1,
        "{alerts:#?}"
    );
    assert!(
        alerts_of(&alerts, "transform", "recovered") >= 1,
        "{alerts:#?}"
    );

    // --- load: without ReadProcessedLake it cannot read the manifests.
    let processed_event = s3_event(
        "load-s3.json",
        processed_bucket,
        &[
            Log::Transform.manifest(1),
            Log::MarketsTransform.manifest(1),
        ],
    );
    let mut load_denied = start("load", true).await;
    let error = load_denied.fail(&processed_event, budget).await;
    access_denied(&error, "load without ReadProcessedLake");
    drop(load_denied);
    let mut load = start("load", false).await;
    let loaded = load.succeed(&processed_event, budget).await;
    load.assert_nothing_refused();
    assert!(loaded["rows"].as_u64().unwrap_or(0) > 0, "{loaded}");
    assert_eq!(loaded["trades"], json!(3), "{loaded}");
    // The configured sources' manifests, read from the raw bucket's
    // sources/ prefix, into src_<name>.
    assert_eq!(loaded["sources"]["shop"]["rows"], json!(5), "{loaded}");
    assert_eq!(loaded["sources"]["partner"]["rows"], json!(3), "{loaded}");
    for (table, rows) in [("src_shop.shops", 5), ("src_partner.orders", 3)] {
        let count: i64 = stack
            .warehouse
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(count, rows, "{table}");
    }
    let alerts = inbox.drain();
    assert!(
        alerts_of(&alerts, "load", "AccessDenied") >= 1,
        "{alerts:#?}"
    );
    assert!(alerts_of(&alerts, "load", "recovered") >= 1, "{alerts:#?}");

    // --- load, the daily exchange-rate run: the replies and their manifest
    // into the raw bucket's fx/ prefix, the rates into the warehouse.
    let fx = load.succeed(&fixture("load-fx.json"), budget).await;
    load.assert_nothing_refused();
    assert!(
        fx["fx"]["raw_replies_written"].as_u64().unwrap_or(0) >= 1
            && fx["fx"]["inserted"].as_u64().unwrap_or(0) > 0,
        "{fx}"
    );

    // --- A closed day (the committed fixture's trades, 2025-11-22) is
    // compacted at once; a late trade for it makes a new generation, and the
    // transform points the markets tables in Glue at their new Iceberg
    // versions (UpdateTable).
    let closed_day = fixture("stream-sink-kinesis.json");
    assert_eq!(sink.succeed(&closed_day, budget).await, sunk);
    let all = json!({});
    let compacted = transform.succeed(&all, budget).await;
    assert_eq!(
        compacted["markets"]["compacted_days"],
        json!(1),
        "{compacted}"
    );
    let late = json!({"symbol": "ETH-BRL", "tid": 78, "traded_at_ms": 1763787700000_i64,
        "price": "18200", "amount": "0.1", "side": "sell"});
    let mut late_event = closed_day.clone();
    let record = &mut late_event["Records"][0];
    let sequence = "49590338271490256608559692540925702759324208523137515700";
    record["kinesis"]["sequenceNumber"] = json!(sequence);
    record["kinesis"]["partitionKey"] = json!("ETH-BRL");
    record["kinesis"]["data"] = json!(aws_smithy_types::base64::encode(
        format!("{late}\n").as_bytes()
    ));
    record["eventID"] = json!(format!("shardId-000000000000:{sequence}"));
    late_event["Records"] = json!([record.clone()]);
    assert_eq!(sink.succeed(&late_event, budget).await, sunk);
    let moved = transform.succeed(&all, budget).await;
    assert_eq!(
        (
            &moved["markets"]["trades"],
            &moved["markets"]["compacted_days"]
        ),
        (&json!(1), &json!(1)),
        "{moved}"
    );
    load.succeed(&all, budget).await;

    let trades: i64 = stack
        .warehouse
        .query_one("SELECT count(*) FROM fact_trade", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        trades,
        3 + 4,
        "source → ingest → Kinesis → sink → transform → load, and the closed day"
    );
    let orders: i64 = stack
        .warehouse
        .query_one("SELECT count(*) FROM fact_sales_order", &[])
        .await
        .unwrap()
        .get(0);
    assert!(orders > 0);

    // --- Nothing was refused to the full policies, alert state included.
    for function in [&ingest, &sink, &transform, &load] {
        function.assert_nothing_refused();
    }

    // --- Every recorded call is within its caller's rendered policy (moto
    // checked only the action outside S3/SQS); every call refused to a
    // reduced user is one the removed statement grants; every grant is used
    // or explained.
    let calls = recorded_calls(&moto, &names);
    let mut outside = Vec::new();
    let mut refused_calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut used: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for call in &calls {
        // The mapping's reads, signed with the stream-sink's key, count as its.
        let Some((function, removed)) = owners.get(&call.key) else {
            continue;
        };
        let full = &policies[function];
        let reduced = removed.map(|sid| tf_iam::without(full, sid));
        let mut performed = true;
        for resource in &call.resources {
            if let (Some(sid), Some(reduced)) = (removed, &reduced)
                && !tf_iam::allows(reduced, &call.action, resource)
            {
                performed = false;
                if tf_iam::granting_sids(full, &call.action, resource).contains(&sid.to_string()) {
                    refused_calls
                        .entry(format!("{function} without {sid}"))
                        .or_default()
                        .insert(format!("{} on {resource}", call.action));
                    continue;
                }
            }
            if !tf_iam::allows(full, &call.action, resource) {
                outside.push(format!("{function}: {} on {resource}", call.action));
            }
        }
        if performed {
            used.entry(function).or_default().push(call);
        }
    }
    assert!(
        outside.is_empty(),
        "calls outside the rendered policies: {outside:#?}"
    );
    for (function, _, _, removed) in FUNCTIONS {
        let refused = refused_calls.get(&format!("{function} without {removed}"));
        assert!(
            refused.is_some_and(|r| !r.is_empty()),
            "{function} without {removed}: nothing was refused"
        );
    }
    eprintln!("refused to the users without one statement: {refused_calls:#?}");
    let mut unexplained = Vec::new();
    let mut explained_but_used = Vec::new();
    for (function, policy) in &policies {
        let calls = used.get(function).cloned().unwrap_or_default();
        let mut by_grant: BTreeMap<(String, String), bool> = BTreeMap::new();
        for (sid, action, pattern) in tf_iam::grants(policy) {
            let hit = calls.iter().any(|c| {
                tf_iam::wildcard(&action.to_ascii_lowercase(), &c.action.to_ascii_lowercase())
                    && c.resources.iter().any(|r| tf_iam::wildcard(&pattern, r))
            });
            *by_grant.entry((sid, action)).or_default() |= hit;
        }
        for ((sid, action), hit) in by_grant {
            let listed = NOT_EXERCISED
                .iter()
                .any(|(f, s, a, _)| (*f == "*" || f == function) && *s == sid && *a == action);
            match (hit, listed) {
                (false, false) => unexplained.push(format!("{function}: {sid} {action}")),
                (true, true) => explained_but_used.push(format!("{function}: {sid} {action}")),
                _ => {}
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "grants nothing in the run used (excessive, or list them in NOT_EXERCISED with the reason): {unexplained:#?}"
    );
    assert!(
        explained_but_used.is_empty(),
        "grants listed in NOT_EXERCISED that the run used (remove them from the list): {explained_but_used:#?}"
    );
    eprintln!(
        "least privilege: {} calls checked against the rendered policies in {:.1} s",
        calls.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The rendering itself, without a stack: every role's policy renders from
/// the HCL, the base statements are scoped to the function (`each.key`),
/// and moto's copy differs only where moto cannot check resources.
#[test]
fn role_policies_render_from_the_hcl_with_each_function_in_its_own_scope() {
    let blocks = tf_iam::load(&workspace().join("infra"));
    let names = Names::symbolic();
    let rendering = Rendering::new(&blocks, names.clone(), &[], &[]);
    for (function, role, _, removed) in FUNCTIONS {
        let policy = rendering
            .role_policy(role)
            .unwrap_or_else(|e| panic!("aws_iam_role.{role}: {e}"));
        let own_alerts = names.s3(&format!("tributary-processed/_alerts/{function}.json"));
        assert!(
            tf_iam::allows(&policy, "s3:PutObject", &own_alerts),
            "{function}: {policy:#}"
        );
        assert!(
            !tf_iam::allows(
                &policy,
                "s3:PutObject",
                &names.s3("tributary-processed/_alerts/someone-else.json")
            ) || function == "transform",
            "{function} may write another function's alert state: {policy:#}"
        );
        assert!(
            tf_iam::allows(
                &policy,
                "logs:PutLogEvents",
                &format!(
                    "{}:log-stream:x",
                    names.log_group_arn(&format!("tributary-{function}"))
                )
            ),
            "{function}: {policy:#}"
        );
        assert!(
            policy["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["Sid"] == removed),
            "{function} has a statement {removed}"
        );
        let moto = for_moto(&policy);
        for (s, m) in policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s.get("Condition").is_none())
            .zip(moto["Statement"].as_array().unwrap())
        {
            assert_eq!(s["Action"], m["Action"]);
            let s3_or_sqs = s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| RESOURCE_CHECKED_BY_MOTO.contains(&service(a.as_str().unwrap())));
            assert_eq!(s3_or_sqs, s["Resource"] == m["Resource"], "{s} → {m}");
        }
    }
}
