-- Top designs by units sold (latest version of each sales order).
WITH latest AS (
    SELECT DISTINCT ON (sales_order_id) *
    FROM fact_sales_order
    ORDER BY sales_order_id, last_updated_date DESC, last_updated_time DESC
)
SELECT g.design_id,
       g.design_name,
       count(*)           AS orders,
       sum(l.units_sold)  AS units_sold
FROM latest l
JOIN dim_design g ON g.design_id = l.design_id
GROUP BY g.design_id, g.design_name
ORDER BY units_sold DESC, g.design_id
LIMIT 10;
