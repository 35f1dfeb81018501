//! Market polling inside the ingest schedule: Mercado Bitcoin trades into
//! the trade stream, with a per-symbol checkpoint kept in the raw lake.
//!
//! Each tick: one `/tickers` call for every crypto symbol, then
//! `/trades?since=` for the symbols whose ticker moved, as [`plan_tick`]
//! orders them: longest waiting first, where a symbol waits from the first
//! tick that saw its ticker move until its trades are in the stream. The
//! API allows one `/trades` request a second (one endpoint for every
//! symbol), so a tick keeps fetching at that pace until the next tick is
//! due ([`poll_during`] gives it the deadline) instead of a fixed count:
//! the requests spread over the whole polling time. Symbols still due when
//! the tick ends keep their place ([`PollState::due_since`]) for the next
//! tick or the next invocation. Symbols never read, whose ticker has not
//! moved since first seen, are read once (their newest page) with whatever
//! capacity is left. A symbol's checkpoint (the highest tid in the stream)
//! advances only after its trades were put.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tributary_lake::{FileEntry, Lake, Log, Manifest, ManifestLog, RunId, keys};
use tributary_markets::{
    Ticker, Trade, coincap::CoinCap, http::MIN_INTERVAL, mercado::MercadoBitcoin,
};

use crate::{
    Result,
    alerts::{Alert, Alerts},
    markets::stream::{TradeStream, pack_lines, put_all},
};

const STAGE: &str = "ingest";

/// Tuning of the poller.
#[derive(Debug, Clone)]
pub struct PollOptions {
    /// Most symbols whose trades are read per tick (1 request/s each). With
    /// a deadline ([`poll_during`]) the tick also stops when the next
    /// request could not go out before it.
    pub max_symbols_per_tick: usize,
    /// How often the symbol list is read again.
    pub symbols_refresh: Duration,
    /// PutRecords attempts before a symbol is left for the next tick.
    pub put_attempts: u32,
    /// Time one `/trades` request takes from the budget: the gap the client
    /// keeps between two requests to one endpoint
    /// (`RetryPolicy::min_interval`, the API's 1 request/s plus a margin).
    pub trades_interval: Duration,
}

impl PollOptions {
    /// Options for ticks `every` apart at the client's default pace.
    pub fn for_ticks_every(every: Duration) -> Self {
        Self::for_ticks(every, MIN_INTERVAL)
    }

    /// Options for ticks `every` apart with one `/trades` request per
    /// `interval`: a tick takes no more symbols than requests fit between
    /// two ticks (14 at 15 s and 1.05 s). The last second or so of a tick
    /// is left for its commit and the next `/tickers` call, so that ticks
    /// keep to their period.
    pub fn for_ticks(every: Duration, interval: Duration) -> Self {
        let fit = every.as_secs_f64() / interval.as_secs_f64().max(1e-9);
        Self {
            max_symbols_per_tick: ((fit + 1e-6).floor() as usize).max(1),
            trades_interval: interval,
            ..Self::default()
        }
    }
}

impl Default for PollOptions {
    fn default() -> Self {
        Self {
            max_symbols_per_tick: 40,
            symbols_refresh: Duration::from_secs(3600),
            put_attempts: 4,
            trades_interval: MIN_INTERVAL,
        }
    }
}

/// What the poller remembers between ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PollState {
    /// Highest tid in the stream, per symbol.
    pub checkpoints: BTreeMap<String, i64>,
    /// Last ticker seen (last price, date) per symbol.
    pub tickers: BTreeMap<String, (String, i64)>,
    /// When each symbol's trades were last read.
    pub polled_at: BTreeMap<String, DateTime<Utc>>,
    /// Symbols whose ticker moved and whose trades are not in the stream
    /// yet, with the tick that first saw the move: the queue, carried from
    /// tick to tick and from one invocation to the next.
    pub due_since: BTreeMap<String, DateTime<Utc>>,
    /// The crypto symbols.
    pub symbols: Vec<String>,
    /// When they were read.
    pub symbols_at: Option<DateTime<Utc>>,
}

