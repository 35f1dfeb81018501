# Connection secrets. Terraform creates the secrets, never their values, so no
# password ever lands in the Terraform state or plan. Put the values out of band
# after the first apply (README.md, "Fill in the secrets"):
#
#   aws secretsmanager put-secret-value --secret-id <totesys_secret_arn> \
#     --secret-string '{"host":"…","port":5432,"username":"…","password":"…","dbname":"totesys"}'
#
# The database secrets use the JSON shape of Secrets Manager's "credentials
# for an Amazon RDS database" secrets (host, port, username, password, dbname;
# other keys such as engine are ignored). host is required: a secret that RDS
# manages for a master user carries only username and password, so it cannot
# be used as is (README.md). Rotation belongs to the owners of the databases
# (see .checkov.yaml, CKV2_AWS_57).
#
# A destroyed secret stays recoverable (and its name taken) for
# local.secret_recovery_days: 30 in prod, 0 in dev, where a destroy deletes
# the secrets at once so the same stack can be deployed again right away.

locals {
  secret_recovery_days = local.dev ? 0 : 30
}

resource "aws_secretsmanager_secret" "totesys" {
  name        = "${var.name}/totesys"
  description = "totesys source database, read by ingest. JSON: host, port, username, password, dbname."
  kms_key_id  = aws_kms_key.main.arn

  recovery_window_in_days = local.secret_recovery_days
}

resource "aws_secretsmanager_secret" "warehouse" {
  name        = "${var.name}/warehouse"
  description = "Postgres warehouse, written by load. JSON: host, port, username, password, dbname."
  kms_key_id  = aws_kms_key.main.arn

  recovery_window_in_days = local.secret_recovery_days
}

# The CoinCap v3 API key, read by ingest (COINCAP_SECRET_ARN): the secret
# string is the key itself.
resource "aws_secretsmanager_secret" "coincap" {
  count = var.coincap_secret_enabled ? 1 : 0

  name        = "${var.name}/coincap"
  description = "CoinCap v3 API key, read by ingest's market poller."
  kms_key_id  = aws_kms_key.main.arn

  recovery_window_in_days = local.secret_recovery_days
}
