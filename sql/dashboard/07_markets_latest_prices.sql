-- Latest price of every coin, with when it last traded.
SELECT DISTINCT ON (symbol)
       symbol,
       price       AS last_price,
       traded_at   AS last_traded_at
FROM fact_trade
ORDER BY symbol, tid DESC;
