-- Sales staff performance: orders and units over the last 90 days of data.
WITH latest AS (
    SELECT DISTINCT ON (sales_order_id) *
    FROM fact_sales_order
    ORDER BY sales_order_id, last_updated_date DESC, last_updated_time DESC
),
recent AS (
    SELECT * FROM latest
    WHERE created_date > (SELECT max(created_date) FROM latest) - 90
)
SELECT s.staff_id,
       s.first_name || ' ' || s.last_name   AS staff,
       s.department_name,
       count(*)                             AS orders,
       sum(r.units_sold)                    AS units_sold
FROM recent r
JOIN dim_staff s ON s.staff_id = r.sales_staff_id
GROUP BY s.staff_id, s.first_name, s.last_name, s.department_name
ORDER BY units_sold DESC, s.staff_id
LIMIT 20;
