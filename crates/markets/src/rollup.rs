//! Trades as Arrow batches for the processed lake, and daily OHLCV bars.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use arrow_array::{
    Array, ArrayRef, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::{Decimal18, Trade, decimal::DecimalError};

const DECIMAL: DataType = DataType::Decimal128(38, 18);

/// Schema of `processed/markets/trades`.
pub fn trades_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("tid", DataType::Int64, false),
        Field::new(
            "traded_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("side", DataType::Utf8, false),
        Field::new("price", DECIMAL, false),
        Field::new("amount", DECIMAL, false),
    ]))
}

/// Schema of `processed/markets/ohlcv_daily`.
pub fn ohlcv_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("day", DataType::Date32, false),
    ];
    for name in [
        "open",
        "high",
        "low",
        "close",
        "base_volume",
        "quote_volume",
    ] {
        fields.push(Field::new(name, DECIMAL, false));
    }
    fields.push(Field::new("trades", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

fn decimals(values: impl Iterator<Item = i128>) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(
        Decimal128Array::from_iter_values(values).with_precision_and_scale(38, 18)?,
    ))
}

/// Trades as one batch; fails on a price or amount that is not a decimal.
pub fn trades_batch(trades: &[Trade]) -> Result<RecordBatch, RollupError> {
    let prices: Vec<i128> = trades
        .iter()
        .map(|t| t.price.parse::<Decimal18>().map(Decimal18::raw))
        .collect::<Result<_, _>>()?;
    let amounts: Vec<i128> = trades
        .iter()
        .map(|t| t.amount.parse::<Decimal18>().map(Decimal18::raw))
        .collect::<Result<_, _>>()?;
    Ok(RecordBatch::try_new(
        trades_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                trades.iter().map(|t| t.symbol.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(trades.iter().map(|t| t.tid))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                trades.iter().map(|t| t.traded_at_ms),
            )),
            Arc::new(StringArray::from_iter_values(trades.iter().map(
                |t| match t.side {
                    crate::Side::Buy => "buy",
                    crate::Side::Sell => "sell",
                },
            ))),
            decimals(prices.into_iter())?,
            decimals(amounts.into_iter())?,
        ],
    )?)
}

/// Why `trade` cannot be stored and rolled up, if it cannot: a price or an
/// amount that is not an exact decimal of 18 places, or a price × amount
/// beyond 38 digits. Such a line is quarantined with this reason (by the
/// sink, or by the transform for a batch kept before the sink checked), so
/// it never stops the trades after it.
pub fn refusal(trade: &Trade) -> Option<String> {
    let price = match trade.price.parse::<Decimal18>() {
        Ok(price) => price,
        Err(e) => return Some(format!("price {e}")),
    };
    let amount = match trade.amount.parse::<Decimal18>() {
        Ok(amount) => amount,
        Err(e) => return Some(format!("amount {e}")),
    };
    price.checked_mul(amount).is_none().then(|| {
        format!(
            "price × amount of {} tid {} overflows",
            trade.symbol, trade.tid
        )
    })
}

/// The trades of one batch of [`trades_schema`] (a processed trade file),
/// as [`trades_batch`] wrote them.
pub fn trades_of_batch(batch: &RecordBatch) -> Result<Vec<Trade>, RollupError> {
    fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, RollupError> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| {
                RollupError::Arrow(ArrowError::SchemaError(format!(
                    "a trade file lacks column {name} of the expected type"
                )))
            })
    }
    let symbol: &StringArray = column(batch, "symbol")?;
    let tid: &Int64Array = column(batch, "tid")?;
    let traded_at: &TimestampMillisecondArray = column(batch, "traded_at")?;
    let side: &StringArray = column(batch, "side")?;
    let price: &Decimal128Array = column(batch, "price")?;
    let amount: &Decimal128Array = column(batch, "amount")?;
    Ok((0..batch.num_rows())
        .map(|i| Trade {
            symbol: symbol.value(i).to_string(),
            tid: tid.value(i),
            traded_at_ms: traded_at.value(i),
            price: Decimal18(price.value(i)).to_string(),
            amount: Decimal18(amount.value(i)).to_string(),
            side: if side.value(i) == "sell" {
                crate::Side::Sell
            } else {
                crate::Side::Buy
            },
        })
        .collect())
}

