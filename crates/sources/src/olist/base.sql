-- The four Olist tables that ../shared/olist holds real data for, made up
-- instead, for demos and benchmarks (real data is for tests only). Same
-- columns and keys as the published dataset, and the same awkward parts:
-- text ids of 32 hex characters, a composite key, products with no
-- category or no dimensions, categories with no translation (so no
-- foreign key is declared), a backslash inside a city name, zip code
-- prefixes with leading zeros. {orders} orders are paid for; every choice
-- is a hash of a number, so the same scale gives the same data.
-- companions.sql then builds the other five tables on top.

CREATE OR REPLACE FUNCTION pg_temp.h(seed text) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $$ SELECT ('x' || substr(md5(seed), 1, 12))::bit(48)::bigint $$;

CREATE TABLE product_category_name_translation (
    product_category_name         text PRIMARY KEY,
    product_category_name_english text NOT NULL
);

CREATE TABLE sellers (
    seller_id              text PRIMARY KEY,
    seller_zip_code_prefix text NOT NULL,
    seller_city            text NOT NULL,
    seller_state           text NOT NULL
);

CREATE TABLE products (
    product_id                 text PRIMARY KEY,
    product_category_name      text,
    product_name_lenght        integer,
    product_description_lenght integer,
    product_photos_qty         integer,
    product_weight_g           integer,
    product_length_cm          integer,
    product_height_cm          integer,
    product_width_cm           integer
);

CREATE TABLE order_payments (
    order_id             text    NOT NULL,
    payment_sequential   integer NOT NULL,
    payment_type         text    NOT NULL,
    payment_installments integer NOT NULL,
    payment_value        numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, payment_sequential)
);

INSERT INTO product_category_name_translation VALUES
  ('beleza_saude', 'health_beauty'), ('cama_mesa_banho', 'bed_bath_table'),
  ('esporte_lazer', 'sports_leisure'), ('informatica_acessorios', 'computers_accessories'),
  ('moveis_decoracao', 'furniture_decor'), ('utilidades_domesticas', 'housewares'),
  ('relogios_presentes', 'watches_gifts'), ('telefonia', 'telephony'),
  ('automotivo', 'auto'), ('brinquedos', 'toys'), ('cool_stuff', 'cool_stuff'),
  ('ferramentas_jardim', 'garden_tools'), ('perfumaria', 'perfumery'),
  ('bebes', 'baby'), ('eletronicos', 'electronics'), ('papelaria', 'stationery'),
  ('fashion_bolsas_e_acessorios', 'fashion_bags_accessories'), ('pet_shop', 'pet_shop'),
  ('livros_tecnicos', 'books_technical'), ('alimentos', 'food');

-- Cities with their state and a zip prefix; one has a backslash in it, as in
-- the real data.
CREATE TEMP TABLE city (n int, name text, state text, zip int);
INSERT INTO city VALUES
  (0, 'sao paulo', 'SP', 1000), (1, 'rio de janeiro', 'RJ', 20000), (2, 'belo horizonte', 'MG', 30000),
  (3, 'curitiba', 'PR', 80000), (4, 'porto alegre', 'RS', 90000), (5, 'salvador', 'BA', 40000),
  (6, 'campinas', 'SP', 13000), (7, 'recife', 'PE', 50000), (8, 'goiania', 'GO', 74000),
  (9, 'rio de janeiro \rio de janeiro', 'RJ', 21000), (10, 'ribeirao preto', 'SP', 14000),
  (11, 'florianopolis', 'SC', 88000);

INSERT INTO sellers
SELECT md5('seller ' || g), lpad((c.zip + g % 900)::text, 5, '0'), c.name, c.state
FROM generate_series(1, greatest(20, {orders} / 33)) g
JOIN city c ON c.n = pg_temp.h('seller ' || g) % 12;

INSERT INTO products
SELECT md5('product ' || g),
       CASE WHEN r % 50 = 0 THEN NULL            -- no category, and no lengths
            WHEN r % 997 = 1 THEN 'pc_gamer'     -- a category with no translation
            ELSE (SELECT product_category_name FROM product_category_name_translation
                  ORDER BY product_category_name OFFSET r % 20 LIMIT 1) END,
       CASE WHEN r % 50 = 0 THEN NULL ELSE 20 + r % 50 END,
       CASE WHEN r % 50 = 0 THEN NULL ELSE 100 + r % 3000 END,
       CASE WHEN r % 50 = 0 THEN NULL ELSE 1 + r % 6 END,
       CASE WHEN r % 9973 = 7 THEN NULL ELSE 50 + r % 20000 END,
       CASE WHEN r % 9973 = 7 THEN NULL ELSE 10 + r % 90 END,
       CASE WHEN r % 9973 = 7 THEN NULL ELSE 2 + r % 60 END,
       CASE WHEN r % 9973 = 7 THEN NULL ELSE 8 + r % 70 END
FROM generate_series(1, greatest(60, {orders} / 3)) g
CROSS JOIN LATERAL (SELECT pg_temp.h('product ' || g) AS r) h;

-- One payment per order; 3 in 100 orders are paid in two parts.
INSERT INTO order_payments
SELECT md5('order ' || g), s,
       CASE r % 20 WHEN 0 THEN 'boleto' WHEN 1 THEN 'boleto' WHEN 2 THEN 'debit_card'
                   WHEN 3 THEN 'voucher' ELSE 'credit_card' END,
       CASE WHEN r % 20 < 4 THEN 1 ELSE 1 + r % 10 END,
       (10 + (r / 7) % 60000 / 100.0)::numeric(10,2)
FROM generate_series(1, {orders}) g
CROSS JOIN LATERAL (SELECT pg_temp.h('order ' || g) AS r) h
CROSS JOIN LATERAL generate_series(1, CASE WHEN r % 100 < 3 THEN 2 ELSE 1 END) s;
