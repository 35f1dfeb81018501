//! `tributary markets` and `tributary replay`: the crypto path run locally.

use super::*;
use crate::stages::on_schedule;

pub(crate) async fn run_markets(args: MarketsArgs) -> anyhow::Result<()> {
    let settings = args.run.locations.settings(&[
        (TRIBUTARY_MERCADO_URL, args.mercado_url.clone()),
        (TRIBUTARY_COINCAP_URL, args.coincap_url.clone()),
    ])?;
    let raw = settings.raw_lake()?;
    let processed = settings.processed_lake()?;
    let mercado = tributary_markets::mercado::MercadoBitcoin::new(
        &settings.markets.mercado_url,
        tributary_markets::http::RetryPolicy::default(),
    );
    let coincap = match &settings.markets.coincap_api_key {
        Some(key) => Some(tributary_markets::coincap::CoinCap::new(
            &settings.markets.coincap_url,
            key,
            tributary_markets::http::RetryPolicy::default(),
        )?),
        None => {
            tracing::warn!(
                "{COINCAP_API_KEY} is not set: CoinCap assets are skipped (trades are not affected)"
            );
            None
        }
    };
    if let Some(since) = args.history_since {
        let state = tributary_pipeline::markets::history::backfill_history(
            &mercado,
            &raw,
            &tributary_pipeline::markets::history::HistoryRequest {
                since,
                until: None,
                symbols: None,
            },
        )
        .await?;
        println!(
            "markets: kept {} daily candle(s) of {} symbol(s) from {since}",
            state.candles.values().sum::<u64>(),
            state.candles.len()
        );
    }
    let local = tokio::sync::Mutex::new(tributary_pipeline::markets::local::LocalMarkets::new(
        coincap,
    ));
    let cycle = || async {
        let mut warehouse = settings.connect_warehouse().await?;
        let report = local
            .lock()
            .await
            .cycle(&mercado, &raw, &processed, &mut warehouse, &LogAlerts)
            .await?;
        println!(
            "markets: polled {} symbol(s), {} new trade(s); loaded {} trade(s) and {} daily bar(s) in {:.2}s",
            report.poll.polled.len(),
            report.poll.trades,
            report.loaded.trades,
            report.loaded.bars,
            report.elapsed.as_secs_f64()
        );
        Ok(())
    };
    match args.run.every {
        None => cycle().await,
        Some(every) => on_schedule(every, args.run.cycles, cycle).await,
    }
}

/// Above this many symbols, `replay` serves the real-scale activity mix.
const DEMO_COINS: usize = 8;

pub(crate) async fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    if args.symbols > DEMO_COINS {
        return run_replay_at_scale(args).await;
    }
    use std::io::Write as _;
    // Trade ids continue from the clock, so a restarted simulator never
    // reuses a (symbol, tid) the warehouse already holds.
    let (state, mut market) = tributary_markets::simulated::SimulatedMarket::new(
        args.symbols,
        Utc::now().timestamp_millis(),
        11,
    );
    let server = tributary_markets::replay::ReplayServer::start_on(args.port, state).await?;
    println!("{}", server.mercado_base());
    println!("{}", server.coincap_base());
    println!("{}", server.fx_base());
    std::io::stdout().flush()?;
    let started = std::time::Instant::now();
    let mut ticker = tokio::time::interval(args.every);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {}
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        market.tick(&server, Utc::now().timestamp());
    }
    Ok(())
}

/// `replay --symbols N` with N > 8: the activity mix in real time, with
/// Mercado Bitcoin's rate limits enforced; reports refused requests at exit.
async fn run_replay_at_scale(args: ReplayArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    use tributary_markets::{
        clock::SimClock,
        replay::{RateLimits, ReplayServer},
        simulated::{ActivityMix, MixOptions},
    };
    let clock = SimClock::wall();
    let (mut state, mut mix) = ActivityMix::new(
        &MixOptions {
            symbols: args.symbols,
            ..MixOptions::default()
        },
        clock.epoch_ms(),
        Utc::now().timestamp_millis(),
    );
    state.limits = Some(RateLimits::mercado(clock));
    let server = ReplayServer::start_on(args.port, state).await?;
    println!("{}", server.mercado_base());
    println!("{}", server.coincap_base());
    println!("{}", server.fx_base());
    std::io::stdout().flush()?;
    let started = std::time::Instant::now();
    let mut ticker = tokio::time::interval(args.every.min(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {}
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        mix.publish_due(&server, clock.now_ms());
    }
    let log = server.rate_log();
    eprintln!(
        "replay: {} Mercado Bitcoin request(s), {} refused for breaking a rate limit",
        log.len(),
        log.iter().filter(|r| r.refused).count()
    );
    Ok(())
}
