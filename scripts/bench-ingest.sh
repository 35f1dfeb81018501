#!/usr/bin/env bash
# Benchmark of `tributary ingest` against the cheapest possible full read of the
# same data.
#
#   scripts/bench-ingest.sh
#   BENCH_SCALE=5 scripts/bench-ingest.sh          # quick smoke run
#
# What it measures:
#  * Baseline: `psql \copy (select * from sales_order) to '/dev/null' with
#    (format binary)`: the server reads the table and streams it over the
#    loopback connection to a client that throws it away. No extract can read
#    the table faster, so it is the floor we compare against.
#  * `tributary ingest` of all 11 tables, and of sales_order only
#    (`--tables sales_order`), each run into a fresh, empty file lake so every
#    run is a first run that extracts everything (Parquet files + manifest).
#    Wall seconds and peak RSS ("Maximum resident set size" of GNU time -v).
#
# Why: the ingest stage must stay close to the speed of a plain COPY (goal:
# ingest(sales_order only) / COPY <= 1.5, comparing best runs) and run in a
# small Lambda (goal: peak RSS < 128 MB) even on a table of ~1M rows, so a
# large first load or backfill cannot blow the memory or time budget.
#
# Data: a dedicated database (BENCH_DB, default bench_totesys) generated once
# with `tributary generate --scale SCALE --days 365 --seed 1`. SCALE defaults
# to 183 so sales_order has >= 1,000,000 rows (15 orders/day x 365 days x
# scale). Generation is slow, so an existing database that already has at
# least that many sales_order rows is reused as is (even if it is bigger); any
# other is dropped and regenerated. The database is left in place afterwards.
#
# Environment: BENCH_DB, BENCH_SCALE, BENCH_RUNS (runs per measurement,
# default 3), CARGO_TARGET_DIR, TMPDIR. The local stack
# (scripts/local-stack.sh) is started if needed and left running.
#
# It is a benchmark, not a test: it exits 0 when a goal is missed, and non-zero
# only when something actually fails.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
PROG="bench-ingest"

SALES_PER_DAY=15 # tributary_totesys::generate::SALES_PER_DAY
DAYS=365
SEED=1
MIN_SALES_ROWS=1000000
GOAL_RATIO=1.5
GOAL_RSS_MB=128

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

# Seconds since the epoch with nanoseconds, for wall-clock timing.
now() { date +%s.%N; }
# Difference of two `now` values, in seconds.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# Best (minimum) and median of the numbers given as arguments.
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
median() {
    local n=$#
    printf '%s\n' "$@" | sort -g | sed -n "$(((n + 1) / 2))p"
}
# Largest of the numbers given as arguments.
maximum() { printf '%s\n' "$@" | sort -g | tail -n 1; }
# a / b with the given number of decimals.
divide() { awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN { printf "%.*f", d, a / b }'; }
# PASS when a <= b (ratio goal) or a < b (RSS goal).
verdict_le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "PASS" : "MISS" }'; }
verdict_lt() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? "PASS" : "MISS" }'; }

# ----------------------------------------------------------------------------
# Parameters

BENCH_DB="${BENCH_DB:-bench_totesys}"
[[ "$BENCH_DB" =~ ^[a-z_][a-z0-9_]*$ ]] ||
    die "BENCH_DB must be a plain lower-case identifier, got '$BENCH_DB'"
case "$BENCH_DB" in
    totesys | warehouse | postgres | template0 | template1)
        die "BENCH_DB must not be '$BENCH_DB': this script drops and recreates it"
        ;;
esac

