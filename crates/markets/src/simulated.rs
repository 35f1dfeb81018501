//! Simulated exchanges served by the [`ReplayServer`]:
//!
//! - [`SimulatedMarket`], for the demo: a few coins whose prices
//!   random-walk, trading a little every tick;
//! - [`ActivityMix`], for the polling benchmark: about 409 crypto symbols as
//!   on Mercado Bitcoin, most of them quiet (a trade every quarter of an hour
//!   or so), some busy (a trade every few seconds), and a burst in which 100+
//!   quiet symbols trade within one minute.

use std::{collections::VecDeque, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng, seq::index::sample};
use serde_json::json;

use crate::replay::{ReplayServer, ReplayState, ReplayTrade};

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

/// Why a simulated trade happened; the benchmark reports each class apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Activity {
    /// A quiet symbol's occasional trade.
    Quiet,
    /// A busy symbol's trade (one every few seconds).
    Busy,
    /// A trade of the burst (many quiet symbols moving within one minute).
    Burst,
}

impl Activity {
    /// Every class, in report order.
    pub const ALL: [Self; 3] = [Self::Quiet, Self::Busy, Self::Burst];

    /// How reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Quiet => "quiet",
            Self::Busy => "busy",
            Self::Burst => "burst",
        }
    }
}

/// The shape of an [`ActivityMix`].
#[derive(Debug, Clone)]
pub struct MixOptions {
    /// Crypto symbols listed (Mercado Bitcoin lists about 409).
    pub symbols: usize,
    /// How many of them are busy.
    pub busy: usize,
    /// Gap between two trades of a busy symbol: uniform in this range.
    pub busy_gap: (Duration, Duration),
    /// Mean gap between two trades of a quiet symbol (exponential).
    pub quiet_mean_gap: Duration,
    /// Quiet symbols that trade (one to three times each) in the burst; 0: no burst.
    pub burst_symbols: usize,
    /// When the burst starts, after the epoch.
    pub burst_at: Duration,
    /// How long it lasts.
    pub burst_within: Duration,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for MixOptions {
    /// 409 symbols, 12 busy (a trade every 2–8 s), the rest trading every
    /// 15 min on average: about 37 symbols trade in a minute. At 5:00 a
    /// burst moves 120 quiet symbols within one minute.
    fn default() -> Self {
        Self {
            symbols: 409,
            busy: 12,
            busy_gap: (Duration::from_secs(2), Duration::from_secs(8)),
            quiet_mean_gap: Duration::from_secs(15 * 60),
            burst_symbols: 120,
            burst_at: Duration::from_secs(5 * 60),
            burst_within: Duration::from_secs(60),
            seed: 7,
        }
    }
}

impl MixOptions {
    /// Symbols expected to trade in a minute outside the burst.
    pub fn expected_movers_per_minute(&self) -> f64 {
        let busy = self.busy.min(self.symbols);
        let quiet = (self.symbols - busy) as f64;
        let mean = self.quiet_mean_gap.as_secs_f64().max(1e-3);
        busy as f64 + quiet * (1.0 - (-60.0 / mean).exp())
    }
}

struct MixSymbol {
    name: String,
    busy: bool,
    price: f64,
    next_ms: i64,
    rng: StdRng,
}

/// A trade the mix published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTrade {
    /// Its symbol.
    pub symbol: String,
    /// Its tid.
    pub tid: i64,
    /// When it became visible on the server, simulated unix ms (the wire
    /// `date` is this in whole seconds).
    pub at_ms: i64,
    /// Why it happened.
    pub activity: Activity,
}

