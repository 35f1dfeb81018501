# What starts each function:
#   ingest      EventBridge schedule (var.ingest_schedule), and S3 events of
#               the landing bucket under var.landing_prefixes (a file drop
#               runs its file source at once; the schedule takes it too)
#   transform   S3 event: a raw manifest (_manifests/**.json) was created;
#               hourly (var.maintain_schedule) with {"maintain": {}}: Iceberg
#               compaction and snapshot expiry
#   load        EventBridge schedule (var.load_schedule) and S3 event: a
#               processed manifest was created (so a load follows a transform
#               at once instead of at the next tick); once a day
#               (var.fx_schedule) with {"fx": {}}: the exchange rates
#   stream-sink Kinesis event source mapping (stream.tf)
# Every invoke permission names its source ARN and account.
#
# The two schedules are created DISABLED and run only once enable_schedules is
# true, the last step of a first deploy (README.md): before the secrets hold
# values every run would fail and mail an alarm. The S3 manifest events and
# the Kinesis mapping are not schedules and are always on; with the schedules
# off they only fire for work started by hand (a backfill).

# ---------------------------------------------------------------- schedules

resource "aws_cloudwatch_event_rule" "ingest" {
  name                = "${var.name}-ingest"
  description         = "Runs the Tributary ingest"
  schedule_expression = var.ingest_schedule
  state               = var.enable_schedules ? "ENABLED" : "DISABLED"
}

resource "aws_cloudwatch_event_target" "ingest" {
  rule = aws_cloudwatch_event_rule.ingest.name
  arn  = aws_lambda_function.ingest.arn
}

resource "aws_lambda_permission" "ingest_from_schedule" {
  statement_id   = "AllowEventBridgeSchedule"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.ingest.function_name
  principal      = "events.amazonaws.com"
  source_arn     = aws_cloudwatch_event_rule.ingest.arn
  source_account = local.account_id
}

resource "aws_cloudwatch_event_rule" "load" {
  name                = "${var.name}-load"
  description         = "Runs the Tributary load"
  schedule_expression = var.load_schedule
  state               = var.enable_schedules ? "ENABLED" : "DISABLED"
}

resource "aws_cloudwatch_event_target" "load" {
  rule = aws_cloudwatch_event_rule.load.name
  arn  = aws_lambda_function.load.arn
}

resource "aws_lambda_permission" "load_from_schedule" {
  statement_id   = "AllowEventBridgeSchedule"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.load.function_name
  principal      = "events.amazonaws.com"
  source_arn     = aws_cloudwatch_event_rule.load.arn
  source_account = local.account_id
}

# The daily exchange-rate run: every day the warehouse facts convert at (the
# first run backfills them all; later runs ask only for months not yet
# complete in the raw lake).
resource "aws_cloudwatch_event_rule" "fx" {
  name                = "${var.name}-fx"
  description         = "Runs the Tributary exchange rates (the load function)"
  schedule_expression = var.fx_schedule
  state               = var.enable_schedules ? "ENABLED" : "DISABLED"
}

resource "aws_cloudwatch_event_target" "fx" {
  rule  = aws_cloudwatch_event_rule.fx.name
  arn   = aws_lambda_function.load.arn
  input = jsonencode({ fx = {} })
}

resource "aws_lambda_permission" "load_from_fx_schedule" {
  statement_id   = "AllowEventBridgeFxSchedule"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.load.function_name
  principal      = "events.amazonaws.com"
  source_arn     = aws_cloudwatch_event_rule.fx.arn
  source_account = local.account_id
}

resource "aws_cloudwatch_event_rule" "maintain" {
  name                = "${var.name}-maintain"
  description         = "Compacts and expires the Tributary Iceberg tables (the transform function)"
  schedule_expression = var.maintain_schedule
  state               = var.enable_schedules ? "ENABLED" : "DISABLED"
}

resource "aws_cloudwatch_event_target" "maintain" {
  rule  = aws_cloudwatch_event_rule.maintain.name
  arn   = aws_lambda_function.transform.arn
  input = jsonencode({ maintain = {} })
}

resource "aws_lambda_permission" "transform_from_maintain_schedule" {
  statement_id   = "AllowEventBridgeMaintainSchedule"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.transform.function_name
  principal      = "events.amazonaws.com"
  source_arn     = aws_cloudwatch_event_rule.maintain.arn
  source_account = local.account_id
}

# ----------------------------------------------------------- manifest events

resource "aws_lambda_permission" "transform_from_raw_bucket" {
  statement_id   = "AllowRawBucketManifestEvents"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.transform.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.raw.arn
  source_account = local.account_id
}

resource "aws_s3_bucket_notification" "raw" {
  bucket = aws_s3_bucket.raw.id

  lambda_function {
    lambda_function_arn = aws_lambda_function.transform.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = "_manifests/"
    filter_suffix       = ".json"
  }

  # A configured source's new manifest (sources/<name>/_manifests/source/)
  # publishes its Iceberg tables. The only .json objects under sources/ are
  # those manifests (received files keep no extension: _received/<key>/<sha>).
  lambda_function {
    lambda_function_arn = aws_lambda_function.transform.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = "sources/"
    filter_suffix       = ".json"
  }

  depends_on = [aws_lambda_permission.transform_from_raw_bucket]
}

resource "aws_lambda_permission" "load_from_processed_bucket" {
  statement_id   = "AllowProcessedBucketManifestEvents"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.load.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.processed.arn
  source_account = local.account_id
}

resource "aws_s3_bucket_notification" "processed" {
  bucket = aws_s3_bucket.processed.id

  # Only the logs the load applies: the catalog's own log
  # (_manifests/catalog/) must not start a load.
  lambda_function {
    lambda_function_arn = aws_lambda_function.load.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = "_manifests/transform/"
    filter_suffix       = ".json"
  }

  lambda_function {
    lambda_function_arn = aws_lambda_function.load.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = "_manifests/markets_transform/"
    filter_suffix       = ".json"
  }

  depends_on = [aws_lambda_permission.load_from_processed_bucket]
}

# ------------------------------------------------------------ landing events
# A file dropped under a file source's prefix runs that source at once
# (crates/lambdas/src/sources.rs). The ingest function runs one invocation at
# a time: an event that meets the scheduled run is throttled and retried by
# Lambda (up to maximum_event_age_in_seconds, functions.tf), and the
# schedule takes every new file anyway, so a lost event only delays a file
# to the next tick.

resource "aws_lambda_permission" "ingest_from_landing_bucket" {
  count = length(var.landing_prefixes) > 0 ? 1 : 0

  statement_id   = "AllowLandingBucketEvents"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.ingest.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = var.landing_bucket == "" ? aws_s3_bucket.landing[0].arn : "arn:${local.partition}:s3:::${var.landing_bucket}"
  source_account = local.account_id
}

resource "aws_s3_bucket_notification" "landing" {
  count = length(var.landing_prefixes) > 0 ? 1 : 0

  bucket = var.landing_bucket == "" ? aws_s3_bucket.landing[0].id : var.landing_bucket

  dynamic "lambda_function" {
    for_each = var.landing_prefixes
    content {
      lambda_function_arn = aws_lambda_function.ingest.arn
      events              = ["s3:ObjectCreated:*"]
      filter_prefix       = lambda_function.value
    }
  }

  depends_on = [aws_lambda_permission.ingest_from_landing_bucket]
}
