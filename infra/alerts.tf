# Failures and staleness reach people by email: every alarm below notifies the
# alerts topic when it fires and when it clears. The functions also publish
# their own alerts (stage, run, table, error, what to do) to the same topic.
#
# An alarm's description is the body of its email: each says what happened,
# what happens next on its own (retry, replay queue) and what to do.
# README.md lists them too.

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-alerts"
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sns_topic_policy" "alerts" {
  arn = aws_sns_topic.alerts.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountManagesTopic"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action = [
          "sns:GetTopicAttributes",
          "sns:SetTopicAttributes",
          "sns:AddPermission",
          "sns:RemovePermission",
          "sns:DeleteTopic",
          "sns:Subscribe",
          "sns:ListSubscriptionsByTopic",
          "sns:Publish",
        ]
        Resource = aws_sns_topic.alerts.arn
      },
      {
        Sid       = "CloudWatchAlarmsOfThisStackPublish"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts.arn
        Condition = {
          ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${var.name}-*" }
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
    ]
  })
}

resource "aws_sns_topic_subscription" "alert_email" {
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

# ------------------------------------------------------- per-function alarms

locals {
  # What becomes of a failed invocation, per function (functions.tf, "Failed
  # invocations"), for the Errors alarm's email.
  after_failure = {
    ingest        = "It is not retried and goes to no queue: the next scheduled run (${var.ingest_schedule}) is the retry, and runs are idempotent. If this alarm stays red, runs keep failing: fix the cause (source database reachable? secret ${aws_secretsmanager_secret.totesys.name} filled in?). A failed manual backfill is not retried either: invoke it again."
    transform     = "Lambda retries the S3 event twice; if all three attempts fail the event waits in ${aws_sqs_queue.transform_dlq.name} (alarm ${var.name}-transform-dlq-not-empty) for a replay (infra/README.md, Replay)."
    load          = "It is not retried and goes to no queue: the next scheduled load or processed manifest loads everything pending, and loads are idempotent. If this alarm stays red, loads keep failing: check the warehouse database and secret ${aws_secretsmanager_secret.warehouse.name}."
    "stream-sink" = "The Kinesis mapping retries the batch, halving it to isolate a bad record, up to 5 times within an hour while that shard waits; what it gives up on is recorded in ${aws_sqs_queue.stream_sink_failures.name} (alarm ${var.name}-stream-sink-failures-not-empty) for a replay."
  }
}

# A function invocation failed (crash, timeout, or an error returned to Lambda).
resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = local.functions

  alarm_name        = "${var.name}-${each.key}-errors"
  alarm_description = "The ${each.key} function failed at least once in the last minute (crash, timeout or returned error). ${local.after_failure[each.key]} The error is in log group ${aws_cloudwatch_log_group.function[each.key].name}."

  namespace   = "AWS/Lambda"
  metric_name = "Errors"
  dimensions = {
    FunctionName = each.value.function_name
  }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"

  alarm_actions = [aws_sns_topic.alerts.arn]
  ok_actions    = [aws_sns_topic.alerts.arn]
}

