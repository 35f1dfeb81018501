//! The market clients against the local replay server, failures included.

use std::time::Duration;

use tributary_markets::{
    Error,
    coincap::CoinCap,
    http::RetryPolicy,
    mercado::MercadoBitcoin,
    replay::{Failure, ReplayServer, ReplayState},
};

/// Fast retries for tests; the rate limit stays real where a test checks it.
fn quick(min_interval: Duration) -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        min_interval,
        max_body: 1 << 20,
    }
}

async fn server_with_trades(symbol: &str, count: i64) -> ReplayServer {
    let server = ReplayServer::start(ReplayState::default()).await.unwrap();
    for i in 0..count {
        let side = if i % 2 == 0 { "buy" } else { "sell" };
        let price = format!("{}.00000000", 488_000 + i);
        server.publish_trade(symbol, 1_763_561_000 + i / 3, &price, "0.00100000", side);
    }
    server
}

#[tokio::test]
async fn a_page_of_exactly_1000_trades_pages_again_and_nothing_repeats() {
    let server = server_with_trades("BTC-BRL", 2_000).await;
    let client = MercadoBitcoin::new(&server.mercado_base(), quick(Duration::ZERO));
    let trades = client.trades_after("BTC-BRL", Some(0)).await.unwrap();
    assert_eq!(trades.len(), 2_000);
    assert!(
        trades.windows(2).all(|w| w[0].tid < w[1].tid),
        "ascending, unique"
    );
    // 1000 (full) + 1000 (full; `since` repeats the last tid) + the overlap alone.
    assert_eq!(server.requests("/api/v4/BTC-BRL/trades").len(), 3);

    // From a checkpoint: only what is newer, the checkpoint itself dropped.
    let newer = client.trades_after("BTC-BRL", Some(1_500)).await.unwrap();
    assert_eq!(newer.first().map(|t| t.tid), Some(1_501));
    assert_eq!(newer.len(), 500);
}

#[tokio::test]
async fn a_429_an_html_403_and_a_timeout_are_retried() {
    let server = server_with_trades("ETH-BRL", 5).await;
    server.fail_next(
        "/api/v4/ETH-BRL/trades",
        Failure::Status(429, "API|REQUEST_RATE_EXCEEDED"),
    );
    server.fail_next("/api/v4/ETH-BRL/trades", Failure::CloudflareHtml);
    server.fail_next(
        "/api/v4/ETH-BRL/trades",
        Failure::Stall(Duration::from_secs(2)),
    );
    let client = MercadoBitcoin::new(&server.mercado_base(), quick(Duration::ZERO));
    let trades = client.trades_after("ETH-BRL", Some(0)).await.unwrap();
    assert_eq!(trades.len(), 5);
    assert_eq!(
        server.requests("/api/v4/ETH-BRL/trades").len(),
        4,
        "three failures, then success"
    );
}

#[tokio::test]
async fn persistent_failure_is_a_retryable_upstream_error_and_refusals_are_not_retried() {
    let server = server_with_trades("SOL-BRL", 1).await;
    for _ in 0..4 {
        server.fail_next(
            "/api/v4/SOL-BRL/trades",
            Failure::Status(503, "API|API_UNAVAILABLE"),
        );
    }
    let client = MercadoBitcoin::new(&server.mercado_base(), quick(Duration::ZERO));
    let err = client.trades_after("SOL-BRL", None).await.unwrap_err();
    assert!(matches!(err, Error::Upstream { attempts: 4, .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("HTTP 503"), "{err}");

    let refused = client.trades_after("NOPE-BRL", None).await.unwrap_err();
    assert!(
        matches!(refused, Error::Rejected { status: 400, .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("INVALID_SYMBOL"));
    assert_eq!(
        server.requests("/api/v4/NOPE-BRL").len(),
        1,
        "a refusal is not retried"
    );
}

#[tokio::test]
async fn requests_to_one_endpoint_are_at_least_a_second_apart() {
    let server = server_with_trades("BTC-BRL", 3).await;
    let client = MercadoBitcoin::new(&server.mercado_base(), quick(Duration::from_secs(1)));
    for _ in 0..3 {
        let reply = client.tickers(&["BTC-BRL".to_string()]).await.unwrap();
        assert!(reply.is_some_and(|r| r.body.starts_with(b"[")));
    }
    let times = server.requests("/api/v4/tickers");
    assert_eq!(times.len(), 3);
    // The client spaces sends 1.05 s apart; arrivals can come closer by the
    // jitter of a busy machine, so the test allows 150 ms of it and still
    // fails on a client that does not space requests at all.
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(900),
            "{:?}",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test]
async fn string_and_number_encodings_give_identical_trades() {
    let server = server_with_trades("ADA-BRL", 0).await;
    server.publish_trade(
        "ADA-BRL",
        1_763_561_763,
        "2.51230000",
        "10.00000001",
        "sell",
    );
    server.publish_trade("ADA-BRL", 1_763_561_763, "2.5123", "10.00000001", "sell");
    server.with_state(|s| {
        if let Some(trades) = s.trades.get_mut("ADA-BRL") {
            trades[1].as_numbers = true;
        }
    });
    let client = MercadoBitcoin::new(&server.mercado_base(), quick(Duration::ZERO));
    let trades = client.trades_after("ADA-BRL", Some(0)).await.unwrap();
    assert_eq!(trades[0].price, trades[1].price);
    assert_eq!(trades[0].amount, trades[1].amount);
    assert_eq!(trades[0].amount.to_string(), "10.00000001");
}

#[tokio::test]
async fn the_coincap_v2_shutdown_body_is_refused_with_a_clear_error() {
    let server = ReplayServer::start(ReplayState::default()).await.unwrap();
    server.fail_next("/v3/assets", Failure::CoinCapV2);
    let client = CoinCap::new(&server.coincap_base(), "test-key", quick(Duration::ZERO)).unwrap();
    let err = client.assets(10, 0).await.unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("retired CoinCap v2"), "{err}");
    assert!(!err.is_retryable());
    let keyless = CoinCap::new(&server.coincap_base(), " ", quick(Duration::ZERO));
    assert!(matches!(keyless, Err(Error::NotConfigured(_))));
}

#[tokio::test]
async fn oversized_and_garbage_replies_are_refused_or_retried_clearly() {
    let server = server_with_trades("BTC-BRL", 1).await;
    server.fail_next("/api/v4/BTC-BRL/trades", Failure::Oversized(2 << 20));
    let client = MercadoBitcoin::new(&server.mercado_base(), quick(Duration::ZERO));
    let err = client.trades_after("BTC-BRL", None).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    server.fail_next("/api/v4/BTC-BRL/trades", Failure::Garbage);
    let healed = client.trades_after("BTC-BRL", None).await.unwrap();
    assert_eq!(
        healed.len(),
        1,
        "a non-JSON body is retried like Cloudflare's page"
    );
}

#[tokio::test]
async fn symbols_come_back_as_rows() {
    let mut state = ReplayState::default();
    state.symbols.push((
        "BTC-BRL".into(),
        "CRYPTO".into(),
        "BTC".into(),
        "BRL".into(),
    ));
    state.symbols.push((
        "XYZ-BRL".into(),
        "FAN_TOKEN".into(),
        "XYZ".into(),
        "BRL".into(),
    ));
    let server = ReplayServer::start(state).await.unwrap();
    let client = MercadoBitcoin::new(&server.mercado_base(), quick(Duration::ZERO));
    let symbols = client.symbols().await.unwrap();
    assert_eq!(symbols.len(), 2);
    assert_eq!(symbols.iter().filter(|s| s.kind == "CRYPTO").count(), 1);
}
