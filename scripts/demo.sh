#!/usr/bin/env bash
# The local demo: generated totesys data flows through the raw lake and the
# processed star schema into the Postgres warehouse, on local files, no AWS.
#
#   generate (first time only) → run (ingest → transform → load)
#   → simulate live changes while the pipeline runs every few seconds
#   → rows per warehouse table, change-to-warehouse latency, dashboard queries
#
# `make demo` builds and starts the local stack first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(scripts/local-stack.sh env)"
export RUST_LOG="${RUST_LOG:-warn}"
bin="${CARGO_TARGET_DIR:-$root/target}/debug/tributary"
# Only the CLI and what it links: no AWS SDK, no tests.
cargo build -p tributary --bin tributary
step() { printf '\n== %s\n' "$*"; }
simulate_for="${DEMO_SIMULATE_FOR:-30s}"

tables=$(psql "$TOTESYS_DATABASE_URL" -Atc "select count(*) from information_schema.tables where table_schema = 'public' and table_name = 'sales_order'")
if [ "$tables" = "0" ]; then
  step "generate: a year of totesys history"
  "$bin" generate --days 365 --seed 42
else
  step "generate: the totesys database already has data; keeping it"
fi

step "warehouse init (idempotent)"
"$bin" warehouse init

step "run: ingest (the tables sources/totesys.toml names) → transform → load (first run takes everything not yet loaded)"
"$bin" run

step "simulate: $simulate_for of live orders, payments and reference changes, with the pipeline running every 5s"
"$bin" simulate --rate "${DEMO_RATE:-120}" --for "$simulate_for" --churn-every 10 &
simulator=$!
trap 'kill $simulator 2>/dev/null || true' EXIT
seconds=${simulate_for%s}
"$bin" run --every 5s --cycles $(( seconds / 5 + 1 ))
wait $simulator
trap - EXIT

step "run: one last cycle after the simulation stopped, so the warehouse is caught up"
"$bin" run

step "crypto: a simulated Mercado Bitcoin on loopback; its trades to the warehouse every 5s"
replay_url="$root/.tributary/replay.url"
mkdir -p "$root/.tributary"
: >"$replay_url"
"$bin" replay --for 30s >"$replay_url" &
replay=$!
trap 'kill $replay 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ "$(wc -l <"$replay_url")" -ge 3 ] && break; sleep 0.2; done
TRIBUTARY_MERCADO_URL=$(sed -n 1p "$replay_url") TRIBUTARY_COINCAP_URL=$(sed -n 2p "$replay_url") \
  COINCAP_API_KEY=demo-key "$bin" markets --every 5s --cycles 3

step "exchange rates: ECB-style daily rates (from the same replay) for every day the facts use, into GBP"
TRIBUTARY_FX_URL=$(sed -n 3p "$replay_url") "$bin" fx --for-facts
kill $replay 2>/dev/null || true
trap - EXIT

step "olist: another database by configuration alone (examples/sources/olist.toml), no change-tracking column"
orders=$(psql "$OLIST_DATABASE_URL" -Atc "select to_regclass('public.orders') is not null")
if [ "$orders" = "f" ]; then
  "$bin" generate-olist --orders "${DEMO_OLIST_ORDERS:-20000}"
fi
"$bin" sources --dir examples/sources --source olist --dbt-models dbt/models
# Each demo run adds the next month of business: new orders, deliveries,
# purged cancellations, withdrawn reviews.
"$bin" generate-olist --next-month
"$bin" sources --dir examples/sources --source olist --check-deletes --dbt-models dbt/models

step "olist: the star schema built with dbt (dbt/models/olist) on the warehouse schema src_olist"
scripts/dbt.sh build --quiet
psql "$WAREHOUSE_DATABASE_URL" -P pager=off -c "
  select p.category_english, count(*) as items, sum(f.item_total) as brl,
         round(avg(f.days_to_deliver), 1) as mean_days_to_deliver
  from olist.fact_order_item f join olist.dim_product p using (product_id)
  group by 1 order by brl desc limit 8"

