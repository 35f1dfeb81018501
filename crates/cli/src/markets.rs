//! `tributary markets` and `tributary replay`: the crypto path run locally.

use super::*;
use crate::stages::on_schedule;

pub(crate) async fn run_markets(args: MarketsArgs) -> anyhow::Result<()> {
    let settings = args.run.locations.settings(&[])?;
    let raw = settings.raw_lake()?;
    let processed = settings.processed_lake()?;
    let mercado = tributary_markets::mercado::MercadoBitcoin::new(
        &args.mercado_url,
        tributary_markets::http::RetryPolicy::default(),
    );
    let coincap = match std::env::var("COINCAP_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        Some(key) => Some(tributary_markets::coincap::CoinCap::new(
            &args.coincap_url,
            &key,
            tributary_markets::http::RetryPolicy::default(),
        )?),
        None => {
            tracing::warn!(
                "COINCAP_API_KEY is not set: CoinCap assets are skipped (trades are not affected)"
            );
            None
        }
    };
    let local =
        tokio::sync::Mutex::new(tributary_pipeline::markets_run::LocalMarkets::new(coincap));
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
            report.loaded.0,
            report.loaded.1,
            report.elapsed.as_secs_f64()
        );
        Ok(())
    };
    match args.run.every {
        None => cycle().await,
        Some(every) => on_schedule(every, args.run.cycles, cycle).await,
    }
}

pub(crate) async fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    use std::io::Write as _;
    const COINS: [(&str, f64); 8] = [
        ("BTC", 488_000.0),
        ("ETH", 12_000.0),
        ("SOL", 800.0),
        ("ADA", 2.5),
        ("XRP", 3.1),
        ("LTC", 420.0),
        ("DOGE", 0.9),
        ("DOT", 25.0),
    ];
    // Trade ids continue from the clock, so a restarted simulator never
    // reuses a (symbol, tid) the warehouse already holds.
    let mut state = tributary_markets::replay::ReplayState {
        first_tid: Utc::now().timestamp_millis(),
        ..Default::default()
    };
    let coins: Vec<(String, f64)> = COINS
        .iter()
        .take(args.symbols.clamp(1, COINS.len()))
        .map(|(coin, price)| (format!("{coin}-BRL"), *price))
        .collect();
    for (symbol, _) in &coins {
        let base = symbol.trim_end_matches("-BRL").to_string();
        state
            .symbols
            .push((symbol.clone(), "CRYPTO".into(), base, "BRL".into()));
    }
    state.symbols.push((
        "TFC-BRL".into(),
        "FAN_TOKEN".into(),
        "TFC".into(),
        "BRL".into(),
    ));
    let server = tributary_markets::replay::ReplayServer::start_on(args.port, state).await?;
    println!("{}", server.mercado_base());
    println!("{}", server.coincap_base());
    std::io::stdout().flush()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut prices: Vec<f64> = coins.iter().map(|(_, p)| *p).collect();
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
        let now = Utc::now().timestamp();
        for ((symbol, _), price) in coins.iter().zip(prices.iter_mut()) {
            for _ in 0..rng.random_range(1..=3) {
                *price *= 1.0 + rng.random_range(-0.002..0.002);
                let amount = rng.random_range(0.001..2.0);
                let side = if rng.random_bool(0.5) { "buy" } else { "sell" };
                server.publish_trade(
                    symbol,
                    now,
                    &format!("{price:.8}"),
                    &format!("{amount:.8}"),
                    side,
                );
            }
        }
    }
    Ok(())
}
