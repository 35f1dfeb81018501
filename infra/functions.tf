# The four functions, one per binary of crates/lambdas (`cargo lambda build
# --release --arm64 --output-format zip` writes target/lambda/<bin>/bootstrap.zip).
# Each has its own role (iam.tf), its own KMS-encrypted log group with JSON logs,
# X-Ray tracing, and an Errors alarm plus an ERROR-log alarm (alerts.tf). Only
# the transform has a dead-letter queue: see "Failed invocations" below.
#
# filebase64sha256() fails the plan when a zip is missing: run `make package`
# (or the cargo lambda command above) first.

locals {
  # The ingest function polls the markets until shortly before its next run,
  # so it is told the period of its schedule (cron schedules: one minute).
  ingest_rate = regexall("^rate\\((\\d+) (minute|minutes|hour|hours)\\)$", var.ingest_schedule)
  ingest_period = (length(local.ingest_rate) == 0 ? "60s" :
  "${local.ingest_rate[0][0] * (startswith(local.ingest_rate[0][1], "hour") ? 3600 : 60)}s")

  # Every function gets both lake roots (settings default them to a local
  # directory, which is read-only in Lambda), the alert topic and RUST_LOG.
  # AWS_CHECKSUM_ALGORITHM: the Object Lock on the raw bucket requires a
  # checksum on every put. The lake's S3 client already sets SHA256 in code;
  # object_store also reads this variable, a second guard for that requirement.
  common_environment = {
    RUST_LOG                  = var.log_level
    TRIBUTARY_RAW_URL         = "s3://${aws_s3_bucket.raw.bucket}"
    TRIBUTARY_PROCESSED_URL   = "s3://${aws_s3_bucket.processed.bucket}"
    TRIBUTARY_ALERT_TOPIC_ARN = aws_sns_topic.alerts.arn
    AWS_CHECKSUM_ALGORITHM    = "SHA256"
  }

  # The RDS CA bundle packaged beside the binary (see var.pg_ca_in_zip):
  # scripts/package.sh puts it into each zip as pg-ca.pem, which Lambda
  # unpacks into /var/task, and leaves a copy at <lambda_zip_dir>/pg-ca.pem
  # that the preconditions below look for.
  pg_ca_packaged = fileexists("${var.lambda_zip_dir}/pg-ca.pem")
  # The secret each database's credentials come from: the stack's own, or
  # one that exists already (e.g. the secret RDS manages for a master user).
  totesys_secret_arn   = var.totesys_existing_secret_arn != "" ? var.totesys_existing_secret_arn : aws_secretsmanager_secret.totesys.arn
  warehouse_secret_arn = var.warehouse_existing_secret_arn != "" ? var.warehouse_existing_secret_arn : aws_secretsmanager_secret.warehouse.arn
  # Host, port and database for secrets that lack them (an RDS-managed master
  # secret holds only username and password). A secret's own fields win.
  totesys_endpoint_environment = { for k, v in {
    TOTESYS_DB_HOST = var.totesys_db_host
    TOTESYS_DB_PORT = var.totesys_db_port
    TOTESYS_DB_NAME = var.totesys_db_name
  } : k => v if v != "" }
  warehouse_endpoint_environment = { for k, v in {
    WAREHOUSE_DB_HOST = var.warehouse_db_host
    WAREHOUSE_DB_PORT = var.warehouse_db_port
    WAREHOUSE_DB_NAME = var.warehouse_db_name
  } : k => v if v != "" }
  database_tls_environment = var.pg_ca_in_zip ? { TRIBUTARY_PG_CA_FILE = "/var/task/pg-ca.pem" } : {}

  # The source files scripts/package.sh puts into the ingest and load zips
  # (none packaged: the folder is absent and no configured source runs).
  sources_dir = "/var/task/sources"
}