/// Why trades could not be rolled up.
#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    /// A price or amount was not an exact decimal.
    #[error(transparent)]
    Decimal(#[from] DecimalError),
    /// Arrow refused the batch.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// A sum overflowed 38 digits.
    #[error("volume of {0} overflowed")]
    Overflow(String),
}

/// One symbol's day: open and close by trade id, high, low, volumes, count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyBar {
    /// Symbol.
    pub symbol: String,
    /// UTC day.
    pub day: NaiveDate,
    /// Price of the day's lowest tid.
    pub open: Decimal18,
    /// Highest price.
    pub high: Decimal18,
    /// Lowest price.
    pub low: Decimal18,
    /// Price of the day's highest tid.
    pub close: Decimal18,
    /// Sum of amounts.
    pub base_volume: Decimal18,
    /// Sum of price × amount.
    pub quote_volume: Decimal18,
    /// Trades counted.
    pub trades: i64,
    /// Lowest tid counted.
    pub first_tid: i64,
    /// Highest tid counted.
    pub last_tid: i64,
}

impl DailyBar {
    fn start(
        trade: &Trade,
        day: NaiveDate,
        price: Decimal18,
        amount: Decimal18,
        quote: Decimal18,
    ) -> Self {
        Self {
            symbol: trade.symbol.clone(),
            day,
            open: price,
            high: price,
            low: price,
            close: price,
            base_volume: amount,
            quote_volume: quote,
            trades: 1,
            first_tid: trade.tid,
            last_tid: trade.tid,
        }
    }
}

/// Bars by (symbol, day).
pub type Bars = BTreeMap<(String, NaiveDate), DailyBar>;

/// The UTC day of a time in ms since the epoch.
fn day_of(ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

/// The closed days (before `horizon`) that `trades` fall on whose bar is
/// not in `bars` (the open bars), with the symbols of each: their bars must
/// be rebuilt from the day's trades already in the processed lake before
/// `trades` are added, or a late trade would make a bar of itself alone.
pub fn closed_bars_to_rebuild(
    bars: &Bars,
    trades: &[Trade],
    horizon: NaiveDate,
) -> BTreeMap<NaiveDate, BTreeSet<String>> {
    let mut days: BTreeMap<NaiveDate, BTreeSet<String>> = BTreeMap::new();
    for trade in trades {
        let day = day_of(trade.traded_at_ms);
        if day < horizon && !bars.contains_key(&(trade.symbol.clone(), day)) {
            days.entry(day).or_default().insert(trade.symbol.clone());
        }
    }
    days
}

/// Adds `trades` (each once) to `bars`; returns the (symbol, day) keys changed.
pub fn roll_up(bars: &mut Bars, trades: &[Trade]) -> Result<Vec<(String, NaiveDate)>, RollupError> {
    let mut changed = Vec::new();
    for trade in trades {
        let price: Decimal18 = trade.price.parse()?;
        let amount: Decimal18 = trade.amount.parse()?;
        let quote = price
            .checked_mul(amount)
            .ok_or_else(|| RollupError::Overflow(trade.symbol.clone()))?;
        let day = day_of(trade.traded_at_ms);
        let key = (trade.symbol.clone(), day);
        match bars.get_mut(&key) {
            None => {
                bars.insert(
                    key.clone(),
                    DailyBar::start(trade, day, price, amount, quote),
                );
            }
            Some(bar) => {
                if trade.tid < bar.first_tid {
                    bar.first_tid = trade.tid;
                    bar.open = price;
                }
                if trade.tid > bar.last_tid {
                    bar.last_tid = trade.tid;
                    bar.close = price;
                }
                bar.high = bar.high.max(price);
                bar.low = bar.low.min(price);
                let overflow = || RollupError::Overflow(trade.symbol.clone());
                bar.base_volume = Decimal18(
                    bar.base_volume
                        .0
                        .checked_add(amount.0)
                        .ok_or_else(overflow)?,
                );
                bar.quote_volume = Decimal18(
                    bar.quote_volume
                        .0
                        .checked_add(quote.0)
                        .ok_or_else(overflow)?,
                );
                bar.trades += 1;
            }
        }
        if !changed.contains(&key) {
            changed.push(key);
        }
    }
    Ok(changed)
}

/// Bars as one batch.
pub fn ohlcv_batch(bars: &[&DailyBar]) -> Result<RecordBatch, RollupError> {
    let epoch = NaiveDate::default();
    let column = |f: fn(&DailyBar) -> Decimal18| decimals(bars.iter().map(|b| f(b).raw()));
    Ok(RecordBatch::try_new(
        ohlcv_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                bars.iter().map(|b| b.symbol.as_str()),
            )),
            Arc::new(Date32Array::from_iter_values(
                bars.iter().map(|b| (b.day - epoch).num_days() as i32),
            )),
            column(|b| b.open)?,
            column(|b| b.high)?,
            column(|b| b.low)?,
            column(|b| b.close)?,
            column(|b| b.base_volume)?,
            column(|b| b.quote_volume)?,
            Arc::new(Int64Array::from_iter_values(bars.iter().map(|b| b.trades))),
        ],
    )?)
}

