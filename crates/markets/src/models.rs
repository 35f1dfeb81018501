//! The wire shapes of the market APIs (see ../shared/markets/API.md), as
//! typed values. Decimals are exact; timestamps are normalised to
//! milliseconds since the epoch whatever unit the wire uses.

use serde::Deserialize;

use crate::decimal::{Decimal18, integer, optional};

/// Which side of the book took the trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// A buy order took it.
    Buy,
    /// A sell order took it.
    Sell,
}

/// One Mercado Bitcoin trade as the API sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WireTrade {
    /// Trade id, unique per symbol.
    #[serde(deserialize_with = "integer")]
    pub tid: i64,
    /// Unix seconds.
    #[serde(deserialize_with = "integer")]
    pub date: i64,
    /// Price in the quote currency.
    pub price: Decimal18,
    /// Amount of the base currency.
    pub amount: Decimal18,
    /// Taker side.
    #[serde(rename = "type")]
    pub side: Side,
}

/// A trade with its symbol, as Tributary stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trade {
    /// `BASE-QUOTE`, e.g. `BTC-BRL`.
    pub symbol: String,
    /// Trade id, unique per symbol.
    pub tid: i64,
    /// When it traded, ms since the epoch.
    pub traded_at_ms: i64,
    /// Price (exact decimal text).
    pub price: String,
    /// Amount (exact decimal text).
    pub amount: String,
    /// Taker side.
    pub side: Side,
}

impl Trade {
    /// A stored trade from the wire row of `symbol`.
    pub fn from_wire(symbol: &str, wire: &WireTrade) -> Self {
        Self {
            symbol: symbol.to_string(),
            tid: wire.tid,
            traded_at_ms: wire.date.saturating_mul(1000),
            price: wire.price.to_string(),
            amount: wire.amount.to_string(),
            side: wire.side,
        }
    }
}

/// One row of `/tickers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Ticker {
    /// The symbol.
    pub pair: String,
    /// 24 h high.
    pub high: Decimal18,
    /// 24 h low.
    pub low: Decimal18,
    /// 24 h volume (base).
    pub vol: Decimal18,
    /// Last price ("0" when no trade).
    pub last: Decimal18,
    /// Best bid.
    pub buy: Decimal18,
    /// Best ask.
    pub sell: Decimal18,
    /// Opening price.
    pub open: Decimal18,
    /// Unix seconds of the ticker.
    #[serde(deserialize_with = "integer")]
    pub date: i64,
}

/// `/symbols`: one object of parallel arrays.
#[derive(Debug, Clone, Deserialize)]
pub struct ColumnarSymbols {
    /// Symbols.
    pub symbol: Vec<String>,
    /// Instrument types (`CRYPTO`, `FAN_TOKEN`, … and unknown ones).
    #[serde(rename = "type")]
    pub kind: Vec<String>,
    /// Base currencies.
    #[serde(rename = "base-currency")]
    pub base_currency: Vec<String>,
    /// Quote currencies.
    pub currency: Vec<String>,
}

/// `/candles`: parallel arrays, `t` in unix seconds, the rest decimals.
#[derive(Debug, Clone, Deserialize)]
pub struct ColumnarCandles {
    /// Period starts, unix seconds.
    pub t: Vec<i64>,
    /// Opens.
    pub o: Vec<crate::Decimal18>,
    /// Highs.
    pub h: Vec<crate::Decimal18>,
    /// Lows.
    pub l: Vec<crate::Decimal18>,
    /// Closes.
    pub c: Vec<crate::Decimal18>,
    /// Base volumes.
    pub v: Vec<crate::Decimal18>,
}

/// One daily candle: the history before Tributary saw the trades.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Candle {
    /// `BASE-QUOTE`.
    pub symbol: String,
    /// The UTC day it covers.
    pub day: chrono::NaiveDate,
    /// Open.
    pub open: crate::Decimal18,
    /// High.
    pub high: crate::Decimal18,
    /// Low.
    pub low: crate::Decimal18,
    /// Close.
    pub close: crate::Decimal18,
    /// Base volume.
    pub volume: crate::Decimal18,
}

impl ColumnarCandles {
    /// The rows of `symbol`; `None` when the arrays differ in length or a
    /// time is out of range.
    pub fn rows(&self, symbol: &str) -> Option<Vec<Candle>> {
        let n = self.t.len();
        if [
            self.o.len(),
            self.h.len(),
            self.l.len(),
            self.c.len(),
            self.v.len(),
        ]
        .iter()
        .any(|&len| len != n)
        {
            return None;
        }
        (0..n)
            .map(|i| {
                Some(Candle {
                    symbol: symbol.to_string(),
                    day: chrono::DateTime::from_timestamp(self.t[i], 0)?.date_naive(),
                    open: self.o[i],
                    high: self.h[i],
                    low: self.l[i],
                    close: self.c[i],
                    volume: self.v[i],
                })
            })
            .collect()
    }
}

