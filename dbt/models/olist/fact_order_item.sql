-- One row per item of an order, with the order's status, dates and
-- customer; price and freight in BRL as Olist records them. Payments are
-- per order, not per item: the order's total paid is repeated on each of
-- its items as order_paid (sum it per order, not per item).
--
-- Incremental: a build takes only the orders whose items, order row or
-- payments changed in a manifest applied since its last build
-- (_loaded_seq), and replaces all rows of those orders; an order that has
-- no item left (purged, or its items deleted) loses its rows in the
-- pre-hook. Indexes on _loaded_seq and order_id keep a build's cost to
-- what changed. `scripts/dbt.sh build --full-refresh` rebuilds it whole.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='order_id',
    on_schema_change='append_new_columns',
    pre_hook=[
        "{% if is_incremental() %}
         delete from {{ this }} f
         where f.order_id in ({{ olist_changed_orders() }})
           and not exists (
               select 1 from {{ source('olist', 'order_items') }} i
               join {{ source('olist', 'orders') }} o on o.order_id = i.order_id
               where i.order_id = f.order_id)
         {% endif %}"
    ],
    post_hook=[
        "create index if not exists {{ this.identifier }}_loaded_seq on {{ this }} (_loaded_seq)",
        "create index if not exists {{ this.identifier }}_order_id on {{ this }} (order_id)"
    ]
) }}


with
{% if is_incremental() %}
changed as ({{ olist_changed_orders() }}),
{% endif %}
paid as (
    select order_id, sum(payment_value) as order_paid
    from {{ source('olist', 'order_payments') }}
    {% if is_incremental() %}where order_id in (select order_id from changed){% endif %}
    group by order_id
)
select
    i.order_id || '-' || i.order_item_id          as order_item_key,
    i.order_id,
    i.order_item_id,
    o.customer_id,
    i.product_id,
    i.seller_id,
    o.order_status,
    o.order_purchase_timestamp::date              as purchase_date,
    o.order_purchase_timestamp                    as purchased_at,
    o.order_delivered_customer_date               as delivered_at,
    o.order_estimated_delivery_date::date         as estimated_delivery_date,
    o.order_delivered_customer_date::date
      - o.order_purchase_timestamp::date          as days_to_deliver,
    i.price,
    i.freight_value,
    i.price + i.freight_value                     as item_total,
    p.order_paid,
    {{ loaded_seq('olist', 'orders') }}           as _loaded_seq
from {{ source('olist', 'order_items') }} i
join {{ source('olist', 'orders') }} o on o.order_id = i.order_id
left join paid p on p.order_id = i.order_id
{% if is_incremental() %}
where i.order_id in (select order_id from changed)
{% endif %}
