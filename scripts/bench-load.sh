#!/usr/bin/env bash
# Benchmark of `tributary load` against the cheapest possible load of the same
# rows, per warehouse table, measured in the same run.
#
#   scripts/bench-load.sh                      (after scripts/bench-ingest.sh made bench_totesys)
#   BENCH_LOAD_RUNS=1 BENCH_LOAD_FK_COPY=0 scripts/bench-load.sh     # quick
#
# scripts/bench-pipeline.sh calls it with the processed lake it made; alone,
# it ingests and transforms the bench source into a temporary lake first.
#
# What it measures, per table of the star schema:
#  * load: `tributary load` of the processed lake into a fresh warehouse
#    database, BENCH_LOAD_RUNS times. Per table, the time the loader logs
#    ("table loaded" at info: ms = everything for that table; staged_ms =
#    COPY in, Parquet decoded on the way; check_ms = reference check;
#    index_ms = index builds), and the wall time of the whole process.
#  * floor: the same rows, exported from the loaded warehouse with
#    `\copy (select <columns>) to <file> (format binary)`, then
#    `\copy <copy of the table> (<columns>) from <file> (format binary)` into a
#    copy made with CREATE TABLE … (LIKE …): no primary key, no unique
#    constraint, no index, no foreign key, NOT NULL kept, and the serial record
#    key of a fact filled by its own sequence (nextval per row, as the
#    warehouse's default would). Nothing can put those rows into PostgreSQL
#    faster: that is the floor.
#  * +keys: the same COPY into a copy with the table's primary key and unique
#    index (LIKE … INCLUDING INDEXES): what maintaining them row by row costs.
#  * +keys+FKs (facts, once, BENCH_LOAD_FK_COPY=1): the same again with the
#    table's foreign keys, so PostgreSQL checks every reference with a per-row
#    trigger: what a load that simply keeps every constraint on costs.
#  Floor and +keys run BENCH_LOAD_RUNS times, alternating; best runs compared.
#
# Goal (printed, not enforced): per fact table, load / floor <= 1.5 (best
# over best). Dimensions and the whole process are shown, without a goal.
#
# Environment: BENCH_DB (source, default bench_totesys), BENCH_WAREHOUSE_DB
# (default bench_warehouse; dropped and recreated, left loaded afterwards),
# BENCH_LOAD_RUNS (default 5), BENCH_LOAD_FK_COPY (default 1),
# BENCH_PROCESSED_URL (a processed lake to load; default: made here),
# TRIBUTARY_BIN (default: cargo build --release -p tributary), TMPDIR.
#
# It is a benchmark, not a test: it exits 0 when a goal is missed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PROG=bench-load
GOAL_RATIO=1.5

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

RUNS="${BENCH_LOAD_RUNS:-5}"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_LOAD_RUNS must be a positive integer, got '$RUNS'"
FK_COPY="${BENCH_LOAD_FK_COPY:-1}"
warehouse_db="${BENCH_WAREHOUSE_DB:-bench_warehouse}"
[[ "$warehouse_db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "BENCH_WAREHOUSE_DB must be a plain lower-case identifier"
case "$warehouse_db" in
    totesys | warehouse | postgres | template0 | template1 | "${BENCH_DB:-bench_totesys}")
        die "BENCH_WAREHOUSE_DB must not be '$warehouse_db': this script drops and recreates it"
        ;;
esac
command -v psql >/dev/null || die "psql not found"

scripts/local-stack.sh start >/dev/null 2>&1
eval "$(scripts/local-stack.sh env)"
base="${TOTESYS_DATABASE_URL%/*}"
source_url="$base/${BENCH_DB:-bench_totesys}"
warehouse_url="$base/$warehouse_db"

if [[ -n "${TRIBUTARY_BIN:-}" ]]; then
    bin="$TRIBUTARY_BIN"
else
    cargo build --release -p tributary >&2
    bin="${CARGO_TARGET_DIR:-$root/target}/release/tributary"
fi
[[ -x "$bin" ]] || die "tributary binary not found at $bin"

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-load.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [[ -n "${BENCH_PROCESSED_URL:-}" ]]; then
    processed_url="$BENCH_PROCESSED_URL"
    raw_url="file://$work/raw-unused"
else
    orders=$(psql -X "$source_url" -Atc "select count(*) from sales_order" 2>/dev/null || echo 0)
    [[ "${orders:-0}" -ge 1000000 ]] ||
        die "bench source ${BENCH_DB:-bench_totesys} needs >= 1M sales orders; run scripts/bench-ingest.sh first"
    raw_url="file://$work/raw"
    processed_url="file://$work/processed"
    log "making the processed lake: ingest + transform of ${BENCH_DB:-bench_totesys}"
    RUST_LOG=warn "$bin" ingest --totesys-url "$source_url" --raw-url "$raw_url" >/dev/null
    RUST_LOG=warn "$bin" transform --totesys-url "$source_url" --warehouse-url "$warehouse_url" \
        --raw-url "$raw_url" --processed-url "$processed_url" >/dev/null
fi

q() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -At -d "$warehouse_url" "$@"; }
now() { date +%s.%N; }

