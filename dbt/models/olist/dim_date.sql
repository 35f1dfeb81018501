-- Every day from the first purchase to the last promised or actual
-- delivery, so each date a fact names has its row.
with bounds as (
    select min(order_purchase_timestamp)::date as first_day,
           greatest(max(order_estimated_delivery_date),
                    max(order_delivered_customer_date))::date as last_day
    from {{ source('olist', 'orders') }}
)
select
    d::date                             as date_id,
    extract(year from d)::int           as year,
    extract(quarter from d)::int        as quarter,
    extract(month from d)::int          as month,
    trim(to_char(d, 'Month'))           as month_name,
    extract(day from d)::int            as day,
    extract(isodow from d)::int         as day_of_week,
    trim(to_char(d, 'Day'))             as day_name,
    extract(isodow from d) >= 6         as is_weekend
from bounds,
     generate_series(bounds.first_day, bounds.last_day, interval '1 day') as d
