#!/usr/bin/env bash
# Benchmark of the processed lake's Iceberg tables over a stretch of
# one-minute cycles: what each publication costs, how many small files the
# tables gather, and how fast maintenance compacts them.
#
#   scripts/bench-iceberg.sh                 # BENCH_CYCLES=120 one-minute cycles
#
# 1. a fresh totesys (`tributary generate --days 90`), warehouse and lakes;
#    the first `tributary run`;
# 2. BENCH_CYCLES times: one minute of business (`tributary simulate`,
#    BENCH_ORDERS_PER_CYCLE orders, squeezed into a second) and one
#    `tributary run`; each run's publication (commits, seconds) is kept;
# 3. `tributary iceberg describe`: files and average file size per table;
# 4. `tributary iceberg maintain`, timed: rows and bytes compacted per second;
# 5. `tributary iceberg describe` again, and the rows of every table read by
#    DuckDB through PyIceberg against the warehouse.
# Figures are printed; goals are not enforced (machines differ).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/local-stack.sh start >/dev/null 2>&1
eval "$(scripts/local-stack.sh env)"
export RUST_LOG=warn
cargo build --release -p tributary >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/tributary"
cycles="${BENCH_CYCLES:-120}"
orders="${BENCH_ORDERS_PER_CYCLE:-60}"
base="${TOTESYS_DATABASE_URL%/*}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for db in bench_iceberg_src bench_iceberg_wh; do
  psql "$base/postgres" -qc "drop database if exists $db" >/dev/null
  psql "$base/postgres" -qc "create database $db" >/dev/null
done
export TOTESYS_DATABASE_URL="$base/bench_iceberg_src" WAREHOUSE_DATABASE_URL="$base/bench_iceberg_wh"
export TRIBUTARY_RAW_URL="file://$work/raw" TRIBUTARY_PROCESSED_URL="file://$work/processed"
"$bin" generate --days 90 --seed 3 >/dev/null
"$bin" warehouse init >/dev/null
"$bin" run >/dev/null

printf 'running %s one-minute cycles of %s orders…\n' "$cycles" "$orders" >&2
: >"$work/publish.txt"
for _ in $(seq "$cycles"); do
  "$bin" simulate --rate $((orders * 60)) --for 1s --churn-every 20 >/dev/null
  "$bin" run | sed -n 's/^ *iceberg: \([0-9]*\) commit(s).* in \([0-9.]*\)s (slowest commit \([0-9.]*\)s.*/\1 \2 \3/p' >>"$work/publish.txt"
done

printf '\n================ iceberg benchmark (%s one-minute cycles) ================\n' "$cycles"
median=$(cut -d' ' -f2 "$work/publish.txt" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
awk -v median="$median" '{ n++; c += $1; t += $2; if ($2 > max) max = $2; if ($3 > slow) slow = $3 }
  END { printf "publication per cycle: %d cycles, %.1f commits, mean %.3f s, median %.3f s, max %.3f s; slowest single commit %.3f s\n",
        n, c / n, t / n, median, max, slow }' "$work/publish.txt"
printf '\nbefore maintenance:\n'
"$bin" iceberg describe | cut -c1-75
start=$(date +%s.%N)
"$bin" iceberg maintain --target-mb 128 >"$work/maintain.txt"
end=$(date +%s.%N)
printf '\nmaintenance (compaction and expiry of every table):\n'
cat "$work/maintain.txt"
awk -v wall="$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" 'NR > 1 { rows += $4; secs += $5 }
  END { printf "compaction: %d rows rewritten in %.3f s of compaction (%.0f rows/s); whole maintenance %.3f s\n", rows, secs, (secs > 0 ? rows / secs : 0), wall }' "$work/maintain.txt"
printf '\nafter maintenance:\n'
"$bin" iceberg describe | cut -c1-75
if scripts/iceberg.sh --install >/dev/null 2>&1; then
  printf '\nfact_sales_order rows, DuckDB through PyIceberg vs the warehouse: '
  lake=$(scripts/iceberg.sh query "$work/processed/warehouse" "select count(*) from fact_sales_order" | sed -n 's/^│ *\([0-9]*\) *│$/\1/p')
  printf '%s vs %s\n' "$lake" "$(psql "$WAREHOUSE_DATABASE_URL" -Atc 'select count(*) from fact_sales_order')"
fi
for db in bench_iceberg_src bench_iceberg_wh; do
  psql "$base/postgres" -qc "drop database if exists $db" >/dev/null
done
