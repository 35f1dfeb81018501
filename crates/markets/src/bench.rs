//! Figures of the polling benchmark (`tributary bench-markets`): how stale
//! trades are when they reach the stream, per activity class, against a
//! floor measured in the same run, and how many requests each endpoint got.
//!
//! Every time here is simulated unix ms ([`SimClock`]), so the figures do not
//! depend on how fast the machine is.
//!
//! - **Staleness** of a trade: from the moment it became visible on the
//!   server to the moment the poller put it into the stream.
//! - **Floor** of a trade: from that moment to the first `/tickers` request
//!   served after it, i.e. the soonest any poller that learns of moves from
//!   `/tickers` ticks could know it. What staleness adds on top is the wait
//!   for a `/trades` slot at 1 request/s.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    clock::SimClock,
    models::Trade,
    replay::{Endpoint, LimitedRequest},
    simulated::{Activity, PublishedTrade},
};

#[derive(Debug, Default)]
struct ProbeData {
    published: Vec<PublishedTrade>,
    put: HashMap<(String, i64), i64>,
    put_again: u64,
}

/// Notes when trades are published and when they reach the stream.
#[derive(Debug, Clone)]
pub struct Probe {
    clock: SimClock,
    data: Arc<Mutex<ProbeData>>,
}

impl Probe {
    /// A probe stamping with `clock`.
    pub fn new(clock: SimClock) -> Self {
        Self {
            clock,
            data: Arc::default(),
        }
    }

    fn data(&self) -> std::sync::MutexGuard<'_, ProbeData> {
        self.data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes trades the exchange published.
    pub fn published(&self, trades: Vec<PublishedTrade>) {
        self.data().published.extend(trades);
    }

    /// Notes the trades of one stream record (JSON lines of [`Trade`]) as put now.
    pub fn put_lines(&self, data: &[u8]) {
        let now = self.clock.now_ms();
        let mut probe = self.data();
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(trade) = serde_json::from_slice::<Trade>(line)
                && probe.put.insert((trade.symbol, trade.tid), now).is_some()
            {
                probe.put_again += 1;
            }
        }
    }

    /// Published trades not in the stream yet.
    pub fn missing(&self) -> usize {
        let probe = self.data();
        probe
            .published
            .iter()
            .filter(|t| !probe.put.contains_key(&(t.symbol.clone(), t.tid)))
            .count()
    }

    /// Trades published so far.
    pub fn published_count(&self) -> usize {
        self.data().published.len()
    }

    /// What was published, when each trade was put, and how many puts repeated a trade.
    pub fn snapshot(&self) -> (Vec<PublishedTrade>, HashMap<(String, i64), i64>, u64) {
        let probe = self.data();
        (probe.published.clone(), probe.put.clone(), probe.put_again)
    }
}

/// One poll tick, in simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// When it started.
    pub at_ms: i64,
    /// Symbols whose ticker had moved and were waiting for their trades.
    pub due: usize,
    /// Of those, left for a later tick.
    pub waiting: usize,
    /// Symbols whose trades it read.
    pub fetched: usize,
}

/// What the benchmark ran.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Simulated unix ms at the start.
    pub epoch_ms: i64,
    /// Simulated minutes of trading measured.
    pub minutes: u32,
    /// How much faster than real time.
    pub speed: f64,
    /// Crypto symbols.
    pub symbols: usize,
    /// Busy symbols.
    pub busy: usize,
    /// Symbols in the burst, when it starts and how long it lasts.
    pub burst: Option<(usize, Duration, Duration)>,
    /// Symbols expected to move in a minute outside the burst.
    pub expected_movers: f64,
    /// Tick period.
    pub every: Duration,
    /// Polling time per minute (one scheduled invocation).
    pub poll_for: Duration,
    /// The poller's gap between two requests to one endpoint (the limit is 1 s).
    pub interval: Duration,
    /// Staleness goal for calm minutes (p99).
    pub goal: Duration,
    /// A minute is calm when at most this many symbols trade in it.
    pub calm_movers: usize,
}