# ----------------------------------------------------------------------------
# 1. tributary load into a fresh warehouse database

# Peak RSS of the load process, when GNU time is there.
time_cmd=()
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M true >/dev/null 2>&1; then
    time_cmd=(/usr/bin/time -f %M -o "$work/load.rss")
fi

# load_run RUN: writes load-<run>.tsv (table, ms, staged_ms, check_ms,
# index_ms, path, rows) and load-<run>.wall.
load_run() {
    local run="$1" t0 t1
    PGOPTIONS='-c client_min_messages=warning' psql -X -q "$TRIBUTARY_PG_ADMIN_URL" \
        -c "drop database if exists $warehouse_db with (force)" -c "create database $warehouse_db" \
        -c "checkpoint"
    t0=$(now)
    RUST_LOG=tributary_warehouse::load=info,warn "${time_cmd[@]}" "$bin" load --totesys-url "$source_url" \
        --warehouse-url "$warehouse_url" --raw-url "$raw_url" --processed-url "$processed_url" \
        >"$work/load-$run.out" 2>"$work/load-$run.err" || {
        cat "$work/load-$run.err" >&2
        die "tributary load failed (run $run)"
    }
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >"$work/load-$run.wall"
    if [[ -s "$work/load.rss" ]]; then
        awk '{ printf "%.1f\n", $1 / 1024 }' "$work/load.rss" >>"$work/load.mb"
    fi
    # `table loaded table="x" path="direct" staged=… rows=… staged_ms=… check_ms=… index_ms=… ms=…`
    sed 's/\x1b\[[0-9;]*m//g' "$work/load-$run.err" | awk '/table loaded/ {
        delete f
        for (i = 1; i <= NF; i++) if (split($i, kv, "=") == 2) { gsub(/"/, "", kv[2]); f[kv[1]] = kv[2] }
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f["table"], f["ms"], f["staged_ms"],
            (f["check_ms"] == "" ? "-" : f["check_ms"]), (f["index_ms"] == "" ? "-" : f["index_ms"]),
            (f["path"] == "" ? "-" : f["path"]), f["rows"] }' >"$work/load-$run.tsv"
    [[ -s "$work/load-$run.tsv" ]] || die "no 'table loaded' lines in the load's log (run $run)"
    log "load run $run: $(cat "$work/load-$run.wall") s"
}

# ----------------------------------------------------------------------------
# 2. The same rows, exported from the loaded warehouse, and the copies to COPY
#    them into: a database of their own (the warehouse's DDL, its dimensions
#    loaded for the copies with foreign keys), schema bench_copy.

copies_db="${warehouse_db}_copies"
copies_url="$base/$copies_db"
c() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -At -d "$copies_url" "$@"; }
declare -A cols serial