default_scale=$(((MIN_SALES_ROWS + SALES_PER_DAY * DAYS - 1) / (SALES_PER_DAY * DAYS)))
SCALE="${BENCH_SCALE:-$default_scale}"
[[ "$SCALE" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SCALE must be a positive integer, got '$SCALE'"
RUNS="${BENCH_RUNS:-3}"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, got '$RUNS'"
WANTED_ROWS=$((SALES_PER_DAY * DAYS * SCALE))

command -v psql >/dev/null || die "psql not found (apt-get install -y postgresql-client)"
command -v cargo >/dev/null || die "cargo not found"

cd "$REPO_ROOT"

# ----------------------------------------------------------------------------
# 1. Local stack

if ! scripts/local-stack.sh status >/dev/null 2>&1; then
    log "starting the local stack"
    scripts/local-stack.sh start
fi
eval "$(scripts/local-stack.sh env)"
[[ -n "${TRIBUTARY_PG_ADMIN_URL:-}" ]] || die "local-stack env did not set TRIBUTARY_PG_ADMIN_URL"
ADMIN_URL="$TRIBUTARY_PG_ADMIN_URL"
DB_URL="${ADMIN_URL%/*}/$BENCH_DB"

# psql that fails on the first error, ignores ~/.psqlrc and prints bare values.
q() {
    local url="$1"
    shift
    psql -X -q -v ON_ERROR_STOP=1 -tA -d "$url" "$@"
}

# ----------------------------------------------------------------------------
# 2. Release build

log "building: cargo build --release -p tributary"
cargo build --release -p tributary
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$REPO_ROOT/$target_dir" ;;
esac
BIN="$target_dir/release/tributary"
[[ -x "$BIN" ]] || die "built binary not found at $BIN"

# ----------------------------------------------------------------------------
# 3. Benchmark database

sales_rows_in_db() {
    local exists has_table
    exists="$(q "$ADMIN_URL" -c "select 1 from pg_database where datname = '$BENCH_DB'")"
    if [[ "$exists" != 1 ]]; then
        echo -1 # no database
        return
    fi
    has_table="$(q "$DB_URL" -c "select to_regclass('public.sales_order') is not null")"
    if [[ "$has_table" != t ]]; then
        echo 0
        return
    fi
    q "$DB_URL" -c "select count(*) from sales_order"
}

generated="reused"
gen_seconds="-"
existing_rows="$(sales_rows_in_db)"
if ((existing_rows >= WANTED_ROWS)); then
    log "reusing database $BENCH_DB: $existing_rows sales_order rows (>= $WANTED_ROWS wanted)"
else
    if ((existing_rows >= 0)); then
        log "database $BENCH_DB has $existing_rows sales_order rows (< $WANTED_ROWS wanted): dropping it"
        q "$ADMIN_URL" -c "drop database \"$BENCH_DB\" with (force)"
    fi
    q "$ADMIN_URL" -c "create database \"$BENCH_DB\""
    log "generating: scale $SCALE, $DAYS days, seed $SEED (~$WANTED_ROWS sales orders); this takes a while"
    t0="$(now)"
    "$BIN" generate --totesys-url "$DB_URL" --scale "$SCALE" --days "$DAYS" --seed "$SEED"
    t1="$(now)"
    gen_seconds="$(elapsed "$t0" "$t1")"
    generated="generated in ${gen_seconds}s"
fi
# Set hint bits and the visibility map once, and fresh statistics, so that the
# first measured read does not pay for writing them.
log "vacuum (analyze) $BENCH_DB"
q "$DB_URL" -c "vacuum (analyze)"

SALES_ROWS="$(q "$DB_URL" -c "select count(*) from sales_order")"
((SALES_ROWS > 0)) || die "sales_order is empty in $BENCH_DB"

echo
echo "== database $BENCH_DB ($generated)"
tables="$(q "$DB_URL" -c "select table_name from information_schema.tables
    where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name")"
total_rows=0
for t in $tables; do
    n="$(q "$DB_URL" -c "select count(*) from \"$t\"")"
    total_rows=$((total_rows + n))
    printf '  %-16s %10s rows\n' "$t" "$n"
done
printf '  %-16s %10s rows\n' "(all tables)" "$total_rows"
printf '  %-16s %10s\n' "size" "$(q "$DB_URL" -c "select pg_size_pretty(pg_database_size(current_database()))")"

# ----------------------------------------------------------------------------
# 4. Baseline: COPY of sales_order to /dev/null

echo
echo "== baseline: psql \\copy (select * from sales_order) to '/dev/null' with (format binary)"
copy_secs=()
for ((i = 1; i <= RUNS; i++)); do
    t0="$(now)"
    psql -X -q -v ON_ERROR_STOP=1 -d "$DB_URL" \
        -c "\\copy (select * from sales_order) to '/dev/null' with (format binary)" >/dev/null
    t1="$(now)"
    s="$(elapsed "$t0" "$t1")"
    copy_secs+=("$s")
    printf '  run %d: %8.3f s\n' "$i" "$s"
done

# ----------------------------------------------------------------------------
# 5. Ingest runs

# Peak RSS: GNU time -v, installed if missing; polling VmHWM is the fallback.
TIME_BIN=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true >/dev/null 2>&1; then
    TIME_BIN=/usr/bin/time
elif [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    log "GNU time missing: apt-get install -y time"
    if apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y time >/dev/null 2>&1; }; then
        TIME_BIN=/usr/bin/time
    fi
fi
if [[ -z "$TIME_BIN" ]]; then
    log "warning: GNU time unavailable; peak RSS comes from polling /proc/<pid>/status VmHWM and may miss the last moments of a run"
fi

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/bench-ingest.XXXXXX")"
trap 'rm -rf "$WORK_DIR"' EXIT

# run_ingest LABEL RUN [ingest flags…]: one ingest into a fresh lake. Sets
# RUN_SECS, RUN_RSS_KB, RUN_LAKE_BYTES and RUN_REPORT (path of its stdout).
run_ingest() {
    local label="$1" run="$2"
    shift 2
    local lake="$WORK_DIR/lake-$label-$run"
    local out="$WORK_DIR/$label-$run.out" err="$WORK_DIR/$label-$run.err"
    local tfile="$WORK_DIR/$label-$run.time"
    local t0 t1 rc=0 pid hwm
    mkdir "$lake"
    t0="$(now)"
    if [[ -n "$TIME_BIN" ]]; then
        "$TIME_BIN" -v -o "$tfile" \
            "$BIN" ingest --totesys-url "$DB_URL" --raw-url "file://$lake" "$@" \
            >"$out" 2>"$err" || rc=$?
        t1="$(now)"
        RUN_RSS_KB="$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$tfile")"
    else
        "$BIN" ingest --totesys-url "$DB_URL" --raw-url "file://$lake" "$@" \
            >"$out" 2>"$err" &
        pid=$!
        RUN_RSS_KB=0
        while kill -0 "$pid" 2>/dev/null; do
            hwm="$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
            [[ -n "$hwm" ]] && RUN_RSS_KB="$hwm"
            sleep 0.02
        done
        wait "$pid" || rc=$?
        t1="$(now)"
    fi
    if ((rc != 0)); then
        cat "$err" >&2
        die "ingest ($label, run $run) failed with exit code $rc"
    fi
    [[ -n "$RUN_RSS_KB" ]] || die "could not read the peak RSS of ingest ($label, run $run)"
    RUN_SECS="$(elapsed "$t0" "$t1")"
    RUN_LAKE_BYTES="$(du -sb "$lake" | cut -f1)"
    RUN_REPORT="$out"
    rm -rf "$lake"
}

