#!/usr/bin/env bash
# Time and peak memory of each stage at a given scale, to show that time grows
# linearly with the source and memory does not grow at all.
#
#   scripts/bench-scale.sh                          # bench_totesys (1M orders)
#   BENCH_DB=bench_totesys_10m BENCH_SCALE=1827 scripts/bench-scale.sh   # 10M
#
# The database is generated once (`tributary generate --scale BENCH_SCALE
# --days 365 --seed 1`; 15 orders a day per scale unit) and reused. Each stage
# runs as the CLI runs it, into a fresh file lake and warehouse: a first load
# larger than TRIBUTARY_INGEST_MAX_ROWS (default 5M rows) is read in parts,
# and transform and load take on at most 5M rows per run, one run after
# another in the same process, so peak RSS covers every part.
# BENCH_KEEP=1 keeps the lake and the warehouse for a look afterwards.
# Goals at 10M orders (42M rows), printed: peak RSS of ingest <= 128 MB,
# transform <= 256 MB, load <= 256 MB; transform >= 1M fact rows/s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v /usr/bin/time >/dev/null || { echo "GNU time is missing: apt-get install -y time" >&2; exit 1; }
scripts/local-stack.sh start >/dev/null 2>&1
eval "$(scripts/local-stack.sh env)"
export RUST_LOG=warn
cargo build --release -p tributary >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/tributary"
db="${BENCH_DB:-bench_totesys}"
[[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "BENCH_DB must be a plain identifier" >&2; exit 1; }
base="${TOTESYS_DATABASE_URL%/*}"
if ! psql "$base/$db" -Atc "select 1 from sales_order limit 1" >/dev/null 2>&1; then
  scale="${BENCH_SCALE:-183}"
  echo "generating $db at scale $scale (365 days)…" >&2
  psql "$TRIBUTARY_PG_ADMIN_URL" -qc "drop database if exists $db with (force)" -c "create database $db"
  "$bin" generate --totesys-url "$base/$db" --scale "$scale" --days 365 --seed 1 >&2
fi
orders=$(psql "$base/$db" -Atc "select count(*) from sales_order")
warehouse_db="${db}_scale_wh"
psql "$TRIBUTARY_PG_ADMIN_URL" -qc "drop database if exists $warehouse_db with (force)" -c "create database $warehouse_db"
lake=$(mktemp -d)
if [[ -n "${BENCH_KEEP:-}" ]]; then
  echo "BENCH_KEEP: lake kept in $lake, warehouse in database $warehouse_db" >&2
else
  trap 'rm -rf "$lake"; psql "$TRIBUTARY_PG_ADMIN_URL" -qc "drop database if exists $warehouse_db with (force)" >/dev/null 2>&1 || true' EXIT
fi
flags=(--totesys-url "$base/$db" --warehouse-url "$base/$warehouse_db"
       --raw-url "file://$lake/raw" --processed-url "file://$lake/processed")

# "<seconds> <peak RSS MB>" of a command; its stdout goes to $lake/<name>.out.
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$lake/time" "$@" >"$lake/$name.out"
  awk '{ printf "%s %.1f\n", $1, $2 / 1024 }' "$lake/time"
}
read -r ingest_s ingest_mb < <(measure ingest "$bin" ingest "${flags[@]}")
ingest_rows=$(awk '$1 ~ /^[a-z_]+$/ && $1 != "table" && $2 ~ /^[0-9]+$/ { sum += $2 } END { print sum + 0 }' "$lake/ingest.out")
parts=$(grep -c "committed manifest" "$lake/ingest.out" || true)
read -r transform_s transform_mb < <(measure transform "$bin" transform "${flags[@]}")
facts=$(awk '$1 ~ /^fact_/ && NF == 2 { sum += $2 } END { print sum + 0 }' "$lake/transform.out")
runs=$(grep -c "^transform run" "$lake/transform.out" || true)
read -r floor_s _ < <(measure floor "$bin" bench-transform-floor --raw-url "file://$lake/raw" --processed-url "file://$lake/processed")
floor_s=$(sed -n 's/^transform floor: \([0-9.]*\)s .*/\1/p' "$lake/floor.out")
read -r load_s load_mb < <(measure load "$bin" load "${flags[@]}")
load_rows=$(awk '/^load: manifest/ { sum += $5 } END { print sum + 0 }' "$lake/load.out")
loads=$(grep -c "^load: manifest" "$lake/load.out" || true)
lake_mb=$(du -sm "$lake" | cut -f1)

awk -v db="$db" -v orders="$orders" \
    -v is="$ingest_s" -v im="$ingest_mb" -v ir="$ingest_rows" -v parts="$parts" \
    -v ts="$transform_s" -v tm="$transform_mb" -v facts="$facts" -v runs="$runs" -v fs="$floor_s" \
    -v ls="$load_s" -v lm="$load_mb" -v lr="$load_rows" -v loads="$loads" -v lake="$lake_mb" 'BEGIN {
  printf "\n================ scale benchmark: %s, %d sales orders ================\n", db, orders
  printf "stage      seconds   rows          rows/s       peak MB  runs  goal (at 10M orders)\n"
  printf "ingest    %8.2f  %10d  %10.0f  %8.1f  %4d  peak <= 128 MB: %s\n", is, ir, ir / is, im, parts, (im <= 128 ? "PASS" : "MISS")
  printf "transform %8.2f  %10d  %10.0f  %8.1f  %4d  peak <= 256 MB: %s; >= 1M fact rows/s: %s; floor %.2f s (%.2fx)\n", ts, facts, facts / ts, tm, runs, (tm <= 256 ? "PASS" : "MISS"), (facts / ts >= 1000000 ? "PASS" : "MISS"), fs, ts / fs
  printf "load      %8.2f  %10d  %10.0f  %8.1f  %4d  peak <= 256 MB: %s\n", ls, lr, lr / ls, lm, loads, (lm <= 256 ? "PASS" : "MISS")
  printf "lakes on disk: %d MB\n", lake
}'
