# Failures and staleness reach people by email: every alarm below notifies the
# alerts topic when it fires and when it clears. The functions also publish
# their own alerts (stage, run, table, error, what to do) to the same topic.
# README.md lists each alarm and what to do about it.

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

# A function invocation failed (crash, timeout, or an error returned to Lambda).
resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = local.functions

  alarm_name        = "${var.name}-${each.key}-errors"
  alarm_description = "The ${each.key} function failed at least once in a minute. Read its log group (${aws_cloudwatch_log_group.function[each.key].name}) for the error; runs are idempotent, so the next run retries."

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
  alarm_description = "The ${each.key} function logged an ERROR line. Search ${aws_cloudwatch_log_group.function[each.key].name} for level ERROR; the line names the stage, run and table."

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
resource "aws_cloudwatch_metric_alarm" "load_stalled" {
  alarm_name        = "${var.name}-load-stalled"
  alarm_description = "No successful load in ${var.freshness_minutes} minutes: the warehouse is not being updated. Check the load function's errors and logs, its schedule rule, and the warehouse database."

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
  alarm_description = "The warehouse lagged the sources by more than ${var.freshness_minutes} minutes for ${var.freshness_minutes} minutes (or the load reported no lag). Look upstream: ingest and transform errors, the dead-letter queue, the source database."

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
  alarm_description = "stream-sink is more than a minute behind the market stream. Check its errors and duration; if it is healthy but slow, add shards (kinesis_shard_count) or memory."

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
resource "aws_cloudwatch_metric_alarm" "queue_not_empty" {
  for_each = local.queues

  alarm_name        = "${var.name}-${each.key}-not-empty"
  alarm_description = "Messages wait in ${each.value.name}: work was given up on. Read them (aws sqs receive-message), fix the cause, replay, then purge the queue."

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