# Rows of TABLE in an ingest report (stdout of `tributary ingest`).
report_rows() { awk -v t="$2" '$1 == t { print $2 }' "$1"; }

all_secs=() all_rss=()
so_secs=() so_rss=()
rows_warning=""

echo
echo "== ingest, all 11 tables, each run into a fresh empty file lake"
for ((i = 1; i <= RUNS; i++)); do
    run_ingest all "$i"
    all_secs+=("$RUN_SECS")
    all_rss+=("$RUN_RSS_KB")
    printf '  run %d: %8.3f s  peak RSS %7.1f MB  lake %7.1f MB\n' "$i" "$RUN_SECS" \
        "$(divide "$RUN_RSS_KB" 1024 1)" "$(divide "$RUN_LAKE_BYTES" 1048576 1)"
    if ((i == 1)); then
        sed 's/^/    | /' "$RUN_REPORT"
        all_lake_bytes="$RUN_LAKE_BYTES"
    fi
    got="$(report_rows "$RUN_REPORT" sales_order)"
    [[ "$got" == "$SALES_ROWS" ]] ||
        rows_warning+="  WARNING: all-tables run $i extracted '${got:-?}' sales_order rows, the table has $SALES_ROWS"$'\n'
done

echo
echo "== ingest --tables sales_order, each run into a fresh empty file lake"
for ((i = 1; i <= RUNS; i++)); do
    run_ingest sales_order "$i" --tables sales_order
    so_secs+=("$RUN_SECS")
    so_rss+=("$RUN_RSS_KB")
    printf '  run %d: %8.3f s  peak RSS %7.1f MB  lake %7.1f MB\n' "$i" "$RUN_SECS" \
        "$(divide "$RUN_RSS_KB" 1024 1)" "$(divide "$RUN_LAKE_BYTES" 1048576 1)"
    if ((i == 1)); then
        sed 's/^/    | /' "$RUN_REPORT"
    fi
    got="$(report_rows "$RUN_REPORT" sales_order)"
    [[ "$got" == "$SALES_ROWS" ]] ||
        rows_warning+="  WARNING: sales_order-only run $i extracted '${got:-?}' sales_order rows, the table has $SALES_ROWS"$'\n'
