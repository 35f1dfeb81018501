#!/usr/bin/env bash
# Static checks of the Terraform in infra/, the ones that work without the
# provider registry (so without `terraform init/validate`):
#   1. terraform fmt -check -recursive infra
#   2. checkov with infra/.checkov.yaml (each skipped check is justified there)
# The wiring itself (alarms per function, permissions per notification, ...) is
# checked by `cargo nextest run --workspace -E 'binary(infra_wiring)'` (part of `make test`).
#
# checkov lives in its own virtualenv under ${TRIBUTARY_CACHE:-~/.cache/tributary}
# and is installed there on first use: it pins old boto3/botocore versions that,
# installed next to the system's awscli and moto (which the tests' moto_server
# needs), would break them.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
venv="$cache/checkov"

if ! command -v terraform >/dev/null 2>&1; then
  echo "check-infra: terraform is not installed; install Terraform >= 1.5 to check infra/" >&2
  exit 1
fi

echo "== terraform fmt -check -recursive infra"
if ! terraform fmt -check -recursive infra; then
  echo "check-infra: infra/ is not formatted; run 'terraform fmt -recursive infra'" >&2
  exit 1
fi

if [ ! -x "$venv/bin/checkov" ]; then
  echo "== installing checkov into $venv (a private virtualenv, see the header of $0)"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet checkov
fi

echo "== checkov ($("$venv/bin/checkov" --version))"
# The config names the directory, framework and skips; --skip-download keeps
# checkov offline (no policy download from the vendor's platform).
"$venv/bin/checkov" --config-file infra/.checkov.yaml --skip-download
echo "check-infra: ok"