/// Schema of `processed/markets/ohlcv_history`: daily candles of the
/// years before the trades were polled (no quote volume, no trade count).
pub fn history_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("day", DataType::Date32, false),
    ];
    for name in ["open", "high", "low", "close", "base_volume"] {
        fields.push(Field::new(name, DECIMAL, false));
    }
    Arc::new(Schema::new(fields))
}

/// Candles as one batch of [`history_schema`].
pub fn history_batch(candles: &[crate::Candle]) -> Result<RecordBatch, RollupError> {
    let epoch = NaiveDate::default();
    let column = |f: fn(&crate::Candle) -> Decimal18| decimals(candles.iter().map(|c| f(c).raw()));
    Ok(RecordBatch::try_new(
        history_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                candles.iter().map(|c| c.symbol.as_str()),
            )),
            Arc::new(Date32Array::from_iter_values(
                candles.iter().map(|c| (c.day - epoch).num_days() as i32),
            )),
            column(|c| c.open)?,
            column(|c| c.high)?,
            column(|c| c.low)?,
            column(|c| c.close)?,
            column(|c| c.volume)?,
        ],
    )?)
}

/// Schema of `processed/markets/assets`: one row per base currency traded.
pub fn assets_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("coincap_id", DataType::Utf8, true),
        Field::new("rank", DataType::Int64, true),
        Field::new("price_usd", DECIMAL, true),
        Field::new("market_cap_usd", DECIMAL, true),
        Field::new(
            "quoted_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
    ]))
}