/// About 409 symbols trading as [`MixOptions`] says, in simulated time.
/// Every symbol has some history before the epoch (busy ones seconds ago,
/// quiet ones up to three days ago), so each has a ticker from the start.
pub struct ActivityMix {
    symbols: Vec<MixSymbol>,
    burst: VecDeque<(i64, usize)>,
    busy_gap_ms: (i64, i64),
    quiet_mean_ms: f64,
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The `i`-th symbol's base currency: the real coins first, then made-up ones.
fn base_of(i: usize) -> String {
    COINS
        .get(i)
        .map_or_else(|| format!("C{i:03}"), |(coin, _, _)| coin.to_string())
}

impl ActivityMix {
    /// The server's state (instruments and history) and the mix that keeps
    /// trading from `epoch_ms` (simulated unix ms) on. Tids start at `first_tid`.
    pub fn new(options: &MixOptions, epoch_ms: i64, first_tid: i64) -> (ReplayState, Self) {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let mut state = ReplayState {
            first_tid,
            ..ReplayState::default()
        };
        let busy_gap_ms = (
            ms(options.busy_gap.0).max(1),
            ms(options.busy_gap.1).max(ms(options.busy_gap.0).max(1)),
        );
        let quiet_mean_ms = options.quiet_mean_gap.as_secs_f64().max(1e-3) * 1000.0;
        let mut symbols = Vec::with_capacity(options.symbols);
        for i in 0..options.symbols {
            let base = base_of(i);
            let name = format!("{base}-BRL");
            state
                .symbols
                .push((name.clone(), "CRYPTO".into(), base.clone(), "BRL".into()));
            let mut own = StdRng::seed_from_u64(
                options.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let busy = i < options.busy;
            let mut price = COINS
                .get(i)
                .map_or_else(|| 10f64.powf(own.random_range(-3.0..3.0)), |c| c.2);
            // History: busy symbols traded seconds ago, quiet ones up to three days ago.
            let last = if busy {
                epoch_ms - own.random_range(1_000..busy_gap_ms.1 + 1)
            } else {
                epoch_ms - own.random_range(60_000..3 * 86_400_000)
            };
            let trades = state.trades.entry(name.clone()).or_default();
            let count = own.random_range(1..=3);
            for k in (0..count).rev() {
                price *= 1.0 + own.random_range(-0.002..0.002);
                let tid = trades.last().map_or(first_tid.max(1), |t| t.tid + 1);
                trades.push(ReplayTrade {
                    tid,
                    date: (last - k * 1_000).div_euclid(1000),
                    price: format!("{price:.8}"),
                    amount: format!("{:.8}", own.random_range(0.001..2.0)),
                    side: if own.random_bool(0.5) { "buy" } else { "sell" },
                    as_numbers: false,
                });
            }
            let next_ms = if busy {
                epoch_ms + own.random_range(0..busy_gap_ms.1)
            } else {
                epoch_ms + exponential(&mut own, quiet_mean_ms)
            };
            symbols.push(MixSymbol {
                name,
                busy,
                price,
                next_ms,
                rng: own,
            });
        }
        let quiet: Vec<usize> = (options.busy.min(options.symbols)..options.symbols).collect();
        let mut burst = Vec::new();
        if !quiet.is_empty() && options.burst_symbols > 0 {
            let start = epoch_ms + ms(options.burst_at);
            let within = ms(options.burst_within).max(1);
            for pick in sample(
                &mut rng,
                quiet.len(),
                options.burst_symbols.min(quiet.len()),
            ) {
                for _ in 0..rng.random_range(1..=3) {
                    burst.push((start + rng.random_range(0..within), quiet[pick]));
                }
            }
        }
        burst.sort_unstable();
        (
            state,
            Self {
                symbols,
                burst: burst.into(),
                busy_gap_ms,
                quiet_mean_ms,
            },
        )
    }

    /// Publishes every trade due by `now_ms` (simulated unix ms), stamped
    /// `now_ms`: the moment it becomes visible on the server.
    pub fn publish_due(&mut self, server: &ReplayServer, now_ms: i64) -> Vec<PublishedTrade> {
        let mut published = Vec::new();
        for i in 0..self.symbols.len() {
            while self.symbols[i].next_ms <= now_ms {
                let symbol = &mut self.symbols[i];
                let (activity, gap) = if symbol.busy {
                    (
                        Activity::Busy,
                        symbol
                            .rng
                            .random_range(self.busy_gap_ms.0..=self.busy_gap_ms.1),
                    )
                } else {
                    (
                        Activity::Quiet,
                        exponential(&mut symbol.rng, self.quiet_mean_ms),
                    )
                };
                symbol.next_ms += gap.max(1);
                published.push(self.publish(server, i, now_ms, activity));
            }
        }
        while let Some(&(at, i)) = self.burst.front() {
            if at > now_ms {
                break;
            }
            self.burst.pop_front();
            published.push(self.publish(server, i, now_ms, Activity::Burst));
        }
        published
    }

    fn publish(
        &mut self,
        server: &ReplayServer,
        i: usize,
        now_ms: i64,
        activity: Activity,
    ) -> PublishedTrade {
        let symbol = &mut self.symbols[i];
        symbol.price *= 1.0 + symbol.rng.random_range(-0.002..0.002);
        let amount = symbol.rng.random_range(0.001..2.0);
        let side = if symbol.rng.random_bool(0.5) {
            "buy"
        } else {
            "sell"
        };
        let tid = server.publish_trade(
            &symbol.name,
            now_ms.div_euclid(1000),
            &format!("{:.8}", symbol.price),
            &format!("{amount:.8}"),
            side,
        );
        PublishedTrade {
            symbol: symbol.name.clone(),
            tid,
            at_ms: now_ms,
            activity,
        }
    }
}

/// An exponential gap of mean `mean_ms`, at least 1 ms.
fn exponential(rng: &mut StdRng, mean_ms: f64) -> i64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    ((-u.ln() * mean_ms) as i64).max(1)
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

