-- Purchase spend by counterparty and currency (latest version of each order).
WITH latest AS (
    SELECT DISTINCT ON (purchase_order_id) *
    FROM fact_purchase_order
    ORDER BY purchase_order_id, last_updated_date DESC, last_updated_time DESC
)
SELECT cp.counterparty_id,
       cp.counterparty_legal_name,
       c.currency_code,
       count(*)                                   AS orders,
       sum(l.item_quantity * l.item_unit_price)   AS spend
FROM latest l
JOIN dim_counterparty cp ON cp.counterparty_id = l.counterparty_id
JOIN dim_currency c      ON c.currency_id = l.currency_id
GROUP BY cp.counterparty_id, cp.counterparty_legal_name, c.currency_code
ORDER BY spend DESC
LIMIT 20;
