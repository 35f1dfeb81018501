//! Crypto market sources: Mercado Bitcoin (trades, tickers, symbols,
//! candles) and CoinCap (assets), with exact decimals; and the ECB's daily
//! exchange rates through a Frankfurter-style API ([`fx`]).
//!
//! - [`decimal`]: exact decimals from JSON strings or numbers.
//! - [`models`]: the wire shapes, timestamps normalised to milliseconds.
//! - [`mercado`], [`coincap`]: clients over [`http::JsonClient`] (1 request/s
//!   per endpoint, timeouts, backoff on 429/5xx/non-JSON, no retry on refusals).
//! - [`dedupe`]: exactly-once trades by per-symbol tid, and their days.
//! - [`rollup`]: trades as Arrow batches and daily OHLCV bars.
//! - [`replay`]: a local server replaying these APIs, failures included, for
//!   tests and the demo; it can enforce Mercado Bitcoin's rate limits.
//! - [`simulated`]: exchanges for it: a few random-walking coins, or ~409
//!   symbols with a realistic activity mix (quiet, busy, a burst).
//! - [`fx`]: the exchange-rate client; [`fx_replay`]: the rates the replay
//!   server serves (deterministic, weekends and holidays skipped).
//! - [`clock`]: accelerated simulated time; [`bench`]: the figures of the
//!   polling benchmark (staleness per activity class, requests per endpoint).

pub mod bench;
pub mod clock;
pub mod coincap;
pub mod decimal;
pub mod dedupe;
mod error;
pub mod fx;
pub mod fx_replay;
pub mod http;
pub mod mercado;
pub mod models;
pub mod replay;
pub mod rollup;
pub mod simulated;

pub use error::{Error, Result};

pub use decimal::{Decimal18, DecimalError};
pub use http::Received;
pub use models::{
    Asset, AssetPage, Candle, Instrument, PricePoint, Side, Ticker, Trade, WireTrade,
    candles_from_raw,
};
