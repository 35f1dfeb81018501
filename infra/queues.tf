# Where failed work waits for a person (both queues alarm when not empty,
# alerts.tf). Messages are kept 14 days, encrypted with the stack key. Only
# work worth replaying lands here (functions.tf, "Failed invocations").

# S3 events of raw manifests that the transform failed on three times, or that
# waited in Lambda's queue for more than an hour. Each message body is the
# original event (attributes RequestID, ErrorCode, ErrorMessage say why);
# replay it once the cause is fixed (README.md, "Replay").
resource "aws_sqs_queue" "transform_dlq" {
  name                              = "${var.name}-transform-dlq"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = aws_kms_key.main.arn
  kms_data_key_reuse_period_seconds = 3600
}

# Kinesis batches stream-sink gave up on: each message names the shard and the
# sequence number range, not the records themselves, so the replay re-reads
# them from the stream while it still retains them.
resource "aws_sqs_queue" "stream_sink_failures" {
  name                              = "${var.name}-stream-sink-failures"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = aws_kms_key.main.arn
  kms_data_key_reuse_period_seconds = 3600
}

locals {
  queues = {
    "transform-dlq"        = aws_sqs_queue.transform_dlq
    "stream-sink-failures" = aws_sqs_queue.stream_sink_failures
  }
}
