# Inputs of the Tributary stack. Only `alert_email` has no default; everything
# else is sized for the default one-minute schedule (see README.md for costs).

variable "name" {
  description = "Name prefix of every resource (functions, buckets, stream, topic). Lower-case letters, digits and hyphens; bucket names append the account id and region."
  type        = string
  default     = "tributary"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters of a-z, 0-9 and '-', starting with a letter (it becomes part of S3 bucket names)."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "environment" {
  description = "\"prod\" (default) keeps data protected: buckets refuse to be destroyed while they hold objects, every raw object version is Object-Locked for raw_object_lock_days, deleted secrets stay recoverable for 30 days and the KMS key for kms_deletion_window_days. \"dev\" makes `make destroy` remove everything in one go: buckets are emptied on destroy (force_destroy), raw objects get no default Object Lock retention, secrets are deleted without a recovery window and the key is scheduled for deletion after 7 days (the minimum). See README.md, \"Tear down\"."
  type        = string
  default     = "prod"

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be \"dev\" or \"prod\"."
  }
}

variable "tags" {
  description = "Extra tags for every resource (merged into the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "alert_email" {
  description = "Email address that receives the alarms (SNS email subscription; AWS sends a confirmation mail that must be accepted). Required."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be an email address, e.g. data-oncall@example.com."
  }
}

# ---------------------------------------------------------------- functions

variable "lambda_zip_dir" {
  description = "Directory holding <bin>/bootstrap.zip for the bins ingest, transform, load and stream-sink, as written by `cargo lambda build --release --arm64 --output-format zip` (relative to infra/, or absolute)."
  type        = string
  default     = "../target/lambda"
}

variable "pg_ca_in_zip" {
  description = "True (the default) when the zips carry the RDS CA bundle as pg-ca.pem (PG_CA_BUNDLE=/path/global-bundle.pem make package): ingest and load then get TRIBUTARY_PG_CA_FILE=/var/task/pg-ca.pem and verify the databases' certificates against it as well as the system roots. RDS certificates do not chain to a public root, so TLS to RDS needs it. Set false only when neither database is on RDS and their certificates chain to a public root. Verification is never off: the functions have no unverified TLS mode. make deploy sets this from the zips' contents."
  type        = bool
  default     = true
}

variable "log_level" {
  description = "RUST_LOG of every function (tracing EnvFilter syntax, e.g. \"info\" or \"info,tributary_pipeline=debug\")."
  type        = string
  default     = "info"
}

variable "ingest_memory_mb" {
  description = "Memory of the ingest function (MB). CPU scales with memory."
  type        = number
  default     = 256
}

variable "ingest_timeout_seconds" {
  description = "Timeout of the ingest function (seconds)."
  type        = number
  default     = 120
}

variable "transform_memory_mb" {
  description = "Memory of the transform function (MB)."
  type        = number
  default     = 512
}

variable "transform_timeout_seconds" {
  description = "Timeout of the transform function (seconds)."
  type        = number
  default     = 300
}

variable "load_memory_mb" {
  description = "Memory of the load function (MB)."
  type        = number
  default     = 256
}

variable "load_timeout_seconds" {
  description = "Timeout of the load function (seconds)."
  type        = number
  default     = 300
}

variable "stream_sink_memory_mb" {
  description = "Memory of the stream-sink function (MB)."
  type        = number
  default     = 128
}

variable "stream_sink_timeout_seconds" {
  description = "Timeout of the stream-sink function (seconds)."
  type        = number
  default     = 60
}

