//! The markets room: Mercado Bitcoin and CoinCap polled into a trade stream
//! ([`poll`], [`stream`]), each stream batch kept as received ([`sink`]),
//! daily candles for the years before polling ([`history`]), deduplicated
//! trades and daily bars ([`transform`]) loaded into the warehouse
//! ([`load`]); [`local`] runs the whole path in one process, and
//! [`reconcile`] checks it layer against layer.

pub mod history;
pub mod load;
pub mod local;
pub mod poll;
pub mod reconcile;
pub mod sink;
pub mod stream;
pub mod transform;
