-- One row per customer id (Olist gives each order its own customer id;
-- customer_unique_id names the person), placed by the zip code's mean
-- coordinates where geolocation knows them.
with places as (
    select geolocation_zip_code_prefix as zip_code_prefix,
           avg(geolocation_lat) as latitude,
           avg(geolocation_lng) as longitude
    from {{ source('olist', 'geolocation') }}
    group by geolocation_zip_code_prefix
)
select
    c.customer_id,
    c.customer_unique_id,
    c.customer_zip_code_prefix as zip_code_prefix,
    c.customer_city            as city,
    c.customer_state           as state,
    p.latitude,
    p.longitude
from {{ source('olist', 'customers') }} c
left join places p on p.zip_code_prefix = c.customer_zip_code_prefix
