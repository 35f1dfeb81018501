-- Sales by the country of each counterparty's legal address, per currency.
WITH latest AS (
    SELECT DISTINCT ON (sales_order_id) *
    FROM fact_sales_order
    ORDER BY sales_order_id, last_updated_date DESC, last_updated_time DESC
)
SELECT cp.counterparty_legal_country          AS country,
       c.currency_code,
       count(*)                               AS orders,
       sum(l.units_sold * l.unit_price)       AS sales_value
FROM latest l
JOIN dim_counterparty cp ON cp.counterparty_id = l.counterparty_id
JOIN dim_currency c      ON c.currency_id = l.currency_id
GROUP BY cp.counterparty_legal_country, c.currency_code
ORDER BY sales_value DESC
LIMIT 20;
