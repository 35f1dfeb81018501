-- The warehouse star schema, created idempotently by `tributary warehouse init`.
-- Facts keep one row per source row version; dimensions hold the latest
-- version. The UNIQUE constraints on facts make loading idempotent.
CREATE SCHEMA IF NOT EXISTS tributary;

CREATE TABLE IF NOT EXISTS tributary.load_log (
    seq          bigint PRIMARY KEY,
    run_id       text NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    rows_loaded  bigint NOT NULL,
    tables       jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_date (
    date_id      date PRIMARY KEY,
    year         int NOT NULL,
    month        int NOT NULL,
    day          int NOT NULL,
    day_of_week  int NOT NULL,
    day_name     varchar NOT NULL,
    month_name   varchar NOT NULL,
    quarter      int NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_staff (
    staff_id         int PRIMARY KEY,
    first_name       varchar NOT NULL,
    last_name        varchar NOT NULL,
    department_name  varchar NOT NULL,
    location         varchar,
    email_address    varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_location (
    location_id     int PRIMARY KEY,
    address_line_1  varchar NOT NULL,
    address_line_2  varchar,
    district        varchar,
    city            varchar NOT NULL,
    postal_code     varchar NOT NULL,
    country         varchar NOT NULL,
    phone           varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_currency (
    currency_id    int PRIMARY KEY,
    currency_code  varchar NOT NULL,
    currency_name  varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_design (
    design_id      int PRIMARY KEY,
    design_name    varchar NOT NULL,
    file_location  varchar NOT NULL,
    file_name      varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_counterparty (
    counterparty_id                    int PRIMARY KEY,
    counterparty_legal_name            varchar NOT NULL,
    counterparty_legal_address_line_1  varchar NOT NULL,
    counterparty_legal_address_line_2  varchar,
    counterparty_legal_district        varchar,
    counterparty_legal_city            varchar NOT NULL,
    counterparty_legal_postal_code     varchar NOT NULL,
    counterparty_legal_country         varchar NOT NULL,
    counterparty_legal_phone_number    varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_payment_type (
    payment_type_id    int PRIMARY KEY,
    payment_type_name  varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_transaction (
    transaction_id     int PRIMARY KEY,
    transaction_type   varchar NOT NULL,
    sales_order_id     int,
    purchase_order_id  int
);

-- Type 2 history of the descriptive dimensions: every version of each
-- entity, built from every raw version of its source rows (and of the rows
-- joined into it: an address change opens a counterparty version, a
-- department change a staff version). A version is valid from valid_from
-- (inclusive) until valid_to (exclusive); the current one has valid_to NULL
-- and is_current true; version numbers an entity's versions from 1. The
-- first version of an entity is taken to be valid since its source row was
-- created. The *_version_id surrogate keys are
-- derived from (entity id, valid_from), so a rebuild gives the same keys.
-- Timestamps are the source's, UTC by convention.
CREATE TABLE IF NOT EXISTS dim_staff_history (
    staff_version_id  bigint PRIMARY KEY,
    staff_id         int NOT NULL,
    first_name       varchar NOT NULL,
    last_name        varchar NOT NULL,
    department_name  varchar NOT NULL,
    location         varchar,
    email_address    varchar NOT NULL,
    valid_from  timestamp NOT NULL,
    valid_to    timestamp,
    is_current  boolean NOT NULL,
    version     int NOT NULL,
    UNIQUE (staff_id, valid_from)
);

CREATE TABLE IF NOT EXISTS dim_location_history (
    location_version_id  bigint PRIMARY KEY,
    location_id     int NOT NULL,
    address_line_1  varchar NOT NULL,
    address_line_2  varchar,
    district        varchar,
    city            varchar NOT NULL,
    postal_code     varchar NOT NULL,
    country         varchar NOT NULL,
    phone           varchar NOT NULL,
    valid_from  timestamp NOT NULL,
    valid_to    timestamp,
    is_current  boolean NOT NULL,
    version     int NOT NULL,
    UNIQUE (location_id, valid_from)
);

CREATE TABLE IF NOT EXISTS dim_currency_history (
    currency_version_id  bigint PRIMARY KEY,
    currency_id    int NOT NULL,
    currency_code  varchar NOT NULL,
    currency_name  varchar NOT NULL,
    valid_from  timestamp NOT NULL,
    valid_to    timestamp,
    is_current  boolean NOT NULL,
    version     int NOT NULL,
    UNIQUE (currency_id, valid_from)
);

CREATE TABLE IF NOT EXISTS dim_design_history (
    design_version_id  bigint PRIMARY KEY,
    design_id      int NOT NULL,
    design_name    varchar NOT NULL,
    file_location  varchar NOT NULL,
    file_name      varchar NOT NULL,
    valid_from  timestamp NOT NULL,
    valid_to    timestamp,
    is_current  boolean NOT NULL,
    version     int NOT NULL,
    UNIQUE (design_id, valid_from)
);

CREATE TABLE IF NOT EXISTS dim_counterparty_history (
    counterparty_version_id  bigint PRIMARY KEY,
    counterparty_id                    int NOT NULL,
    counterparty_legal_name            varchar NOT NULL,
    counterparty_legal_address_line_1  varchar NOT NULL,
    counterparty_legal_address_line_2  varchar,
    counterparty_legal_district        varchar,
    counterparty_legal_city            varchar NOT NULL,
    counterparty_legal_postal_code     varchar NOT NULL,
    counterparty_legal_country         varchar NOT NULL,
    counterparty_legal_phone_number    varchar NOT NULL,
    valid_from  timestamp NOT NULL,
    valid_to    timestamp,
    is_current  boolean NOT NULL,
    version     int NOT NULL,
    UNIQUE (counterparty_id, valid_from)
);

CREATE TABLE IF NOT EXISTS dim_payment_type_history (
    payment_type_version_id  bigint PRIMARY KEY,
    payment_type_id    int NOT NULL,
    payment_type_name  varchar NOT NULL,
    valid_from  timestamp NOT NULL,
    valid_to    timestamp,
    is_current  boolean NOT NULL,
    version     int NOT NULL,
    UNIQUE (payment_type_id, valid_from)
);

CREATE TABLE IF NOT EXISTS fact_sales_order (
    sales_record_id              serial PRIMARY KEY,
    sales_order_id               int NOT NULL,
    created_date                 date NOT NULL REFERENCES dim_date,
    created_time                 time NOT NULL,
    last_updated_date            date NOT NULL REFERENCES dim_date,
    last_updated_time            time NOT NULL,
    sales_staff_id               int NOT NULL REFERENCES dim_staff,
    counterparty_id              int NOT NULL REFERENCES dim_counterparty,
    units_sold                   int NOT NULL,
    unit_price                   numeric(10,2) NOT NULL,
    currency_id                  int NOT NULL REFERENCES dim_currency,
    design_id                    int NOT NULL REFERENCES dim_design,
    agreed_payment_date          date NOT NULL REFERENCES dim_date,
    agreed_delivery_date         date NOT NULL REFERENCES dim_date,
    agreed_delivery_location_id  int NOT NULL REFERENCES dim_location,
    UNIQUE (sales_order_id, last_updated_date, last_updated_time)
);

CREATE TABLE IF NOT EXISTS fact_purchase_order (
    purchase_record_id           serial PRIMARY KEY,
    purchase_order_id            int NOT NULL,
    created_date                 date NOT NULL REFERENCES dim_date,
    created_time                 time NOT NULL,
    last_updated_date            date NOT NULL REFERENCES dim_date,
    last_updated_time            time NOT NULL,
    staff_id                     int NOT NULL REFERENCES dim_staff,
    counterparty_id              int NOT NULL REFERENCES dim_counterparty,
    item_code                    varchar NOT NULL,
    item_quantity                int NOT NULL,
    item_unit_price              numeric NOT NULL,
    currency_id                  int NOT NULL REFERENCES dim_currency,
    agreed_delivery_date         date NOT NULL REFERENCES dim_date,
    agreed_payment_date          date NOT NULL REFERENCES dim_date,
    agreed_delivery_location_id  int NOT NULL REFERENCES dim_location,
    UNIQUE (purchase_order_id, last_updated_date, last_updated_time)
);

CREATE TABLE IF NOT EXISTS fact_payment (
    payment_record_id  serial PRIMARY KEY,
    payment_id         int NOT NULL,
    created_date       date NOT NULL REFERENCES dim_date,
    created_time       time NOT NULL,
    last_updated_date  date NOT NULL REFERENCES dim_date,
    last_updated_time  time NOT NULL,
    transaction_id     int NOT NULL REFERENCES dim_transaction,
    counterparty_id    int NOT NULL REFERENCES dim_counterparty,
    payment_amount     numeric NOT NULL,
    currency_id        int NOT NULL REFERENCES dim_currency,
    payment_type_id    int NOT NULL REFERENCES dim_payment_type,
    paid               boolean NOT NULL,
    payment_date       date NOT NULL REFERENCES dim_date,
    UNIQUE (payment_id, last_updated_date, last_updated_time)
);

-- Each fact version with the dimension versions valid when it was last
-- updated (the fact's last_updated). A fact older than the first version of
-- a dimension row (an order placed before its staff member's record was
-- created) takes that first version. A fact is never dropped: a dimension
-- row with no version at all gives NULLs (*_version_id IS NULL finds them).
CREATE OR REPLACE VIEW fact_sales_order_as_of AS
SELECT f.*,
       f.last_updated_date + f.last_updated_time AS as_of,
       st.staff_version_id, st.first_name AS staff_first_name, st.last_name AS staff_last_name,
       st.department_name AS staff_department_name, st.location AS staff_location,
       cp.counterparty_version_id, cp.counterparty_legal_name,
       cp.counterparty_legal_address_line_1, cp.counterparty_legal_address_line_2,
       cp.counterparty_legal_district, cp.counterparty_legal_city,
       cp.counterparty_legal_postal_code, cp.counterparty_legal_country,
       cp.counterparty_legal_phone_number,
       cu.currency_version_id, cu.currency_code, cu.currency_name,
       de.design_version_id, de.design_name, de.file_location AS design_file_location,
       de.file_name AS design_file_name,
       lo.location_version_id AS agreed_delivery_location_version_id,
       lo.address_line_1 AS delivery_address_line_1, lo.address_line_2 AS delivery_address_line_2,
       lo.district AS delivery_district, lo.city AS delivery_city,
       lo.postal_code AS delivery_postal_code, lo.country AS delivery_country,
       lo.phone AS delivery_phone
FROM fact_sales_order f
    LEFT JOIN dim_staff_history st
           ON st.staff_id = f.sales_staff_id
          AND (st.valid_from <= f.last_updated_date + f.last_updated_time OR st.version = 1)
          AND (st.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < st.valid_to)
    LEFT JOIN dim_counterparty_history cp
           ON cp.counterparty_id = f.counterparty_id
          AND (cp.valid_from <= f.last_updated_date + f.last_updated_time OR cp.version = 1)
          AND (cp.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < cp.valid_to)
    LEFT JOIN dim_currency_history cu
           ON cu.currency_id = f.currency_id
          AND (cu.valid_from <= f.last_updated_date + f.last_updated_time OR cu.version = 1)
          AND (cu.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < cu.valid_to)
    LEFT JOIN dim_design_history de
           ON de.design_id = f.design_id
          AND (de.valid_from <= f.last_updated_date + f.last_updated_time OR de.version = 1)
          AND (de.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < de.valid_to)
    LEFT JOIN dim_location_history lo
           ON lo.location_id = f.agreed_delivery_location_id
          AND (lo.valid_from <= f.last_updated_date + f.last_updated_time OR lo.version = 1)
          AND (lo.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < lo.valid_to)
;

CREATE OR REPLACE VIEW fact_purchase_order_as_of AS
SELECT f.*,
       f.last_updated_date + f.last_updated_time AS as_of,
       st.staff_version_id, st.first_name AS staff_first_name, st.last_name AS staff_last_name,
       st.department_name AS staff_department_name, st.location AS staff_location,
       cp.counterparty_version_id, cp.counterparty_legal_name,
       cp.counterparty_legal_address_line_1, cp.counterparty_legal_address_line_2,
       cp.counterparty_legal_district, cp.counterparty_legal_city,
       cp.counterparty_legal_postal_code, cp.counterparty_legal_country,
       cp.counterparty_legal_phone_number,
       cu.currency_version_id, cu.currency_code, cu.currency_name,
       lo.location_version_id AS agreed_delivery_location_version_id,
       lo.address_line_1 AS delivery_address_line_1, lo.address_line_2 AS delivery_address_line_2,
       lo.district AS delivery_district, lo.city AS delivery_city,
       lo.postal_code AS delivery_postal_code, lo.country AS delivery_country,
       lo.phone AS delivery_phone
FROM fact_purchase_order f
    LEFT JOIN dim_staff_history st
           ON st.staff_id = f.staff_id
          AND (st.valid_from <= f.last_updated_date + f.last_updated_time OR st.version = 1)
          AND (st.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < st.valid_to)
    LEFT JOIN dim_counterparty_history cp
           ON cp.counterparty_id = f.counterparty_id
          AND (cp.valid_from <= f.last_updated_date + f.last_updated_time OR cp.version = 1)
          AND (cp.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < cp.valid_to)
    LEFT JOIN dim_currency_history cu
           ON cu.currency_id = f.currency_id
          AND (cu.valid_from <= f.last_updated_date + f.last_updated_time OR cu.version = 1)
          AND (cu.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < cu.valid_to)
    LEFT JOIN dim_location_history lo
           ON lo.location_id = f.agreed_delivery_location_id
          AND (lo.valid_from <= f.last_updated_date + f.last_updated_time OR lo.version = 1)
          AND (lo.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < lo.valid_to)
;

CREATE OR REPLACE VIEW fact_payment_as_of AS
SELECT f.*,
       f.last_updated_date + f.last_updated_time AS as_of,
       cp.counterparty_version_id, cp.counterparty_legal_name,
       cp.counterparty_legal_address_line_1, cp.counterparty_legal_address_line_2,
       cp.counterparty_legal_district, cp.counterparty_legal_city,
       cp.counterparty_legal_postal_code, cp.counterparty_legal_country,
       cp.counterparty_legal_phone_number,
       cu.currency_version_id, cu.currency_code, cu.currency_name,
       pt.payment_type_version_id, pt.payment_type_name
FROM fact_payment f
    LEFT JOIN dim_counterparty_history cp
           ON cp.counterparty_id = f.counterparty_id
          AND (cp.valid_from <= f.last_updated_date + f.last_updated_time OR cp.version = 1)
          AND (cp.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < cp.valid_to)
    LEFT JOIN dim_currency_history cu
           ON cu.currency_id = f.currency_id
          AND (cu.valid_from <= f.last_updated_date + f.last_updated_time OR cu.version = 1)
          AND (cu.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < cu.valid_to)
    LEFT JOIN dim_payment_type_history pt
           ON pt.payment_type_id = f.payment_type_id
          AND (pt.valid_from <= f.last_updated_date + f.last_updated_time OR pt.version = 1)
          AND (pt.valid_to IS NULL OR f.last_updated_date + f.last_updated_time < pt.valid_to)
;

-- Crypto markets: every trade once, and daily bars (latest version per day).
CREATE TABLE IF NOT EXISTS fact_trade (
    symbol     varchar NOT NULL,
    tid        bigint NOT NULL,
    traded_at  timestamp(3) NOT NULL,
    side       varchar NOT NULL,
    price      numeric(38,18) NOT NULL,
    amount     numeric(38,18) NOT NULL,
    PRIMARY KEY (symbol, tid)
);

-- The default view of trades: the last year. Older trades stay in
-- fact_trade for whoever asks for them; ohlcv_daily keeps every day.
CREATE INDEX IF NOT EXISTS fact_trade_traded_at ON fact_trade (traded_at);
CREATE OR REPLACE VIEW trades AS
    SELECT symbol, tid, traded_at, side, price, amount
    FROM fact_trade
    WHERE traded_at >= (now() AT TIME ZONE 'UTC') - interval '1 year';

CREATE TABLE IF NOT EXISTS ohlcv_daily (
    symbol        varchar NOT NULL,
    day           date NOT NULL,
    open          numeric(38,18) NOT NULL,
    high          numeric(38,18) NOT NULL,
    low           numeric(38,18) NOT NULL,
    close         numeric(38,18) NOT NULL,
    base_volume   numeric(38,18) NOT NULL,
    quote_volume  numeric(38,18) NOT NULL,
    trades        bigint NOT NULL,
    PRIMARY KEY (symbol, day)
);

-- Daily candles of the years before Tributary polled the trades (backfill):
-- no quote volume or trade count, which candles do not carry.
CREATE TABLE IF NOT EXISTS ohlcv_daily_history (
    symbol        varchar NOT NULL,
    day           date NOT NULL,
    open          numeric(38,18) NOT NULL,
    high          numeric(38,18) NOT NULL,
    low           numeric(38,18) NOT NULL,
    close         numeric(38,18) NOT NULL,
    base_volume   numeric(38,18) NOT NULL,
    PRIMARY KEY (symbol, day)
);

-- Every day of every coin: bars from the trades where Tributary has them,
-- candles before.
CREATE OR REPLACE VIEW ohlcv_daily_all AS
    SELECT symbol, day, open, high, low, close, base_volume, quote_volume, trades,
           'trades'::varchar AS source
    FROM ohlcv_daily
    UNION ALL
    SELECT h.symbol, h.day, h.open, h.high, h.low, h.close, h.base_volume,
           NULL::numeric(38,18), NULL::bigint, 'candles'::varchar
    FROM ohlcv_daily_history h
    WHERE NOT EXISTS (SELECT 1 FROM ohlcv_daily d WHERE d.symbol = h.symbol AND d.day = h.day);

-- One row per coin traded on Mercado Bitcoin, with CoinCap's facts when known.
CREATE TABLE IF NOT EXISTS dim_asset (
    symbol          varchar PRIMARY KEY,
    name            varchar,
    coincap_id      varchar,
    rank            bigint,
    price_usd       numeric(38,18),
    market_cap_usd  numeric(38,18),
    quoted_at       timestamp(3)
);

CREATE TABLE IF NOT EXISTS tributary.market_load_log (
    seq        bigint PRIMARY KEY,
    loaded_at  timestamptz NOT NULL DEFAULT now(),
    trades     bigint NOT NULL,
    bars       bigint NOT NULL
);

-- Aggregates for dashboards, kept by the loads: each load recomputes only
-- the days (and for trades the coin-days and minutes) its new rows touch,
-- in the load's own transaction. Percentiles are continuous
-- (percentile_cont: linear between the two nearest values). An order counts
-- once, as its newest version; amounts stay in their own currency.
CREATE INDEX IF NOT EXISTS fact_sales_order_created_date ON fact_sales_order (created_date);
CREATE INDEX IF NOT EXISTS fact_payment_payment_date ON fact_payment (payment_date);

-- Sales per day of creation, counterparty country (as it was when the order
-- was last updated), design and currency: order value = units × unit price.
CREATE TABLE IF NOT EXISTS agg_sales_daily (
    day            date NOT NULL,
    country        varchar NOT NULL,
    design_id      int NOT NULL,
    currency_code  varchar NOT NULL,
    orders         bigint NOT NULL,
    units          bigint NOT NULL,
    value_sum      numeric NOT NULL,
    value_mean     numeric NOT NULL,
    value_p90      numeric NOT NULL,
    PRIMARY KEY (day, country, design_id, currency_code)
);

-- Orders per hour of the day they were created (UTC).
CREATE TABLE IF NOT EXISTS agg_sales_hourly (
    day     date NOT NULL,
    hour    int NOT NULL,
    orders  bigint NOT NULL,
    units   bigint NOT NULL,
    PRIMARY KEY (day, hour)
);

-- Days from an order's creation to its agreed delivery, per day of creation.
CREATE TABLE IF NOT EXISTS agg_delivery_lead_time_daily (
    day        date PRIMARY KEY,
    orders     bigint NOT NULL,
    days_sum   bigint NOT NULL,
    days_mean  numeric NOT NULL,
    days_p90   numeric NOT NULL
);

-- Payments per agreed payment date and currency: how late they were paid,
-- in days (negative: early), from the agreed date to the first version that
-- says paid. Unpaid payments count in payments, not in the delays.
CREATE TABLE IF NOT EXISTS agg_payment_delay_daily (
    day                date NOT NULL,
    currency_code      varchar NOT NULL,
    payments           bigint NOT NULL,
    paid               bigint NOT NULL,
    amount_sum         numeric NOT NULL,
    delay_days_sum     numeric,
    delay_days_mean    numeric,
    delay_days_p90     numeric,
    PRIMARY KEY (day, currency_code)
);

-- Trades per coin and day (UTC): trade size is the amount in the coin.
CREATE TABLE IF NOT EXISTS agg_trades_daily (
    symbol        varchar NOT NULL,
    day           date NOT NULL,
    trades        bigint NOT NULL,
    base_volume   numeric NOT NULL,
    quote_volume  numeric NOT NULL,
    size_mean     numeric NOT NULL,
    size_p90      numeric NOT NULL,
    PRIMARY KEY (symbol, day)
);

-- Trades per coin and minute over the last day (older minutes are dropped
-- by each load).
CREATE TABLE IF NOT EXISTS agg_trades_minute (
    symbol       varchar NOT NULL,
    minute       timestamp NOT NULL,
    trades       bigint NOT NULL,
    base_volume  numeric NOT NULL,
    PRIMARY KEY (symbol, minute)
);
