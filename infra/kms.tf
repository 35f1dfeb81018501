# One customer managed key encrypts everything the stack stores: the three
# buckets (with S3 Bucket Keys, so KMS requests stay few), the stream, the
# queues, the topic, the secrets, the log groups and the functions' environment.
# Roles get kms:Decrypt / kms:GenerateDataKey on it through IAM (iam.tf); the key
# policy only delegates to the account and admits the two services that use the
# key without a role of ours: CloudWatch Logs and CloudWatch alarms (which
# publish to the encrypted topic).

resource "aws_kms_key" "main" {
  description         = "${var.name}: buckets, stream, queues, topic, secrets, logs"
  enable_key_rotation = true
  # After a destroy the key waits this long before AWS deletes it (and with it
  # anything still encrypted under it); dev takes the minimum, 7 days.
  deletion_window_in_days = local.dev ? 7 : var.kms_deletion_window_days

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersKeyThroughIAM"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsFunctionLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action = [
          "kms:Encrypt*",
          "kms:Decrypt*",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:Describe*",
        ]
        Resource = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${var.name}-*"
          }
        }
      },
      {
        Sid       = "CloudWatchAlarmsPublishToEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
      },
    ]
  })
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}