    #[tokio::test]
    async fn the_mix_has_quiet_and_busy_symbols_and_a_burst_of_over_a_hundred_in_a_minute() {
        use std::collections::{BTreeMap, BTreeSet};
        let options = MixOptions::default();
        let epoch = 1_763_553_600_000;
        let (state, mut mix) = ActivityMix::new(&options, epoch, 1);
        assert_eq!(state.symbols.len(), 409);
        assert!(state.symbols.iter().all(|s| s.1 == "CRYPTO"));
        assert_eq!(state.symbols[0].0, "BTC-BRL");
        assert!(
            state.trades.values().all(|t| !t.is_empty()
                && t.iter()
                    .all(|t| t.date * 1000 < epoch && t.price.parse::<Decimal18>().is_ok())),
            "every symbol has a ticker from history"
        );
        let server = ReplayServer::start(state).await.unwrap();
        let mut movers: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        let mut classes: BTreeMap<Activity, usize> = BTreeMap::new();
        // Ten simulated minutes, published every 250 ms.
        for step in 1..=2_400 {
            for trade in mix.publish_due(&server, epoch + step * 250) {
                assert_eq!(trade.at_ms, epoch + step * 250);
                movers
                    .entry((trade.at_ms - epoch - 1) / 60_000)
                    .or_default()
                    .insert(trade.symbol);
                *classes.entry(trade.activity).or_default() += 1;
            }
        }
        let per_minute: Vec<usize> = movers.values().map(BTreeSet::len).collect();
        assert_eq!(per_minute.len(), 10);
        let burst_minute = per_minute[5];
        assert!(burst_minute >= 120, "{per_minute:?}");
        let calm: Vec<usize> = per_minute
            .iter()
            .enumerate()
            .filter(|(m, _)| *m != 5)
            .map(|(_, n)| *n)
            .collect();
        assert!(
            calm.iter().all(|n| (20..=50).contains(n)),
            "about {:.0} a minute outside the burst: {per_minute:?}",
            options.expected_movers_per_minute()
        );
        // 12 busy symbols trading every 2-8 s: ~1,440 trades in ten minutes.
        assert!(
            (1_000..2_000).contains(&classes[&Activity::Busy]),
            "{classes:?}"
        );
        assert!(classes[&Activity::Burst] >= 120, "{classes:?}");
        assert!(classes[&Activity::Quiet] > 100, "{classes:?}");
    }
}