export_and_make_copies() {
    tables=$(cut -f1 "$work/load-1.tsv")
    for t in $tables; do
        cols[$t]=$(q -c "select string_agg(quote_ident(column_name), ', ' order by ordinal_position)
            from information_schema.columns where table_schema = 'public' and table_name = '$t'
            and coalesce(column_default, '') not like 'nextval(%'")
        serial[$t]=$(q -c "select coalesce(string_agg(quote_ident(column_name), ''), '')
            from information_schema.columns where table_schema = 'public' and table_name = '$t'
            and column_default like 'nextval(%'")
        q -c "\\copy (select ${cols[$t]} from public.$t) to '$work/$t.bin' (format binary)"
    done
    PGOPTIONS='-c client_min_messages=warning' psql -X -q "$TRIBUTARY_PG_ADMIN_URL" \
        -c "drop database if exists $copies_db with (force)" -c "create database $copies_db"
    RUST_LOG=warn "$bin" warehouse init --totesys-url "$source_url" --warehouse-url "$copies_url" \
        --raw-url "$raw_url" --processed-url "$processed_url" >/dev/null
    c -c "create schema bench_copy"
    for t in $tables; do
        [[ "$t" == dim_* ]] && c -c "\\copy public.$t (${cols[$t]}) from '$work/$t.bin' (format binary)"
        make_copy "$t" floor ""
        make_copy "$t" keys "including indexes"
    done
}

# make_copy TABLE SUFFIX LIKE-OPTIONS: bench_copy.<table>_<suffix>, its serial
# (if any) on a sequence of its own.
make_copy() {
    local t="$1" suffix="$2" like="$3" copy="bench_copy.${1}_$2"
    c -c "create table $copy (like public.$t $like)"
    if [[ -n "${serial[$t]}" ]]; then
        c -c "create sequence ${copy}_seq owned by $copy.${serial[$t]}" \
            -c "alter table $copy alter ${serial[$t]} set default nextval('${copy}_seq')"
    fi
}

# timed_copies SUFFIX: one psql session that empties every copy
# bench_copy.<table>_<suffix>, checkpoints, then \copy-es the tables in the
# loader's order, one after the other as the loader does (so a table pays for
# the dirty buffers and WAL of those before it, as in the load); appends each
# table's seconds to $work/<table>.<suffix>.
timed_copies() {
    local suffix="$1" t script="$work/copies.sql" out="$work/copies.out"
    {
        printf 'truncate %s restart identity;\ncheckpoint;\n\\timing on\n' \
            "$(for t in $tables; do printf 'bench_copy.%s_%s ' "$t" "$suffix"; done | sed 's/ $//; s/ /, /g')"
        for t in $tables; do
            printf '\\copy bench_copy.%s_%s (%s) from %s (format binary)\n' \
                "$t" "$suffix" "${cols[$t]}" "'$work/$t.bin'"
        done
    } >"$script"
    c -f "$script" >"$out"
    paste <(printf '%s\n' $tables) <(awk '/^Time:/ { printf "%.3f\n", $2 / 1000 }' "$out") |
        while IFS=$'\t' read -r t secs; do
            [[ -n "$secs" ]] || die "no time for the COPY into bench_copy.${t}_$suffix"
            echo "$secs" >>"$work/$t.$suffix"
        done
}

# timed_copy TABLE SUFFIX: prints the seconds of one \copy into bench_copy.<table>_<suffix>.
timed_copy() {
    local t="$1" copy="bench_copy.${1}_$2"
    c -c "truncate $copy restart identity" -c "checkpoint" >/dev/null
    psql -X -q -v ON_ERROR_STOP=1 -d "$copies_url" \
        -c '\timing on' -c "\\copy $copy (${cols[$t]}) from '$work/$t.bin' (format binary)" |
        awk '/^Time:/ { printf "%.3f\n", $2 / 1000 }'
}

# ----------------------------------------------------------------------------
# 3. RUNS rounds: a load, then floor and +keys of every table, so that both
#    see the same machine (other work on it slows both alike)

for ((run = 1; run <= RUNS; run++)); do
    load_run "$run"
    ((run == 1)) && export_and_make_copies
    timed_copies floor
    timed_copies keys
    log "floor run $run done"
done

# +keys+FKs: facts only (dimensions have no foreign keys), once.
if [[ "$FK_COPY" == 1 ]]; then
    for t in $tables; do
        [[ "$t" == fact_* ]] || continue
        make_copy "$t" fks "including indexes"
        c -c "select 'alter table bench_copy.${t}_fks add ' || pg_get_constraintdef(oid) || ';'
              from pg_constraint where conrelid = 'public.$t'::regclass and contype = 'f'" |
            c >/dev/null
        log "COPY into a copy of $t with its foreign keys (per-row triggers; slow)"
        timed_copy "$t" fks >"$work/$t.fks"
    done
fi
PGOPTIONS='-c client_min_messages=warning' psql -X -q "$TRIBUTARY_PG_ADMIN_URL" \
    -c "drop database if exists $copies_db with (force)"

# ----------------------------------------------------------------------------
# 4. Report

best() { sort -g "$@" | head -n 1; }
median() { sort -g "$@" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# Column N of TABLE's row in every load-<run>.tsv, one value a line.
load_col() { awk -F'\t' -v t="$1" -v c="$2" '$1 == t { print $c }' "$work"/load-*.tsv; }

{
    echo
    echo "================ load benchmark: tributary load vs COPY into a copy of each table ================"
    echo "(seconds; best of $RUNS runs, median in brackets; load phases of its best run: COPY in / check / index build)"
    printf '%-20s %9s  %-15s  %-15s  %10s  %-15s  %-20s  %-6s %s\n' table rows "floor" "+keys" "+keys+FKs" "load" "phases" path "load/floor"
    verdicts=""
    sum_floor=0
    for t in $tables; do
        rows=$(awk -F'\t' -v t="$t" '$1 == t { print $7; exit }' "$work/load-1.tsv")
        fb=$(best "$work/$t.floor")
        fm=$(median "$work/$t.floor")
        kb=$(best "$work/$t.keys")
        km=$(median "$work/$t.keys")
        fk="-"
        [[ -s "$work/$t.fks" ]] && fk=$(cat "$work/$t.fks")
        lb=$(load_col "$t" 2 | sort -g | head -n 1)
        lm=$(load_col "$t" 2 | median)
        phases=$(awk -F'\t' -v t="$t" -v best="$lb" '$1 == t && $2 == best { printf "%s/%s/%s", $3, $4, $5; exit }' "$work"/load-*.tsv)
        path=$(awk -F'\t' -v t="$t" '$1 == t { print $6; exit }' "$work/load-1.tsv")
        # Tables of a few hundred rows take milliseconds: no ratio.
        ratio=$(awk -v l="$lb" -v f="$fb" -v n="$rows" 'BEGIN { if (n < 10000 || f <= 0) print "-"; else printf "%.2f", (l / 1000) / f }')
        verdict=""
        if [[ "$t" == fact_* ]]; then
            verdict=$(awk -v r="$ratio" -v g="$GOAL_RATIO" 'BEGIN { print (r <= g) ? "PASS" : "MISS" }')
            ratio_median=$(awk -v l="$lm" -v f="$fm" 'BEGIN { printf "%.2f", (l / 1000) / f }')
            verdicts+="$(printf '%-44s %-5s (%s best/best, %s median/median)' \
                "goal: $t load/floor <= $GOAL_RATIO" "$verdict" "$ratio" "$ratio_median")"$'\n'
        fi
        sum_floor=$(awk -v a="$sum_floor" -v b="$fb" 'BEGIN { print a + b }')
        printf '%-20s %9s  %6.2f [%6.2f]  %6.2f [%6.2f]  %10s  %6.2f [%6.2f]  %-20s  %-6s %5s %s\n' \
            "$t" "$rows" "$fb" "$fm" "$kb" "$km" "$fk" "$(awk -v v="$lb" 'BEGIN { print v / 1000 }')" \
            "$(awk -v v="$lm" 'BEGIN { print v / 1000 }')" "${phases:-}" "$path" "$ratio" "$verdict"
    done
    wall_best=$(cat "$work"/load-*.wall | sort -g | head -n 1)
    wall_median=$(cat "$work"/load-*.wall | median)
    total_rows=$(awk -F'\t' '{ s += $7 } END { print s }' "$work/load-1.tsv")
    peak_mb="-"
    [[ -s "$work/load.mb" ]] && peak_mb=$(sort -g "$work/load.mb" | tail -n 1)
    printf '%-20s %9s  %6.2f (sum of floors)  %s\n' "all 11 tables" "$total_rows" "$sum_floor" \
        "$(printf 'tributary load, whole process: %.2f s best [%.2f median], %.2fx the summed floor, peak %s MB' \
            "$wall_best" "$wall_median" "$(awk -v a="$wall_best" -v b="$sum_floor" 'BEGIN { print a / b }')" "$peak_mb")"
    # One line for scripts/bench-pipeline.sh: whole-process best seconds, rows, peak MB.
    printf 'whole-load %s %s %s\n' "$wall_best" "$total_rows" "$peak_mb" >"$work/summary"
    echo
    printf '%s' "$verdicts"
    echo
    echo "floor:      \\copy bench_copy.<table>_floor (<columns>) from '<file>' (format binary)  -- no PK, unique, index or FK"
    echo "+keys:      the same into a copy with the primary key and unique index; +keys+FKs: and its foreign keys (once)"
    echo "load:       RUST_LOG=tributary_warehouse::load=info $bin load --warehouse-url <fresh database> --processed-url $processed_url"
    echo "            (the per-table ms of its 'table loaded' log lines; the floor reads a local file, the load decodes Parquet)"
} | tee "$work/report"
if [[ -n "${BENCH_LOAD_REPORT:-}" ]]; then
    cat "$work/summary" "$work/report" >"$BENCH_LOAD_REPORT"
fi
