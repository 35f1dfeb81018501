#!/usr/bin/env bash
# Benchmark of transform and load at >= 1M sales orders, and of a one-minute
# change set going from the source to the warehouse.
#
#   scripts/bench-pipeline.sh            (after scripts/bench-ingest.sh made bench_totesys)
#
# 1. ingest the whole bench source into a fresh file lake (the input);
# 2. `tributary transform`: raw → star schema, timed, peak RSS; fact rows/s;
#    side by side, in the same run (best of BENCH_TRANSFORM_RUNS, default 2):
#    its floor (`tributary bench-transform-floor`: decode the raw Parquet the
#    transform read and encode the output it wrote, side by side on two
#    threads with the same settings, no work between) and its peer (scripts/transform_peer.py: the same
#    remodel in pandas, installed into ~/.cache/tributary/peer-venv);
# 3. scripts/bench-load.sh: `tributary load` into a fresh warehouse database
#    (BENCH_LOAD_RUNS times), side by side with its floor measured in the
#    same run: per table, a binary COPY of the same rows into a copy of the
#    table without keys, unique constraint, index or foreign keys (and into
#    copies with them, to show what they cost); see that script;
# 4. `tributary simulate` one minute of live changes (60 orders/min plus the
#    payments falling due), then one `tributary run`, timed end to end.
# Goals (printed, not enforced): transform >= 1M fact rows/s and >= 5x faster
# than the pandas peer; load <= 1.5x its floor per fact table; the one-minute
# change set in under 1 s.
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
# The pandas peer's interpreter: a venv of its own, made once.
peer_python="$HOME/.cache/tributary/peer-venv/bin/python"
if ! "$peer_python" -c 'import pandas, pyarrow' 2>/dev/null; then
  echo "installing the transform peer's pandas and pyarrow into ~/.cache/tributary/peer-venv…" >&2
  python3 -m venv "$HOME/.cache/tributary/peer-venv" >&2 &&
    "$HOME/.cache/tributary/peer-venv/bin/pip" install -q pandas pyarrow >&2 ||
    echo "could not install pandas and pyarrow (pip); the peer is skipped" >&2
fi
runs=${BENCH_TRANSFORM_RUNS:-2}
best() { sort -n | head -n 1; }
for run in $(seq "$runs"); do
  rm -rf "$lake/processed" "$lake/peer"
  read -r s mb < <(measure "$bin" transform "${flags[@]}")
  echo "$s $mb" >>"$lake/transform_s"
  cp "$lake/out" "$lake/transform-out"
  # The floor reads the output just written (not timed) and then decodes the
  # raw files and encodes that output again, side by side (timed).
  "$bin" bench-transform-floor --raw-url "file://$lake/raw" --processed-url "file://$lake/processed" >"$lake/floor-out"
  cat "$lake/floor-out"
  sed -n 's/^transform floor: \([0-9.]*\)s .*/\1/p' "$lake/floor-out" >>"$lake/floor_s"
  if "$peer_python" -c 'import pandas, pyarrow' 2>/dev/null; then
    read -r s mb < <(measure "$peer_python" scripts/transform_peer.py "$lake/raw" "$lake/peer")
    cat "$lake/out"
    echo "$s $mb" >>"$lake/peer_s"
  fi
done
rm -rf "$lake/peer"
cp "$lake/transform-out" "$lake/out"
cat "$lake/out"
floor_s=$(best <"$lake/floor_s")
read -r transform_s transform_mb < <(sort -n "$lake/transform_s" | head -n 1)
read -r peer_s peer_mb < <(sort -n "$lake/peer_s" 2>/dev/null | head -n 1 || true)
facts=$(awk '$1 ~ /^fact_/ { sum += $2 } END { print sum + 0 }' "$lake/out")
all_rows=$(awk '$1 ~ /^(fact_|dim_)/ { sum += $2 } END { print sum + 0 }' "$lake/out")
BENCH_PROCESSED_URL="file://$lake/processed" TRIBUTARY_BIN="$bin" BENCH_WAREHOUSE_DB="$warehouse_db" \
  BENCH_LOAD_REPORT="$lake/load-report" scripts/bench-load.sh
read -r _ load_s load_rows load_mb < <(head -n 1 "$lake/load-report")

echo "one minute of live changes (60 orders/min)…"
"$bin" simulate --totesys-url "$source_url" --rate 60 --for 60s --churn-every 30 >/dev/null
read -r change_s change_mb < <(measure "$bin" run "${flags[@]}")
cat "$lake/out"
# The cycle prints "dimension histories <ms> ms; aggregates: <n> day(s)
# recomputed in <ms> ms" (and the same for the trade aggregates).
history_ms=$(sed -n 's/.*dimension histories \([0-9.]*\) ms.*/\1/p' "$lake/out" | head -n 1)
aggregates=$(sed -n 's/.*aggregates: \([0-9]*\) day(s) recomputed in \([0-9.]*\) ms.*/\1 \2/p' "$lake/out" | head -n 1)

awk -v facts="$facts" -v ts="$transform_s" -v tm="$transform_mb" -v fs="$floor_s" -v ps="${peer_s:-0}" -v pm="${peer_mb:-0}" \
    -v ls="$load_s" -v rows="$load_rows" -v lm="$load_mb" -v cs="$change_s" -v cm="$change_mb" 'BEGIN {
  tr = facts / ts; lr = rows / ls
  printf "\n================ pipeline benchmark ================\n"
  printf "transform   %8.2f s  %10d fact rows  %10.0f fact rows/s  peak %6.1f MB   goal >= 1,000,000/s: %s\n", ts, facts, tr, tm, (tr >= 1000000 ? "PASS" : "MISS")
  printf "  its floor %8.2f s  (decode raw + encode output, no work): transform/floor = %.2fx\n", fs, ts / fs
  if (ps > 0) printf "  pandas    %8.2f s  peak %6.1f MB: transform is %.1fx faster   goal >= 5x: %s\n", ps, pm, ps / ts, (ps / ts >= 5 ? "PASS" : "MISS")
  else printf "  pandas peer skipped (pandas or pyarrow missing)\n"
  printf "load        %8.2f s  %10d rows       %10.0f rows/s       peak %6s MB   goal: load/floor <= 1.5 per fact table, below\n", ls, rows, lr, lm
}'
grep '^goal: fact_' "$lake/load-report"
awk -v cs="$change_s" -v cm="$change_mb" 'BEGIN {
  printf "1-min change set, source to warehouse (one tributary run, process start to exit): %.2f s, peak %.1f MB   goal < 1 s: %s\n", cs, cm, (cs < 1 ? "PASS" : "MISS")
}'
read -r agg_days agg_ms <<<"${aggregates:-0 0}"
awk -v h="${history_ms:-?}" -v d="$agg_days" -v a="$agg_ms" 'BEGIN {
  printf "  of it: dimension histories %s ms; aggregates %s day(s) in %s ms   goal < 100 ms: %s\n", h, d, a, (a + 0 < 100 ? "PASS" : "MISS")
}'
