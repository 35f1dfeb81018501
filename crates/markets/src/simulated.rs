//! A simulated exchange for the demo: a few coins whose prices random-walk,
//! trading a little every tick, served by the [`ReplayServer`].

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

use crate::replay::{ReplayServer, ReplayState};

const COINS: [(&str, &str, f64); 8] = [
    ("BTC", "Bitcoin", 488_000.0),
    ("ETH", "Ethereum", 12_000.0),
    ("SOL", "Solana", 800.0),
    ("ADA", "Cardano", 2.5),
    ("XRP", "XRP", 3.1),
    ("LTC", "Litecoin", 420.0),
    ("DOGE", "Dogecoin", 0.9),
    ("DOT", "Polkadot", 25.0),
];
/// BRL per USD, to quote CoinCap's USD prices.
const BRL_PER_USD: f64 = 5.3;

/// Coins, their current prices and the randomness that moves them.
pub struct SimulatedMarket {
    coins: Vec<(String, f64)>,
    rng: StdRng,
}

impl SimulatedMarket {
    /// `count` coins (1–8) traded against BRL, plus a fan token that is not
    /// crypto, and CoinCap assets for each coin. Trade ids start at
    /// `first_tid` so a restarted simulator never reuses one.
    pub fn new(count: usize, first_tid: i64, seed: u64) -> (ReplayState, Self) {
        let chosen = &COINS[..count.clamp(1, COINS.len())];
        let mut state = ReplayState {
            first_tid,
            ..ReplayState::default()
        };
        for (rank, (coin, name, price)) in chosen.iter().enumerate() {
            state.symbols.push((
                format!("{coin}-BRL"),
                "CRYPTO".into(),
                coin.to_string(),
                "BRL".into(),
            ));
            state.assets.push(json!({
                "id": name.to_lowercase(), "rank": (rank + 1).to_string(), "symbol": coin, "name": name,
                "priceUsd": format!("{:.8}", price / BRL_PER_USD), "changePercent24Hr": "0",
            }));
        }
        state.symbols.push((
            "TFC-BRL".into(),
            "FAN_TOKEN".into(),
            "TFC".into(),
            "BRL".into(),
        ));
        let coins = chosen
            .iter()
            .map(|(coin, _, price)| (format!("{coin}-BRL"), *price))
            .collect();
        (
            state,
            Self {
                coins,
                rng: StdRng::seed_from_u64(seed),
            },
        )
    }

    /// One to three trades per coin at `now` (unix seconds), prices moving
    /// by at most 0.2 % a trade. Returns the trades published.
    pub fn tick(&mut self, server: &ReplayServer, now: i64) -> usize {
        let mut published = 0;
        for (symbol, price) in &mut self.coins {
            for _ in 0..self.rng.random_range(1..=3) {
                *price *= 1.0 + self.rng.random_range(-0.002..0.002);
                let amount = self.rng.random_range(0.001..2.0);
                let side = if self.rng.random_bool(0.5) {
                    "buy"
                } else {
                    "sell"
                };
                server.publish_trade(
                    symbol,
                    now,
                    &format!("{price:.8}"),
                    &format!("{amount:.8}"),
                    side,
                );
                published += 1;
            }
        }
        published
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decimal18, models::AssetPage};

    #[tokio::test]
    async fn ticks_publish_exact_trades_for_every_coin_and_assets_parse() {
        let (state, mut market) = SimulatedMarket::new(3, 1_000, 1);
        assert_eq!(state.symbols.iter().filter(|s| s.1 == "CRYPTO").count(), 3);
        let page: AssetPage =
            serde_json::from_value(json!({"timestamp": 1, "data": state.assets})).unwrap();
        assert_eq!(page.data[0].name, "Bitcoin");
        let server = ReplayServer::start(state).await.unwrap();
        let published = market.tick(&server, 1_763_561_763);
        assert!((3..=9).contains(&published));
        server.with_state(|s| {
            for trades in s.trades.values() {
                assert!(trades[0].tid >= 1_000, "ids start at first_tid");
                assert!(trades.iter().all(|t| t.price.parse::<Decimal18>().is_ok()));
            }
            assert_eq!(s.trades.len(), 3);
        });
    }
}
