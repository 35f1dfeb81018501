//! `tributary bench-markets`: the market poller at real scale (about 409
//! crypto symbols, quiet and busy ones and a burst) against the simulated
//! exchange, which enforces Mercado Bitcoin's rate limits. Everything runs in
//! accelerated simulated time: the poller's ticks, budget and request
//! spacing, the exchange's trades and rate limits, and every figure printed.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use tributary_lake::{Lake, Log, ManifestLog, RunId};
use tributary_markets::{
    Decimal18,
    bench::{Probe, Setup, Tick, figures},
    clock::SimClock,
    http::RetryPolicy,
    mercado::MercadoBitcoin,
    replay::{RateLimits, ReplayServer, ReplayState},
    simulated::{ActivityMix, MixOptions},
};
use tributary_pipeline::{
    alerts::RecordedAlerts,
    markets::{
        poll::{PollOptions, PollState, poll_during},
        stream::{MemoryStream, StreamRecord, TradeStream},
    },
};

use super::*;

/// 2025-11-19T12:00:00Z: the simulated start, fixed so runs compare.
const EPOCH_MS: i64 = 1_763_553_600_000;
/// Extra simulated minutes of polling after trading stops, at most, for the
/// last trades to reach the stream.
const DRAIN_MINUTES: u32 = 5;

#[derive(Args)]
pub(crate) struct BenchMarketsArgs {
    /// Simulated minutes of trading measured.
    #[arg(long, default_value_t = 10)]
    minutes: u32,
    /// How many times faster than real time the simulation runs. Real-time
    /// jitter grows by this factor in simulated time: at 4x the client's
    /// 50 ms margin between two requests is 12.5 ms of real time.
    #[arg(long, default_value_t = 4.0)]
    speed: f64,
    /// Crypto symbols listed.
    #[arg(long, default_value_t = 409)]
    symbols: usize,
    /// Of which busy (a trade every 2-8 s).
    #[arg(long, default_value_t = 12)]
    busy: usize,
    /// Mean gap between two trades of a quiet symbol (simulated).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    quiet_every: Duration,
    /// Quiet symbols that trade within one minute in the burst (0: no burst).
    #[arg(long, default_value_t = 120)]
    burst: usize,
    /// When the burst starts (simulated, from the start).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    burst_at: Duration,
    /// Poll tick period (simulated), as the ingest function uses.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    every: Duration,
    /// Polling time of each one-minute invocation (simulated): the schedule
    /// period less the ingest function's margin.
    #[arg(long, value_name = "DURATION", default_value = "55s", value_parser = humantime::parse_duration)]
    poll_for: Duration,
    /// Start with no poll state, as a fresh deployment does, instead of with
    /// every symbol read once before the start.
    #[arg(long)]
    cold: bool,
    /// Seed of the activity mix.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Exit 1 when a goal is not met or a request broke a rate limit.
    #[arg(long)]
    check: bool,
}

/// The in-process stream, noting when each trade was put.
struct ProbedStream {
    inner: MemoryStream,
    probe: Probe,
}

impl TradeStream for ProbedStream {
    fn put_records<'a>(
        &'a self,
        records: &'a [StreamRecord],
    ) -> Pin<Box<dyn Future<Output = tributary_pipeline::Result<Vec<usize>>> + Send + 'a>> {
        Box::pin(async move {
            let failed = self.inner.put_records(records).await?;
            for (i, record) in records.iter().enumerate() {
                if !failed.contains(&i) {
                    self.probe.put_lines(&record.data);
                }
            }
            Ok(failed)
        })
    }
}

/// The poll state as if every symbol had been read just before the start:
/// the steady state of a poller that has run for a while.
fn read_before_start(state: &ReplayState) -> anyhow::Result<PollState> {
    let now = Utc::now();
    let mut poll = PollState {
        symbols: state.symbols.iter().map(|s| s.0.clone()).collect(),
        symbols_at: Some(now),
        ..PollState::default()
    };
    for (symbol, trades) in &state.trades {
        let Some(last) = trades.last() else { continue };
        let price: Decimal18 = last
            .price
            .parse()
            .map_err(|e| anyhow::anyhow!("{symbol}: price {}: {e}", last.price))?;
        poll.checkpoints.insert(symbol.clone(), last.tid);
        poll.tickers
            .insert(symbol.clone(), (price.to_string(), last.date));
        poll.polled_at.insert(symbol.clone(), now);
    }
    Ok(poll)
}

