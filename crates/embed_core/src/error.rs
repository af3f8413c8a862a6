//! What can go wrong talking to the embeddings API, as one enum the extension maps to SQLSTATEs.

use std::time::Duration;

/// A failed embeddings request. Messages never hold the API key: the client removes it from
/// anything the API echoes back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// No HTTP answer at all: refused connection, unknown host, TLS failure, broken transfer.
    #[error("could not reach the embeddings API at {url}: {reason}")]
    Unreachable { url: String, reason: String },

    /// No complete answer within `doctrove_embed.request_timeout_ms`.
    #[error("the embeddings API at {url} did not answer within {timeout_ms} ms")]
    Timeout { url: String, timeout_ms: u64 },

    /// 401 or 403: the key is missing, wrong, or lacks access.
    #[error("the embeddings API refused the API key (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },

    /// 429: too many requests or tokens, or (code `insufficient_quota`) no quota left.
    #[error("the embeddings API is rate limiting (HTTP 429): {message}")]
    RateLimited {
        message: String,
        code: Option<String>,
        retry_after: Option<Duration>,
    },

    /// Any other 4xx: the API refused this request, typically for its input.
    #[error("the embeddings API rejected the request (HTTP {status}): {message}")]
    Rejected {
        status: u16,
        message: String,
        code: Option<String>,
    },

    /// 5xx: the API failed.
    #[error("the embeddings API failed (HTTP {status}): {message}")]
    ServerError {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },

    /// The API rejects every request, a one-word canary too: a setting is wrong (model,
    /// dimensions, endpoint), not a text.
    #[error("the embeddings API refuses every request, even a one-word one: {message}")]
    RefusesEverything { message: String },

    /// A 3xx answer. Redirects are never followed: the key would go wherever `Location` says.
    #[error("the embeddings API answered HTTP {status}, a redirect to {location}, which is not followed")]
    Redirected { status: u16, location: String },

    /// A well-formed 200 answer that is wrong for this request or column: another number of
    /// vectors than inputs, or vectors of another length than the column holds. Sending it again
    /// gives the same answer (and is billed again), so it is retried once at most.
    #[error("the embeddings API's answer does not fit: {problem}")]
    WrongShape { problem: String, dimensions: bool },

    /// A 200 answer that is not a valid embeddings response for this request.
    #[error("the embeddings API sent an invalid response: {0}")]
    Malformed(String),
}

impl ApiError {
    /// Whether sending the same request again may succeed (connection errors, timeouts,
    /// 408, 409, 429 other than an exhausted quota, 5xx, malformed answers).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } | ApiError::Timeout { .. } | ApiError::ServerError { .. } => true,
            ApiError::Malformed(_) => true,
            ApiError::RateLimited { code, .. } => code.as_deref() != Some("insufficient_quota"),
            ApiError::Rejected { status, .. } => matches!(status, 408 | 409),
            ApiError::Unauthorized { .. } | ApiError::Redirected { .. } | ApiError::RefusesEverything { .. } => false,
            ApiError::WrongShape { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_are_transient_but_an_exhausted_quota_is_not() {
        let limited = ApiError::RateLimited {
            message: "slow down".into(),
            code: None,
            retry_after: None,
        };
        let quota = ApiError::RateLimited {
            message: "no quota".into(),
            code: Some("insufficient_quota".into()),
            retry_after: None,
        };
        assert!(limited.is_transient());
        assert!(!quota.is_transient());
    }

    #[test]
    fn bad_input_and_bad_keys_are_not_transient() {
        let rejected = ApiError::Rejected {
            status: 400,
            message: "bad".into(),
            code: None,
        };
        let unauthorized = ApiError::Unauthorized {
            status: 401,
            message: "key".into(),
        };
        assert!(!rejected.is_transient());
        assert!(!unauthorized.is_transient());
    }
}