/// What a tick did.
#[derive(Debug, Clone, Default)]
pub struct PollReport {
    /// Symbols whose trades were read.
    pub polled: Vec<String>,
    /// Trades put into the stream.
    pub trades: u64,
    /// Symbols left for the next tick, with why.
    pub failed: Vec<(String, String)>,
    /// When the tick started.
    pub started: DateTime<Utc>,
    /// Symbols whose ticker had moved, waiting for their trades when the
    /// tick started (those carried from earlier ticks included).
    pub due: usize,
    /// Of those, still waiting when it ended.
    pub waiting: usize,
    /// Symbols in the `/tickers` reply never read yet, when it ended.
    pub unread: usize,
}

/// Which symbols a tick fetches, and the queue it leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Symbols to read now, in order: moved ones longest waiting first, then
    /// symbols never read.
    pub fetch: Vec<String>,
    /// Every symbol whose ticker moved and whose trades are not read yet,
    /// with since when it waits: the new [`PollState::due_since`] (a symbol
    /// leaves it once its trades are in the stream).
    pub due_since: BTreeMap<String, DateTime<Utc>>,
    /// Symbols never read whose ticker has not moved.
    pub unread: usize,
}

/// Plans a tick from its `/tickers` reply and the poller's state (pure).
///
/// - A symbol is **due** when its ticker (last price, date) differs from the
///   one seen when its trades were last read (or when first seen), or when
///   it was due before and has not been read since: a due symbol stays due
///   until read, whatever its ticker does meanwhile.
/// - Due symbols go first, the one waiting longest (earliest `due_since`)
///   first; at equal waits, the least recently read, then by name. A symbol
///   just read goes to the back of the queue when it moves again, so busy
///   symbols cannot starve the others.
/// - Symbols never read whose ticker has not moved since first seen come
///   after all due ones (most recent ticker first): their one read brings
///   only history, so it takes spare capacity.
/// - At most `capacity` symbols; only symbols in the reply (the API drops
///   unknown ones).
pub fn plan_tick(
    tickers: &[Ticker],
    state: &PollState,
    now: DateTime<Utc>,
    capacity: usize,
) -> Plan {
    let mut seen = BTreeSet::new();
    // (waiting since, last read, symbol): sorted, the order of the queue.
    type Place<'a> = (DateTime<Utc>, Option<DateTime<Utc>>, &'a str);
    let mut due: Vec<Place<'_>> = Vec::new();
    let mut unread: Vec<(i64, &str)> = Vec::new();
    let mut due_since = BTreeMap::new();
    for ticker in tickers {
        let symbol = ticker.pair.as_str();
        if !seen.insert(symbol) {
            continue;
        }
        let read = state.checkpoints.contains_key(symbol);
        let moved = match state.tickers.get(symbol) {
            Some((last, date)) => *date != ticker.date || *last != ticker.last.to_string(),
            // Read before without a ticker on record: look again.
            None => read,
        };
        let since = state
            .due_since
            .get(symbol)
            .copied()
            .or(moved.then_some(now));
        if let Some(since) = since {
            due_since.insert(symbol.to_string(), since);
            due.push((since, state.polled_at.get(symbol).copied(), symbol));
        } else if !read {
            unread.push((ticker.date, symbol));
        }
    }
    due.sort_unstable();
    unread.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    Plan {
        fetch: due
            .iter()
            .map(|d| d.2)
            .chain(unread.iter().map(|u| u.1))
            .take(capacity)
            .map(str::to_string)
            .collect(),
        due_since,
        unread: unread.len(),
    }
}

/// Keeps a reply as received (gzip) and names it for the manifest.
async fn keep_reply(raw: &Lake, table: &str, key: String, body: &[u8]) -> Result<FileEntry> {
    if body.trim_ascii_end().contains(&b'\n') {
        // Kept all the same (as received); the raw tables in the catalog
        // read one reply a line, and this one spans several.
        tracing::warn!(table, key = %key, "a reply spans several lines: Athena's raw table cannot read it");
    }
    let body = crate::gz::gzip(body)?;
    Ok(raw
        .put_file(&key, table, 1, bytes::Bytes::from(body))
        .await?)
}