variable "subnet_ids" {
  description = "Private subnets for the functions that reach RDS (ingest: totesys; load: warehouse). Empty = no VPC config. In a VPC they need a NAT gateway (market APIs) or VPC endpoints for S3, Secrets Manager, Kinesis and SNS."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups for ingest and load when subnet_ids is set; they must be allowed into the databases' security groups on 5432."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------- schedules

variable "enable_schedules" {
  description = "Whether the EventBridge schedules of ingest and load run. False (the default) creates them DISABLED, so nothing runs before the secrets hold values and the alarm email is confirmed; set true as the last deploy step (README.md). The S3 manifest events and the Kinesis mapping are not schedules and are always on. While false, the freshness alarms (load-stalled, warehouse-stale) do not notify: with no schedule they could only be red."
  type        = bool
  default     = false
}

variable "ingest_schedule" {
  description = "EventBridge schedule expression of the ingest function."
  type        = string
  default     = "rate(1 minute)"
}

variable "load_schedule" {
  description = "EventBridge schedule expression of the load function (it also runs on every processed manifest)."
  type        = string
  default     = "rate(1 minute)"
}

variable "fx_schedule" {
  description = "EventBridge schedule expression of the daily exchange-rate run (the load function with {\"fx\": {}}). The ECB publishes around 16:00 CET on working days."
  type        = string
  default     = "cron(0 17 * * ? *)"
}

variable "maintain_schedule" {
  description = "EventBridge schedule expression of the Iceberg maintenance (the transform function with {\"maintain\": {}}): compaction of small files into 128 MB files and expiry of snapshots older than six hours."
  type        = string
  default     = "rate(1 hour)"
}

variable "reporting_currency" {
  description = "ISO 4217 code of the currency the warehouse's *_reporting views and aggregates convert amounts into."
  type        = string
  default     = "GBP"

  validation {
    condition     = can(regex("^[A-Z]{3}$", var.reporting_currency))
    error_message = "reporting_currency is a three-letter ISO 4217 code in capitals, such as GBP."
  }
}

variable "fx_url" {
  description = "Base URL of the Frankfurter-style exchange-rate API; empty: the public Frankfurter API. The load function reaches it over the internet (a NAT gateway when it runs in a VPC)."
  type        = string
  default     = ""
}

variable "freshness_minutes" {
  description = "The warehouse may lag the sources by at most this many minutes before the freshness alarms fire."
  type        = number
  default     = 30

  validation {
    condition     = var.freshness_minutes >= 5 && var.freshness_minutes <= 1440
    error_message = "freshness_minutes must be between 5 and 1440."
  }
}

# ---------------------------------------------------------------- storage

variable "raw_object_lock_days" {
  description = "Default Object Lock retention (GOVERNANCE mode) of every raw object version, in days. environment = \"dev\" sets no default retention (so force_destroy can empty the bucket)."
  type        = number
  default     = 30
}

variable "raw_ia_transition_days" {
  description = "Days after which raw objects move to STANDARD_IA (the transform reads them once; only rebuilds read them again). At least 30."
  type        = number
  default     = 30

  validation {
    condition     = var.raw_ia_transition_days >= 30
    error_message = "S3 requires at least 30 days before a transition to STANDARD_IA."
  }
}

variable "raw_glacier_ir_transition_days" {
  description = "Days after which raw objects move to GLACIER_IR (millisecond reads, cheaper storage). Must exceed raw_ia_transition_days by 30 or more."
  type        = number
  default     = 180
}

variable "raw_expiration_days" {
  description = "Days after which raw objects expire. 0 keeps raw forever, which keeps a full rebuild from raw possible. Must exceed raw_object_lock_days."
  type        = number
  default     = 0
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent object versions are deleted (raw and processed)."
  type        = number
  default     = 30
}

variable "processed_state_noncurrent_days" {
  description = "Days after which superseded versions under processed/_state/ are deleted."
  type        = number
  default     = 7
}

variable "abort_multipart_days" {
  description = "Days after which incomplete multipart uploads are aborted (every bucket)."
  type        = number
  default     = 7
}

variable "athena_results_expiration_days" {
  description = "Days after which Athena query results expire."
  type        = number
  default     = 30
}

variable "athena_bytes_scanned_cutoff" {
  description = "Per-query scan limit of the Athena workgroup, in bytes (default 10 GiB)."
  type        = number
  default     = 10737418240
}

# ---------------------------------------------------------------- stream

variable "kinesis_shard_count" {
  description = "Shards of the market-data stream (1 shard = 1 MB/s or 1000 records/s in)."
  type        = number
  default     = 1
}

variable "kinesis_retention_hours" {
  description = "Retention of the market-data stream, in hours (24-8760)."
  type        = number
  default     = 24
}

variable "stream_sink_batch_size" {
  description = "Records per stream-sink invocation (the batching window is 1 s, so freshness stays under a minute)."
  type        = number
  default     = 500
}

# ---------------------------------------------------------------- secrets, logs, keys

variable "coincap_secret_enabled" {
  description = "Create a Secrets Manager secret for the CoinCap v3 API key and give it to ingest (COINCAP_SECRET_ARN)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the functions' CloudWatch log groups, in days."
  type        = number
  default     = 365
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the stack's KMS key is deleted after a destroy (7-30 days). environment = \"dev\" always uses 7, the minimum."
  type        = number
  default     = 30
}

variable "totesys_db_host" {
  description = "Address of the totesys database, for a secret that holds only username and password (an RDS-managed master secret). Empty: the secret must hold host."
  type        = string
  default     = ""
}

variable "totesys_db_port" {
  description = "Port of the totesys database when the secret has none. Empty: 5432."
  type        = string
  default     = ""

  validation {
    condition     = var.totesys_db_port == "" || can(regex("^[0-9]{1,5}$", var.totesys_db_port))
    error_message = "totesys_db_port must be a port number such as 5432, or empty."
  }
}

variable "totesys_db_name" {
  description = "Database name of totesys when the secret has none. Empty: totesys."
  type        = string
  default     = ""
}

variable "warehouse_db_host" {
  description = "Address of the warehouse database, for a secret that holds only username and password (an RDS-managed master secret). Empty: the secret must hold host."
  type        = string
  default     = ""
}

variable "warehouse_db_port" {
  description = "Port of the warehouse database when the secret has none. Empty: 5432."
  type        = string
  default     = ""

  validation {
    condition     = var.warehouse_db_port == "" || can(regex("^[0-9]{1,5}$", var.warehouse_db_port))
    error_message = "warehouse_db_port must be a port number such as 5432, or empty."
  }
}

variable "warehouse_db_name" {
  description = "Database name of warehouse when the secret has none. Empty: warehouse."
  type        = string
  default     = ""
}

variable "totesys_existing_secret_arn" {
  description = "ARN of an existing secret with the totesys credentials, used instead of the stack's own: e.g. the secret RDS manages for the master user (username and password only; set totesys_db_host too). Its password may rotate: a refused login makes the function read the secret again. Empty: the stack's secret."
  type        = string
  default     = ""

  validation {
    condition     = var.totesys_existing_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.totesys_existing_secret_arn))
    error_message = "totesys_existing_secret_arn must be a Secrets Manager secret ARN, or empty."
  }
}