/// The candles of one raw backfill file. The file is the `/candles` reply
/// as received (parallel arrays; the symbol is not in it, so it comes from
/// the file's key); files written before replies were kept as received hold
/// a list of [`Candle`]s, which is read as it is.
pub fn candles_from_raw(text: &str, symbol: Option<&str>) -> crate::Result<Vec<Candle>> {
    let shape = |detail: String| crate::Error::Shape {
        endpoint: "candles".to_string(),
        detail,
    };
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).map_err(|e| shape(e.to_string()));
    }
    let symbol = symbol.ok_or_else(|| {
        shape("a reply as received needs its symbol (from the file's key)".to_string())
    })?;
    let columns: ColumnarCandles = serde_json::from_str(text).map_err(|e| shape(e.to_string()))?;
    columns.rows(symbol).ok_or_else(|| {
        shape("the parallel arrays differ in length or a time is out of range".to_string())
    })
}

/// One instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instrument {
    /// `BASE-QUOTE`.
    pub symbol: String,
    /// Instrument type.
    pub kind: String,
    /// Base currency.
    pub base: String,
    /// Quote currency.
    pub quote: String,
}

impl ColumnarSymbols {
    /// Rows from the parallel arrays; `None` when the arrays differ in length.
    pub fn rows(&self) -> Option<Vec<Instrument>> {
        let n = self.symbol.len();
        if self.kind.len() != n || self.base_currency.len() != n || self.currency.len() != n {
            return None;
        }
        Some(
            (0..n)
                .map(|i| Instrument {
                    symbol: self.symbol[i].clone(),
                    kind: self.kind[i].clone(),
                    base: self.base_currency[i].clone(),
                    quote: self.currency[i].clone(),
                })
                .collect(),
        )
    }
}

/// One CoinCap asset; every decimal may be null.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Asset {
    /// Slug, e.g. `bitcoin`.
    pub id: String,
    /// Market-cap rank (sent as a string or a number).
    #[serde(deserialize_with = "integer")]
    pub rank: i64,
    /// Ticker symbol, e.g. `BTC`.
    pub symbol: String,
    /// Display name.
    pub name: String,
    /// Circulating supply.
    #[serde(default, deserialize_with = "optional")]
    pub supply: Option<Decimal18>,
    /// Maximum supply.
    #[serde(default, deserialize_with = "optional")]
    pub max_supply: Option<Decimal18>,
    /// Market cap in USD.
    #[serde(default, deserialize_with = "optional")]
    pub market_cap_usd: Option<Decimal18>,
    /// 24 h volume in USD.
    #[serde(default, deserialize_with = "optional", rename = "volumeUsd24Hr")]
    pub volume_usd_24h: Option<Decimal18>,
    /// Price in USD.
    #[serde(default, deserialize_with = "optional")]
    pub price_usd: Option<Decimal18>,
    /// 24 h change, percent.
    #[serde(default, deserialize_with = "optional", rename = "changePercent24Hr")]
    pub change_percent_24h: Option<Decimal18>,
}

/// One point of `/v3/assets/{id}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PricePoint {
    /// Price in USD.
    #[serde(default, deserialize_with = "optional", rename = "priceUsd")]
    pub price_usd: Option<Decimal18>,
    /// Unix milliseconds.
    #[serde(deserialize_with = "integer")]
    pub time: i64,
}

/// `/v3/assets/{id}/history`.
#[derive(Debug, Clone, Deserialize)]
pub struct PriceHistory {
    /// The points, oldest first.
    pub data: Vec<PricePoint>,
}