done

# ----------------------------------------------------------------------------
# 6. Summary

copy_best="$(best "${copy_secs[@]}")"
copy_median="$(median "${copy_secs[@]}")"
all_best="$(best "${all_secs[@]}")"
all_median="$(median "${all_secs[@]}")"
so_best="$(best "${so_secs[@]}")"
so_median="$(median "${so_secs[@]}")"
rows_per_sec="$(divide "$SALES_ROWS" "$so_best" 0)"
ratio_best="$(divide "$so_best" "$copy_best" 2)"
ratio_median="$(divide "$so_median" "$copy_median" 2)"
rss_all_mb="$(divide "$(maximum "${all_rss[@]}")" 1024 1)"
rss_so_mb="$(divide "$(maximum "${so_rss[@]}")" 1024 1)"
rss_max_mb="$(divide "$(maximum "${all_rss[@]}" "${so_rss[@]}")" 1024 1)"
ratio_verdict="$(verdict_le "$ratio_best" "$GOAL_RATIO")"
rss_verdict="$(verdict_lt "$rss_max_mb" "$GOAL_RSS_MB")"
if [[ -n "$TIME_BIN" ]]; then rss_source="GNU time -v"; else rss_source="VmHWM polling"; fi

repro="BENCH_DB=$BENCH_DB BENCH_SCALE=$SCALE BENCH_RUNS=$RUNS"
[[ -n "${CARGO_TARGET_DIR:-}" ]] && repro="CARGO_TARGET_DIR=$CARGO_TARGET_DIR $repro"
repro+=" scripts/bench-ingest.sh"

echo
echo "================================ summary ================================"
printf '%-44s %s\n' "database" "$BENCH_DB (scale $SCALE, $DAYS days, seed $SEED; $generated)"
printf '%-44s %s\n' "sales_order rows" "$SALES_ROWS"
printf '%-44s %s\n' "rows in all 11 tables" "$total_rows"
printf '%-44s %s\n' "runs per measurement" "$RUNS"
printf '%-44s %8.3f s best  %8.3f s median\n' "COPY sales_order (binary) to /dev/null" "$copy_best" "$copy_median"
printf '%-44s %8.3f s best  %8.3f s median\n' "ingest, all 11 tables" "$all_best" "$all_median"
printf '%-44s %8.3f s best  %8.3f s median\n' "ingest, sales_order only" "$so_best" "$so_median"
printf '%-44s %s rows/s\n' "sales_order-only ingest throughput (best)" "$rows_per_sec"
printf '%-44s %s (best/best), %s (median/median)\n' "ratio ingest(sales_order) / COPY" "$ratio_best" "$ratio_median"
printf '%-44s %s MB all tables, %s MB sales_order only\n' "peak RSS, max across runs ($rss_source)" "$rss_all_mb" "$rss_so_mb"
printf '%-44s %s MB\n' "lake size, all tables" "$(divide "${all_lake_bytes:-0}" 1048576 1)"
echo
printf '%-44s %-6s (%s)\n' "goal: ratio <= $GOAL_RATIO" "$ratio_verdict" "$ratio_best"
printf '%-44s %-6s (%s MB)\n' "goal: peak RSS < $GOAL_RSS_MB MB" "$rss_verdict" "$rss_max_mb"
if [[ -n "$rows_warning" ]]; then
    echo
    printf '%s' "$rows_warning"
fi
echo
echo "reproduce:  $repro"
echo "one run:    $BIN ingest --totesys-url $DB_URL --raw-url file://\$(mktemp -d) --tables sales_order"
echo "(MB = 1024*1024 bytes; wall seconds include process start-up for both psql and tributary)"
