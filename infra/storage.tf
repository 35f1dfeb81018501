# The two lakes, the landing bucket of file drops and the Athena results bucket.
#
# Every bucket: versioned, SSE-KMS with the stack key (S3 Bucket Keys on), all
# public access blocked, ACLs disabled, TLS 1.2+ only, incomplete multipart
# uploads aborted, noncurrent versions expired.
#
# The pipeline writes every object once, with put-if-absent (`If-None-Match: *`)
# and never overwrites or deletes; S3 versioning plus Object Lock on raw make
# that a property of the bucket rather than of the code. Object Lock requires
# an integrity checksum on every PUT (Content-MD5 or x-amz-checksum-*), and S3
# itself refuses checksum-less puts to a bucket with a default retention, so no
# bucket-policy condition is needed. The lake's S3 client (object_store in
# crates/lake/src/store.rs) is built with the SHA256 checksum algorithm, so every
# put and multipart part carries x-amz-checksum-sha256; functions.tf also sets
# AWS_CHECKSUM_ALGORITHM = "SHA256", which object_store reads from the
# environment, so the requirement is met even if that builder line changes.
#
# Server access logging is not configured: object-level auditing belongs in a
# CloudTrail data-event trail (see .checkov.yaml, CKV_AWS_18).
#
# Teardown (environment = "dev" only): force_destroy lets `terraform destroy`
# delete every object version before the bucket. A version under a GOVERNANCE
# retention can only be deleted by a request that bypasses governance
# retention (x-amz-bypass-governance-retention) from a principal allowed
# s3:BypassGovernanceRetention, and a COMPLIANCE one by nobody; so dev does not
# lock raw objects at all (no default retention below) and a destroy never
# depends on bypass permissions. In prod nothing here is destroyable while it
# holds data: the buckets refuse to go and locked versions stay locked.

# ------------------------------------------------------------------ raw lake

resource "aws_s3_bucket" "raw" {
  bucket        = "${var.name}-raw-${local.bucket_suffix}"
  force_destroy = local.dev
  # On in dev too: Object Lock can only be chosen when a bucket is created,
  # and dev should be the same kind of bucket (only without a default lock).
  object_lock_enabled = true
}

resource "aws_s3_bucket_versioning" "raw" {
  bucket = aws_s3_bucket.raw.id

  versioning_configuration {
    status = "Enabled"
  }
}