/// One polling tick. With `coincap`, a snapshot of the top assets is kept
/// too; its failure is alerted and does not hold back the trades.
pub async fn poll_markets(
    mercado: &MercadoBitcoin,
    coincap: Option<&CoinCap>,
    stream: &dyn TradeStream,
    raw: &Lake,
    options: &PollOptions,
    alerts: &dyn Alerts,
) -> Result<PollReport> {
    poll_tick(mercado, coincap, stream, raw, options, alerts, None).await
}

/// One tick; with a `deadline`, no `/trades` request is sent after it (the
/// next tick is due then).
async fn poll_tick(
    mercado: &MercadoBitcoin,
    coincap: Option<&CoinCap>,
    stream: &dyn TradeStream,
    raw: &Lake,
    options: &PollOptions,
    alerts: &dyn Alerts,
    deadline: Option<Instant>,
) -> Result<PollReport> {
    let run_id = RunId::now();
    let now = Utc::now();
    let log = ManifestLog::new(raw.clone(), Log::MarketsPoll);
    let previous: Option<Manifest<PollState>> = log.latest().await?;
    let previous_seq = previous.as_ref().map_or(0, |m| m.seq);
    let mut state = previous.map(|m| m.state).unwrap_or_default();
    let stale = state
        .symbols_at
        .is_none_or(|at| (now - at).to_std().unwrap_or_default() >= options.symbols_refresh);
    if stale || state.symbols.is_empty() {
        state.symbols = mercado
            .symbols()
            .await?
            .into_iter()
            .filter(|i| i.kind == "CRYPTO")
            .map(|i| i.symbol)
            .collect();
        state.symbols_at = Some(now);
    }
    let date = now.date_naive();
    let mut files = Vec::new();
    let tickers = match mercado.tickers(&state.symbols).await? {
        Some(reply) => {
            let key = keys::raw_tickers(date, &run_id);
            files.push(keep_reply(raw, "tickers", key, &reply.body).await?);
            reply.value
        }
        None => Vec::new(),
    };
    if let Some(coincap) = coincap {
        match coincap.assets(100, 0).await {
            Ok(reply) => files.push(
                keep_reply(
                    raw,
                    "assets",
                    keys::raw_coincap_assets(date, &run_id),
                    &reply.body,
                )
                .await?,
            ),
            Err(error) => {
                alerts
                    .send(&Alert {
                        stage: STAGE,
                        run_id: run_id.to_string(),
                        table: Some("coincap assets".to_string()),
                        message: format!("CoinCap assets not read this tick: {error}"),
                        action:
                            "trades are unaffected; check the CoinCap key and URL if this repeats"
                                .to_string(),
                    })
                    .await;
            }
        }
    }
    let plan = plan_tick(&tickers, &state, now, options.max_symbols_per_tick);
    let mut report = PollReport {
        started: now,
        due: plan.due_since.len(),
        ..PollReport::default()
    };
    state.due_since = plan.due_since;
    // First sight of a symbol: its ticker now is what a move is judged by.
    for ticker in &tickers {
        state
            .tickers
            .entry(ticker.pair.clone())
            .or_insert_with(|| (ticker.last.to_string(), ticker.date));
    }
    // When the client may send the next `/trades` request (it keeps them
    // `trades_interval` apart): a request is started only if it goes out
    // before the deadline, so the gap to the next tick's first one overlaps
    // this tick's commit and the next `/tickers` call instead of idling.
    let mut next_slot = Instant::now();
    for symbol in &plan.fetch {
        let send_at = next_slot.max(Instant::now());
        if deadline.is_some_and(|d| send_at >= d) {
            break;
        }
        next_slot = send_at + options.trades_interval;
        let checkpoint = state.checkpoints.get(symbol).copied();
        let outcome = async {
            let wire = mercado.trades_after(symbol, checkpoint).await?;
            let lines: Vec<Vec<u8>> = wire
                .iter()
                .map(|t| serde_json::to_vec(&Trade::from_wire(symbol, t)))
                .collect::<Result<_, _>>()?;
            put_all(stream, pack_lines(symbol, &lines), options.put_attempts).await?;
            Ok::<_, crate::Error>((wire.len() as u64, wire.iter().map(|t| t.tid).max()))
        }
        .await;
        match outcome {
            Ok((count, newest)) => {
                if let Some(newest) = newest {
                    state.checkpoints.insert(symbol.clone(), newest);
                } else if checkpoint.is_none() {
                    state.checkpoints.insert(symbol.clone(), 0);
                }
                if let Some(t) = tickers.iter().find(|t| &t.pair == symbol) {
                    state
                        .tickers
                        .insert(symbol.clone(), (t.last.to_string(), t.date));
                }
                state.polled_at.insert(symbol.clone(), now);
                state.due_since.remove(symbol);
                report.trades += count;
                report.polled.push(symbol.clone());
            }
            Err(error) => {
                report.failed.push((symbol.clone(), error.to_string()));
            }
        }
    }
    // One alert per tick, not one per symbol: an outage of the API is one
    // cause (the gate then mails it once), not 409. The symbol is taken out
    // of the error so the cause does not change with which one failed first.
    if let Some((first, error)) = report.failed.first() {
        let names: Vec<&str> = report.failed.iter().map(|(s, _)| s.as_str()).collect();
        alerts
            .send(&Alert {
                stage: STAGE,
                run_id: run_id.to_string(),
                table: Some("trades".to_string()),
                message: format!(
                    "trades not saved this tick for {} symbol(s): {} (symbols: {})",
                    names.len(),
                    error.replace(first.as_str(), "<symbol>"),
                    names.join(", ")
                ),
                action: "their checkpoints stayed put; the next tick reads the same trades again"
                    .to_string(),
            })
            .await;
    }
    report.waiting = state.due_since.len();
    report.unread = tickers
        .iter()
        .filter(|t| !state.checkpoints.contains_key(&t.pair))
        .count();
    log.commit(previous_seq, &run_id, now, files, state).await?;
    tracing::info!(
        stage = STAGE,
        run_id = %run_id,
        polled = report.polled.len(),
        trades = report.trades,
        failed = report.failed.len(),
        due = report.due,
        waiting = report.waiting,
        "markets polled"
    );
    Ok(report)
}

