#!/usr/bin/env bash
# Benchmark of transform and load at >= 1M sales orders, and of a one-minute
# change set going from the source to the warehouse.
#
#   scripts/bench-pipeline.sh            (after scripts/bench-ingest.sh made bench_totesys)
#
# 1. ingest the whole bench source into a fresh file lake (the input);
# 2. `tributary transform`: raw → star schema, timed, peak RSS; fact rows/s;
# 3. scripts/bench-load.sh: `tributary load` into a fresh warehouse database
#    (BENCH_LOAD_RUNS times), side by side with its floor measured in the
#    same run: per table, a binary COPY of the same rows into a copy of the
#    table without keys, unique constraint, index or foreign keys (and into
#    copies with them, to show what they cost); see that script;
# 4. `tributary simulate` one minute of live changes (60 orders/min plus the
#    payments falling due), then one `tributary run`, timed end to end.
# Goals (printed, not enforced): transform >= 1M fact rows/s; load <= 1.5x its
# floor per fact table; the one-minute change set in under 2 s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v /usr/bin/time >/dev/null || { echo "GNU time is missing: apt-get install -y time" >&2; exit 1; }
scripts/local-stack.sh start >/dev/null 2>&1
eval "$(scripts/local-stack.sh env)"
export RUST_LOG=warn
cargo build --release -p tributary >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/tributary"
base="${TOTESYS_DATABASE_URL%/*}"
source_url="$base/${BENCH_DB:-bench_totesys}"
warehouse_db="${BENCH_WAREHOUSE_DB:-bench_warehouse}"
orders=$(psql "$source_url" -Atc "select count(*) from sales_order" 2>/dev/null || echo 0)
if [ "${orders:-0}" -lt 1000000 ]; then
  echo "bench source ${BENCH_DB:-bench_totesys} needs >= 1M sales orders; run scripts/bench-ingest.sh first" >&2
  exit 1
fi
psql "$TRIBUTARY_PG_ADMIN_URL" -qc "drop database if exists $warehouse_db with (force)" -c "create database $warehouse_db"
warehouse_url="$base/$warehouse_db"
lake=$(mktemp -d)
trap 'rm -rf "$lake"' EXIT
flags=(--totesys-url "$source_url" --warehouse-url "$warehouse_url"
       --raw-url "file://$lake/raw" --processed-url "file://$lake/processed")

# Prints "<seconds> <peak RSS MB>" of a command; its stdout goes to $lake/out.
measure() {
  /usr/bin/time -f "%e %M" -o "$lake/time" "$@" >"$lake/out"
  awk '{ printf "%s %.1f\n", $1, $2 / 1024 }' "$lake/time"
}

read -r ingest_s ingest_mb < <(measure "$bin" ingest "${flags[@]}")
echo "ingest (input):  ${ingest_s}s, peak ${ingest_mb} MB"
read -r transform_s transform_mb < <(measure "$bin" transform "${flags[@]}")
cat "$lake/out"
facts=$(awk '$1 ~ /^fact_/ { sum += $2 } END { print sum + 0 }' "$lake/out")
all_rows=$(awk '$1 ~ /^(fact_|dim_)/ { sum += $2 } END { print sum + 0 }' "$lake/out")
BENCH_PROCESSED_URL="file://$lake/processed" TRIBUTARY_BIN="$bin" BENCH_WAREHOUSE_DB="$warehouse_db" \
  BENCH_LOAD_REPORT="$lake/load-report" scripts/bench-load.sh
read -r _ load_s load_rows load_mb < <(head -n 1 "$lake/load-report")

echo "one minute of live changes (60 orders/min)…"
"$bin" simulate --totesys-url "$source_url" --rate 60 --for 60s --churn-every 30 >/dev/null
read -r change_s change_mb < <(measure "$bin" run "${flags[@]}")
cat "$lake/out"

awk -v facts="$facts" -v ts="$transform_s" -v tm="$transform_mb" \
    -v ls="$load_s" -v rows="$load_rows" -v lm="$load_mb" -v cs="$change_s" -v cm="$change_mb" 'BEGIN {
  tr = facts / ts; lr = rows / ls
  printf "\n================ pipeline benchmark ================\n"
  printf "transform   %8.2f s  %10d fact rows  %10.0f fact rows/s  peak %6.1f MB   goal >= 1,000,000/s: %s\n", ts, facts, tr, tm, (tr >= 1000000 ? "PASS" : "MISS")
  printf "load        %8.2f s  %10d rows       %10.0f rows/s       peak %6s MB   goal: load/floor <= 1.5 per fact table, below\n", ls, rows, lr, lm
}'
grep '^goal: fact_' "$lake/load-report"
awk -v cs="$change_s" -v cm="$change_mb" 'BEGIN {
  printf "1-min change set, source to warehouse (one tributary run, process start to exit): %.2f s, peak %.1f MB   goal < 2 s: %s\n", cs, cm, (cs < 2 ? "PASS" : "MISS")
}'