step "history: dimension versions (type 2), and sales by the counterparty's country as it was then"
psql "$WAREHOUSE_DATABASE_URL" -P pager=off -c "
  select 'dim_staff_history' as history, count(*) as versions, count(distinct staff_id) as entities from dim_staff_history
  union all select 'dim_location_history', count(*), count(distinct location_id) from dim_location_history
  union all select 'dim_counterparty_history', count(*), count(distinct counterparty_id) from dim_counterparty_history
  union all select 'dim_design_history', count(*), count(distinct design_id) from dim_design_history"
psql "$WAREHOUSE_DATABASE_URL" -P pager=off -c "
  select f.counterparty_legal_country as country_then, count(*) as order_versions,
         round(sum(r.total_reporting), 2) as total_gbp
  from fact_sales_order_as_of f join fact_sales_order_reporting r using (sales_record_id)
  group by 1 order by total_gbp desc nulls last limit 5"

step "aggregates kept by the loads: the last week's sales per day, and the payment delay"
psql "$WAREHOUSE_DATABASE_URL" -P pager=off -c "
  select day, sum(orders) as orders, round(max(value_p90), 2) as max_p90_order_value
  from agg_sales_daily where day > current_date - 7 group by day order by day"
psql "$WAREHOUSE_DATABASE_URL" -P pager=off -c "
  select currency_code, sum(paid) as paid, round(avg(delay_days_p90), 2) as mean_daily_p90_delay_days
  from agg_payment_delay_daily group by 1 order by 1"

step "status of the raw lake"
"$bin" status

step "rows per warehouse table"
psql "$WAREHOUSE_DATABASE_URL" -P pager=off -c "
  select 'dim_date' as table_name, count(*) as rows from dim_date
  union all select 'dim_staff', count(*) from dim_staff
  union all select 'dim_location', count(*) from dim_location
  union all select 'dim_currency', count(*) from dim_currency
  union all select 'dim_design', count(*) from dim_design
  union all select 'dim_counterparty', count(*) from dim_counterparty
  union all select 'dim_payment_type', count(*) from dim_payment_type
  union all select 'dim_transaction', count(*) from dim_transaction
  union all select 'fact_sales_order', count(*) from fact_sales_order
  union all select 'fact_purchase_order', count(*) from fact_purchase_order
  union all select 'fact_payment', count(*) from fact_payment
  union all select 'fact_trade', count(*) from fact_trade
  union all select 'ohlcv_daily', count(*) from ohlcv_daily
  union all select 'dim_asset', count(*) from dim_asset
  union all select 'tributary.load_log', count(*) from tributary.load_log"

for query in sql/dashboard/*.sql; do
  step "dashboard: $(basename "$query" .sql)"
  psql "$WAREHOUSE_DATABASE_URL" -P pager=off -f "$query"
done
step "iceberg: compact the processed lake's tables, then read them with DuckDB through PyIceberg (no warehouse)"
"$bin" iceberg maintain
"$bin" iceberg describe
processed_url="${TRIBUTARY_PROCESSED_URL:-file://$root/.tributary/lake/processed}"
processed_dir="${processed_url#file://}"
if scripts/iceberg.sh --install; then
  scripts/iceberg.sh query "$processed_dir/warehouse" "
    select c.counterparty_legal_country as country, count(*) as order_versions, sum(f.units_sold) as units
    from fact_sales_order f join dim_counterparty c on c.counterparty_id = f.counterparty_id
    group by 1 order by 3 desc limit 5"
  # The olist source's own Iceberg tables: every version of every order,
  # partitioned by the month it was bought (examples/sources/olist.toml).
  scripts/iceberg.sh query "$processed_dir/sources/olist" "
    select coalesce(strftime(order_purchase_timestamp, '%Y-%m'), 'none: deletes') as month_bought,
           count(*) as versions, count(distinct order_id) as orders
    from orders group by 1 order by 1 desc limit 5"
else
  printf 'iceberg: the readers could not be installed (see above); the tables are in %s\n' "$processed_dir/warehouse"
fi

step "reconcile: every row version in the source, both lakes and the warehouse, once"
"$bin" reconcile

printf '\nlakes: %s\n' "$root/.tributary/lake"
printf 'dashboards: make dashboard, then open http://127.0.0.1:8501\n'

