//! A polite JSON client: at most one request per second per endpoint,
//! timeouts, retries with exponential backoff for what may heal (429, 5xx,
//! non-JSON bodies, timeouts), and no retry for what will not.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// The default gap between two requests to one endpoint: Mercado Bitcoin's
/// 1 request/s, plus 5 % because the API times arrivals, not departures. A
/// request that takes longer on the way than the next one arrives less than
/// a second before it when both leave exactly a second apart, and the API
/// answers 429 (`REQUEST_RATE_EXCEEDED`, without Retry-After).
pub const MIN_INTERVAL: Duration = Duration::from_millis(1_050);

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Wait after the first failure; doubles each time.
    pub first_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Minimum gap between two requests to one endpoint.
    pub min_interval: Duration,
    /// Largest body accepted.
    pub max_body: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            timeout: Duration::from_secs(10),
            min_interval: MIN_INTERVAL,
            max_body: 16 << 20,
        }
    }
}

/// Spaces requests per endpoint.
#[derive(Debug, Default)]
struct RateLimiter {
    next: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// Waits until `endpoint` may be asked again, and books the next slot.
    async fn wait(&self, endpoint: &str, interval: Duration) {
        let now = Instant::now();
        let slot = {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            let slot = next
                .get(endpoint)
                .copied()
                .filter(|t| *t > now)
                .unwrap_or(now);
            next.insert(endpoint.to_string(), slot + interval);
            slot
        };
        if slot > now {
            tokio::time::sleep_until(slot.into()).await;
            // A late wake-up must not shorten the gap to the next request:
            // book it a full interval after this one really goes out.
            let sent = Instant::now();
            if let Ok(mut next) = self.next.lock() {
                let booked = next.entry(endpoint.to_string()).or_insert(sent);
                *booked = (*booked).max(sent + interval);
            }
        }
    }
}

/// A reply decoded, with its body byte for byte as received (what the raw
/// lake keeps).
#[derive(Debug, Clone)]
pub struct Received<T> {
    /// The body as it came off the wire.
    pub body: Vec<u8>,
    /// The body decoded.
    pub value: T,
}

/// The shared client of one market source.
#[derive(Debug)]
pub struct JsonClient {
    http: reqwest::Client,
    limiter: RateLimiter,
    policy: RetryPolicy,
    headers: Vec<(String, String)>,
}

enum Attempt {
    Retry(String),
    Fail(Error),
}

impl JsonClient {
    /// A client with `policy`, sending `headers` on every request.
    pub fn new(policy: RetryPolicy, headers: Vec<(String, String)>) -> Self {
        Self {
            http: reqwest::Client::new(),
            limiter: RateLimiter::default(),
            policy,
            headers,
        }
    }

    /// GETs `url` (rate-limited as `endpoint`) and decodes its JSON body.
    pub async fn get<T: DeserializeOwned>(&self, endpoint: &str, url: &str) -> Result<T> {
        self.get_decoded(endpoint, url, |body| serde_json::from_slice(body))
            .await
    }

    /// [`JsonClient::get`], also returning the body byte for byte as
    /// received, for sources kept as received in the raw lake.
    pub async fn get_received<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        url: &str,
    ) -> Result<Received<T>> {
        self.get_decoded(endpoint, url, |body| {
            serde_json::from_slice(body).map(|value| Received {
                body: body.to_vec(),
                value,
            })
        })
        .await
    }

    /// GETs `url` with every retry rule, then `decode`s the body of a
    /// successful reply; a decoding error is a [`Error::Shape`] (not retried).
    async fn get_decoded<T>(
        &self,
        endpoint: &str,
        url: &str,
        decode: impl Fn(&[u8]) -> serde_json::Result<T>,
    ) -> Result<T> {
        let mut backoff = self.policy.first_backoff;
        let mut last = String::new();
        for attempt in 1..=self.policy.attempts.max(1) {
            self.limiter.wait(endpoint, self.policy.min_interval).await;
            match self.attempt(endpoint, url, &decode).await {
                Ok(value) => return Ok(value),
                Err(Attempt::Fail(error)) => return Err(error),
                Err(Attempt::Retry(detail)) => {
                    tracing::warn!(endpoint, attempt, detail = %detail, "market request failed; retrying");
                    last = detail;
                }
            }
            if attempt < self.policy.attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.policy.max_backoff);
            }
        }
        Err(Error::Upstream {
            endpoint: endpoint.to_string(),
            attempts: self.policy.attempts,
            detail: last,
        })
    }

    async fn attempt<T>(
        &self,
        endpoint: &str,
        url: &str,
        decode: &impl Fn(&[u8]) -> serde_json::Result<T>,
    ) -> Result<T, Attempt> {
        let mut request = self.http.get(url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = match tokio::time::timeout(self.policy.timeout, request.send()).await {
            Err(_) => {
                return Err(Attempt::Retry(format!(
                    "no answer within {:?}",
                    self.policy.timeout
                )));
            }
            Ok(Err(e)) => return Err(Attempt::Retry(format!("request failed: {e}"))),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let body =
            match tokio::time::timeout(self.policy.timeout, self.read_body(endpoint, response))
                .await
            {
                Err(_) => return Err(Attempt::Retry("body not received in time".to_string())),
                Ok(body) => body?,
            };
        let looks_like_json = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{' || *b == b'[');
        if status == 429 || status >= 500 {
            return Err(Attempt::Retry(format!("HTTP {status}: {}", snippet(&body))));
        }
        if !looks_like_json {
            // Cloudflare answers with an HTML page: an upstream failure, not a parse bug.
            return Err(Attempt::Retry(format!(
                "HTTP {status} with a non-JSON body: {}",
                snippet(&body)
            )));
        }
        if status >= 400 {
            return Err(Attempt::Fail(Error::Rejected {
                endpoint: endpoint.to_string(),
                status,
                detail: snippet(&body),
            }));
        }
        decode(&body).map_err(|e| {
            Attempt::Fail(Error::Shape {
                endpoint: endpoint.to_string(),
                detail: format!("{e}; body starts {}", snippet(&body)),
            })
        })
    }

    async fn read_body(
        &self,
        endpoint: &str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, Attempt> {
        let limit = self.policy.max_body;
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(Attempt::Fail(Error::TooLarge {
                            endpoint: endpoint.to_string(),
                            limit,
                        }));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => return Err(Attempt::Retry(format!("body cut off: {e}"))),
            }
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(160)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