resource "aws_cloudwatch_log_group" "function" {
  for_each = local.function_names

  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# --------------------------------------------------------------------- ingest
# Every minute: incremental extract of totesys and the configured sources into
# raw, market polls into Kinesis; on a landing bucket event, the file sources. One at a time (reserved concurrency 1): overlapping runs would only
# race for the same manifest number.
resource "aws_lambda_function" "ingest" {
  function_name = local.function_names.ingest
  description   = "Tributary ingest: totesys incremental extract to the raw lake; market polls to Kinesis"
  role          = aws_iam_role.ingest.arn

  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = "${var.lambda_zip_dir}/ingest/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.lambda_zip_dir}/ingest/bootstrap.zip")

  memory_size                    = var.ingest_memory_mb
  timeout                        = var.ingest_timeout_seconds
  reserved_concurrent_executions = 1
  kms_key_arn                    = aws_kms_key.main.arn

  environment {
    variables = merge(local.common_environment, local.database_tls_environment, {
      TOTESYS_SECRET_ARN        = local.totesys_secret_arn
      TRIBUTARY_STREAM_NAME     = aws_kinesis_stream.markets.name
      TRIBUTARY_SCHEDULE_PERIOD = local.ingest_period
      TRIBUTARY_SOURCES_DIR     = local.sources_dir
      }, local.totesys_endpoint_environment, var.coincap_secret_enabled ? {
      COINCAP_SECRET_ARN = aws_secretsmanager_secret.coincap[0].arn
    } : {}, var.source_secrets)
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function["ingest"].name
  }

  tracing_config {
    mode = "Active"
  }

  lifecycle {
    precondition {
      condition     = !var.pg_ca_in_zip || local.pg_ca_packaged
      error_message = "pg_ca_in_zip is true (TLS to RDS), but the zips in lambda_zip_dir carry no RDS CA bundle (no pg-ca.pem beside them): run PG_CA_BUNDLE=/path/to/global-bundle.pem make package (or make deploy), or set pg_ca_in_zip = false if neither database is on RDS."
    }
  }

  # No dead-letter queue: a failed scheduled run is retried by the next one.
  #checkov:skip=CKV_AWS_116:scheduled runs are retried by the next schedule tick; a dead-lettered tick would be nothing to replay (functions.tf, "Failed invocations")

  depends_on = [aws_iam_role_policy.ingest]
}

# ------------------------------------------------------------------ transform
# On every raw manifest: consumes all untransformed raw manifests in order, so
# one run at a time is enough and a queued event after a big run is a no-op.
resource "aws_lambda_function" "transform" {
  function_name = local.function_names.transform
  description   = "Tributary transform: raw manifests to the star schema in the processed lake; Glue catalog sync"
  role          = aws_iam_role.transform.arn

  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = "${var.lambda_zip_dir}/transform/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.lambda_zip_dir}/transform/bootstrap.zip")

  memory_size                    = var.transform_memory_mb
  timeout                        = var.transform_timeout_seconds
  reserved_concurrent_executions = 1
  kms_key_arn                    = aws_kms_key.main.arn

  environment {
    variables = merge(local.common_environment, {
      TRIBUTARY_GLUE_DATABASE = aws_glue_catalog_database.lake.name
    })
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function["transform"].name
  }

  tracing_config {
    mode = "Active"
  }

  # The S3 event that failed three times waits here for a replay.
  dead_letter_config {
    target_arn = aws_sqs_queue.transform_dlq.arn
  }

  depends_on = [aws_iam_role_policy.transform]
}

# ----------------------------------------------------------------------- load
# Every minute and on every processed manifest: applies each processed manifest
# not yet in the warehouse's load log, one transaction each. One at a time.
# Once a day ({"fx": {}}, schedule.tf) it runs the exchange rates instead: the
# API's replies into the raw bucket's fx/ prefix, then fact_exchange_rate.
# After totesys and markets, each configured source's manifests (raw bucket,
# sources/<name>/) into the warehouse schema src_<name>.
resource "aws_lambda_function" "load" {
  function_name = local.function_names.load
  description   = "Tributary load: processed manifests into the Postgres warehouse"
  role          = aws_iam_role.load.arn

  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = "${var.lambda_zip_dir}/load/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.lambda_zip_dir}/load/bootstrap.zip")

  memory_size                    = var.load_memory_mb
  timeout                        = var.load_timeout_seconds
  reserved_concurrent_executions = 1
  kms_key_arn                    = aws_kms_key.main.arn

  environment {
    variables = merge(local.common_environment, local.database_tls_environment, {
      WAREHOUSE_SECRET_ARN         = local.warehouse_secret_arn
      TRIBUTARY_REPORTING_CURRENCY = var.reporting_currency
      TRIBUTARY_SOURCES_DIR        = local.sources_dir
    }, local.warehouse_endpoint_environment, var.fx_url == "" ? {} : { TRIBUTARY_FX_URL = var.fx_url })
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function["load"].name
  }

  tracing_config {
    mode = "Active"
  }

  lifecycle {
    precondition {
      condition     = !var.pg_ca_in_zip || local.pg_ca_packaged
      error_message = "pg_ca_in_zip is true (TLS to RDS), but the zips in lambda_zip_dir carry no RDS CA bundle (no pg-ca.pem beside them): run PG_CA_BUNDLE=/path/to/global-bundle.pem make package (or make deploy), or set pg_ca_in_zip = false if neither database is on RDS."
    }
  }

  # No dead-letter queue: every load loads everything pending, whatever event
  # started it, and the schedule starts one every minute.
  #checkov:skip=CKV_AWS_116:every load invocation loads all pending manifests and the schedule retries; a dead-lettered event would be nothing to replay (functions.tf, "Failed invocations")

  depends_on = [aws_iam_role_policy.load]
}