/// p50, p99 and max of a set of simulated durations (ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spread {
    /// How many.
    pub n: usize,
    /// Median.
    pub p50: i64,
    /// 99th percentile.
    pub p99: i64,
    /// Largest.
    pub max: i64,
}

impl Spread {
    /// Nearest-rank percentiles of `values`.
    pub fn of(mut values: Vec<i64>) -> Self {
        values.sort_unstable();
        let rank = |p: f64| {
            let at = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[at]
        };
        if values.is_empty() {
            return Self::default();
        }
        Self {
            n: values.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// Staleness and floor of one group of trades.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// Trade to stream.
    pub staleness: Spread,
    /// Trade to the first `/tickers` served after it.
    pub floor: Spread,
    /// Trades never put into the stream.
    pub missing: usize,
}

impl Group {
    fn of<'a>(trades: impl Iterator<Item = &'a Measured>) -> Self {
        let (mut staleness, mut floor, mut missing) = (Vec::new(), Vec::new(), 0);
        for trade in trades {
            match trade.staleness {
                Some(s) => staleness.push(s),
                None => missing += 1,
            }
            floor.extend(trade.floor);
        }
        Self {
            staleness: Spread::of(staleness),
            floor: Spread::of(floor),
            missing,
        }
    }
}

/// One simulated minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Minute {
    /// Distinct symbols that traded.
    pub movers: usize,
    /// Trades.
    pub trades: usize,
    /// `/trades` requests served.
    pub trades_requests: usize,
    /// Most symbols due at one tick.
    pub peak_due: usize,
    /// Staleness of its trades.
    pub staleness: Spread,
}

/// Requests to one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    /// Every request.
    pub total: usize,
    /// Answered 429.
    pub refused: usize,
    /// Most requests in one simulated second.
    pub max_per_second: usize,
    /// Least time between two requests, ms.
    pub min_gap_ms: Option<i64>,
}

/// The burst and the backlog it left.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Burst {
    /// Distinct symbols that traded from the burst's start to its end.
    pub movers: usize,
    /// From the burst's start until the first tick that left nothing waiting.
    pub window_ms: (i64, i64),
    /// Most symbols due at one tick in that window.
    pub peak_due: usize,
    /// `/trades` requests served per minute in that window.
    pub fetch_rate: f64,
    /// Staleness of every trade in the window.
    pub group: Group,
    /// The bound 1 request/s allows: the detection floor's max, plus the
    /// peak number of due symbols fetched at one a second while polling.
    pub bound_ms: i64,
}

/// Everything the benchmark prints.
#[derive(Debug, Clone)]
pub struct Figures {
    /// What ran.
    pub setup: Setup,
    /// Per activity class.
    pub classes: Vec<(Activity, Group)>,
    /// Every trade.
    pub all: Group,
    /// Trades of calm minutes outside the burst's window.
    pub calm: Group,
    /// Calm minutes.
    pub calm_minutes: usize,
    /// Trades of minutes above the calm threshold outside the burst's window.
    pub spikes: Group,
    /// The burst, when there was one.
    pub burst: Option<Burst>,
    /// Per minute.
    pub minutes: Vec<Minute>,
    /// Per endpoint.
    pub requests: BTreeMap<Endpoint, Requests>,
    /// Most requests served in one simulated minute, all endpoints.
    pub max_per_minute: usize,
    /// Trades put into the stream more than once.
    pub put_again: u64,
}

struct Measured {
    at_ms: i64,
    activity: Activity,
    staleness: Option<i64>,
    floor: Option<i64>,
}

