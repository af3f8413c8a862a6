//! The rate limit of each endpoint, shared by the whole server: before each request a worker or
//! session takes its tokens and one request from the endpoint's buckets (for `default`,
//! `doctrove_embed.max_tokens_per_minute` and `.max_requests_per_minute`; for the others, the
//! endpoints file's limits), waiting (cancellably) while they are in debt; after the answer the
//! estimate is corrected with the API's count and its `x-ratelimit-remaining-*` headers.
//! Without shared memory (library not preloaded) there is no shared limit.

use std::time::Duration;

use embed_core::rate_limit::RateLimitHeaders;

use crate::http::endpoints::Endpoint;
use crate::pg::endpoint_state::{self, Ended};
use crate::pg::latch;

/// Longest single sleep while waiting, so settings and cancels are seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(200);

/// Waits until `tokens` and one request may be sent to `endpoint`, then takes them (and counts
/// the request in flight until [`answered`], [`retried`] or [`failed`]). `on_wait` is told when
/// the caller has to wait.
pub fn acquire(endpoint: &Endpoint, tokens: f64, on_wait: &mut dyn FnMut()) {
    let (tpm, rpm) = (endpoint.max_tokens_per_minute, endpoint.max_requests_per_minute);
    while let Some(wait) = endpoint_state::try_acquire(&endpoint.name, tpm, rpm, tokens) {
        on_wait();
        latch::sleep(wait.min(MAX_SLEEP));
    }
}

/// The request was answered: the estimate is corrected and the API's own figures followed.
pub fn answered(endpoint: &Endpoint, estimated: f64, actual: u64, headers: &RateLimitHeaders) {
    endpoint_state::finished(
        &endpoint.name,
        Ended::Answered {
            estimated,
            actual,
            headers,
        },
    );
}

/// The request failed and is tried again.
pub fn retried(endpoint: &Endpoint) {
    endpoint_state::finished(&endpoint.name, Ended::Retried);
}

/// The request failed for good: the endpoint rests.
pub fn failed(endpoint: &Endpoint) {
    endpoint_state::finished(&endpoint.name, Ended::Failed);
}
