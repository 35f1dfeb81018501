# Connection secrets. Terraform creates the secrets, never their values, so no
# password ever lands in the Terraform state or plan. Put the values out of band
# after the first apply (README.md, "Secrets"):
#
#   aws secretsmanager put-secret-value --secret-id <totesys_secret_arn> \
#     --secret-string '{"host":"…","port":5432,"username":"…","password":"…","dbname":"totesys"}'
#
# The database secrets use the RDS JSON shape (host, port, username, password,
# dbname), the shape RDS itself writes, so an RDS-managed or rotated secret can
# be used as is. Rotation belongs to the owners of the databases (see
# .checkov.yaml, CKV2_AWS_57).

resource "aws_secretsmanager_secret" "totesys" {
  name        = "${var.name}/totesys"
  description = "totesys source database, read by ingest. JSON: host, port, username, password, dbname."
  kms_key_id  = aws_kms_key.main.arn
}

resource "aws_secretsmanager_secret" "warehouse" {
  name        = "${var.name}/warehouse"
  description = "Postgres warehouse, written by load. JSON: host, port, username, password, dbname."
  kms_key_id  = aws_kms_key.main.arn
}

# The CoinCap v3 API key, read by ingest (COINCAP_SECRET_ARN): the secret
# string is the key itself.
resource "aws_secretsmanager_secret" "coincap" {
  count = var.coincap_secret_enabled ? 1 : 0

  name        = "${var.name}/coincap"
  description = "CoinCap v3 API key, read by ingest's market poller."
  kms_key_id  = aws_kms_key.main.arn
}