pub(crate) async fn run_bench_markets(args: BenchMarketsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.minutes > 0, "--minutes must be at least 1");
    anyhow::ensure!(
        args.speed > 0.0 && args.speed <= 20.0,
        "--speed must be in (0, 20]: faster, the loopback's jitter would show in the figures"
    );
    // The client's pace: 1 request/s per endpoint plus its margin.
    let interval = tributary_markets::http::MIN_INTERVAL;
    let mix_options = MixOptions {
        symbols: args.symbols,
        busy: args.busy,
        quiet_mean_gap: args.quiet_every,
        burst_symbols: args.burst,
        burst_at: args.burst_at,
        seed: args.seed,
        ..MixOptions::default()
    };
    let (mut state, mut mix) = ActivityMix::new(&mix_options, EPOCH_MS, 1);
    let raw = Lake::from_url("memory://")?;
    if !args.cold {
        ManifestLog::new(raw.clone(), Log::MarketsPoll)
            .commit(
                0,
                &RunId::now(),
                Utc::now(),
                Vec::new(),
                read_before_start(&state)?,
            )
            .await?;
    }

    let clock = SimClock::accelerated(EPOCH_MS, args.speed);
    state.limits = Some(RateLimits::mercado(clock));
    let server = Arc::new(ReplayServer::start(state).await?);
    // The production policy, in simulated time.
    let defaults = RetryPolicy::default();
    let policy = RetryPolicy {
        first_backoff: clock.to_real(defaults.first_backoff),
        max_backoff: clock.to_real(defaults.max_backoff),
        timeout: clock.to_real(defaults.timeout),
        min_interval: clock.to_real(defaults.min_interval),
        ..defaults
    };
    let mercado = MercadoBitcoin::new(&server.mercado_base(), policy);
    let probe = Probe::new(clock);
    let stream = ProbedStream {
        inner: MemoryStream::default(),
        probe: probe.clone(),
    };
    let alerts = RecordedAlerts::default();
    let options = PollOptions::for_ticks(clock.to_real(args.every), clock.to_real(interval));
    let end_ms = EPOCH_MS + i64::from(args.minutes) * 60_000;
    eprintln!(
        "bench-markets: {} simulated minutes at {}x (about {:.0} s of wall time), {} symbols",
        args.minutes,
        args.speed,
        f64::from(args.minutes) * 60.0 / args.speed,
        args.symbols
    );

    let exchange = {
        let (server, probe) = (Arc::clone(&server), probe.clone());
        tokio::spawn(async move {
            loop {
                let now = clock.now_ms();
                if now >= end_ms {
                    break;
                }
                probe.published(mix.publish_due(&server, now));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let started = std::time::Instant::now();
    let mut reports = Vec::new();
    let mut minute: u32 = 0;
    loop {
        let at = EPOCH_MS + i64::from(minute) * 60_000;
        tokio::time::sleep_until(clock.instant_at(at).into()).await;
        reports.extend(
            poll_during(
                &mercado,
                None,
                &stream,
                &raw,
                &options,
                &alerts,
                clock.to_real(args.poll_for),
                clock.to_real(args.every),
            )
            .await?,
        );
        minute += 1;
        let missing = probe.missing();
        eprintln!(
            "  minute {minute}: {} trade(s) published, {missing} not in the stream yet",
            probe.published_count()
        );
        let trading = minute < args.minutes;
        if !trading && (missing == 0 || minute >= args.minutes + DRAIN_MINUTES) {
            break;
        }
    }
    exchange.await?;

    let (published, put, put_again) = probe.snapshot();
    let ticks: Vec<Tick> = reports
        .iter()
        .map(|r| Tick {
            at_ms: clock.at_wall_ms(r.started.timestamp_millis()),
            due: r.due,
            waiting: r.waiting,
            fetched: r.polled.len(),
        })
        .collect();
    let figures = figures(
        Setup {
            epoch_ms: EPOCH_MS,
            minutes: args.minutes,
            speed: args.speed,
            symbols: args.symbols,
            busy: args.busy.min(args.symbols),
            burst: (args.burst > 0).then_some((
                args.burst,
                args.burst_at,
                mix_options.burst_within,
            )),
            expected_movers: mix_options.expected_movers_per_minute(),
            every: args.every,
            poll_for: args.poll_for,
            interval,
            goal: Duration::from_secs(60),
            calm_movers: 45,
        },
        &published,
        &put,
        put_again,
        &server.rate_log(),
        &ticks,
    );
    println!("{figures}");
    let command: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "  {} poll tick(s), {} alert(s); {:.0} s of wall time; command: tributary {}",
        reports.len(),
        alerts.sent().len(),
        started.elapsed().as_secs_f64(),
        command.join(" ")
    );
    if args.check {
        anyhow::ensure!(
            figures.calm_goal_met() && figures.burst_bound_met() && figures.refused() == 0,
            "a goal was not met or a request broke a rate limit (see the figures)"
        );
    }
    Ok(())
}
