#!/usr/bin/env bash
# Init time and peak RSS of each Lambda function binary (host release build)
# under a minimal local Runtime API (scripts/lambda-runtime-bench.py), on the
# demo's data: a year of generated totesys history, the first (largest)
# ingest → transform → load, then a Kinesis batch through stream-sink.
# Lakes are local directories; the databases are the local stack's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(scripts/local-stack.sh env)"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p tributary-lambdas -p tributary --bins
bin="$target/release"
admin="$TRIBUTARY_PG_ADMIN_URL"
for db in bench_lambda_src bench_lambda_wh; do
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done
base=${TOTESYS_DATABASE_URL%/*}
export TOTESYS_DATABASE_URL="$base/bench_lambda_src" WAREHOUSE_DATABASE_URL="$base/bench_lambda_wh"
lake=$(mktemp -d)
trap 'rm -rf "$lake"' EXIT
export TRIBUTARY_RAW_URL="file://$lake/raw" TRIBUTARY_PROCESSED_URL="file://$lake/processed"
mkdir -p "$lake/raw" "$lake/processed"
unset TRIBUTARY_ALERT_TOPIC_ARN TRIBUTARY_STREAM_NAME TRIBUTARY_GLUE_DATABASE
export RUST_LOG=warn
echo "bench-lambdas: generating a year of totesys history (as make demo does)"
"$bin/tributary" generate --days 365 --seed 42 >/dev/null
"$bin/tributary" warehouse init >/dev/null
fixtures=crates/lambdas/fixtures
run() { python3 scripts/lambda-runtime-bench.py "$bin/$1" "$2" "$3"; }
echo "bench-lambdas: first runs (everything) — init_ms, handler_ms, max_rss_mb"
run ingest "$fixtures/ingest-schedule.json" 256
run transform "$fixtures/transform-s3.json" 512
run load "$fixtures/load-s3.json" 256
run stream-sink "$fixtures/stream-sink-kinesis.json" 128
echo "bench-lambdas: a quiet minute (nothing new) — the steady state"
run ingest "$fixtures/ingest-schedule.json" 256
run transform "$fixtures/transform-s3.json" 512
run load "$fixtures/load-schedule.json" 256
for db in bench_lambda_src bench_lambda_wh; do
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
done