/// Works out the figures from what the probe, the server and the poller saw.
pub fn figures(
    setup: Setup,
    published: &[PublishedTrade],
    put: &HashMap<(String, i64), i64>,
    put_again: u64,
    requests: &[LimitedRequest],
    ticks: &[Tick],
) -> Figures {
    let epoch = setup.epoch_ms;
    let end = epoch + i64::from(setup.minutes) * 60_000;
    let minute_of = |at: i64| usize::try_from((at - epoch).div_euclid(60_000)).unwrap_or(0);
    let mut tickers: Vec<i64> = requests
        .iter()
        .filter(|r| r.endpoint == Endpoint::Tickers && !r.refused)
        .map(|r| r.at_ms)
        .collect();
    tickers.sort_unstable();
    let window: Vec<&PublishedTrade> = published
        .iter()
        .filter(|t| (epoch..end).contains(&t.at_ms))
        .collect();
    let measured: Vec<Measured> = window
        .iter()
        .map(|t| Measured {
            at_ms: t.at_ms,
            activity: t.activity,
            staleness: put.get(&(t.symbol.clone(), t.tid)).map(|p| p - t.at_ms),
            floor: tickers
                .get(tickers.partition_point(|r| *r < t.at_ms))
                .map(|r| r - t.at_ms),
        })
        .collect();

    let mut movers: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); setup.minutes as usize];
    for trade in &window {
        movers[minute_of(trade.at_ms)].insert(&trade.symbol);
    }
    let mut minutes: Vec<Minute> = movers
        .iter()
        .enumerate()
        .map(|(m, symbols)| Minute {
            movers: symbols.len(),
            staleness: Spread::of(
                measured
                    .iter()
                    .filter(|t| minute_of(t.at_ms) == m)
                    .filter_map(|t| t.staleness)
                    .collect(),
            ),
            ..Minute::default()
        })
        .collect();
    for trade in &measured {
        minutes[minute_of(trade.at_ms)].trades += 1;
    }
    for request in requests.iter().filter(|r| (epoch..end).contains(&r.at_ms)) {
        if request.endpoint == Endpoint::Trades && !request.refused {
            minutes[minute_of(request.at_ms)].trades_requests += 1;
        }
    }
    for tick in ticks.iter().filter(|t| (epoch..end).contains(&t.at_ms)) {
        let minute = &mut minutes[minute_of(tick.at_ms)];
        minute.peak_due = minute.peak_due.max(tick.due);
    }

    let polling_share = setup.poll_for.as_secs_f64().clamp(1.0, 60.0) / 60.0;
    let burst = setup.burst.map(|(_, at, within)| {
        let start = epoch + i64::try_from(at.as_millis()).unwrap_or(0);
        let stop = start + i64::try_from(within.as_millis()).unwrap_or(0);
        let drained = ticks
            .iter()
            .position(|t| t.at_ms >= stop && t.waiting == 0)
            .map_or(i64::MAX, |i| {
                ticks.get(i + 1).map_or(
                    ticks[i].at_ms + i64::try_from(setup.every.as_millis()).unwrap_or(0),
                    |n| n.at_ms,
                )
            });
        let in_window = |at: i64| (start..drained).contains(&at);
        let movers: BTreeSet<&str> = window
            .iter()
            .filter(|t| (start..stop).contains(&t.at_ms))
            .map(|t| t.symbol.as_str())
            .collect();
        let peak_due = ticks
            .iter()
            .filter(|t| in_window(t.at_ms))
            .map(|t| t.due)
            .max()
            .unwrap_or(0);
        let served: Vec<i64> = requests
            .iter()
            .filter(|r| r.endpoint == Endpoint::Trades && !r.refused && in_window(r.at_ms))
            .map(|r| r.at_ms)
            .collect();
        let last = served.iter().copied().max().unwrap_or(start);
        let span = (drained.min(last + 1) - start).max(1) as f64 / 60_000.0;
        let group = Group::of(measured.iter().filter(|t| in_window(t.at_ms)));
        let per_request = setup.interval.as_secs_f64() * 1000.0 / polling_share;
        Burst {
            movers: movers.len(),
            window_ms: (start, drained),
            peak_due,
            fetch_rate: served.len() as f64 / span,
            bound_ms: group.floor.max + (peak_due as f64 * per_request).ceil() as i64,
            group,
        }
    });
    let in_burst = |at: i64| {
        burst
            .as_ref()
            .is_some_and(|b| (b.window_ms.0..b.window_ms.1).contains(&at))
    };
    let calm_minute = |at: i64| minutes[minute_of(at)].movers <= setup.calm_movers;
    let calm = Group::of(
        measured
            .iter()
            .filter(|t| !in_burst(t.at_ms) && calm_minute(t.at_ms)),
    );
    let spikes = Group::of(
        measured
            .iter()
            .filter(|t| !in_burst(t.at_ms) && !calm_minute(t.at_ms)),
    );
    let calm_minutes = (0..minutes.len())
        .filter(|m| {
            let at = epoch + *m as i64 * 60_000;
            minutes[*m].movers <= setup.calm_movers && !in_burst(at) && !in_burst(at + 59_999)
        })
        .count();

    let mut per_endpoint: BTreeMap<Endpoint, Vec<i64>> = BTreeMap::new();
    let mut table: BTreeMap<Endpoint, Requests> = BTreeMap::new();
    let mut per_minute: BTreeMap<i64, usize> = BTreeMap::new();
    for request in requests {
        per_endpoint
            .entry(request.endpoint)
            .or_default()
            .push(request.at_ms);
        let row = table.entry(request.endpoint).or_default();
        row.total += 1;
        row.refused += usize::from(request.refused);
        if !request.refused {
            *per_minute
                .entry(request.at_ms.div_euclid(60_000))
                .or_default() += 1;
        }
    }
    for (endpoint, mut times) in per_endpoint {
        times.sort_unstable();
        let row = table.entry(endpoint).or_default();
        row.min_gap_ms = times.windows(2).map(|w| w[1] - w[0]).min();
        let mut seconds: BTreeMap<i64, usize> = BTreeMap::new();
        for at in &times {
            *seconds.entry(at.div_euclid(1000)).or_default() += 1;
        }
        row.max_per_second = seconds.values().copied().max().unwrap_or(0);
    }

    Figures {
        classes: Activity::ALL
            .iter()
            .map(|a| (*a, Group::of(measured.iter().filter(|t| t.activity == *a))))
            .collect(),
        all: Group::of(measured.iter()),
        calm,
        calm_minutes,
        spikes,
        burst,
        minutes,
        requests: table,
        max_per_minute: per_minute.values().copied().max().unwrap_or(0),
        put_again,
        setup,
    }
}

