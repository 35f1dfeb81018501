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
