//! Loading market data: trades once each, daily bars upserted (the last row
//! of a (symbol, day) a file holds twice wins), one transaction per
//! processed markets manifest.

use arrow_array::{
    Array, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use tokio_postgres::Client;
use tributary_lake::{Lake, parquet::decode};

use crate::{Error, Result, aggregates};

/// The highest markets manifest the warehouse holds (0: none).
pub async fn markets_loaded_through(client: &Client) -> Result<u64> {
    let row = client
        .query_one(
            "SELECT COALESCE(max(seq), 0)::bigint FROM tributary.market_load_log",
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Loads one markets manifest (`(table, key)` of its files); returns
/// (trades inserted, bars inserted or changed). Already loaded: (0, 0).
pub async fn load_markets_manifest(
    client: &mut Client,
    lake: &Lake,
    seq: u64,
    files: &[(String, String)],
) -> Result<(u64, u64)> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('tributary.load_markets'))",
        &[],
    )
    .await?;
    if tx
        .query_opt(
            "SELECT 1 FROM tributary.market_load_log WHERE seq = $1",
            &[&(seq as i64)],
        )
        .await?
        .is_some()
    {
        return Ok((0, 0));
    }
    aggregates::start_trades(&tx).await?;
    let (mut trades, mut bars) = (0, 0);
    for (table, key) in files {
        // Compacted generations repeat trades already loaded: not read.
        if !matches!(
            table.as_str(),
            "trades" | "ohlcv_daily" | "ohlcv_history" | "assets"
        ) {
            continue;
        }
        let (_, batches) = decode(lake.get(key).await?)?;
        for batch in &batches {
            match table.as_str() {
                "trades" => trades += insert_trades(&tx, batch).await?,
                "ohlcv_daily" => bars += upsert_bars(&tx, batch).await?,
                "ohlcv_history" => bars += upsert_history(&tx, batch).await?,
                "assets" => {
                    upsert_assets(&tx, batch).await?;
                }
                _ => {}
            }
        }
    }
    let refreshed = aggregates::refresh_trades(&tx).await?;
    tracing::info!(
        coin_days = refreshed.days,
        rows = refreshed.rows,
        ms = refreshed.elapsed.as_millis() as u64,
        "trade aggregates refreshed"
    );
    tx.execute(
        "INSERT INTO tributary.market_load_log (seq, trades, bars) VALUES ($1, $2, $3)",
        &[&(seq as i64), &(trades as i64), &(bars as i64)],
    )
    .await?;
    tx.commit().await?;
    Ok((trades, bars))
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            Error::Arrow(arrow_schema::ArrowError::SchemaError(format!(
                "markets file lacks column {name} of the expected type"
            )))
        })
}

/// The rows to upsert of rows whose conflict keys are `keys`: the last row
/// of each key, in row order. One `INSERT … ON CONFLICT DO UPDATE` cannot
/// change a row twice, so a file holding a key twice (candles of two
/// backfills, as a transform before the fix wrote them) would block the load
/// of its manifest and every later one; the last row is the newest version.
fn last_of_each_key<K: std::hash::Hash + Eq>(keys: impl IntoIterator<Item = K>) -> Vec<usize> {
    let keys: Vec<K> = keys.into_iter().collect();
    let mut last: std::collections::HashMap<&K, usize> = std::collections::HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        last.insert(key, i);
    }
    (0..keys.len()).filter(|i| last[&keys[*i]] == *i).collect()
}

/// The values of `rows` at `keep`.
fn pick<T: Clone>(rows: &[T], keep: &[usize]) -> Vec<T> {
    keep.iter().map(|&i| rows[i].clone()).collect()
}

fn decimal_texts(batch: &RecordBatch, name: &str) -> Result<Vec<String>> {
    let array: &Decimal128Array = column(batch, name)?;
    Ok((0..array.len()).map(|i| array.value_as_string(i)).collect())
}