# ---------------------------------------------------------------- stream-sink
# Kinesis event source (stream.tf): one invocation per shard at a time, so its
# reserved concurrency is the shard count.
resource "aws_lambda_function" "stream_sink" {
  function_name = local.function_names["stream-sink"]
  description   = "Tributary stream-sink: Kinesis market data to immutable JSON-lines objects in the raw lake"
  role          = aws_iam_role.stream_sink.arn

  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = "${var.lambda_zip_dir}/stream-sink/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.lambda_zip_dir}/stream-sink/bootstrap.zip")

  memory_size                    = var.stream_sink_memory_mb
  timeout                        = var.stream_sink_timeout_seconds
  reserved_concurrent_executions = var.kinesis_shard_count
  kms_key_arn                    = aws_kms_key.main.arn

  environment {
    variables = local.common_environment
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function["stream-sink"].name
  }

  tracing_config {
    mode = "Active"
  }

  # No dead-letter queue: the Kinesis mapping invokes synchronously, and a
  # function DLQ only receives asynchronous events. What the mapping gives up
  # on goes to its on-failure destination (stream.tf).
  #checkov:skip=CKV_AWS_116:invoked synchronously by the Kinesis event source mapping, whose on_failure destination is the stream-sink-failures queue (stream.tf)

  depends_on = [aws_iam_role_policy.stream_sink]
}

# ------------------------------------------------------- failed invocations
# A dead-letter queue only helps where replaying the failed event does
# something nothing else will:
#
#   ingest      EventBridge schedule (and manual backfills). Not retried, no
#               DLQ: the next tick is the retry (runs are idempotent), and
#               the Errors alarm has told someone. A dead-lettered tick would
#               be a stale "run now" nobody should replay. A failed manual
#               backfill is reported the same way; invoke it again.
#   load        schedule + S3 events of processed manifests. Not retried, no
#               DLQ: whatever started it, a load applies every pending
#               manifest, so the next tick or manifest does the same work.
#   transform   S3 events of raw manifests, no schedule behind them: when the
#               sources go quiet, a failed event may be the last one for a
#               while. Retried twice, then kept in the transform DLQ for a
#               replay (README.md, "Replay").
#   stream-sink Kinesis event source mapping, synchronous: retries and the
#               on-failure queue are configured on the mapping (stream.tf).
#
# maximum_event_age_in_seconds bounds how long an event may wait in Lambda's
# asynchronous queue, e.g. while reserved concurrency 1 keeps it from running
# next to another invocation (throttled events are retried with backoff up to
# that age). A scheduled event older than 15 minutes has been overtaken by 15
# newer ones; without a DLQ it is then dropped. Manual backfills wait in the
# same queue (README.md, "Backfill").
resource "aws_lambda_function_event_invoke_config" "ingest" {
  function_name                = aws_lambda_function.ingest.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 900
}

resource "aws_lambda_function_event_invoke_config" "load" {
  function_name                = aws_lambda_function.load.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 900
}

resource "aws_lambda_function_event_invoke_config" "transform" {
  function_name                = aws_lambda_function.transform.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 3600
}
