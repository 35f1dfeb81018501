-- Sales value by month and currency: the latest version of each sales order,
-- valued at units_sold × unit_price, by the month it was created.
WITH latest AS (
    SELECT DISTINCT ON (sales_order_id) *
    FROM fact_sales_order
    ORDER BY sales_order_id, last_updated_date DESC, last_updated_time DESC
)
SELECT d.year,
       d.month,
       d.month_name,
       c.currency_code,
       count(*)                             AS orders,
       sum(l.units_sold * l.unit_price)     AS sales_value
FROM latest l
JOIN dim_date d     ON d.date_id = l.created_date
JOIN dim_currency c ON c.currency_id = l.currency_id
GROUP BY d.year, d.month, d.month_name, c.currency_code
ORDER BY d.year DESC, d.month DESC, c.currency_code
LIMIT 36;
