"""The dashboard aggregates computed independently with DuckDB over the
processed lake's Parquet (not the warehouse): the tests compare them with
what the loads kept.

    python3 aggregates_duckdb.py <processed lake directory>

Prints one JSON object: aggregate table -> rows (lists of values as text,
numbers as full-precision text), in the column order of warehouse.sql.
"""
import json
import sys

import duckdb

root = sys.argv[1].rstrip("/")
trades_only = len(sys.argv) > 2 and sys.argv[2] == "--trades"


def files(table):
    return f"'{root}/warehouse/{table}/*/*.parquet'"


con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
if trades_only:
    # Trades as the transform wrote them (the compacted generations repeat them).
    con.execute(f"""CREATE VIEW trades AS
      SELECT DISTINCT symbol, tid, traded_at, price, amount
      FROM read_parquet('{root}/markets/trades/*/*.parquet')""")
    queries = {
        "agg_trades_daily": """
          SELECT symbol, CAST(traded_at AS DATE), count(*), sum(amount),
                 sum(CAST(price AS DOUBLE) * CAST(amount AS DOUBLE)),
                 avg(amount), quantile_cont(CAST(amount AS DOUBLE), 0.9)
          FROM trades GROUP BY ALL ORDER BY ALL""",
        "agg_trades_minute": """
          SELECT symbol, date_trunc('minute', traded_at), count(*), sum(amount)
          FROM trades
          WHERE traded_at >= date_trunc('minute', CAST(now() AS TIMESTAMP)) - INTERVAL 1 DAY
          GROUP BY ALL ORDER BY ALL""",
    }
    print(json.dumps({t: [[None if v is None else str(v) for v in row] for row in con.execute(q).fetchall()]
                      for t, q in queries.items()}))
    sys.exit(0)
con.execute(f"""
CREATE VIEW sales AS
  SELECT * FROM read_parquet({files('fact_sales_order')}, union_by_name = true);
CREATE VIEW payments AS
  SELECT * FROM read_parquet({files('fact_payment')}, union_by_name = true);
CREATE VIEW currencies AS
  SELECT DISTINCT currency_id, currency_code FROM read_parquet({files('dim_currency')});
CREATE VIEW counterparties AS
  SELECT DISTINCT counterparty_id, counterparty_legal_country
  FROM read_parquet({files('dim_counterparty')});
CREATE VIEW latest_sales AS
  SELECT * FROM sales
  QUALIFY row_number() OVER (PARTITION BY sales_order_id
                             ORDER BY last_updated_date DESC, last_updated_time DESC) = 1;
""")
# The generated source never changes a counterparty's country: one row each.
dupes = con.execute(
    "SELECT count(*) FROM (SELECT counterparty_id FROM counterparties GROUP BY 1 HAVING count(*) > 1)"
).fetchone()[0]
if dupes:
    sys.exit("a counterparty changed country: this check assumes it does not")

queries = {
    "agg_sales_daily": """
      SELECT s.created_date, c.counterparty_legal_country, s.design_id, cu.currency_code,
             count(*), sum(s.units_sold), sum(s.units_sold * s.unit_price),
             avg(s.units_sold * s.unit_price),
             quantile_cont(CAST(s.units_sold * s.unit_price AS DOUBLE), 0.9)
      FROM latest_sales s JOIN currencies cu USING (currency_id)
      JOIN counterparties c USING (counterparty_id)
      GROUP BY ALL ORDER BY ALL""",
    "agg_sales_hourly": """
      SELECT created_date, CAST(created_time // 3600000000 AS INTEGER), count(*), sum(units_sold)
      FROM latest_sales GROUP BY ALL ORDER BY ALL""",
    "agg_delivery_lead_time_daily": """
      SELECT created_date, count(*),
             sum(datediff('day', created_date, agreed_delivery_date)),
             avg(datediff('day', created_date, agreed_delivery_date)),
             quantile_cont(datediff('day', created_date, agreed_delivery_date), 0.9)
      FROM latest_sales GROUP BY ALL ORDER BY ALL""",
    "agg_payment_delay_daily": """
      WITH v AS (SELECT *, last_updated_date + to_microseconds(last_updated_time) AS updated_at FROM payments),
      per_payment AS (
        SELECT payment_id,
               arg_max(payment_date, updated_at) AS payment_date,
               arg_max(currency_id, updated_at) AS currency_id,
               arg_max(payment_amount, updated_at) AS payment_amount,
               min(updated_at) FILTER (WHERE paid) AS paid_at
        FROM v GROUP BY payment_id),
      d AS (SELECT *, epoch(paid_at - CAST(payment_date AS TIMESTAMP)) / 86400.0 AS delay FROM per_payment)
      SELECT d.payment_date, cu.currency_code, count(*), count(paid_at), sum(payment_amount),
             sum(delay), avg(delay), quantile_cont(delay, 0.9)
      FROM d JOIN currencies cu USING (currency_id)
      GROUP BY ALL ORDER BY ALL""",
}


def text(value):
    if value is None:
        return None
    return str(value)


out = {
    table: [[text(v) for v in row] for row in con.execute(sql).fetchall()]
    for table, sql in queries.items()
}
print(json.dumps(out))