impl Figures {
    /// Whether calm minutes met the goal.
    pub fn calm_goal_met(&self) -> bool {
        self.calm.missing == 0
            && i128::from(self.calm.staleness.p99) <= self.setup.goal.as_millis() as i128
    }

    /// Whether the burst stayed within its bound.
    pub fn burst_bound_met(&self) -> bool {
        self.burst
            .as_ref()
            .is_none_or(|b| b.group.missing == 0 && b.group.staleness.max <= b.bound_ms)
    }

    /// Requests refused for breaking a rate limit.
    pub fn refused(&self) -> usize {
        self.requests.values().map(|r| r.refused).sum()
    }
}

fn secs(ms: i64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

fn spread(s: &Spread) -> String {
    if s.n == 0 {
        return format!("{:>6} {:>6} {:>6}", "-", "-", "-");
    }
    format!("{:>6} {:>6} {:>6}", secs(s.p50), secs(s.p99), secs(s.max))
}

fn group_row(f: &mut fmt::Formatter<'_>, name: &str, g: &Group) -> fmt::Result {
    writeln!(
        f,
        "  {name:<28} {:>6} {:>7}  {}   {}",
        g.staleness.n + g.missing,
        g.missing,
        spread(&g.staleness),
        spread(&g.floor)
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT MET" }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.setup;
        writeln!(
            f,
            "markets bench: {} crypto symbols ({} busy, {} quiet; about {:.0} trade in a calm minute), {} simulated minutes at {}x",
            s.symbols,
            s.busy,
            s.symbols.saturating_sub(s.busy),
            s.expected_movers,
            s.minutes,
            s.speed
        )?;
        if let Some((n, at, within)) = s.burst {
            writeln!(
                f,
                "  burst: {n} quiet symbols trade within {} s from {}:{:02}",
                within.as_secs(),
                at.as_secs() / 60,
                at.as_secs() % 60
            )?;
        }
        writeln!(
            f,
            "  poller: one invocation a minute polling {} s, a /tickers tick every {} s, requests to one endpoint {} s apart, all in simulated time",
            s.poll_for.as_secs_f64(),
            s.every.as_secs_f64(),
            s.interval.as_secs_f64()
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "per minute (staleness in simulated seconds)\n  minute  movers  trades  /trades  peak due  p50     p99     max"
        )?;
        for (m, row) in self.minutes.iter().enumerate() {
            writeln!(
                f,
                "  {:>6}  {:>6}  {:>6}  {:>7}  {:>8}  {}",
                m,
                row.movers,
                row.trades,
                row.trades_requests,
                row.peak_due,
                spread(&row.staleness)
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "staleness, trade -> stream (s), and its floor: the first /tickers served after the trade\n  {:<28} {:>6} {:>7}  {:>6} {:>6} {:>6}   {:>6} {:>6} {:>6}",
            "class", "trades", "missing", "p50", "p99", "max", "fl p50", "fl p99", "fl max"
        )?;
        for (activity, group) in &self.classes {
            group_row(f, activity.name(), group)?;
        }
        group_row(f, "all", &self.all)?;
        group_row(
            f,
            &format!("calm (<= {} movers/min)", s.calm_movers),
            &self.calm,
        )?;
        if self.spikes.staleness.n + self.spikes.missing > 0 {
            group_row(f, &format!("> {} movers/min", s.calm_movers), &self.spikes)?;
        }
        if let Some(b) = &self.burst {
            group_row(f, "burst window (all classes)", &b.group)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "goal: p99 <= {} s in calm minutes ({} of {}): p99 {} s, max {} s: {}",
            s.goal.as_secs(),
            self.calm_minutes,
            s.minutes,
            secs(self.calm.staleness.p99),
            secs(self.calm.staleness.max),
            verdict(self.calm_goal_met())
        )?;
        if let Some(b) = &self.burst {
            let drained = if b.window_ms.1 == i64::MAX {
                "not drained by the end".to_string()
            } else {
                format!("drained at {} s", secs(b.window_ms.1 - s.epoch_ms))
            };
            writeln!(
                f,
                "burst: {} symbols moved within the burst minute; backlog from {} s, {drained}; peak {} symbols due at one tick; /trades {:.0}/min while draining",
                b.movers,
                secs(b.window_ms.0 - s.epoch_ms),
                b.peak_due,
                b.fetch_rate
            )?;
            writeln!(
                f,
                "  bound at 1 request/s: detection floor max {} s + {} due x {} s x 60/{} = {} s; max staleness {} s: {}",
                secs(b.group.floor.max),
                b.peak_due,
                s.interval.as_secs_f64(),
                s.poll_for.as_secs_f64(),
                secs(b.bound_ms),
                secs(b.group.staleness.max),
                verdict(self.burst_bound_met())
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "requests (simulated time; limit 1/s per endpoint, 500/min overall)\n  {:<18} {:>6} {:>10} {:>9} {:>8}",
            "endpoint", "total", "max per s", "min gap", "refused"
        )?;
        for (endpoint, row) in &self.requests {
            writeln!(
                f,
                "  {:<18} {:>6} {:>10} {:>8} {:>8}",
                endpoint.name(),
                row.total,
                row.max_per_second,
                row.min_gap_ms
                    .map_or("-".to_string(), |g| format!("{:.3} s", g as f64 / 1000.0)),
                row.refused
            )?;
        }
        writeln!(
            f,
            "  most served in one minute: {} (limit 500); refused (rate limit violations): {}; trades put twice: {}",
            self.max_per_minute,
            self.refused(),
            self.put_again
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            epoch_ms: 0,
            minutes: 2,
            speed: 1.0,
            symbols: 3,
            busy: 1,
            burst: Some((2, Duration::from_secs(60), Duration::from_secs(10))),
            expected_movers: 2.0,
            every: Duration::from_secs(15),
            poll_for: Duration::from_secs(60),
            interval: Duration::from_secs(1),
            goal: Duration::from_secs(60),
            calm_movers: 1,
        }
    }

    fn trade(symbol: &str, tid: i64, at_ms: i64, activity: Activity) -> PublishedTrade {
        PublishedTrade {
            symbol: symbol.into(),
            tid,
            at_ms,
            activity,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Spread::of((1..=200).rev().collect());
        assert_eq!((s.n, s.p50, s.p99, s.max), (200, 100, 198, 200));
        assert_eq!(Spread::of(vec![7]).p99, 7);
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }

    #[test]
    fn staleness_floor_requests_and_the_burst_come_out_of_the_logs() {
        let published = vec![
            trade("A", 1, 1_000, Activity::Busy),
            trade("A", 2, 20_000, Activity::Busy),
            trade("B", 1, 61_000, Activity::Burst),
            trade("C", 1, 62_000, Activity::Burst),
            trade("C", 2, 200_000, Activity::Quiet), // after the window: ignored
        ];
        let put: HashMap<(String, i64), i64> = [
            (("A".to_string(), 1), 16_000),
            (("B".to_string(), 1), 80_000),
            (("C".to_string(), 1), 81_000),
        ]
        .into_iter()
        .collect();
        let request = |at_ms, endpoint, refused| LimitedRequest {
            at_ms,
            endpoint,
            refused,
        };
        let requests = vec![
            request(0, Endpoint::Tickers, false),
            request(15_000, Endpoint::Tickers, false),
            request(15_500, Endpoint::Tickers, true),
            request(16_000, Endpoint::Trades, false),
            request(75_000, Endpoint::Tickers, false),
            request(79_000, Endpoint::Trades, false),
            request(80_000, Endpoint::Trades, false),
        ];
        let ticks = vec![
            Tick {
                at_ms: 15_000,
                due: 1,
                waiting: 0,
                fetched: 1,
            },
            Tick {
                at_ms: 75_000,
                due: 2,
                waiting: 0,
                fetched: 2,
            },
            Tick {
                at_ms: 90_000,
                due: 0,
                waiting: 0,
                fetched: 0,
            },
        ];
        let f = figures(setup(), &published, &put, 0, &requests, &ticks);
        assert_eq!(f.all.staleness.n, 3);
        assert_eq!(f.all.missing, 1, "A/2 never reached the stream");
        let busy = &f
            .classes
            .iter()
            .find(|(a, _)| *a == Activity::Busy)
            .unwrap()
            .1;
        assert_eq!(busy.staleness.max, 15_000);
        assert_eq!(busy.floor.max, 55_000, "A/2 at 20 s; next /tickers at 75 s");
        let burst = f.burst.as_ref().unwrap();
        assert_eq!(burst.movers, 2);
        assert_eq!(burst.window_ms, (60_000, 90_000));
        assert_eq!(burst.peak_due, 2);
        assert_eq!(burst.group.staleness.max, 19_000);
        assert_eq!(burst.bound_ms, 14_000 + 2_000);
        assert!(!f.burst_bound_met(), "19 s is above 16 s");
        assert_eq!(f.minutes[0].movers, 1);
        assert_eq!(f.minutes[1].trades_requests, 2);
        assert_eq!(f.calm_minutes, 1);
        assert_eq!(f.calm.missing, 1);
        assert!(!f.calm_goal_met(), "a missing trade fails the goal");
        let tickers = &f.requests[&Endpoint::Tickers];
        assert_eq!(
            (
                tickers.total,
                tickers.refused,
                tickers.max_per_second,
                tickers.min_gap_ms
            ),
            (4, 1, 2, Some(500))
        );
        assert_eq!(f.refused(), 1);
        assert!(f.to_string().contains("NOT MET"));
    }
}
