-- Top movers: change from open to close on the latest day with trades.
SELECT symbol,
       open,
       close,
       round((close - open) / NULLIF(open, 0) * 100, 2) AS change_percent,
       trades
FROM ohlcv_daily
WHERE day = (SELECT max(day) FROM ohlcv_daily)
ORDER BY abs((close - open) / NULLIF(open, 0)) DESC NULLS LAST
LIMIT 10;
