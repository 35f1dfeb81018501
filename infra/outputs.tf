output "raw_bucket" {
  description = "Raw lake bucket (TRIBUTARY_RAW_URL = s3://<this>)."
  value       = aws_s3_bucket.raw.bucket
}

output "processed_bucket" {
  description = "Processed lake bucket (TRIBUTARY_PROCESSED_URL = s3://<this>)."
  value       = aws_s3_bucket.processed.bucket
}

output "landing_bucket" {
  description = "Bucket where files are dropped for the configured file sources (landing_url = \"s3://<this>/<prefix>\")."
  value       = local.landing_bucket
}

output "athena_results_bucket" {
  description = "Bucket of Athena query results."
  value       = aws_s3_bucket.athena_results.bucket
}

output "function_names" {
  description = "Lambda function names by binary."
  value       = { for bin, fn in local.functions : bin => fn.function_name }
}

output "function_arns" {
  description = "Lambda function ARNs by binary."
  value       = { for bin, fn in local.functions : bin => fn.arn }
}

output "alert_topic_arn" {
  description = "SNS topic of the alarms and the pipeline's own alerts (TRIBUTARY_ALERT_TOPIC_ARN)."
  value       = aws_sns_topic.alerts.arn
}

output "stream_name" {
  description = "Kinesis stream of market data (TRIBUTARY_STREAM_NAME)."
  value       = aws_kinesis_stream.markets.name
}

output "totesys_secret_arn" {
  description = "Secret of the totesys source database (TOTESYS_SECRET_ARN); set its value out of band."
  value       = aws_secretsmanager_secret.totesys.arn
}

output "warehouse_secret_arn" {
  description = "Secret of the warehouse database (WAREHOUSE_SECRET_ARN); set its value out of band."
  value       = aws_secretsmanager_secret.warehouse.arn
}

output "coincap_secret_arn" {
  description = "Secret of the CoinCap API key (COINCAP_SECRET_ARN), or null when coincap_secret_enabled is false."
  value       = one(aws_secretsmanager_secret.coincap[*].arn)
}

output "glue_database" {
  description = "Glue Data Catalog database of the processed lake."
  value       = aws_glue_catalog_database.lake.name
}

output "athena_workgroup" {
  description = "Athena workgroup for queries over the processed lake."
  value       = aws_athena_workgroup.lake.name
}

output "dead_letter_queue_urls" {
  description = "Queues where failed work waits for a replay: transform-dlq (raw-manifest S3 events the transform failed on), stream-sink-failures (Kinesis batches stream-sink gave up on)."
  value       = { for key, queue in local.queues : key => queue.url }
}

output "kms_key_arn" {
  description = "Customer managed key encrypting the stack's data."
  value       = aws_kms_key.main.arn
}

output "environment" {
  description = "dev or prod (variables.tf): what a destroy may remove. make destroy reads it."
  value       = var.environment
}

output "schedules_enabled" {
  description = "Whether the ingest and load schedules run (enable_schedules)."
  value       = var.enable_schedules
}
