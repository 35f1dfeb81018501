-- The five Olist tables the real data (../shared/olist) does not include,
-- made to fit the real four: one order per order id of order_payments,
-- items over the real products and sellers, customers living where the
-- sellers are. Deterministic: every choice is a hash of the ids.
-- No table has a change-tracking column, as in the real dataset; the
-- geolocation table has no primary key (the source file declares one).

CREATE OR REPLACE FUNCTION pg_temp.h(seed text) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $$ SELECT ('x' || substr(md5(seed), 1, 12))::bit(48)::bigint $$;

CREATE TABLE customers (
    customer_id              text PRIMARY KEY,
    customer_unique_id       text NOT NULL,
    customer_zip_code_prefix text NOT NULL,
    customer_city            text NOT NULL,
    customer_state           text NOT NULL
);

CREATE TABLE orders (
    order_id                      text PRIMARY KEY,
    customer_id                   text NOT NULL,
    order_status                  text NOT NULL,
    order_purchase_timestamp      timestamp NOT NULL,
    order_approved_at             timestamp,
    order_delivered_carrier_date  timestamp,
    order_delivered_customer_date timestamp,
    order_estimated_delivery_date timestamp NOT NULL
);

CREATE TABLE order_items (
    order_id            text NOT NULL,
    order_item_id       integer NOT NULL,
    product_id          text NOT NULL,
    seller_id           text NOT NULL,
    shipping_limit_date timestamp NOT NULL,
    price               numeric(10,2) NOT NULL,
    freight_value       numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, order_item_id)
);

CREATE TABLE order_reviews (
    review_id               text NOT NULL,
    order_id                text NOT NULL,
    review_score            smallint NOT NULL,
    review_comment_title    text,
    review_comment_message  text,
    review_creation_date    timestamp NOT NULL,
    review_answer_timestamp timestamp,
    PRIMARY KEY (review_id, order_id)
);

CREATE TABLE geolocation (
    geolocation_zip_code_prefix text NOT NULL,
    geolocation_lat             double precision NOT NULL,
    geolocation_lng             double precision NOT NULL,
    geolocation_city            text NOT NULL,
    geolocation_state           text NOT NULL
);

CREATE TEMP TABLE seller_n AS
  SELECT row_number() OVER (ORDER BY seller_id) - 1 AS n, * FROM sellers;
CREATE TEMP TABLE product_n AS
  SELECT row_number() OVER (ORDER BY product_id) - 1 AS n, product_id FROM products;

CREATE TEMP TABLE paid AS
  SELECT order_id, sum(payment_value) AS total FROM order_payments GROUP BY order_id;

INSERT INTO orders
SELECT p.order_id,
       md5(p.order_id || ':customer'),
       s.status,
       t.bought,
       t.bought + interval '40 minutes',
       CASE WHEN s.status IN ('shipped', 'delivered') THEN t.bought + interval '2 days' END,
       CASE WHEN s.status = 'delivered' THEN t.bought + (4 + pg_temp.h(p.order_id || ':d') % 20) * interval '1 day' END,
       t.bought + interval '24 days'
FROM paid p
CROSS JOIN LATERAL (SELECT timestamp '2017-01-01' + (pg_temp.h(p.order_id) % (600 * 86400)) * interval '1 second' AS bought) t
CROSS JOIN LATERAL (SELECT CASE pg_temp.h(p.order_id || ':s') % 100
                             WHEN 0 THEN 'canceled' WHEN 1 THEN 'unavailable'
                             WHEN 2 THEN 'processing' WHEN 3 THEN 'invoiced'
                             WHEN 4 THEN 'shipped' WHEN 5 THEN 'shipped'
                             ELSE 'delivered' END AS status) s;

INSERT INTO customers
SELECT o.customer_id,
       md5('person:' || (pg_temp.h(o.order_id || ':p') % 90000)),
       s.seller_zip_code_prefix, s.seller_city, s.seller_state
FROM orders o
JOIN seller_n s ON s.n = pg_temp.h(o.order_id || ':where') % (SELECT count(*) FROM sellers);

INSERT INTO order_items
SELECT o.order_id, i,
       pr.product_id, se.seller_id,
       o.order_purchase_timestamp + interval '6 days',
       round(p.total * 0.9 / k.items, 2),
       round(p.total * 0.1 / k.items, 2)
FROM orders o
JOIN paid p USING (order_id)
CROSS JOIN LATERAL (SELECT 1 + pg_temp.h(o.order_id || ':k') % 3 AS items) k
CROSS JOIN LATERAL generate_series(1, k.items) i
JOIN product_n pr ON pr.n = pg_temp.h(o.order_id || ':pr' || i) % (SELECT count(*) FROM products)
JOIN seller_n se ON se.n = pg_temp.h(o.order_id || ':se' || i) % (SELECT count(*) FROM sellers);

INSERT INTO order_reviews
SELECT md5(o.order_id || ':review'), o.order_id,
       1 + pg_temp.h(o.order_id || ':score') % 5,
       CASE WHEN pg_temp.h(o.order_id || ':t') % 7 = 0 THEN 'recomendo' END,
       CASE WHEN pg_temp.h(o.order_id || ':m') % 5 = 0 THEN 'chegou antes do prazo, produto "ótimo"' END,
       o.order_delivered_customer_date::date + interval '1 day',
       o.order_delivered_customer_date::date + interval '2 days 3 hours'
FROM orders o WHERE o.order_status = 'delivered';

INSERT INTO geolocation
SELECT z.zip, -30 + (pg_temp.h(z.zip) % 2000) / 100.0, -55 + (pg_temp.h(z.zip || 'x') % 2000) / 100.0, z.city, z.state
FROM (SELECT DISTINCT ON (seller_zip_code_prefix) seller_zip_code_prefix AS zip, seller_city AS city, seller_state AS state
      FROM sellers ORDER BY seller_zip_code_prefix, seller_id) z;
