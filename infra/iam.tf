# One role per function, inline policies only, every statement scoped to this
# stack's resources. The only "*" resources are the actions AWS does not let
# one scope (X-Ray segments, EC2 network-interface descriptions, listing
# streams). tests/tests/infra_wiring.rs rejects any "*" action on "*" and
# checks every grant against the calls of the code;
# crates/lambdas/tests/least_privilege.rs runs each function with nothing but
# its role's statements (README.md, "IAM").

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    sid     = "LambdaAssumesRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# What every function needs: its own log group (the AWSLambdaBasicExecutionRole
# equivalent; the group exists, so no logs:CreateLogGroup), X-Ray, the alert
# topic, and the stack key that encrypts all of them.
data "aws_iam_policy_document" "function_base" {
  for_each = local.function_names

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  statement {
    sid       = "PublishAlerts"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }

  statement {
    sid       = "UseStackKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }

  # What the alert gate has already mailed (one small object per function),
  # so a failure every minute is one email, an hourly summary and a recovery.
  statement {
    sid       = "KeepAlertState"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.processed.arn}/_alerts/${each.key}.json"]
  }

  # S3 answers a GET of a missing object with 404 only to a caller that may
  # list the bucket, with 403 AccessDenied otherwise. The gate's first read
  # finds no state; as a 403 it never saves any, and every repeat is mailed
  # (ingest and stream-sink have no other listing of this bucket). Listing
  # shows key names, not contents. crates/lambdas/tests/least_privilege.rs
  # runs the functions under S3's 403/404 rule.
  statement {
    sid       = "FindAlertState"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.processed.arn]
  }
}