# Every raw object version is retained for raw_object_lock_days. GOVERNANCE:
# an operator holding s3:BypassGovernanceRetention can still remove a version
# (e.g. data that must be erased), the pipeline's roles cannot. Not in dev
# (see the top of this file).
resource "aws_s3_bucket_object_lock_configuration" "raw" {
  count = local.dev ? 0 : 1

  bucket = aws_s3_bucket.raw.id

  rule {
    default_retention {
      mode = "GOVERNANCE"
      days = var.raw_object_lock_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.raw]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "raw" {
  bucket = aws_s3_bucket.raw.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "raw" {
  bucket                  = aws_s3_bucket.raw.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "raw" {
  bucket = aws_s3_bucket.raw.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_policy" "raw" {
  bucket = aws_s3_bucket.raw.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.raw.arn, "${aws_s3_bucket.raw.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "DenyTlsOlderThan12"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.raw.arn, "${aws_s3_bucket.raw.arn}/*"]
        Condition = { NumericLessThan = { "s3:TlsVersion" = "1.2" } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.raw]
}

resource "aws_s3_bucket_lifecycle_configuration" "raw" {
  bucket = aws_s3_bucket.raw.id

  # Raw is read once by the transform, later only by rebuilds: tier it down.
  # (S3 does not transition objects under 128 KB, so small manifests stay.)
  rule {
    id     = "tier-down-and-clean-up"
    status = "Enabled"

    filter {}

    transition {
      days          = var.raw_ia_transition_days
      storage_class = "STANDARD_IA"
    }

    transition {
      days          = var.raw_glacier_ir_transition_days
      storage_class = "GLACIER_IR"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_multipart_days
    }
  }

  # Optional expiry of raw data. _manifests/ is deliberately not expired: the
  # latest manifest holds the watermarks, and a quiet source must not lose them.
  dynamic "rule" {
    for_each = var.raw_expiration_days > 0 ? toset(["totesys/", "markets/", "_quarantine/"]) : toset([])

    content {
      id     = "expire-${trimsuffix(rule.value, "/")}"
      status = "Enabled"

      filter {
        prefix = rule.value
      }

      expiration {
        days = var.raw_expiration_days
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.raw]
}

# ------------------------------------------------------------ processed lake

resource "aws_s3_bucket" "processed" {
  bucket        = "${var.name}-processed-${local.bucket_suffix}"
  force_destroy = local.dev
}

resource "aws_s3_bucket_versioning" "processed" {
  bucket = aws_s3_bucket.processed.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "processed" {
  bucket = aws_s3_bucket.processed.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "processed" {
  bucket                  = aws_s3_bucket.processed.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "processed" {
  bucket = aws_s3_bucket.processed.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_policy" "processed" {
  bucket = aws_s3_bucket.processed.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.processed.arn, "${aws_s3_bucket.processed.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "DenyTlsOlderThan12"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.processed.arn, "${aws_s3_bucket.processed.arn}/*"]
        Condition = { NumericLessThan = { "s3:TlsVersion" = "1.2" } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.processed]
}

resource "aws_s3_bucket_lifecycle_configuration" "processed" {
  bucket = aws_s3_bucket.processed.id

  # _state/ snapshots are superseded often; old versions are not needed long.
  rule {
    id     = "state-old-versions"
    status = "Enabled"

    filter {
      prefix = "_state/"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.processed_state_noncurrent_days
    }
  }

  rule {
    id     = "clean-up"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_multipart_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.processed]
}

# ------------------------------------------------------------ landing bucket
# Where partners drop files for the configured file sources (kind = "files",
# landing_url = "s3://<this bucket>/<prefix>"): the ingest function reads
# them (only it, and only reads: each file is copied byte for byte into the
# raw lake's sources/<name>/<table>/_received/). Not created when
# var.landing_bucket names an existing one. A writer needs s3:PutObject on
# its prefix and kms:GenerateDataKey on the stack key (README.md).

resource "aws_s3_bucket" "landing" {
  count = var.landing_bucket == "" ? 1 : 0

  bucket        = "${var.name}-landing-${local.bucket_suffix}"
  force_destroy = local.dev
}

resource "aws_s3_bucket_versioning" "landing" {
  count = var.landing_bucket == "" ? 1 : 0

  bucket = aws_s3_bucket.landing[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "landing" {
  count = var.landing_bucket == "" ? 1 : 0

  bucket = aws_s3_bucket.landing[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "landing" {
  count = var.landing_bucket == "" ? 1 : 0

  bucket                  = aws_s3_bucket.landing[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "landing" {
  count = var.landing_bucket == "" ? 1 : 0

  bucket = aws_s3_bucket.landing[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_policy" "landing" {
  count = var.landing_bucket == "" ? 1 : 0

  bucket = aws_s3_bucket.landing[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.landing[0].arn, "${aws_s3_bucket.landing[0].arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "DenyTlsOlderThan12"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.landing[0].arn, "${aws_s3_bucket.landing[0].arn}/*"]
        Condition = { NumericLessThan = { "s3:TlsVersion" = "1.2" } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.landing]
}

# What landed is kept in raw (received as is), so a replaced file's older
# version is not needed for long.
resource "aws_s3_bucket_lifecycle_configuration" "landing" {
  count = var.landing_bucket == "" ? 1 : 0

  bucket = aws_s3_bucket.landing[0].id

  rule {
    id     = "clean-up"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_multipart_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.landing]
}

# ------------------------------------------------------------ athena results

resource "aws_s3_bucket" "athena_results" {
  bucket        = "${var.name}-athena-${local.bucket_suffix}"
  force_destroy = local.dev
}

resource "aws_s3_bucket_versioning" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "athena_results" {
  bucket                  = aws_s3_bucket.athena_results.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_policy" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.athena_results.arn, "${aws_s3_bucket.athena_results.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "DenyTlsOlderThan12"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.athena_results.arn, "${aws_s3_bucket.athena_results.arn}/*"]
        Condition = { NumericLessThan = { "s3:TlsVersion" = "1.2" } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.athena_results]
}

resource "aws_s3_bucket_lifecycle_configuration" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id

  rule {
    id     = "expire-results"
    status = "Enabled"

    filter {}

    expiration {
      days = var.athena_results_expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.athena_results]
}

# Result objects are announced on the account's default EventBridge bus (free
# unless a rule listens), e.g. for auditing who exported what.
resource "aws_s3_bucket_notification" "athena_results" {
  bucket      = aws_s3_bucket.athena_results.id
  eventbridge = true
}
