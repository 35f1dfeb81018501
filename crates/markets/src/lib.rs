//! Crypto market sources: Mercado Bitcoin (trades, tickers, symbols,
//! candles) and CoinCap (assets), with exact decimals.
//!
//! Work in progress toward the crypto issue: [`decimal`] is in place; the
//! clients, replay server and streaming follow.

pub mod decimal;
pub mod models;

pub use decimal::{Decimal18, DecimalError};
pub use models::{Asset, AssetPage, Instrument, Side, Ticker, Trade, WireTrade};
