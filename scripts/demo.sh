#!/usr/bin/env bash
# The local demo: generated totesys data flows into a raw lake on local files.
#
#   generate (first time only) → ingest → simulate live changes → ingest → status
#
# Runs against the local stack (scripts/local-stack.sh) and the default local
# lake under .tributary/lake; no AWS. `make demo` builds and starts what it needs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(scripts/local-stack.sh env)"
export RUST_LOG="${RUST_LOG:-warn}"
bin="${CARGO_TARGET_DIR:-$root/target}/debug/tributary"
[ -x "$bin" ] || cargo build -p tributary
step() { printf '\n== %s\n' "$*"; }

tables=$(psql "$TOTESYS_DATABASE_URL" -Atc "select count(*) from information_schema.tables where table_schema = 'public' and table_name = 'sales_order'")
if [ "$tables" = "0" ]; then
  step "generate: a year of totesys history"
  "$bin" generate --days 365 --seed 42
else
  step "generate: the totesys database already has data; keeping it"
fi

step "ingest: first run (everything not yet in the lake)"
"$bin" ingest

step "simulate: ${DEMO_SIMULATE_FOR:-20s} of live orders, payments and reference changes"
"$bin" simulate --rate "${DEMO_RATE:-120}" --for "${DEMO_SIMULATE_FOR:-20s}" --churn-every 10

step "ingest: only what changed"
started=$(date +%s%N)
"$bin" ingest
echo "incremental run took $(( ($(date +%s%N) - started) / 1000000 )) ms, process start to commit"

step "status"
"$bin" status
printf '\nraw lake: %s\n' "$root/.tributary/lake/raw"
