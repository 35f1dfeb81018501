#!/usr/bin/env bash
# `make deploy` and `make destroy`: Terraform in infra/, with the same flags
# both ways (infra/README.md walks a first deploy).
#
#   scripts/deploy.sh deploy    checks, scripts/package.sh, terraform init/plan/apply
#   scripts/deploy.sh destroy   checks, terraform init, terraform destroy (asks first)
#   scripts/deploy.sh flags deploy|destroy
#                               the checks, then the Terraform flags one per
#                               line; runs nothing else (for the tests)
#
# Settings, from the environment:
#   ALERT_EMAIL    where alarms are mailed. Required, unless infra/terraform.tfvars
#                  sets alert_email.
#   PG_CA_BUNDLE   deploy only, required: the RDS CA bundle (global-bundle.pem)
#                  to put into every zip, so TLS to RDS is verified; or "none"
#                  when neither database is on RDS and their certificates chain
#                  to a public root. There is no unverified mode either way.
#   TFVARS         an extra -var-file (e.g. a per-environment file).
#   DESTROY_PROD   "yes" lets destroy run against an environment = "prod" stack.
# Every other input goes in infra/terraform.tfvars (Terraform reads it by
# itself), e.g. environment = "dev" or enable_schedules = true.
#
# Every refusal is one line on stderr naming what to set, before anything is
# built or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "$*" >&2
  exit 1
}

usage="usage: scripts/deploy.sh deploy|destroy|flags deploy|flags destroy"
mode=run
action="${1:-}"
if [[ "$action" == flags ]]; then
  mode=flags
  action="${2:-}"
fi
[[ "$action" == deploy || "$action" == destroy ]] || die "$usage"

infra="$PWD/infra"
zips="$PWD/target/lambda"
functions=(ingest transform load stream-sink)

# ---------------------------------------------------------------- checks

alert_email_in_tfvars() {
  [[ -f "$infra/terraform.tfvars" ]] && grep -Eq '^[[:space:]]*alert_email[[:space:]]*=' "$infra/terraform.tfvars"
}
if [[ -z "${ALERT_EMAIL:-}" ]] && ! alert_email_in_tfvars; then
  die "$action: set ALERT_EMAIL=you@example.com (where alarms are mailed), or alert_email in infra/terraform.tfvars"
fi

tfvars_file=""
if [[ -n "${TFVARS:-}" ]]; then
  [[ -f "$TFVARS" ]] || die "$action: TFVARS=$TFVARS is not a file"
  tfvars_file="$(cd "$(dirname "$TFVARS")" && pwd)/$(basename "$TFVARS")"
fi

# pg_ca_in_zip: deploy decides it from PG_CA_BUNDLE (and packages to match);
# destroy takes what the last package left (the zips' contents do not matter
# to a destroy, the variable only has to agree with them).
if [[ "$action" == deploy ]]; then
  bundle="${PG_CA_BUNDLE:-}"
  if [[ -z "$bundle" ]]; then
    die "deploy: set PG_CA_BUNDLE=/path/to/global-bundle.pem (the RDS CA bundle, https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem) so TLS to RDS is verified, or PG_CA_BUNDLE=none if neither database is on RDS"
  elif [[ "$bundle" == none ]]; then
    pg_ca_in_zip=false
  elif [[ ! -f "$bundle" ]]; then
    die "deploy: PG_CA_BUNDLE=$bundle is not a file; download https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem, or set PG_CA_BUNDLE=none if neither database is on RDS"
  elif ! grep -q -- '-----BEGIN CERTIFICATE-----' "$bundle"; then
    die "deploy: PG_CA_BUNDLE=$bundle holds no PEM certificate; it should be the RDS global-bundle.pem"
  else
    pg_ca_in_zip=true
  fi
else
  pg_ca_in_zip=false
  [[ ! -f "$zips/pg-ca.pem" ]] || pg_ca_in_zip=true
fi

# ------------------------------------------------------------------ flags

flags=()
[[ -z "${ALERT_EMAIL:-}" ]] || flags+=("-var=alert_email=$ALERT_EMAIL")
flags+=("-var=pg_ca_in_zip=$pg_ca_in_zip")
[[ -z "$tfvars_file" ]] || flags+=("-var-file=$tfvars_file")

if [[ "$mode" == flags ]]; then
  printf '%s\n' "${flags[@]}"
  exit 0
fi

command -v terraform >/dev/null 2>&1 || die "$action: terraform is not installed (Terraform >= 1.5, https://developer.hashicorp.com/terraform/install)"

# ------------------------------------------------------------------ deploy

has_ca() {
  python3 -c 'import sys, zipfile; sys.exit(0 if "pg-ca.pem" in zipfile.ZipFile(sys.argv[1]).namelist() else 1)' "$1"
}

if [[ "$action" == deploy ]]; then
  PG_CA_BUNDLE="$bundle" scripts/package.sh
  for fn in "${functions[@]}"; do
    zip="$zips/$fn/bootstrap.zip"
    [[ -f "$zip" ]] || die "deploy: $zip is missing after make package"
    if [[ "$pg_ca_in_zip" == true ]] && ! has_ca "$zip"; then
      die "deploy: $zip carries no pg-ca.pem although PG_CA_BUNDLE=$bundle; run PG_CA_BUNDLE=$bundle make package"
    fi
  done
  terraform -chdir="$infra" init -input=false
  terraform -chdir="$infra" plan -input=false -out tributary.plan "${flags[@]}"
  terraform -chdir="$infra" apply -input=false tributary.plan
  echo "deploy: done. Next steps (infra/README.md): confirm the alarm email, fill in the secrets, then enable_schedules = true."
  exit 0
fi

# ----------------------------------------------------------------- destroy

# Terraform evaluates the whole configuration even to destroy it, and the
# functions hash their zips: without a package, stand-ins do.
missing=0
for fn in "${functions[@]}"; do
  [[ -f "$zips/$fn/bootstrap.zip" ]] || missing=1
done
if (( missing )); then
  standins=$(mktemp -d)
  trap 'rm -rf "$standins"' EXIT
  python3 - "$standins" "${functions[@]}" <<'PY'
import os, sys, zipfile
root = sys.argv[1]
for fn in sys.argv[2:]:
    os.makedirs(os.path.join(root, fn))
    with zipfile.ZipFile(os.path.join(root, fn, "bootstrap.zip"), "w") as z:
        z.writestr("bootstrap", "stand-in for terraform destroy\n")
PY
  flags+=("-var=lambda_zip_dir=$standins")
  flags=("${flags[@]/pg_ca_in_zip=true/pg_ca_in_zip=false}")
fi

terraform -chdir="$infra" init -input=false
if [[ -n "$(terraform -chdir="$infra" state list 2>/dev/null)" ]]; then
  environment=$(terraform -chdir="$infra" output -raw environment 2>/dev/null || echo unknown)
  if [[ "$environment" != dev && "${DESTROY_PROD:-}" != yes ]]; then
    die "destroy: this stack was last applied with environment = \"$environment\", whose buckets keep their data and would stop the destroy halfway; set environment = \"dev\" in infra/terraform.tfvars and make deploy first, or DESTROY_PROD=yes after emptying the buckets yourself"
  fi
fi
terraform -chdir="$infra" destroy "${flags[@]}"
