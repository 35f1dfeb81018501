# Where failed work waits for a person (both queues alarm when not empty,
# alerts.tf). Messages are kept 14 days, encrypted with the stack key.

# Asynchronous invocations (schedule, S3 events) that failed every attempt or
# were still queued after their maximum event age. Each message is the original
# event; re-invoke the function with it once the cause is fixed.
resource "aws_sqs_queue" "async_dlq" {
  name                              = "${var.name}-async-dlq"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = aws_kms_key.main.arn
  kms_data_key_reuse_period_seconds = 3600
}

# Kinesis batches stream-sink gave up on: each message names the shard and the
# sequence number range, not the records themselves.
resource "aws_sqs_queue" "stream_sink_failures" {
  name                              = "${var.name}-stream-sink-failures"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = aws_kms_key.main.arn
  kms_data_key_reuse_period_seconds = 3600
}

locals {
  queues = {
    "async-dlq"            = aws_sqs_queue.async_dlq
    "stream-sink-failures" = aws_sqs_queue.stream_sink_failures
  }
}
