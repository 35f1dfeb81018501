//! CoinCap v3 (API key required).

use crate::{
    Error, Result,
    http::{JsonClient, Received, RetryPolicy},
    models::{AssetPage, PriceHistory, PricePoint},
};

/// A client of one CoinCap base URL (the real one, or a replay server).
#[derive(Debug)]
pub struct CoinCap {
    base: String,
    client: JsonClient,
}

impl CoinCap {
    /// A client of `base` (e.g. `https://rest.coincap.io/v3`) with `api_key`.
    pub fn new(base: &str, api_key: &str, policy: RetryPolicy) -> Result<Self> {
        if api_key.trim().is_empty() {
            return Err(Error::NotConfigured(
                "COINCAP_API_KEY is empty: CoinCap v3 needs a key".to_string(),
            ));
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            client: JsonClient::new(
                policy,
                vec![("Authorization".into(), format!("Bearer {api_key}"))],
            ),
        })
    }

    /// Daily USD prices of asset `id` (e.g. `bitcoin`) between two unix
    /// millisecond times. An unknown id is CoinCap's 404, not retried.
    pub async fn daily_history(
        &self,
        id: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<PricePoint>> {
        let url = format!(
            "{}/assets/{id}/history?interval=d1&start={start_ms}&end={end_ms}",
            self.base
        );
        let history: PriceHistory = self.client.get("history", &url).await?;
        Ok(history.data)
    }

    /// One page of assets by rank, with the reply as received. The
    /// shut-down v2 API's notice (an object where the list belongs) is
    /// refused as a shape error naming it.
    pub async fn assets(&self, limit: usize, offset: usize) -> Result<Received<AssetPage>> {
        let url = format!("{}/assets?limit={limit}&offset={offset}", self.base);
        self.client.get_received("assets", &url).await.map_err(|e| match e {
            Error::Shape { endpoint, detail } if detail.contains("expected a sequence") => Error::Shape {
                endpoint,
                detail: format!(
                    "`data` is not an asset list (the retired CoinCap v2 answers this way; use the v3 URL): {detail}"
                ),
            },
            other => other,
        })
    }
}
