//! A local server that replays the Mercado Bitcoin v4 and CoinCap v3 shapes,
//! and a Frankfurter-style exchange-rate API under `/fx/`
//! ([`crate::fx_replay`]), with their failure cases on demand. Tests and the demo point the clients
//! at it; no network beyond loopback is used.
//!
//! With [`ReplayState::limits`] set it also enforces Mercado Bitcoin's rate
//! limits in the time of a [`SimClock`]: 1 request/s per public endpoint and
//! 500 requests/min overall, answering 429 `REQUEST_RATE_EXCEEDED` beyond
//! them and logging every request for the figures. `/{symbol}/trades` counts
//! as **one** endpoint for all symbols: the API documents the limit "per
//! public endpoint" without saying whether the path's symbol makes another
//! one, and the shared reading is the one that cannot be exceeded by
//! mistake (a per-symbol reading would also allow 409 requests a second,
//! which the overall 500/min limit rules out anyway).

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::clock::SimClock;

/// A Mercado Bitcoin endpoint, as its rate limit counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// `/symbols`.
    Symbols,
    /// `/tickers`.
    Tickers,
    /// `/{symbol}/trades`, every symbol together.
    Trades,
    /// `/candles`.
    Candles,
    /// Any other path under the API.
    Other,
}

impl Endpoint {
    /// The endpoint of a path after `/api/v4/`.
    pub fn of(rest: &str) -> Self {
        match rest {
            "symbols" => Self::Symbols,
            "tickers" => Self::Tickers,
            "candles" => Self::Candles,
            _ if rest.ends_with("/trades") => Self::Trades,
            _ => Self::Other,
        }
    }

    /// How the figures name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Symbols => "/symbols",
            Self::Tickers => "/tickers",
            Self::Trades => "/{symbol}/trades",
            Self::Candles => "/candles",
            Self::Other => "other",
        }
    }
}

/// One Mercado Bitcoin request as the rate limiter saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitedRequest {
    /// When it arrived, simulated unix ms.
    pub at_ms: i64,
    /// Which limit it counts against.
    pub endpoint: Endpoint,
    /// Whether it was answered 429 for breaking a limit.
    pub refused: bool,
}

/// Mercado Bitcoin's rate limits, kept in the time of a [`SimClock`].
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// The clock requests are timed by.
    pub clock: SimClock,
    /// Least simulated time between two served requests to one endpoint.
    pub per_endpoint: std::time::Duration,
    /// Most served requests in any simulated minute, all endpoints together.
    pub per_minute: usize,
    /// Every request, in arrival order.
    pub log: Vec<LimitedRequest>,
    last: BTreeMap<Endpoint, i64>,
    minute: VecDeque<i64>,
}

impl RateLimits {
    /// The documented limits (1 request/s per endpoint, 500/min) on `clock`.
    pub fn mercado(clock: SimClock) -> Self {
        Self {
            clock,
            per_endpoint: std::time::Duration::from_secs(1),
            per_minute: 500,
            log: Vec::new(),
            last: BTreeMap::new(),
            minute: VecDeque::new(),
        }
    }

    /// Books a request to `endpoint` arriving at `at_ms`; false when it
    /// breaks a limit (it is then refused, and a refused request does not
    /// count as served).
    pub fn admit(&mut self, at_ms: i64, endpoint: Endpoint) -> bool {
        let gap = i64::try_from(self.per_endpoint.as_millis()).unwrap_or(i64::MAX);
        while self.minute.front().is_some_and(|t| *t <= at_ms - 60_000) {
            self.minute.pop_front();
        }
        let too_soon = self
            .last
            .get(&endpoint)
            .is_some_and(|last| at_ms - last < gap);
        let refused = too_soon || self.minute.len() >= self.per_minute;
        if !refused {
            self.last.insert(endpoint, at_ms);
            self.minute.push_back(at_ms);
        }
        self.log.push(LimitedRequest {
            at_ms,
            endpoint,
            refused,
        });
        !refused
    }

    /// Requests refused so far.
    pub fn refused(&self) -> usize {
        self.log.iter().filter(|r| r.refused).count()
    }
}

