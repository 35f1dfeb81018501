#!/usr/bin/env bash
# Benchmark of the configured-source path (`tributary sources`) against the
# cheapest full read of the same table, on made-up Olist data (and on the
# real order_payments when ../shared/olist is there).
#
#   scripts/bench-sources.sh                    # 500k orders: ~1M order_items
#   BENCH_OLIST_ORDERS=20000 scripts/bench-sources.sh   # quick smoke run
#
# What it prints:
#  1. Extract of one table through the generic path (catalog, binary COPY,
#     decode, Parquet, manifest, the first key set), a first run into an
#     empty lake, against the floor: `psql \copy (select * from T) to
#     /dev/null with (format binary)` on the same table in the same run.
#     Goal: ratio <= 1.2; peak RSS < 128 MB.
#  1b. Publication of the raw order_items into its Iceberg table (by month
#     of shipping_limit_date), against DuckDB rewriting the same raw files.
#  2. A run with nothing changed over all nine tables. Goal: < 1 s.
#  3. A month of Olist business (generate-olist --next-month) from source to
#     the dbt-built star schema: sources run (deletes checked), warehouse
#     load, `dbt build`; each step and the total.
#
# Databases: bench_olist (made up, reused when it has the wanted orders),
# bench_olist_real (the real four tables), bench_olist_wh (warehouse,
# recreated each run). BENCH_RUNS runs per figure (default 3, best kept).
set -euo pipefail
PROG=bench-sources
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh

ORDERS="${BENCH_OLIST_ORDERS:-500000}"
RUNS="${BENCH_RUNS:-3}"
[[ "$ORDERS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_OLIST_ORDERS must be a positive integer"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
GOAL_RATIO=1.2
GOAL_RSS_MB=128
GOAL_IDLE_S=1

bench_stack
bench_release_bin
work="$(mktemp -d "${TMPDIR:-/tmp}/bench-sources.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export TIMED_LOG="$work/output.log"

# ----------------------------------------------------------------------------
# Data
OLIST_URL="$(bench_db_url bench_olist)"
made="$(q "$ADMIN_URL" -c "select shobj_description(oid, 'pg_database') from pg_database where datname = 'bench_olist'")"
if [[ "$made" != "orders=$ORDERS" ]]; then
    log "generating $ORDERS Olist orders into bench_olist (once; reused afterwards)"
    bench_recreate_db bench_olist
    t0="$(now)"
    OLIST_DATABASE_URL="$OLIST_URL" "$BIN" generate-olist --orders "$ORDERS" >&2
    # Remember the scale the data was made at (months add orders later).
    q "$ADMIN_URL" -c "comment on database bench_olist is 'orders=$ORDERS'" >/dev/null
    q "$OLIST_URL" -c "vacuum analyze" >/dev/null
    log "generated in $(elapsed "$t0" "$(now)") s"
fi
REAL_URL=""
if [[ -f ../shared/olist/data.sql.gz ]]; then
    REAL_URL="$(bench_db_url bench_olist_real)"
    if [[ "$(q "$REAL_URL" -c "select count(*) from order_payments" 2>/dev/null || true)" != 103886 ]]; then
        bench_recreate_db bench_olist_real
        q "$REAL_URL" -f ../shared/olist/schema.sql >/dev/null
        gunzip -c ../shared/olist/data.sql.gz | q "$REAL_URL" >/dev/null
        q "$REAL_URL" -c "vacuum analyze" >/dev/null
    fi
else
    log "no ../shared/olist: the real order_payments is left out"
fi

export BENCH_OLIST_URL="$OLIST_URL" BENCH_OLIST_REAL_URL="$REAL_URL"
# A folder with a source file "bench" reading the tables matching $2 of the
# database in variable $1.
source_file() {
    local dir
    dir="$work/src-$(printf '%s' "$2" | tr -c 'a-z_' 'x')"
    mkdir -p "$dir"
    printf '[source]\nkind = "postgres"\nurl_env = "%s"\ninclude = ["%s"]\ndeletes_every = "10m"\n' \
        "$1" "$2" >"$dir/bench.toml"
    printf '[tables.geolocation]\nprimary_key = ["geolocation_zip_code_prefix"]\n' >>"$dir/bench.toml"
    printf '[tables.order_items]\npartition = "shipping_limit_date"\n' >>"$dir/bench.toml"
    echo "$dir"
}

# ----------------------------------------------------------------------------
# 1. Extract against the floor
printf '\n%-36s %10s %9s %9s %7s %9s %s\n' "table" "rows" "floor s" "tributary s" "ratio" "RSS MB" "verdict"
extract() { # label url-variable url table
    local label="$1" var="$2" url="$3" table="$4" dir rows floor=() run=() rss=() i out
    dir="$(source_file "$var" "$table")"
    rows="$(q "$url" -c "select count(*) from $table")"
    for ((i = 0; i < RUNS; i++)); do
        out="$(timed psql -X -q -d "$url" -c "\\copy (select * from $table) to '/dev/null' with (format binary)")"
        floor+=("${out% *}")
        rm -rf "$work/lake"
        out="$(timed "$BIN" sources --dir "$dir" --source bench --no-load --no-publish \
            --raw-url "file://$work/lake/raw" --processed-url "file://$work/lake/processed")"
        run+=("${out% *}")
        rss+=("${out#* }")
    done
    local f t r m
    f="$(best "${floor[@]}")"
    t="$(best "${run[@]}")"
    r="$(divide "$t" "$f" 2)"
    m="$(divide "$(maximum "${rss[@]}")" 1024 1)"
    printf '%-36s %10s %9s %11s %7s %9s %s\n' "$label" "$rows" "$f" "$t" "$r" "$m" \
        "$(verdict_le "$r" "$GOAL_RATIO")/$(verdict_lt "$m" "$GOAL_RSS_MB")"
    printf '    %s rows/s through tributary, %s through the floor\n' \
        "$(divide "$rows" "$t" 0)" "$(divide "$rows" "$f" 0)"
}
extract "order_items (made up)" BENCH_OLIST_URL "$OLIST_URL" order_items
if [[ -n "$REAL_URL" ]]; then
    extract "order_payments (real)" BENCH_OLIST_REAL_URL "$REAL_URL" order_payments
fi

# ----------------------------------------------------------------------------
# 1b. Publication of the raw order_items into its Iceberg table (every
# version, by month of shipping_limit_date), against DuckDB rewriting the
# same raw files as one zstd Parquet file (decode and encode by another
# engine, on the same cores).
if scripts/iceberg.sh --install >/dev/null 2>&1; then
    dir="$(source_file BENCH_OLIST_URL order_items)"
    rm -rf "$work/pub"
    "$BIN" sources --dir "$dir" --source bench --no-load --no-publish \
        --raw-url "file://$work/pub/raw" --processed-url "file://$work/pub/processed" >/dev/null
    duckdb_python="${TRIBUTARY_TOOLS:-$HOME/.cache/tributary}/iceberg-venv/bin/python"
    rows="$(q "$OLIST_URL" -c "select count(*) from order_items")"
    floor=() run=() rss=()
    for ((i = 0; i < RUNS; i++)); do
        out="$(timed "$duckdb_python" -c "import duckdb; duckdb.sql(\"copy (select * from read_parquet('$work/pub/raw/sources/bench/order_items/date=*/*.parquet')) to '$work/pub/floor.parquet' (format parquet, compression zstd)\")")"
        floor+=("${out% *}")
        rm -rf "$work/pub/processed"
        out="$(timed "$BIN" iceberg publish --raw-url "file://$work/pub/raw" \
            --processed-url "file://$work/pub/processed")"
        run+=("${out% *}")
        rss+=("${out#* }")
    done
    f="$(best "${floor[@]}")"
    t="$(best "${run[@]}")"
    printf '\n%-36s %10s %9s %11s %7s %9s\n' "order_items into Iceberg (by month)" "$rows" "$f" "$t" \
        "$(divide "$t" "$f" 2)" "$(divide "$(maximum "${rss[@]}")" 1024 1)"
    printf '    floor: DuckDB rewriting the raw files; tributary: iceberg publish (%s partition files)\n' \
        "$(find "$work/pub/processed/sources/bench/order_items/data" -name '*.parquet' | wc -l)"
else
    log "PyIceberg and DuckDB could not be installed: the publication figure is left out"
fi

# ----------------------------------------------------------------------------
# 2. All nine tables: a first run, then runs with nothing changed
dir="$(source_file BENCH_OLIST_URL "*")"
lake="$work/all"
sources() {
    WAREHOUSE_DATABASE_URL="$(bench_db_url bench_olist_wh)" \
        timed "$BIN" sources --dir "$dir" --source bench \
        --raw-url "file://$lake/raw" --processed-url "file://$lake/processed" "$@"
}
bench_recreate_db bench_olist_wh
first="$(sources --no-load)"
idle=()
for ((i = 0; i < RUNS; i++)); do
    out="$(sources --no-load)"
    idle+=("${out% *}")
done
i_best="$(best "${idle[@]}")"
printf '\nall nine tables, first run:            %8s s, %s MB peak\n' "${first% *}" "$(divide "${first#* }" 1024 1)"
printf 'all nine tables, nothing changed:      %8s s (best of %s)   %s (goal < %s s)\n' \
    "$i_best" "$RUNS" "$(verdict_lt "$i_best" "$GOAL_IDLE_S")" "$GOAL_IDLE_S"

# ----------------------------------------------------------------------------
# 3. A month of business, source to the dbt star schema
scripts/dbt.sh --install
out="$(sources)"
printf 'first load into the warehouse:         %8s s\n' "${out% *}"
mkdir -p "$work/dbt/models"
cp dbt/dbt_project.yml "$work/dbt/"
cp -r dbt/macros "$work/dbt/"
cp -r dbt/models/olist "$work/dbt/models/"
rm -f "$work/dbt/models/olist/_sources.yml"
WAREHOUSE_DATABASE_URL="$(bench_db_url bench_olist_wh)" \
    "$BIN" sources --dir "$dir" --source bench --raw-url "file://$lake/raw" \
    --processed-url "file://$lake/processed" --dbt-models "$work/dbt/models" >/dev/null
# The models name their source "olist"; this bench's source is "bench".
sed -e 's/- name: "bench"/- name: "olist"/' "$work/dbt/models/bench/_sources.yml" \
    >"$work/dbt/models/olist/_sources.yml"
rm -rf "$work/dbt/models/bench"
dbt_build() {
    WAREHOUSE_DATABASE_URL="$(bench_db_url bench_olist_wh)" DBT_PROJECT_DIR="$work/dbt" \
        timed scripts/dbt.sh build
}
out="$(dbt_build)"
printf 'dbt build, whole star:                 %8s s\n' "${out% *}"

t0="$(now)"
OLIST_DATABASE_URL="$OLIST_URL" "$BIN" generate-olist --next-month >&2
t1="$(now)"
extract_out="$(sources --no-load --check-deletes)"
load_out="$(sources)"
dbt_out="$(dbt_build)"
t2="$(now)"
printf '\na month of business (generated in %s s), source to star schema:\n' "$(elapsed "$t0" "$t1")"
printf '  sources run, deletes checked, Iceberg published: %s s, %s MB peak\n' "${extract_out% *}" "$(divide "${extract_out#* }" 1024 1)"
printf '  warehouse load:                      %8s s\n' "${load_out% *}"
printf '  dbt build:                           %8s s\n' "${dbt_out% *}"
printf '  total:                               %8s s\n' "$(elapsed "$t1" "$t2")"