# A function logged an ERROR line (JSON logs: {"level":"ERROR",...}); this
# includes problems a run survives, such as rows sent to quarantine.
resource "aws_cloudwatch_log_metric_filter" "error_logs" {
  for_each = local.function_names

  name           = "${var.name}-${each.key}-error-logs"
  log_group_name = aws_cloudwatch_log_group.function[each.key].name
  pattern        = "{ $.level = \"ERROR\" }"

  metric_transformation {
    namespace = "Tributary/ErrorLogs"
    name      = each.key
    value     = "1"
    unit      = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "error_logs" {
  for_each = local.function_names

  alarm_name        = "${var.name}-${each.key}-error-logs"
  alarm_description = "The ${each.key} function logged an ERROR line, possibly about something the run survived (e.g. rows quarantined in the raw lake's _quarantine/). Search log group ${aws_cloudwatch_log_group.function[each.key].name} for level ERROR: the line names the stage, run, table and what to do."

  namespace           = aws_cloudwatch_log_metric_filter.error_logs[each.key].metric_transformation[0].namespace
  metric_name         = aws_cloudwatch_log_metric_filter.error_logs[each.key].metric_transformation[0].name
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"

  alarm_actions = [aws_sns_topic.alerts.arn]
  ok_actions    = [aws_sns_topic.alerts.arn]
}

# ------------------------------------------------------------------ freshness

# No load invocation succeeded for freshness_minutes. Silence counts: a load
# that is not running at all (schedule disabled, throttled, deleted) alarms too.
# While enable_schedules is false nothing runs the load, so the freshness
# alarms could only be red: they keep their state but send nothing until the
# schedules are enabled (then the first email is their OK).
resource "aws_cloudwatch_metric_alarm" "load_stalled" {
  alarm_name        = "${var.name}-load-stalled"
  alarm_description = "No successful load in ${var.freshness_minutes} minutes: the warehouse is not being updated. Check the ${var.name}-load-errors alarm and the load's log group (${aws_cloudwatch_log_group.function["load"].name}), that rule ${aws_cloudwatch_event_rule.load.name} is ENABLED, and the warehouse database."
  actions_enabled   = var.enable_schedules
  #checkov:skip=CKV_AWS_319:actions are on whenever the schedules are; with enable_schedules false nothing runs the pipeline, so this alarm could only be red

  comparison_operator = "LessThanThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "breaching"

  metric_query {
    id          = "successes"
    expression  = "FILL(invocations, 0) - FILL(errors, 0)"
    label       = "Successful load invocations"
    return_data = true
  }

  metric_query {
    id = "invocations"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Invocations"
      dimensions  = { FunctionName = aws_lambda_function.load.function_name }
      period      = var.freshness_minutes * 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Errors"
      dimensions  = { FunctionName = aws_lambda_function.load.function_name }
      period      = var.freshness_minutes * 60
      stat        = "Sum"
    }
  }

  alarm_actions = [aws_sns_topic.alerts.arn]
  ok_actions    = [aws_sns_topic.alerts.arn]
}

# The load publishes, as CloudWatch Embedded Metric Format, FreshnessLagSeconds
# (how far the warehouse lags the sources) and RowsLoaded in namespace
# "Tributary" with the single dimension Stage=load. The alarm fires when the lag
# stayed above freshness_minutes for a whole window, or no lag was reported.
resource "aws_cloudwatch_metric_alarm" "warehouse_stale" {
  alarm_name        = "${var.name}-warehouse-stale"
  alarm_description = "The warehouse lagged the sources by more than ${var.freshness_minutes} minutes for ${var.freshness_minutes} minutes (or the load reported no lag). Look upstream: the ingest and transform errors alarms, the ${aws_sqs_queue.transform_dlq.name} queue, rule ${aws_cloudwatch_event_rule.ingest.name} ENABLED, the source database."
  actions_enabled   = var.enable_schedules
  #checkov:skip=CKV_AWS_319:actions are on whenever the schedules are; with enable_schedules false nothing runs the pipeline, so this alarm could only be red

  namespace           = "Tributary"
  metric_name         = "FreshnessLagSeconds"
  dimensions          = { Stage = "load" }
  statistic           = "Minimum"
  period              = var.freshness_minutes * 60
  evaluation_periods  = 1
  threshold           = var.freshness_minutes * 60
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"

  alarm_actions = [aws_sns_topic.alerts.arn]
  ok_actions    = [aws_sns_topic.alerts.arn]
}

# ------------------------------------------------------------------- stream

# The oldest record stream-sink received was over a minute old for three
# minutes: it falls behind the stream (or keeps failing on one batch).
resource "aws_cloudwatch_metric_alarm" "stream_sink_iterator_age" {
  alarm_name        = "${var.name}-stream-sink-iterator-age"
  alarm_description = "stream-sink has been more than a minute behind the market stream for 3 minutes. If ${var.name}-stream-sink-errors is red, a batch keeps failing and holds its shard (up to an hour, then it is skipped to ${aws_sqs_queue.stream_sink_failures.name}): read log group ${aws_cloudwatch_log_group.function["stream-sink"].name}. If it is healthy but slow, add shards (kinesis_shard_count) or memory."

  namespace = "AWS/Lambda"
  # The Lambda view of the stream's GetRecords.IteratorAgeMilliseconds, per
  # event source mapping.
  metric_name = "IteratorAge"
  dimensions = {
    FunctionName = aws_lambda_function.stream_sink.function_name
  }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = 60000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"

  alarm_actions = [aws_sns_topic.alerts.arn]
  ok_actions    = [aws_sns_topic.alerts.arn]
}

# ------------------------------------------------------------------- queues

# Something waits in a dead-letter / on-failure queue. Missing data keeps the
# state: SQS stops reporting a queue nobody touched for six hours, and that
# must not clear an alarm while messages still wait.
locals {
  queue_advice = {
    "transform-dlq"        = "The transform failed three times on an S3 event of a new raw manifest (or the event waited over an hour): those raw files may not be in the processed lake yet. The message's ErrorMessage attribute and log group ${aws_cloudwatch_log_group.function["transform"].name} say why. Fix the cause, then replay: invoke the transform with the message body (or {}: a run takes every pending manifest) and delete the message (infra/README.md, Replay). A later successful transform may already have done the work; the replay is harmless either way."
    "stream-sink-failures" = "stream-sink gave up on a batch of market records. The message holds the shard and sequence-number range, not the records: re-read them from the stream and invoke stream-sink with them (infra/README.md, Replay) within the stream's ${var.kinesis_retention_hours} h retention, then delete the message."
  }
}

resource "aws_cloudwatch_metric_alarm" "queue_not_empty" {
  for_each = local.queues

  alarm_name        = "${var.name}-${each.key}-not-empty"
  alarm_description = "Messages wait in ${each.value.name}. ${local.queue_advice[each.key]} The alarm clears when the queue is empty."

  namespace   = "AWS/SQS"
  metric_name = "ApproximateNumberOfMessagesVisible"
  dimensions = {
    QueueName = each.value.name
  }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "ignore"

  alarm_actions = [aws_sns_topic.alerts.arn]
  ok_actions    = [aws_sns_topic.alerts.arn]
}