/// A failure the next matching request gets.
#[derive(Debug, Clone)]
pub enum Failure {
    /// An HTTP status with a JSON error body (`{"code", "message"}`).
    Status(u16, &'static str),
    /// Cloudflare's HTML 403 page.
    CloudflareHtml,
    /// No answer for this long (the client should time out).
    Stall(Duration),
    /// The retired CoinCap v2 notice: `data` is an object.
    CoinCapV2,
    /// A well-formed but absurdly large reply of about this many bytes.
    Oversized(usize),
    /// A body that is not JSON at all nor HTML.
    Garbage,
    /// This status and body as given (e.g. JSON cut short, or a
    /// well-formed reply with an impossible value).
    Body(u16, String),
}

/// One trade the server holds.
#[derive(Debug, Clone)]
pub struct ReplayTrade {
    /// Trade id.
    pub tid: i64,
    /// Unix seconds.
    pub date: i64,
    /// Price text.
    pub price: String,
    /// Amount text.
    pub amount: String,
    /// "buy" or "sell".
    pub side: &'static str,
    /// Send price and amount as JSON numbers instead of strings (legacy v3 style).
    pub as_numbers: bool,
}

/// What the server knows and has seen.
#[derive(Debug, Default)]
pub struct ReplayState {
    /// Instruments: (symbol, type, base, quote).
    pub symbols: Vec<(String, String, String, String)>,
    /// Trades per symbol.
    pub trades: BTreeMap<String, Vec<ReplayTrade>>,
    /// Daily candles per symbol: (unix seconds, [open, high, low, close, volume]).
    pub candles: BTreeMap<String, Vec<(i64, [String; 5])>>,
    /// CoinCap assets, as JSON objects.
    pub assets: Vec<Value>,
    /// CoinCap daily price history per asset id: (unix ms, priceUsd).
    pub asset_history: BTreeMap<String, Vec<(i64, String)>>,
    /// Failures to serve, first match first: (path prefix, failure).
    pub failures: VecDeque<(String, Failure)>,
    /// Every request: when, and its path with query.
    pub requests: Vec<(Instant, String)>,
    /// The first tid of a symbol's trades (1 when 0). A simulator restarted
    /// later starts higher so that (symbol, tid) stays unique, as on the exchange.
    pub first_tid: i64,
    /// Mercado Bitcoin's rate limits, enforced when set (off by default:
    /// most tests ask faster than the real API allows).
    pub limits: Option<RateLimits>,
    /// The exchange-rate API served under `/fx/`.
    pub fx: crate::fx_replay::FxReplay,
}

/// A running replay server on 127.0.0.1.
pub struct ReplayServer {
    address: SocketAddr,
    state: Arc<Mutex<ReplayState>>,
    task: JoinHandle<()>,
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReplayServer {
    /// Starts on a free loopback port with `state`.
    pub async fn start(state: ReplayState) -> std::io::Result<Self> {
        Self::start_on(0, state).await
    }

    /// Starts on loopback port `port` (0: any free one) with `state`.
    pub async fn start_on(port: u16, state: ReplayState) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(state));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Timed on arrival, before any reading, so that the rate
                // limit sees the spacing the client chose.
                let arrived = Instant::now();
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(stream, arrived, state).await;
                });
            }
        });
        Ok(Self {
            address,
            state,
            task,
        })
    }

    /// Base URL of the Mercado Bitcoin v4 API.
    pub fn mercado_base(&self) -> String {
        format!("http://{}/api/v4", self.address)
    }

    /// Base URL of the CoinCap v3 API.
    pub fn coincap_base(&self) -> String {
        format!("http://{}/v3", self.address)
    }

    /// Base URL of the exchange-rate API (`/latest`, `/YYYY-MM-DD`, `/A..B`).
    pub fn fx_base(&self) -> String {
        format!("http://{}/fx", self.address)
    }

    /// Reads or changes the state.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut ReplayState) -> R) -> R {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut state)
    }

    /// Adds a trade to `symbol` with the next tid; returns the tid.
    pub fn publish_trade(
        &self,
        symbol: &str,
        date: i64,
        price: &str,
        amount: &str,
        side: &'static str,
    ) -> i64 {
        self.with_state(|state| {
            let first = state.first_tid.max(1);
            let trades = state.trades.entry(symbol.to_string()).or_default();
            let tid = trades.last().map_or(first, |t| t.tid + 1);
            trades.push(ReplayTrade {
                tid,
                date,
                price: price.to_string(),
                amount: amount.to_string(),
                side,
                as_numbers: false,
            });
            tid
        })
    }

    /// The next request whose path starts with `prefix` gets `failure`.
    pub fn fail_next(&self, prefix: &str, failure: Failure) {
        self.with_state(|state| state.failures.push_back((prefix.to_string(), failure)));
    }

    /// Every Mercado Bitcoin request the rate limiter saw (empty without limits).
    pub fn rate_log(&self) -> Vec<LimitedRequest> {
        self.with_state(|state| {
            state
                .limits
                .as_ref()
                .map(|l| l.log.clone())
                .unwrap_or_default()
        })
    }

    /// When each request whose path starts with `prefix` arrived.
    pub fn requests(&self, prefix: &str) -> Vec<Instant> {
        self.with_state(|state| {
            state
                .requests
                .iter()
                .filter(|(_, path)| path.starts_with(prefix))
                .map(|(at, _)| *at)
                .collect()
        })
    }
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    stall: Option<Duration>,
}