/// One row per base currency of `bases`, with CoinCap's facts where the
/// snapshot names the same symbol.
pub fn assets_batch(
    bases: &[String],
    snapshot: Option<&crate::AssetPage>,
) -> Result<RecordBatch, RollupError> {
    let find = |base: &str| {
        snapshot.and_then(|page| {
            page.data
                .iter()
                .find(|a| a.symbol.eq_ignore_ascii_case(base))
        })
    };
    let quoted_at = snapshot.map(|page| page.timestamp);
    let rows: Vec<(&String, Option<&crate::Asset>)> = bases.iter().map(|b| (b, find(b))).collect();
    let decimals_opt = |f: fn(&crate::Asset) -> Option<Decimal18>| -> Result<ArrayRef, ArrowError> {
        Ok(Arc::new(
            Decimal128Array::from(
                rows.iter()
                    .map(|(_, a)| a.and_then(f).map(Decimal18::raw))
                    .collect::<Vec<_>>(),
            )
            .with_precision_and_scale(38, 18)?,
        ))
    };
    Ok(RecordBatch::try_new(
        assets_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(b, _)| b.as_str()),
            )),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|(_, a)| a.map(|a| a.name.clone()))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|(_, a)| a.map(|a| a.id.clone()))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter()
                    .map(|(_, a)| a.map(|a| a.rank))
                    .collect::<Vec<_>>(),
            )),
            decimals_opt(|a| a.price_usd)?,
            decimals_opt(|a| a.market_cap_usd)?,
            Arc::new(TimestampMillisecondArray::from(
                rows.iter()
                    .map(|(_, a)| a.and(quoted_at))
                    .collect::<Vec<_>>(),
            )),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Side;

    fn trade(tid: i64, at: &str, price: &str, amount: &str) -> Trade {
        let ms = chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_millis();
        Trade {
            symbol: "BTC-BRL".into(),
            tid,
            traded_at_ms: ms,
            price: price.into(),
            amount: amount.into(),
            side: Side::Buy,
        }
    }

    #[test]
    fn ohlcv_equals_a_hand_computed_day() {
        // Arrival order is not tid order: open and close still follow tids.
        let trades = vec![
            trade(12, "2025-11-19 10:00:00", "101.5", "0.2"),
            trade(10, "2025-11-19 09:00:00", "100", "1"),
            trade(11, "2025-11-19 09:30:00", "99.25", "0.5"),
            trade(13, "2025-11-19 23:59:59", "100.75", "0.1"),
            trade(14, "2025-11-20 00:00:00", "102", "2"),
        ];
        let mut bars = Bars::new();
        let changed = roll_up(&mut bars, &trades).unwrap();
        assert_eq!(changed.len(), 2);
        let day = NaiveDate::from_ymd_opt(2025, 11, 19).unwrap();
        let bar = &bars[&("BTC-BRL".to_string(), day)];
        let d = |s: &str| s.parse::<Decimal18>().unwrap();
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close),
            (d("100"), d("101.5"), d("99.25"), d("100.75"))
        );
        assert_eq!(bar.base_volume, d("1.8"));
        // 100×1 + 99.25×0.5 + 101.5×0.2 + 100.75×0.1 = 100 + 49.625 + 20.3 + 10.075
        assert_eq!(bar.quote_volume, d("180"));
        assert_eq!(bar.trades, 4);
        let batch = ohlcv_batch(&bars.values().collect::<Vec<_>>()).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let trades_batch = trades_batch(&trades).unwrap();
        assert_eq!(trades_batch.num_rows(), 5);
    }

    #[test]
    fn a_price_or_amount_that_is_not_a_decimal_is_refused_with_its_field() {
        assert_eq!(
            refusal(&trade(1, "2025-11-19 09:00:00", "100.5", "1e-3")),
            None
        );
        let bad_price = refusal(&trade(1, "2025-11-19 09:00:00", "twelve", "1")).unwrap();
        assert!(
            bad_price.starts_with("price \"twelve\" is not an exact decimal"),
            "{bad_price}"
        );
        let bad_amount = refusal(&trade(1, "2025-11-19 09:00:00", "1", "")).unwrap();
        assert!(
            bad_amount.starts_with("amount \"\" is not an exact decimal"),
            "{bad_amount}"
        );
        let huge = "1".repeat(20);
        let overflow = refusal(&trade(7, "2025-11-19 09:00:00", &huge, &huge)).unwrap();
        assert_eq!(overflow, "price × amount of BTC-BRL tid 7 overflows");
    }

    #[test]
    fn a_closed_days_bar_rebuilt_from_its_files_then_the_late_trade_is_the_whole_day() {
        let day = NaiveDate::from_ymd_opt(2025, 11, 19).unwrap();
        let earlier = vec![
            trade(10, "2025-11-19 09:00:00", "100", "1"),
            trade(11, "2025-11-19 09:30:00", "99.25", "0.5"),
        ];
        let mut late = trade(20, "2025-11-19 23:00:00", "200", "0.125");
        late.side = Side::Sell;
        let mut whole = Bars::new();
        roll_up(&mut whole, &[earlier.clone(), vec![late.clone()]].concat()).unwrap();

        // The closed day's bar is not open: rebuild it from the file first.
        let mut bars = Bars::new();
        let rebuild =
            closed_bars_to_rebuild(&bars, std::slice::from_ref(&late), day.succ_opt().unwrap());
        assert_eq!(
            rebuild,
            BTreeMap::from([(day, BTreeSet::from(["BTC-BRL".to_string()]))])
        );
        let from_file = trades_of_batch(&trades_batch(&earlier).unwrap()).unwrap();
        assert_eq!(from_file, earlier, "a trade file reads back as written");
        roll_up(&mut bars, &from_file).unwrap();
        roll_up(&mut bars, &[late.clone()]).unwrap();
        assert_eq!(bars, whole);

        // An open day (not before the horizon), or a bar already open: nothing to rebuild.
        assert!(closed_bars_to_rebuild(&Bars::new(), std::slice::from_ref(&late), day).is_empty());
        assert!(closed_bars_to_rebuild(&bars, &[late], day.succ_opt().unwrap()).is_empty());
    }
}
