# Athena reads the processed lake through the Glue Data Catalog. The transform
# creates and updates the tables and partitions itself as it writes them, so
# there is no crawler: the catalog never lags the lake and costs nothing to scan.

resource "aws_glue_catalog_database" "lake" {
  name         = local.glue_database
  description  = "Tributary processed lake: star schema and market tables, maintained by the transform function"
  location_uri = "s3://${aws_s3_bucket.processed.bucket}/"
}

resource "aws_athena_workgroup" "lake" {
  name          = var.name
  description   = "Queries over the Tributary processed lake"
  force_destroy = true

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    result_configuration {
      output_location = "s3://${aws_s3_bucket.athena_results.bucket}/results/"

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.main.arn
      }
    }
  }
}
