-- One month of Olist business on top of companions.sql: new orders (with
-- customers, items and payments), status and delivery updates, and
-- deletes (canceled orders go, with their items and payments; some reviews
-- are withdrawn). {month} numbers the month, so each is different and
-- every run of the same month is the same.

CREATE OR REPLACE FUNCTION pg_temp.h(seed text) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $$ SELECT ('x' || substr(md5(seed), 1, 12))::bit(48)::bigint $$;

DROP TABLE IF EXISTS pg_temp.new_orders;
CREATE TEMP TABLE new_orders AS
  SELECT md5('month {month} order ' || g) AS order_id,
         (SELECT max(order_purchase_timestamp) FROM orders) + (g * 900) * interval '1 second' AS bought
  FROM generate_series(1, 3000) g;

-- Sellers and products numbered, so a hash picks one by a join.
DROP TABLE IF EXISTS pg_temp.seller_n, pg_temp.product_n;
CREATE TEMP TABLE seller_n AS
  SELECT row_number() OVER (ORDER BY seller_id) - 1 AS n, * FROM sellers;
CREATE TEMP TABLE product_n AS
  SELECT row_number() OVER (ORDER BY product_id) - 1 AS n, product_id FROM products;

INSERT INTO customers
SELECT md5(n.order_id || ':customer'), md5('person:' || (pg_temp.h(n.order_id || ':p') % 90000)),
       s.seller_zip_code_prefix, s.seller_city, s.seller_state
FROM new_orders n
JOIN seller_n s ON s.n = pg_temp.h(n.order_id || ':where') % (SELECT count(*) FROM sellers);

INSERT INTO orders
SELECT order_id, md5(order_id || ':customer'), 'processing', bought, bought + interval '40 minutes',
       NULL, NULL, bought + interval '24 days'
FROM new_orders;

INSERT INTO order_payments
SELECT order_id, 1, CASE pg_temp.h(order_id) % 4 WHEN 0 THEN 'boleto' WHEN 1 THEN 'debit_card' ELSE 'credit_card' END,
       1 + pg_temp.h(order_id || ':i') % 10, (20 + pg_temp.h(order_id || ':v') % 50000 / 100.0)::numeric(10,2)
FROM new_orders;

INSERT INTO order_items
SELECT n.order_id, 1, p.product_id, s.seller_id, n.bought + interval '6 days',
       (18 + pg_temp.h(n.order_id || ':v') % 45000 / 100.0)::numeric(10,2), 2.50
FROM new_orders n
JOIN product_n p ON p.n = pg_temp.h(n.order_id || ':pr') % (SELECT count(*) FROM products)
JOIN seller_n s ON s.n = pg_temp.h(n.order_id || ':se') % (SELECT count(*) FROM sellers);

-- What was shipped is delivered; what was being processed is shipped.
UPDATE orders SET order_status = 'delivered',
                  order_delivered_customer_date = order_delivered_carrier_date + interval '5 days'
WHERE order_status = 'shipped';
UPDATE orders SET order_status = 'shipped',
                  order_delivered_carrier_date = order_approved_at + interval '2 days'
WHERE order_status = 'processing' AND order_id NOT IN (SELECT order_id FROM new_orders);

-- Canceled orders are purged with their items and payments; some reviews are withdrawn.
DELETE FROM order_items WHERE order_id IN (SELECT order_id FROM orders WHERE order_status = 'canceled');
DELETE FROM order_payments WHERE order_id IN (SELECT order_id FROM orders WHERE order_status = 'canceled');
DELETE FROM orders WHERE order_status = 'canceled';
DELETE FROM order_reviews WHERE pg_temp.h(review_id || ':{month}') % 500 = 0;
