//! Mercado Bitcoin public data API v4.

use std::collections::BTreeMap;

use crate::{
    Error, Result,
    http::{JsonClient, Received, RetryPolicy},
    models::{Candle, ColumnarCandles, ColumnarSymbols, Instrument, Ticker, WireTrade},
};

/// Trades per page: the API's maximum.
pub const PAGE: usize = 1000;

/// A client of one Mercado Bitcoin base URL (the real one, or a replay server).
#[derive(Debug)]
pub struct MercadoBitcoin {
    base: String,
    client: JsonClient,
}

impl MercadoBitcoin {
    /// A client of `base` (e.g. `https://api.mercadobitcoin.net/api/v4`).
    pub fn new(base: &str, policy: RetryPolicy) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            client: JsonClient::new(policy, Vec::new()),
        }
    }

    /// Every instrument; unknown types are kept as they come.
    pub async fn symbols(&self) -> Result<Vec<Instrument>> {
        let columns: ColumnarSymbols = self
            .client
            .get("symbols", &format!("{}/symbols", self.base))
            .await?;
        columns.rows().ok_or_else(|| Error::Shape {
            endpoint: "symbols".to_string(),
            detail: "the parallel arrays differ in length".to_string(),
        })
    }

    /// Daily candles of `symbol` from `from` to `to` (unix seconds): the
    /// history before Tributary polled its trades, with the reply as
    /// received.
    pub async fn daily_candles(
        &self,
        symbol: &str,
        from: i64,
        to: i64,
    ) -> Result<Received<Vec<Candle>>> {
        let url = format!(
            "{}/candles?symbol={symbol}&resolution=1d&from={from}&to={to}",
            self.base
        );
        let reply: Received<ColumnarCandles> = self.client.get_received("candles", &url).await?;
        let rows = reply.value.rows(symbol).ok_or_else(|| Error::Shape {
            endpoint: "candles".to_string(),
            detail: "the parallel arrays differ in length or a time is out of range".to_string(),
        })?;
        Ok(Received {
            body: reply.body,
            value: rows,
        })
    }

    /// Tickers of `symbols`, in one request (unknown symbols are dropped by
    /// the API), with the reply as received; `None` without symbols (no
    /// request is sent).
    pub async fn tickers(&self, symbols: &[String]) -> Result<Option<Received<Vec<Ticker>>>> {
        if symbols.is_empty() {
            return Ok(None);
        }
        let url = format!("{}/tickers?symbols={}", self.base, symbols.join(","));
        self.client.get_received("tickers", &url).await.map(Some)
    }

    /// Every trade of `symbol` after `after_tid`, ascending by tid, each once,
    /// paging while a page is full. With `None` (first contact) it starts at
    /// the newest page: older history comes from daily candles.
    ///
    /// Whether `since` includes the given tid is not documented: rows at or
    /// below what we have are dropped, whatever the API does.
    pub async fn trades_after(
        &self,
        symbol: &str,
        after_tid: Option<i64>,
    ) -> Result<Vec<WireTrade>> {
        let mut found: BTreeMap<i64, WireTrade> = BTreeMap::new();
        let mut cursor = after_tid;
        loop {
            let url = match cursor {
                Some(tid) => format!("{}/{symbol}/trades?since={tid}&limit={PAGE}", self.base),
                None => format!("{}/{symbol}/trades?limit={PAGE}", self.base),
            };
            let page: Vec<WireTrade> = self.client.get("trades", &url).await?;
            let full = page.len() >= PAGE;
            let before = found.len();
            for trade in page {
                if after_tid.is_none_or(|after| trade.tid > after) {
                    found.entry(trade.tid).or_insert(trade);
                }
            }
            let newest = found.keys().next_back().copied();
            // A full page that taught us nothing new would loop forever.
            if !full || found.len() == before || newest == cursor {
                break;
            }
            cursor = newest;
        }
        Ok(found.into_values().collect())
    }
}
