-- Daily volume by coin over the last 30 days of data (quote currency).
SELECT day, symbol, trades, base_volume, quote_volume
FROM ohlcv_daily
WHERE day > (SELECT max(day) FROM ohlcv_daily) - 30
ORDER BY day DESC, quote_volume DESC;