/// `/v3/assets`: the list and when CoinCap made it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct AssetPage {
    /// Unix milliseconds.
    #[serde(deserialize_with = "integer")]
    pub timestamp: i64,
    /// The assets. (The shut-down v2 API answers an object here.)
    pub data: Vec<Asset>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candles_are_columnar_with_unix_seconds_and_must_line_up() {
        let columns: ColumnarCandles = serde_json::from_str(
            r#"{"t":[1577836800,1577923200],"o":["29000.5",29300],"h":["29500","30100"],
                "l":["28800.25","29100"],"c":["29300","30000.1"],"v":["12.00000001","8.5"]}"#,
        )
        .unwrap();
        let rows = columns.rows("BTC-BRL").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].day.to_string(), "2020-01-01");
        assert_eq!(
            rows[1].open,
            "29300".parse().unwrap(),
            "numbers and strings alike"
        );
        assert_eq!(rows[0].volume.to_string(), "12.00000001");
        let ragged: ColumnarCandles = serde_json::from_str(
            r#"{"t":[1577836800],"o":[],"h":["1"],"l":["1"],"c":["1"],"v":["1"]}"#,
        )
        .unwrap();
        assert!(ragged.rows("BTC-BRL").is_none());
    }

    #[test]
    fn raw_candle_files_read_as_received_and_as_written_before() {
        let reply = r#"{"t":[1577836800],"o":["29000.5"],"h":["29500"],"l":["28800.25"],"c":["29300"],"v":["12.00000001"]}"#;
        let rows = candles_from_raw(reply, Some("BTC-BRL")).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].symbol, "BTC-BRL");
        assert_eq!(rows[0].close.to_string(), "29300");
        // A file written before replies were kept as received: its rows.
        let older = serde_json::to_string(&rows).unwrap();
        assert_eq!(candles_from_raw(&older, None).unwrap(), rows);
        let no_symbol = candles_from_raw(reply, None).unwrap_err();
        assert!(no_symbol.to_string().contains("symbol"), "{no_symbol}");
        let ragged = r#"{"t":[1577836800],"o":[],"h":["1"],"l":["1"],"c":["1"],"v":["1"]}"#;
        assert!(candles_from_raw(ragged, Some("BTC-BRL")).is_err());
    }

    #[test]
    fn trades_parse_from_strings_or_numbers_alike() {
        let strings: Vec<WireTrade> = serde_json::from_str(
            r#"[{"amount":"0.00392858","date":1763561763,"price":"488903.00000000","tid":21259638,"type":"buy"}]"#,
        )
        .unwrap();
        let numbers: Vec<WireTrade> = serde_json::from_str(
            r#"[{"amount":0.00392858,"date":"1763561763","price":488903.0,"tid":"21259638","type":"buy"}]"#,
        )
        .unwrap();
        assert_eq!(strings, numbers);
        let trade = Trade::from_wire("BTC-BRL", &strings[0]);
        assert_eq!(
            trade.traded_at_ms, 1_763_561_763_000,
            "seconds become milliseconds"
        );
        assert_eq!(
            (trade.price.as_str(), trade.amount.as_str()),
            ("488903", "0.00392858")
        );
    }

    #[test]
    fn columnar_symbols_become_rows_and_unknown_types_are_kept() {
        let columns: ColumnarSymbols = serde_json::from_str(
            r#"{"symbol":["BTC-BRL","NEW-BRL"],"type":["CRYPTO","SOMETHING_NEW"],"base-currency":["BTC","NEW"],"currency":["BRL","BRL"],"description":["Bitcoin","New"]}"#,
        )
        .unwrap();
        let rows = columns.rows().unwrap();
        assert_eq!(rows[1].kind, "SOMETHING_NEW");
        assert_eq!(rows[0].base, "BTC");
        let ragged: ColumnarSymbols = serde_json::from_str(
            r#"{"symbol":["A-B"],"type":[],"base-currency":["A"],"currency":["B"]}"#,
        )
        .unwrap();
        assert!(ragged.rows().is_none());
    }

    #[test]
    fn assets_accept_null_decimals_and_numeric_ranks() {
        let page: AssetPage = serde_json::from_str(
            r#"{"timestamp":1726081635506,"data":[{"id":"bitcoin","rank":1,"symbol":"BTC","name":"Bitcoin","supply":"19752815.0000000000000000","maxSupply":null,"marketCapUsd":"1134508584478.0989721079862315","volumeUsd24Hr":"7243846863.3409126543165751","priceUsd":"57435.2862859343831301","changePercent24Hr":"-0.0461491427646531","vwap24Hr":"57868.1","explorer":"https://x","tokens":{}}]}"#,
        )
        .unwrap();
        let bitcoin = &page.data[0];
        assert_eq!(bitcoin.rank, 1);
        assert_eq!(bitcoin.max_supply, None);
        assert_eq!(
            bitcoin.price_usd.unwrap().to_string(),
            "57435.2862859343831301"
        );
        let shutdown = serde_json::from_str::<AssetPage>(
            r#"{"data":{"message":"We are deprecating this version of the CoinCap API"},"timestamp":1}"#,
        );
        assert!(
            shutdown.is_err(),
            "the v2 shutdown body is not an asset list"
        );
    }
}