impl Reply {
    fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            stall: None,
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    arrived: Instant,
    state: Arc<Mutex<ReplayState>>,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || request.len() > 64 * 1024 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request).to_string();
    let target = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let authorized = text
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("authorization: bearer "));
    let reply = {
        let mut state = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.requests.push((arrived, target.clone()));
        match rate_limited(&mut state, &target, arrived) {
            Some(refusal) => refusal,
            None => route(&mut state, &target, authorized),
        }
    };
    if let Some(stall) = reply.stall {
        tokio::time::sleep(stall).await;
    }
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&reply.body).await?;
    stream.shutdown().await
}

/// The 429 a request gets when it breaks Mercado Bitcoin's limits.
fn rate_limited(state: &mut ReplayState, target: &str, arrived: Instant) -> Option<Reply> {
    let limits = state.limits.as_mut()?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let rest = path.strip_prefix("/api/v4/")?;
    let at_ms = limits.clock.at_ms(arrived);
    if limits.admit(at_ms, Endpoint::of(rest)) {
        return None;
    }
    Some(Reply::json(
        429,
        &json!({"code": "API|REQUEST_RATE_EXCEEDED", "message": "rate limit exceeded: 1 request/s per endpoint, 500/min"}),
    ))
}

fn route(state: &mut ReplayState, target: &str, authorized: bool) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: BTreeMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let pending = state
        .failures
        .iter()
        .position(|(prefix, _)| path.starts_with(prefix.as_str()));
    if let Some((_, failure)) = pending.and_then(|at| state.failures.remove(at)) {
        return failed(failure);
    }
    if let Some(rest) = path.strip_prefix("/api/v4/") {
        return mercado(state, rest, &params);
    }
    if let Some(rest) = path.strip_prefix("/fx/") {
        let (status, body) = state.fx.route(rest, &params);
        return Reply {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
            stall: None,
        };
    }
    if let Some(rest) = path.strip_prefix("/v3/") {
        if !authorized {
            return Reply::json(401, &json!({"error": "Unauthorized", "timestamp": 0}));
        }
        if let Some(id) = rest
            .strip_prefix("assets/")
            .and_then(|r| r.strip_suffix("/history"))
        {
            let Some(points) = state.asset_history.get(id) else {
                return Reply::json(
                    404,
                    &json!({"error": format!("{id} not found"), "timestamp": 0}),
                );
            };
            let start: i64 = params
                .get("start")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let end: i64 = params
                .get("end")
                .and_then(|v| v.parse().ok())
                .unwrap_or(i64::MAX);
            let data: Vec<Value> = points
                .iter()
                .filter(|(t, _)| (start..=end).contains(t))
                .map(|(t, p)| json!({"priceUsd": p, "time": t}))
                .collect();
            return Reply::json(200, &json!({"data": data, "timestamp": 0}));
        }
        if rest == "assets" {
            let limit: usize = params
                .get("limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            let offset: usize = params
                .get("offset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let data: Vec<Value> = state
                .assets
                .iter()
                .skip(offset)
                .take(limit)
                .cloned()
                .collect();
            return Reply::json(
                200,
                &json!({"timestamp": 1_726_081_635_506i64, "data": data}),
            );
        }
    }
    Reply::json(404, &json!({"error": format!("{path} not found")}))
}

fn mercado(state: &ReplayState, rest: &str, params: &BTreeMap<&str, &str>) -> Reply {
    match rest {
        "symbols" => {
            let column = |f: fn(&(String, String, String, String)) -> &String| -> Vec<&String> {
                state.symbols.iter().map(f).collect()
            };
            Reply::json(
                200,
                &json!({
                    "symbol": column(|s| &s.0),
                    "type": column(|s| &s.1),
                    "base-currency": column(|s| &s.2),
                    "currency": column(|s| &s.3),
                }),
            )
        }
        "candles" => {
            let symbol = params.get("symbol").copied().unwrap_or_default();
            let from: i64 = params.get("from").and_then(|v| v.parse().ok()).unwrap_or(0);
            let to: i64 = params
                .get("to")
                .and_then(|v| v.parse().ok())
                .unwrap_or(i64::MAX);
            let rows: Vec<&(i64, [String; 5])> = state
                .candles
                .get(symbol)
                .into_iter()
                .flatten()
                .filter(|(t, _)| (from..=to).contains(t))
                .collect();
            let column =
                |i: usize| -> Vec<&str> { rows.iter().map(|(_, v)| v[i].as_str()).collect() };
            Reply::json(
                200,
                &json!({
                    "t": rows.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
                    "o": column(0), "h": column(1), "l": column(2), "c": column(3), "v": column(4),
                }),
            )
        }
        "tickers" => {
            let Some(symbols) = params.get("symbols").filter(|s| !s.is_empty()) else {
                return Reply::json(
                    400,
                    &json!({"code": "API|TICKERS|SYMBOLS_IS_REQUIRED", "message": "symbols is required"}),
                );
            };
            let rows: Vec<Value> = symbols
                .split(',')
                .filter_map(|symbol| {
                    let trades = state.trades.get(symbol)?;
                    let last = trades.last()?;
                    Some(json!({
                        "pair": symbol, "high": last.price, "low": last.price, "vol": "0",
                        "last": last.price, "buy": last.price, "sell": last.price,
                        "open": trades.first().map_or("0", |t| t.price.as_str()), "date": last.date,
                    }))
                })
                .collect();
            Reply::json(200, &Value::Array(rows))
        }
        _ => {
            let Some(symbol) = rest.strip_suffix("/trades") else {
                return Reply::json(404, &json!({"code": "API|NOT_FOUND", "message": rest}));
            };
            let Some(trades) = state.trades.get(symbol) else {
                return Reply::json(
                    400,
                    &json!({"code": "API|TRADES|INVALID_SYMBOL", "message": "invalid symbol"}),
                );
            };
            let limit: usize = params
                .get("limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000)
                .min(1000);
            let mut rows: Vec<&ReplayTrade> =
                match params.get("since").and_then(|v| v.parse::<i64>().ok()) {
                    // `since` includes the given tid here: the client must drop it.
                    Some(since) => trades
                        .iter()
                        .filter(|t| t.tid >= since)
                        .take(limit)
                        .collect(),
                    None => trades.iter().rev().take(limit).collect(),
                };
            if params.contains_key("since") {
                rows.sort_by_key(|t| t.tid);
            }
            let rows: Vec<Value> = rows.iter().map(|t| trade_json(t)).collect();
            Reply::json(200, &Value::Array(rows))
        }
    }
}

fn trade_json(t: &ReplayTrade) -> Value {
    if t.as_numbers {
        let number = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        json!({"amount": number(&t.amount), "date": t.date, "price": number(&t.price), "tid": t.tid, "type": t.side})
    } else {
        json!({"amount": t.amount, "date": t.date, "price": t.price, "tid": t.tid, "type": t.side})
    }
}

fn failed(failure: Failure) -> Reply {
    match failure {
        Failure::Status(status, code) => Reply::json(status, &json!({"code": code, "message": "replayed failure"})),
        Failure::CloudflareHtml => Reply {
            status: 403,
            content_type: "text/html",
            body: b"<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body>blocked</body></html>".to_vec(),
            stall: None,
        },
        Failure::Stall(duration) => Reply {
            stall: Some(duration),
            ..Reply::json(200, &json!([]))
        },
        Failure::CoinCapV2 => Reply::json(
            200,
            &json!({"data": {"message": "We are deprecating this version of the CoinCap API, please see https://coincap.io/api-pricing"}, "timestamp": 1}),
        ),
        Failure::Oversized(bytes) => {
            let row = r#"{"amount":"1","date":1,"price":"1","tid":1,"type":"buy"},"#;
            let mut body = String::from("[");
            while body.len() < bytes {
                body.push_str(row);
            }
            body.push_str(r#"{"amount":"1","date":1,"price":"1","tid":1,"type":"buy"}]"#);
            Reply { status: 200, content_type: "application/json", body: body.into_bytes(), stall: None }
        }
        Failure::Garbage => Reply { status: 200, content_type: "text/plain", body: b"ok".to_vec(), stall: None },
        Failure::Body(status, body) => Reply { status, content_type: "application/json", body: body.into_bytes(), stall: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_a_second_per_endpoint_and_500_a_minute_overall() {
        let mut limits = RateLimits::mercado(SimClock::accelerated(0, 1.0));
        assert!(limits.admit(0, Endpoint::Tickers));
        assert!(limits.admit(10, Endpoint::Trades), "another endpoint");
        assert!(!limits.admit(999, Endpoint::Tickers));
        assert!(
            limits.admit(1_000, Endpoint::Tickers),
            "a refused request does not count"
        );
        assert!(!limits.admit(500, Endpoint::Trades));
        assert_eq!(limits.refused(), 2);
        assert_eq!(limits.log.len(), 5);

        let mut limits = RateLimits {
            per_endpoint: Duration::ZERO,
            ..RateLimits::mercado(SimClock::accelerated(0, 1.0))
        };
        for i in 0..500 {
            assert!(limits.admit(i * 10, Endpoint::Other));
        }
        assert!(!limits.admit(5_000, Endpoint::Other), "501st in a minute");
        assert!(
            limits.admit(60_000, Endpoint::Other),
            "the first has left the minute"
        );
        assert_eq!(
            Endpoint::of("BTC-BRL/trades"),
            Endpoint::of("ETH-BRL/trades")
        );
        assert_eq!(Endpoint::of("tickers"), Endpoint::Tickers);
    }

    #[tokio::test]
    async fn the_server_answers_429_beyond_the_limit_and_all_trades_share_one() {
        // 1 simulated second = 200 ms.
        let state = ReplayState {
            limits: Some(RateLimits::mercado(SimClock::accelerated(0, 5.0))),
            ..ReplayState::default()
        };
        let server = ReplayServer::start(state).await.unwrap();
        server.publish_trade("A-BRL", 1, "1", "1", "buy");
        server.publish_trade("B-BRL", 1, "1", "1", "buy");
        let http = reqwest::Client::new();
        let get = |path: &str| http.get(format!("{}/{path}", server.mercado_base())).send();
        assert_eq!(get("A-BRL/trades").await.unwrap().status(), 200);
        let refused = get("B-BRL/trades").await.unwrap();
        assert_eq!(refused.status(), 429);
        assert!(
            refused
                .text()
                .await
                .unwrap()
                .contains("API|REQUEST_RATE_EXCEEDED")
        );
        assert_eq!(
            get("tickers?symbols=A-BRL").await.unwrap().status(),
            200,
            "another endpoint"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(get("B-BRL/trades").await.unwrap().status(), 200);
        let log = server.rate_log();
        assert_eq!(
            log.iter()
                .map(|r| (r.endpoint, r.refused))
                .collect::<Vec<_>>(),
            vec![
                (Endpoint::Trades, false),
                (Endpoint::Trades, true),
                (Endpoint::Tickers, false),
                (Endpoint::Trades, false),
            ]
        );
        assert!(log[3].at_ms - log[0].at_ms >= 1_000);
        // Without limits nothing is logged or refused.
        let free = ReplayServer::start(ReplayState::default()).await.unwrap();
        assert!(free.rate_log().is_empty());
    }
}
