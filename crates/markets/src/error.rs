//! The markets crate's error type.

/// What can go wrong talking to a market API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The upstream failed in a way a later try may not: 429, 5xx, a non-JSON
    /// body (Cloudflare's HTML 403), a timeout, a dropped connection.
    #[error("{endpoint}: upstream failure after {attempts} attempt(s): {detail}")]
    Upstream {
        /// The endpoint asked.
        endpoint: String,
        /// How many times it was asked.
        attempts: u32,
        /// The last failure.
        detail: String,
    },

    /// The API refused the request (a 4xx with its JSON error): retrying
    /// the same request will not help.
    #[error("{endpoint}: refused with HTTP {status}: {detail}")]
    Rejected {
        /// The endpoint asked.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The API's code and message.
        detail: String,
    },

    /// The reply was JSON but not the shape this API promises.
    #[error("{endpoint}: unexpected reply shape: {detail}")]
    Shape {
        /// The endpoint asked.
        endpoint: String,
        /// What did not fit.
        detail: String,
    },

    /// The reply was larger than any legitimate one.
    #[error("{endpoint}: reply larger than {limit} bytes refused")]
    TooLarge {
        /// The endpoint asked.
        endpoint: String,
        /// The limit.
        limit: usize,
    },

    /// The source is not configured (e.g. no CoinCap key).
    #[error("{0}")]
    NotConfigured(String),

    /// The request itself is wrong (a malformed currency code, a range that
    /// ends before it starts): refused before anything is sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// Whether a later run may succeed without a person's help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Upstream { .. })
    }
}

/// Result with the markets [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
