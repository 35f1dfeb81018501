-- Exchange rates and the facts' amounts in the reporting currency, created
-- idempotently by `tributary_warehouse::fx::init` (after the star schema of
-- warehouse.sql, whose facts the views read). Filled by `tributary fx`.
CREATE SCHEMA IF NOT EXISTS tributary;

-- One row per calendar day and currency: `amount * rate_to_reporting` is the
-- amount in the reporting currency. On a weekend or holiday the rate is the
-- last published one, and `published_date` says which day published it. The
-- reporting currency itself has rate 1. A day or currency without a rate has
-- no row: the views then give NULL, never 0.
CREATE TABLE IF NOT EXISTS fact_exchange_rate (
    date               date NOT NULL,
    currency_code      varchar NOT NULL,
    rate_to_reporting  numeric NOT NULL CHECK (rate_to_reporting > 0),
    published_date     date NOT NULL CHECK (published_date <= date),
    PRIMARY KEY (date, currency_code)
);

-- The currency fact_exchange_rate converts into (one row). When it changes,
-- every rate is deleted before the new ones go in: no row mixes two.
CREATE TABLE IF NOT EXISTS tributary.fx_reporting (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    reporting_currency  varchar NOT NULL,
    changed_at          timestamptz NOT NULL DEFAULT now()
);

-- Views are dropped and created again (not replaced), so that a column added
-- to a fact later does not stop this file from running.
DROP VIEW IF EXISTS exchange_rate_gaps;
DROP VIEW IF EXISTS fact_sales_order_reporting;
DROP VIEW IF EXISTS fact_purchase_order_reporting;
DROP VIEW IF EXISTS fact_payment_reporting;
DROP VIEW IF EXISTS agg_sales_daily_reporting;
DROP VIEW IF EXISTS agg_payment_delay_daily_reporting;

-- Each fact converts at the rate of its created_date (the day the price or
-- amount was recorded; agreed and payment dates may lie in the future).
-- Converted amounts are exact products, not rounded.
CREATE VIEW fact_sales_order_reporting AS
    SELECT f.*,
           c.currency_code,
           s.reporting_currency,
           r.rate_to_reporting,
           r.published_date AS rate_published_date,
           f.unit_price * r.rate_to_reporting AS unit_price_reporting,
           f.units_sold * f.unit_price * r.rate_to_reporting AS total_reporting
    FROM fact_sales_order f
    LEFT JOIN dim_currency c ON c.currency_id = f.currency_id
    LEFT JOIN tributary.fx_reporting s ON true
    LEFT JOIN fact_exchange_rate r
        ON r.date = f.created_date AND r.currency_code = upper(btrim(c.currency_code));

CREATE VIEW fact_purchase_order_reporting AS
    SELECT f.*,
           c.currency_code,
           s.reporting_currency,
           r.rate_to_reporting,
           r.published_date AS rate_published_date,
           f.item_unit_price * r.rate_to_reporting AS item_unit_price_reporting,
           f.item_quantity * f.item_unit_price * r.rate_to_reporting AS total_reporting
    FROM fact_purchase_order f
    LEFT JOIN dim_currency c ON c.currency_id = f.currency_id
    LEFT JOIN tributary.fx_reporting s ON true
    LEFT JOIN fact_exchange_rate r
        ON r.date = f.created_date AND r.currency_code = upper(btrim(c.currency_code));

CREATE VIEW fact_payment_reporting AS
    SELECT f.*,
           c.currency_code,
           s.reporting_currency,
           r.rate_to_reporting,
           r.published_date AS rate_published_date,
           f.payment_amount * r.rate_to_reporting AS payment_amount_reporting
    FROM fact_payment f
    LEFT JOIN dim_currency c ON c.currency_id = f.currency_id
    LEFT JOIN tributary.fx_reporting s ON true
    LEFT JOIN fact_exchange_rate r
        ON r.date = f.created_date AND r.currency_code = upper(btrim(c.currency_code));

-- Every (day, currency) a fact converts at that has no rate: a currency the
-- API does not publish, or days not fetched yet (`tributary fx --for-facts`).
CREATE VIEW exchange_rate_gaps AS
    SELECT u.date, u.currency_code, count(*) AS fact_rows,
           string_agg(DISTINCT u.fact, ',' ORDER BY u.fact) AS facts
    FROM (
        SELECT f.created_date AS date, upper(btrim(c.currency_code)) AS currency_code,
               'fact_sales_order'::text AS fact
        FROM fact_sales_order f LEFT JOIN dim_currency c ON c.currency_id = f.currency_id
        UNION ALL
        SELECT f.created_date, upper(btrim(c.currency_code)), 'fact_purchase_order'
        FROM fact_purchase_order f LEFT JOIN dim_currency c ON c.currency_id = f.currency_id
        UNION ALL
        SELECT f.created_date, upper(btrim(c.currency_code)), 'fact_payment'
        FROM fact_payment f LEFT JOIN dim_currency c ON c.currency_id = f.currency_id
    ) u
    WHERE NOT EXISTS (
        SELECT 1 FROM fact_exchange_rate r
        WHERE r.date = u.date AND r.currency_code = u.currency_code
    )
    GROUP BY u.date, u.currency_code;

-- The sales aggregates in the reporting currency: one total per day,
-- country and design across currencies (each converted at its day's rate).
-- A currency without a rate that day makes the total NULL, never a partial
-- sum, and is named in currencies_without_rate.
CREATE VIEW agg_sales_daily_reporting AS
    SELECT a.day, a.country, a.design_id, s.reporting_currency,
           sum(a.orders) AS orders, sum(a.units) AS units,
           CASE WHEN bool_and(r.rate_to_reporting IS NOT NULL)
                THEN sum(a.value_sum * r.rate_to_reporting) END AS value_sum_reporting,
           string_agg(a.currency_code, ',' ORDER BY a.currency_code)
               FILTER (WHERE r.rate_to_reporting IS NULL) AS currencies_without_rate
    FROM agg_sales_daily a
    LEFT JOIN tributary.fx_reporting s ON true
    LEFT JOIN fact_exchange_rate r ON r.date = a.day AND r.currency_code = a.currency_code
    GROUP BY a.day, a.country, a.design_id, s.reporting_currency;

-- Payment amounts per agreed payment day in the reporting currency (at the
-- rate of that day), with the same NULL rule.
CREATE VIEW agg_payment_delay_daily_reporting AS
    SELECT a.day, s.reporting_currency, sum(a.payments) AS payments, sum(a.paid) AS paid,
           CASE WHEN bool_and(r.rate_to_reporting IS NOT NULL)
                THEN sum(a.amount_sum * r.rate_to_reporting) END AS amount_sum_reporting,
           string_agg(a.currency_code, ',' ORDER BY a.currency_code)
               FILTER (WHERE r.rate_to_reporting IS NULL) AS currencies_without_rate
    FROM agg_payment_delay_daily a
    LEFT JOIN tributary.fx_reporting s ON true
    LEFT JOIN fact_exchange_rate r ON r.date = a.day AND r.currency_code = a.currency_code
    GROUP BY a.day, s.reporting_currency;