/// Polls in ticks `every` apart for as long as `budget` allows: one
/// scheduled invocation (every minute) then keeps trades flowing about every
/// 15 s instead of once a minute.
///
/// Each tick keeps reading due symbols at 1 request/s until the next tick
/// is due, so `/trades` requests spread over the whole budget: at 55 s and
/// 15 s, ticks at 0, 15, 30 and 45 s, the last one reading until 55 s. A
/// remainder shorter than a third of a period is not worth a `/tickers`
/// call, a snapshot and a manifest: the tick before it reads on to the end.
/// The first tick always runs. The longest a tick has run past its deadline
/// (a slow last request) is kept off the budget, so that the invocation
/// ends within it.
#[allow(clippy::too_many_arguments)]
pub async fn poll_during(
    mercado: &MercadoBitcoin,
    coincap: Option<&CoinCap>,
    stream: &dyn TradeStream,
    raw: &Lake,
    options: &PollOptions,
    alerts: &dyn Alerts,
    budget: Duration,
    every: Duration,
) -> Result<Vec<PollReport>> {
    let end = Instant::now() + budget;
    let mut reports = Vec::new();
    let mut overrun = Duration::ZERO;
    loop {
        let start = Instant::now();
        let left = end.saturating_duration_since(start + overrun);
        let Some(length) = tick_length(left, every, reports.is_empty()) else {
            return Ok(reports);
        };
        let deadline = start + length;
        reports.push(
            poll_tick(
                mercado,
                coincap,
                stream,
                raw,
                options,
                alerts,
                Some(deadline),
            )
            .await?,
        );
        overrun = overrun.max(Instant::now().saturating_duration_since(deadline));
        if length >= left {
            return Ok(reports);
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// How long the next tick reads, with `left` of the budget: a period, or
/// all that is left when the rest would make a tick shorter than a third of
/// a period; `None` when not even that is left (the first tick always runs).
fn tick_length(left: Duration, every: Duration, first: bool) -> Option<Duration> {
    let least = every / 3;
    if !first && left < least {
        return None;
    }
    if left.saturating_sub(every) < least {
        return Some(left);
    }
    Some(every)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_markets::Decimal18;

    fn ticker(pair: &str, last: &str, date: i64) -> Ticker {
        let d = |v: &str| v.parse::<Decimal18>().unwrap();
        Ticker {
            pair: pair.to_string(),
            high: d(last),
            low: d(last),
            vol: d("1"),
            last: d(last),
            buy: d(last),
            sell: d(last),
            open: d(last),
            date,
        }
    }

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_763_553_600 + second, 0).unwrap()
    }

    /// A state in which every symbol was read at `read_at` with its ticker
    /// as in `tickers`.
    fn read_all(tickers: &[Ticker], read_at: DateTime<Utc>) -> PollState {
        let mut state = PollState::default();
        for t in tickers {
            state.checkpoints.insert(t.pair.clone(), 10);
            state
                .tickers
                .insert(t.pair.clone(), (t.last.to_string(), t.date));
            state.polled_at.insert(t.pair.clone(), read_at);
        }
        state
    }

    #[test]
    fn a_tick_takes_no_more_symbols_than_requests_fit_between_ticks() {
        assert_eq!(
            PollOptions::for_ticks_every(Duration::from_secs(15)).max_symbols_per_tick,
            14,
            "15 s / 1.05 s"
        );
        assert_eq!(
            PollOptions::for_ticks_every(Duration::from_secs(1)).max_symbols_per_tick,
            1
        );
        let accelerated =
            PollOptions::for_ticks(Duration::from_secs(3), Duration::from_millis(200));
        assert_eq!(accelerated.max_symbols_per_tick, 15);
        assert_eq!(accelerated.trades_interval, Duration::from_millis(200));
        assert_eq!(
            PollOptions::for_ticks_every(Duration::from_secs(60)).put_attempts,
            PollOptions::default().put_attempts
        );
    }

    #[test]
    fn only_symbols_whose_ticker_moved_are_fetched() {
        let before = vec![
            ticker("BTC-BRL", "488000", 100),
            ticker("ETH-BRL", "12000", 100),
            ticker("SOL-BRL", "800", 90),
        ];
        let state = read_all(&before, at(0));
        let now = vec![
            ticker("BTC-BRL", "488000", 100),  // unchanged
            ticker("ETH-BRL", "12000.5", 100), // price moved
            ticker("SOL-BRL", "800", 95),      // date moved, same price
        ];
        let plan = plan_tick(&now, &state, at(15), 40);
        assert_eq!(plan.fetch, vec!["ETH-BRL", "SOL-BRL"]);
        assert_eq!(plan.due_since.len(), 2);
        assert_eq!(plan.due_since["ETH-BRL"], at(15));
        assert_eq!(plan.unread, 0);
        // "488000" and "488000.00000000" are one price.
        let same = vec![ticker("BTC-BRL", "488000.00000000", 100)];
        assert!(plan_tick(&same, &state, at(15), 40).fetch.is_empty());
    }

    #[test]
    fn the_longest_waiting_go_first_and_the_rest_keep_their_place() {
        let quiet: Vec<Ticker> = (0..30)
            .map(|i| ticker(&format!("Q{i:02}-BRL"), "1", 100))
            .collect();
        let mut state = read_all(&quiet, at(-3_600));
        // Ten quiet symbols moved at tick 15 and did not fit in it.
        for i in 20..30 {
            state.due_since.insert(format!("Q{i:02}-BRL"), at(15));
        }
        // A busy symbol, read a second ago.
        state.checkpoints.insert("BUSY-BRL".to_string(), 500);
        state
            .tickers
            .insert("BUSY-BRL".to_string(), ("5".to_string(), 110));
        state.polled_at.insert("BUSY-BRL".to_string(), at(29));
        // Now every symbol has moved.
        let mut now: Vec<Ticker> = vec![ticker("BUSY-BRL", "6", 120)];
        now.extend(quiet.iter().map(|t| ticker(&t.pair, "2", 120)));

        let plan = plan_tick(&now, &state, at(30), 12);
        let expected: Vec<String> = (20..30)
            .chain(0..2)
            .map(|i| format!("Q{i:02}-BRL"))
            .collect();
        assert_eq!(
            plan.fetch, expected,
            "those waiting since tick 15 first, then the new ones, least recently read first"
        );
        assert_eq!(plan.due_since.len(), 31, "nobody leaves the queue unread");
        assert_eq!(plan.due_since["Q00-BRL"], at(30));
        assert_eq!(plan.due_since["Q25-BRL"], at(15), "a carried wait is kept");
        let all = plan_tick(&now, &state, at(30), 100);
        assert_eq!(
            all.fetch.last().map(String::as_str),
            Some("BUSY-BRL"),
            "the symbol read last goes to the back: busy symbols cannot starve quiet ones"
        );
        assert_eq!(all.fetch.len(), 31);
    }

    #[test]
    fn a_due_symbol_stays_due_until_read_even_if_its_ticker_moves_back() {
        let before = vec![ticker("ADA-BRL", "2.5", 100)];
        let mut state = read_all(&before, at(0));
        state.due_since.insert("ADA-BRL".to_string(), at(15));
        let plan = plan_tick(&before, &state, at(30), 5);
        assert_eq!(plan.fetch, vec!["ADA-BRL"]);
        assert_eq!(plan.due_since["ADA-BRL"], at(15));
        // A symbol the reply no longer has is neither fetched nor kept.
        let plan = plan_tick(&[], &state, at(30), 5);
        assert!(plan.fetch.is_empty() && plan.due_since.is_empty());
    }

    #[test]
    fn symbols_never_read_take_only_the_capacity_moved_ones_leave() {
        let mut state = read_all(&[ticker("BTC-BRL", "1", 100)], at(0));
        // NEW1 was first seen at an earlier tick and has not moved; NEW2 moved since.
        state
            .tickers
            .insert("NEW1-BRL".to_string(), ("3".to_string(), 50));
        state
            .tickers
            .insert("NEW2-BRL".to_string(), ("4".to_string(), 60));
        let now = vec![
            ticker("NEW1-BRL", "3", 50),
            ticker("NEW2-BRL", "4.1", 70),
            ticker("NEW3-BRL", "9", 80), // first sight
            ticker("BTC-BRL", "2", 120),
        ];
        let plan = plan_tick(&now, &state, at(15), 3);
        assert_eq!(
            plan.fetch,
            vec!["NEW2-BRL", "BTC-BRL", "NEW3-BRL"],
            "moved first (at equal waits, never read before read); then never read, most recent ticker first"
        );
        assert_eq!(plan.unread, 2);
        let plan = plan_tick(&now, &state, at(15), 2);
        assert_eq!(plan.fetch, vec!["NEW2-BRL", "BTC-BRL"]);
        // A checkpoint without a ticker on record is read again.
        let mut odd = PollState::default();
        odd.checkpoints.insert("XRP-BRL".to_string(), 7);
        let plan = plan_tick(&[ticker("XRP-BRL", "3", 1)], &odd, at(0), 5);
        assert_eq!(plan.fetch, vec!["XRP-BRL"]);
        assert_eq!(plan.due_since.len(), 1);
        // A duplicated row counts once.
        let twice = vec![ticker("NEW3-BRL", "9", 80), ticker("NEW3-BRL", "9", 80)];
        assert_eq!(plan_tick(&twice, &state, at(0), 5).fetch.len(), 1);
    }

    #[test]
    fn ticks_keep_to_the_period_and_read_until_the_budget_ends() {
        let s = Duration::from_secs;
        let every = s(15);
        let mut left = s(55);
        let mut ticks = Vec::new();
        while let Some(length) = tick_length(left, every, ticks.is_empty()) {
            ticks.push(length.as_secs());
            left -= length;
        }
        assert_eq!(ticks, vec![15, 15, 15, 10], "ticks at 0, 15, 30 and 45 s");
        assert_eq!(tick_length(s(19), every, false), Some(s(19)), "no 4 s tick");
        assert_eq!(tick_length(s(20), every, false), Some(s(15)));
        assert_eq!(tick_length(s(4), every, false), None);
        assert_eq!(
            tick_length(s(4), every, true),
            Some(s(4)),
            "the first always runs"
        );
        let ms = Duration::from_millis;
        assert_eq!(
            tick_length(ms(500), ms(400), false),
            Some(ms(500)),
            "1.3 s at 400 ms: three ticks, the last to the end"
        );
    }
}
