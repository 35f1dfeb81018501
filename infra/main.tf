# Shared facts and names. Resources live in the files named after what they are:
# storage.tf (buckets), functions.tf, schedule.tf, stream.tf, alerts.tf,
# secrets.tf, iam.tf, catalog.tf, kms.tf, queues.tf.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # environment = "dev": everything can be destroyed at once (variables.tf).
  dev = var.environment == "dev"

  # Bucket names are global: the account id and region make them unique.
  bucket_suffix = "${local.account_id}-${local.region}"

  # Function names are known before the functions exist, so the log groups
  # (and the IAM statements scoped to them) can be created first.
  function_names = {
    ingest        = "${var.name}-ingest"
    transform     = "${var.name}-transform"
    load          = "${var.name}-load"
    "stream-sink" = "${var.name}-stream-sink"
  }

  # Every function of the stack. Alarms iterate over this map, so a function
  # missing here has no alarm (tests/tests/infra_wiring.rs checks it).
  functions = {
    ingest        = aws_lambda_function.ingest
    transform     = aws_lambda_function.transform
    load          = aws_lambda_function.load
    "stream-sink" = aws_lambda_function.stream_sink
  }

  # ingest and load reach RDS; they get a VPC config when subnets are given.
  in_vpc = length(var.subnet_ids) > 0

  glue_database = replace(var.name, "-", "_")

  # Where the configured file sources' files are dropped: the stack's own
  # landing bucket, or the one given (storage.tf).
  landing_bucket     = var.landing_bucket != "" ? var.landing_bucket : aws_s3_bucket.landing[0].bucket
  landing_bucket_arn = "arn:${local.partition}:s3:::${local.landing_bucket}"
}