variable "warehouse_existing_secret_arn" {
  description = "ARN of an existing secret with the warehouse credentials, used instead of the stack's own: e.g. the secret RDS manages for the master user (username and password only; set warehouse_db_host too). Its password may rotate: a refused login makes the function read the secret again. Empty: the stack's secret."
  type        = string
  default     = ""

  validation {
    condition     = var.warehouse_existing_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.warehouse_existing_secret_arn))
    error_message = "warehouse_existing_secret_arn must be a Secrets Manager secret ARN, or empty."
  }
}

# ------------------------------------------------------- configured sources
# Source files (sources/<name>.toml, crates/sources) are deployed with the
# code: scripts/package.sh puts them into the ingest and load zips
# (README.md, "Configured sources and dbt").

variable "source_secrets" {
  description = "Secrets of the configured PostgreSQL sources: environment variable name (a source file's secret_env) => ARN of a Secrets Manager secret in the RDS JSON shape (host, port, username, password, dbname). The ingest function gets each variable and may read exactly these secrets."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name, arn in var.source_secrets : can(regex("^[A-Z][A-Z0-9_]*_SECRET_ARN$", name)) && !contains(["TOTESYS_SECRET_ARN", "WAREHOUSE_SECRET_ARN", "COINCAP_SECRET_ARN"], name) && can(regex("^arn:aws[a-z-]*:secretsmanager:", arn))])
    error_message = "source_secrets maps a variable name ending in _SECRET_ARN (not one of the stack's own: TOTESYS_, WAREHOUSE_, COINCAP_SECRET_ARN) to a Secrets Manager secret ARN, e.g. { OLIST_SECRET_ARN = \"arn:aws:secretsmanager:eu-west-2:123456789012:secret:olist-AbCdEf\" }."
  }
}

variable "landing_bucket" {
  description = "An existing bucket where files are dropped for the configured file sources (landing_url = \"s3://<bucket>/<prefix>\"). Empty: the stack creates one (output landing_bucket). Either way Terraform owns the bucket's event notifications once landing_prefixes is set (S3 keeps one notification configuration per bucket)."
  type        = string
  default     = ""
}

variable "landing_prefixes" {
  description = "Key prefixes of the landing bucket, one per file source (its landing_url's prefix with a trailing slash, e.g. \"partner/\"): each object created under one invokes the ingest function at once. Without them the ingest schedule still takes new files every run."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for prefix in var.landing_prefixes : can(regex("^[^/].*/$", prefix))])
    error_message = "Each landing prefix ends with a slash and does not start with one, e.g. \"partner/\"."
  }
}