async fn insert_trades(tx: &tokio_postgres::Transaction<'_>, batch: &RecordBatch) -> Result<u64> {
    let symbols: &StringArray = column(batch, "symbol")?;
    let tids: &Int64Array = column(batch, "tid")?;
    let times: &TimestampMillisecondArray = column(batch, "traded_at")?;
    let sides: &StringArray = column(batch, "side")?;
    let symbol: Vec<&str> = (0..batch.num_rows()).map(|i| symbols.value(i)).collect();
    let tid: Vec<i64> = tids.values().to_vec();
    let at: Vec<String> = (0..batch.num_rows())
        .map(|i| {
            times
                .value_as_datetime(i)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                .unwrap_or_default()
        })
        .collect();
    let side: Vec<&str> = (0..batch.num_rows()).map(|i| sides.value(i)).collect();
    let (price, amount) = (
        decimal_texts(batch, "price")?,
        decimal_texts(batch, "amount")?,
    );
    // The coin-days of the trades inserted join `touched_trades`, whose
    // aggregates the end of the load recomputes.
    let inserted: i64 = tx
        .query_one(
            "WITH inserted AS ( \
               INSERT INTO fact_trade (symbol, tid, traded_at, side, price, amount) \
               SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]::timestamp(3)[], $4::text[], \
                                    $5::text[]::numeric[], $6::text[]::numeric[]) \
               ON CONFLICT (symbol, tid) DO NOTHING \
               RETURNING symbol, traded_at::date AS day), \
             touched AS ( \
               INSERT INTO touched_trades SELECT DISTINCT symbol, day FROM inserted \
               ON CONFLICT DO NOTHING) \
             SELECT count(*) FROM inserted",
            &[&symbol, &tid, &at, &side, &price, &amount],
        )
        .await?
        .get(0);
    Ok(inserted as u64)
}

async fn upsert_bars(tx: &tokio_postgres::Transaction<'_>, batch: &RecordBatch) -> Result<u64> {
    let symbols: &StringArray = column(batch, "symbol")?;
    let days: &Date32Array = column(batch, "day")?;
    let symbol: Vec<&str> = (0..batch.num_rows()).map(|i| symbols.value(i)).collect();
    let day: Vec<String> = (0..batch.num_rows())
        .map(|i| {
            days.value_as_date(i)
                .map(|d| d.to_string())
                .unwrap_or_default()
        })
        .collect();
    let trades: &Int64Array = column(batch, "trades")?;
    let count: Vec<i64> = trades.values().to_vec();
    let columns = [
        "open",
        "high",
        "low",
        "close",
        "base_volume",
        "quote_volume",
    ];
    let values: Vec<Vec<String>> = columns
        .iter()
        .map(|c| decimal_texts(batch, c))
        .collect::<Result<_>>()?;
    let keep = last_of_each_key(symbol.iter().zip(&day));
    let (symbol, day, count) = (pick(&symbol, &keep), pick(&day, &keep), pick(&count, &keep));
    let values: Vec<Vec<String>> = values.iter().map(|v| pick(v, &keep)).collect();
    Ok(tx
        .execute(
            "INSERT INTO ohlcv_daily (symbol, day, open, high, low, close, base_volume, quote_volume, trades) \
             SELECT * FROM unnest($1::text[], $2::text[]::date[], $3::text[]::numeric[], $4::text[]::numeric[], \
                                  $5::text[]::numeric[], $6::text[]::numeric[], $7::text[]::numeric[], \
                                  $8::text[]::numeric[], $9::bigint[]) \
             ON CONFLICT (symbol, day) DO UPDATE SET open = excluded.open, high = excluded.high, \
               low = excluded.low, close = excluded.close, base_volume = excluded.base_volume, \
               quote_volume = excluded.quote_volume, trades = excluded.trades",
            &[&symbol, &day, &values[0], &values[1], &values[2], &values[3], &values[4], &values[5], &count],
        )
        .await?)
}