# Elastic network interfaces in the given subnets, only when ingest/load run in
# a VPC (the AWSLambdaVPCAccessExecutionRole equivalent, scoped where EC2 allows).
data "aws_iam_policy_document" "vpc_access" {
  statement {
    sid       = "DescribeNetwork"
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    resources = ["*"]
  }

  statement {
    sid     = "ManageOwnInterfaces"
    actions = ["ec2:CreateNetworkInterface"]
    resources = concat(
      ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"],
      [for id in var.subnet_ids : "arn:${local.partition}:ec2:${local.region}:${local.account_id}:subnet/${id}"],
      [for id in var.security_group_ids : "arn:${local.partition}:ec2:${local.region}:${local.account_id}:security-group/${id}"],
    )
  }

  statement {
    sid = "ReleaseOwnInterfaces"
    actions = [
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"]
  }
}

# --------------------------------------------------------------------- ingest

resource "aws_iam_role" "ingest" {
  name               = "${var.name}-ingest"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "ingest" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.function_base["ingest"].json],
    local.in_vpc ? [data.aws_iam_policy_document.vpc_access.json] : [],
  )

  statement {
    sid       = "WriteRawLake"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.raw.arn}/*"]
  }

  statement {
    sid       = "ListRawLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.raw.arn]
  }

  # totesys, CoinCap, and the configured PostgreSQL sources' secrets
  # (var.source_secrets), each read by its ARN.
  statement {
    sid     = "ReadSourceSecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = concat(
      [local.totesys_secret_arn],
      aws_secretsmanager_secret.coincap[*].arn,
      [for name, arn in var.source_secrets : arn],
    )
  }

  # The configured file sources: what is dropped in the landing bucket is
  # read (listed, to find new files), never written or deleted; run_files
  # copies each file into the raw lake (WriteRawLake).
  statement {
    sid       = "ReadLanding"
    actions   = ["s3:GetObject"]
    resources = ["${local.landing_bucket_arn}/*"]
  }

  statement {
    sid       = "ListLanding"
    actions   = ["s3:ListBucket"]
    resources = [local.landing_bucket_arn]
  }

  statement {
    sid       = "PutMarketData"
    actions   = ["kinesis:PutRecords"]
    resources = [aws_kinesis_stream.markets.arn]
  }
}

resource "aws_iam_role_policy" "ingest" {
  name   = "ingest"
  role   = aws_iam_role.ingest.id
  policy = data.aws_iam_policy_document.ingest.json
}

# ------------------------------------------------------------------ transform

resource "aws_iam_role" "transform" {
  name               = "${var.name}-transform"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "transform" {
  source_policy_documents = [data.aws_iam_policy_document.function_base["transform"].json]

  # Lambda sends a failed event to the dead-letter queue with the function's
  # own role (functions.tf).
  statement {
    sid       = "DeadLetterFailedEvents"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.transform_dlq.arn]
  }

  statement {
    sid       = "ReadRawLake"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.raw.arn}/*"]
  }

  # Rows that break the contract are kept, with their reason, in raw/_quarantine.
  statement {
    sid       = "QuarantineInRawLake"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.raw.arn}/_quarantine/*"]
  }

  statement {
    sid       = "WriteProcessedLake"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.processed.arn}/*"]
  }

  statement {
    sid       = "ListLakes"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.raw.arn, aws_s3_bucket.processed.arn]
  }

  # Iceberg maintenance ({"maintain": {}}) deletes only what Iceberg wrote:
  # expired metadata, and compacted or rewritten data no snapshot reaches.
  # The transform's own files, named by its manifests, stay.
  statement {
    sid     = "MaintainIcebergTables"
    actions = ["s3:DeleteObject"]
    resources = [
      "${aws_s3_bucket.processed.arn}/warehouse/*/metadata/*",
      "${aws_s3_bucket.processed.arn}/warehouse/*/data/*",
      "${aws_s3_bucket.processed.arn}/markets/*/metadata/*",
      "${aws_s3_bucket.processed.arn}/markets/*/data/*",
      # The configured sources' tables: sources/<source>/<table>/.
      "${aws_s3_bucket.processed.arn}/sources/*/metadata/*",
      "${aws_s3_bucket.processed.arn}/sources/*/data/*",
    ]
  }

  statement {
    sid = "SyncCatalog"
    actions = [
      "glue:GetDatabase",
      "glue:CreateDatabase",
      "glue:GetTable",
      "glue:CreateTable",
      # Each Iceberg table is pointed at its newest metadata file.
      "glue:UpdateTable",
    ]
    resources = [
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog",
      aws_glue_catalog_database.lake.arn,
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${aws_glue_catalog_database.lake.name}/*",
    ]
  }
}

resource "aws_iam_role_policy" "transform" {
  name   = "transform"
  role   = aws_iam_role.transform.id
  policy = data.aws_iam_policy_document.transform.json
}

# ----------------------------------------------------------------------- load

resource "aws_iam_role" "load" {
  name               = "${var.name}-load"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "load" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.function_base["load"].json],
    local.in_vpc ? [data.aws_iam_policy_document.vpc_access.json] : [],
  )

  statement {
    sid       = "ReadProcessedLake"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.processed.arn}/*"]
  }

  statement {
    sid       = "ListProcessedLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.processed.arn]
  }

  statement {
    sid       = "ReadWarehouseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.warehouse_secret_arn]
  }

  # The daily exchange-rate run keeps the API's replies and their manifest
  # log in the raw bucket.
  statement {
    sid     = "KeepExchangeRates"
    actions = ["s3:GetObject", "s3:PutObject"]
    resources = [
      "${aws_s3_bucket.raw.arn}/fx/*",
      "${aws_s3_bucket.raw.arn}/_manifests/fx/*",
    ]
  }

  # The configured sources' folders of the raw lake (sources/<name>/: data
  # files, tombstones, key sets and the manifest log _manifests/source/),
  # read to load src_<name>; never written.
  statement {
    sid       = "ReadSourceLakes"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.raw.arn}/sources/*"]
  }

  # It reads nothing else in the raw bucket. Listing reveals the raw
  # bucket's key names (not their contents): S3 answers a missing key with
  # 404 rather than 403 only to a caller allowed to list, and a manifest log
  # finds its head by listing.
  statement {
    sid       = "FindRawKeys"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.raw.arn]
  }
}

resource "aws_iam_role_policy" "load" {
  name   = "load"
  role   = aws_iam_role.load.id
  policy = data.aws_iam_policy_document.load.json
}

# ---------------------------------------------------------------- stream-sink

resource "aws_iam_role" "stream_sink" {
  name               = "${var.name}-stream-sink"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "stream_sink" {
  source_policy_documents = [data.aws_iam_policy_document.function_base["stream-sink"].json]

  # What the event source mapping does on the function's behalf.
  statement {
    sid = "ReadMarketStream"
    actions = [
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:DescribeStream",
      "kinesis:DescribeStreamSummary",
      "kinesis:ListShards",
    ]
    resources = [aws_kinesis_stream.markets.arn]
  }

  statement {
    sid       = "ListStreams"
    actions   = ["kinesis:ListStreams"]
    resources = ["*"]
  }

  statement {
    sid       = "WriteRawLake"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.raw.arn}/*"]
  }

  statement {
    sid       = "ListRawLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.raw.arn]
  }

  statement {
    sid       = "ReportGivenUpBatches"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.stream_sink_failures.arn]
  }
}

resource "aws_iam_role_policy" "stream_sink" {
  name   = "stream-sink"
  role   = aws_iam_role.stream_sink.id
  policy = data.aws_iam_policy_document.stream_sink.json
}
