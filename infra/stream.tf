# Market data: ingest puts trades and tickers on the stream; stream-sink writes
# each batch to the raw lake as one immutable JSON-lines object.

resource "aws_kinesis_stream" "markets" {
  name             = "${var.name}-markets"
  shard_count      = var.kinesis_shard_count
  retention_period = var.kinesis_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.main.arn

  stream_mode_details {
    stream_mode = "PROVISIONED"
  }
}

# Freshness: a batch is handed over after at most one second (or 500 records).
#
# TRIM_HORIZON, not LATEST: when the mapping is first created (or re-created),
# records already on the stream, up to kinesis_retention_hours old, are written
# rather than silently skipped. Redelivery is harmless: stream-sink derives the
# object key from the shard and the first sequence number and writes it
# put-if-absent.
#
# Failures: the function reports the records it could not write
# (ReportBatchItemFailures), a failing batch is halved until the bad record is
# isolated, retried 5 times and given up after an hour; the mapping then sends
# the shard and sequence range of what was skipped to the on-failure queue,
# from which it can be replayed while the stream still retains it.
resource "aws_lambda_event_source_mapping" "stream_sink" {
  event_source_arn  = aws_kinesis_stream.markets.arn
  function_name     = aws_lambda_function.stream_sink.arn
  starting_position = "TRIM_HORIZON"

  batch_size                         = var.stream_sink_batch_size
  maximum_batching_window_in_seconds = 1
  parallelization_factor             = 1

  function_response_types        = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error = true
  maximum_retry_attempts         = 5
  maximum_record_age_in_seconds  = 3600

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.stream_sink_failures.arn
    }
  }

  depends_on = [aws_iam_role_policy.stream_sink]
}
