//! Exactly-once trades and the daily layout of the processed trade files,
//! as pure functions over trades (no lake, no clock).
//!
//! Trades of one symbol reach the stream in tid order (one partition key per
//! symbol), so the highest tid kept per symbol is all the state dedupe
//! needs: a trade put twice (a poll that died between put and checkpoint, a
//! redelivered batch) has a tid at or below it and is dropped.
//!
//! Why a tid at or below it can be dropped: Mercado Bitcoin numbers each
//! symbol's trades with increasing tids, the poll asks for the trades after
//! the last tid it put (`/trades?since=`) and advances that checkpoint only
//! after the put, and one symbol's records share a partition key, so they
//! reach the sink in the order they were put. A trade whose tid is below the
//! highest kept is therefore one already kept. Were that ever not so (a
//! trade out of tid order), it would be dropped unseen: [`Unseen::behind`]
//! names such candidates so the transform can tell a repeat from a trade
//! never kept, count the latter and log it.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::Trade;

/// What [`keep_unseen`] kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unseen {
    /// Trades not seen before, by symbol then tid.
    pub fresh: Vec<Trade>,
    /// Trades dropped as already kept.
    pub duplicates: u64,
    /// The dropped trades (once each, by symbol then tid) whose tid is at or
    /// below the symbol's highest tid kept before this batch: repeats of
    /// trades kept by an earlier run, or trades that arrived out of tid
    /// order and were never kept. Only the kept trades can tell which.
    pub behind: Vec<Trade>,
}

/// Keeps the trades above each symbol's highest kept tid (`max_tid`, which
/// it advances), once each, sorted by symbol and tid.
pub fn keep_unseen(mut incoming: Vec<Trade>, max_tid: &mut BTreeMap<String, i64>) -> Unseen {
    incoming.sort_by(|a, b| (&a.symbol, a.tid).cmp(&(&b.symbol, b.tid)));
    let before = incoming.len();
    let kept_before = max_tid.clone();
    let mut fresh = Vec::with_capacity(before);
    let mut behind: Vec<Trade> = Vec::new();
    for trade in incoming {
        let seen = max_tid.get(&trade.symbol).copied().unwrap_or(i64::MIN);
        if trade.tid > seen {
            max_tid.insert(trade.symbol.clone(), trade.tid);
            fresh.push(trade);
        } else if kept_before
            .get(&trade.symbol)
            .is_some_and(|&max| trade.tid <= max)
            && behind
                .last()
                .is_none_or(|b| (&b.symbol, b.tid) != (&trade.symbol, trade.tid))
        {
            behind.push(trade);
        }
    }
    Unseen {
        duplicates: (before - fresh.len()) as u64,
        fresh,
        behind,
    }
}

/// The UTC day a trade belongs to (its partition in the processed lake).
fn trade_day(trade: &Trade) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(trade.traded_at_ms)
        .unwrap_or_default()
        .date_naive()
}

/// Trades grouped by their UTC day, in day order.
pub fn by_day(trades: Vec<Trade>) -> BTreeMap<NaiveDate, Vec<Trade>> {
    let mut days: BTreeMap<NaiveDate, Vec<Trade>> = BTreeMap::new();
    for trade in trades {
        days.entry(trade_day(&trade)).or_default().push(trade);
    }
    days
}

/// The days before `horizon` that still have small files to compact: once
/// a day is closed, its files (and its current compacted generation) become
/// one new generation.
pub fn closed_days<V>(uncompacted: &BTreeMap<NaiveDate, V>, horizon: NaiveDate) -> Vec<NaiveDate> {
    uncompacted.range(..horizon).map(|(day, _)| *day).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Side;

    fn trade(symbol: &str, tid: i64, traded_at_ms: i64) -> Trade {
        Trade {
            symbol: symbol.into(),
            tid,
            traded_at_ms,
            price: "1.0".into(),
            amount: "2.0".into(),
            side: Side::Buy,
        }
    }

    #[test]
    fn a_trade_seen_before_or_twice_in_one_batch_is_kept_once() {
        let mut max_tid = BTreeMap::from([("BTC-BRL".to_string(), 10)]);
        let unseen = keep_unseen(
            vec![
                trade("ETH-BRL", 3, 0),
                trade("BTC-BRL", 12, 0),
                trade("BTC-BRL", 9, 0),
                trade("BTC-BRL", 11, 0),
                trade("BTC-BRL", 12, 0),
            ],
            &mut max_tid,
        );
        let kept: Vec<(&str, i64)> = unseen
            .fresh
            .iter()
            .map(|t| (t.symbol.as_str(), t.tid))
            .collect();
        assert_eq!(kept, [("BTC-BRL", 11), ("BTC-BRL", 12), ("ETH-BRL", 3)]);
        assert_eq!(unseen.duplicates, 2);
        assert_eq!(max_tid["BTC-BRL"], 12);
        assert_eq!(max_tid["ETH-BRL"], 3);
        // tid 9 is below the 10 kept before: a repeat or out of order; the
        // second 12 repeats one of this batch.
        let behind: Vec<(&str, i64)> = unseen
            .behind
            .iter()
            .map(|t| (t.symbol.as_str(), t.tid))
            .collect();
        assert_eq!(behind, [("BTC-BRL", 9)]);
        let again = keep_unseen(
            vec![
                trade("BTC-BRL", 12, 0),
                trade("BTC-BRL", 5, 0),
                trade("BTC-BRL", 5, 0),
            ],
            &mut max_tid,
        );
        assert!(again.fresh.is_empty() && again.duplicates == 3);
        let behind: Vec<i64> = again.behind.iter().map(|t| t.tid).collect();
        assert_eq!(behind, [5, 12], "each once");
    }

    #[test]
    fn trades_fall_on_their_utc_day_and_only_days_before_the_horizon_close() {
        let day_ms = 86_400_000;
        let days = by_day(vec![
            trade("A", 1, 20_000 * day_ms - 1),
            trade("A", 2, 20_000 * day_ms),
            trade("A", 3, 20_000 * day_ms + 5),
        ]);
        let first = NaiveDate::from_ymd_opt(2024, 10, 3).unwrap();
        let second = first.succ_opt().unwrap();
        assert_eq!(days.keys().copied().collect::<Vec<_>>(), [first, second]);
        assert_eq!(days[&second].len(), 2);
        let files: BTreeMap<NaiveDate, Vec<String>> =
            days.keys().map(|d| (*d, vec![d.to_string()])).collect();
        assert_eq!(closed_days(&files, second), [first]);
        assert!(closed_days(&files, first).is_empty());
    }
}