/// Upserts daily candles of the history before polling.
async fn upsert_history(tx: &tokio_postgres::Transaction<'_>, batch: &RecordBatch) -> Result<u64> {
    let symbols: &StringArray = column(batch, "symbol")?;
    let days: &Date32Array = column(batch, "day")?;
    let symbol: Vec<&str> = (0..batch.num_rows()).map(|i| symbols.value(i)).collect();
    let day: Vec<String> = (0..batch.num_rows())
        .map(|i| {
            days.value_as_date(i)
                .map(|d| d.to_string())
                .unwrap_or_default()
        })
        .collect();
    let values: Vec<Vec<String>> = ["open", "high", "low", "close", "base_volume"]
        .iter()
        .map(|c| decimal_texts(batch, c))
        .collect::<Result<_>>()?;
    let keep = last_of_each_key(symbol.iter().zip(&day));
    let (symbol, day) = (pick(&symbol, &keep), pick(&day, &keep));
    let values: Vec<Vec<String>> = values.iter().map(|v| pick(v, &keep)).collect();
    Ok(tx
        .execute(
            "INSERT INTO ohlcv_daily_history (symbol, day, open, high, low, close, base_volume) \
             SELECT * FROM unnest($1::text[], $2::text[]::date[], $3::text[]::numeric[], $4::text[]::numeric[], \
                                  $5::text[]::numeric[], $6::text[]::numeric[], $7::text[]::numeric[]) \
             ON CONFLICT (symbol, day) DO UPDATE SET open = excluded.open, high = excluded.high, \
               low = excluded.low, close = excluded.close, base_volume = excluded.base_volume",
            &[&symbol, &day, &values[0], &values[1], &values[2], &values[3], &values[4]],
        )
        .await?)
}

/// Upserts coins; CoinCap facts missing from this snapshot keep their last value.
async fn upsert_assets(tx: &tokio_postgres::Transaction<'_>, batch: &RecordBatch) -> Result<u64> {
    let rows = batch.num_rows();
    let text = |name: &str| -> Result<Vec<Option<String>>> {
        let array: &StringArray = column(batch, name)?;
        Ok((0..rows)
            .map(|i| (!array.is_null(i)).then(|| array.value(i).to_string()))
            .collect())
    };
    let decimal = |name: &str| -> Result<Vec<Option<String>>> {
        let array: &Decimal128Array = column(batch, name)?;
        Ok((0..rows)
            .map(|i| (!array.is_null(i)).then(|| array.value_as_string(i)))
            .collect())
    };
    let ranks: &Int64Array = column(batch, "rank")?;
    let rank: Vec<Option<i64>> = (0..rows)
        .map(|i| (!ranks.is_null(i)).then(|| ranks.value(i)))
        .collect();
    let quoted: &TimestampMillisecondArray = column(batch, "quoted_at")?;
    let quoted_at: Vec<Option<String>> = (0..rows)
        .map(|i| {
            quoted
                .value_as_datetime(i)
                .filter(|_| !quoted.is_null(i))
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        })
        .collect();
    let symbols: Vec<Option<String>> = text("symbol")?;
    let keep = last_of_each_key(&symbols);
    let (symbols, name, coincap_id, rank, price_usd, market_cap_usd, quoted_at) = (
        pick(&symbols, &keep),
        pick(&text("name")?, &keep),
        pick(&text("coincap_id")?, &keep),
        pick(&rank, &keep),
        pick(&decimal("price_usd")?, &keep),
        pick(&decimal("market_cap_usd")?, &keep),
        pick(&quoted_at, &keep),
    );
    Ok(tx
        .execute(
            "INSERT INTO dim_asset AS cur (symbol, name, coincap_id, rank, price_usd, market_cap_usd, quoted_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]::numeric[], \
                                  $6::text[]::numeric[], $7::text[]::timestamp(3)[]) \
             ON CONFLICT (symbol) DO UPDATE SET \
               name = COALESCE(excluded.name, cur.name), \
               coincap_id = COALESCE(excluded.coincap_id, cur.coincap_id), \
               rank = COALESCE(excluded.rank, cur.rank), \
               price_usd = COALESCE(excluded.price_usd, cur.price_usd), \
               market_cap_usd = COALESCE(excluded.market_cap_usd, cur.market_cap_usd), \
               quoted_at = COALESCE(excluded.quoted_at, cur.quoted_at)",
            &[&symbols, &name, &coincap_id, &rank, &price_usd, &market_cap_usd, &quoted_at],
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_row_of_each_key_is_kept_in_row_order() {
        let keys = [("A", 1), ("B", 1), ("A", 1), ("A", 2), ("B", 1)];
        let keep = last_of_each_key(keys.iter());
        assert_eq!(keep, [2, 3, 4]);
        assert_eq!(pick(&["a", "b", "c", "d", "e"], &keep), ["c", "d", "e"]);
        assert!(last_of_each_key(Vec::<u8>::new()).is_empty());
    }
}
