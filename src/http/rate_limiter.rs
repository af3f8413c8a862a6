//! The server-wide rate limit: before each request a worker or session takes its tokens and one
//! request from the shared buckets (`doctrove_embed.max_tokens_per_minute`,
//! `.max_requests_per_minute`), waiting (cancellably) while they are in debt; after the answer
//! the estimate is corrected with the API's count and its `x-ratelimit-remaining-*` headers.
//! Without shared memory (library not preloaded) there is no shared limit.

use std::time::Duration;

use embed_core::rate_limit::RateLimitHeaders;

use crate::pg::clock::unix_now_ms;
use crate::pg::{latch, shared_state};
use crate::settings::gucs;

/// Longest single sleep while waiting, so settings and cancels are seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(200);

fn limits() -> (f64, f64) {
    (
        f64::from(gucs::MAX_TOKENS_PER_MINUTE.get()),
        f64::from(gucs::MAX_REQUESTS_PER_MINUTE.get()),
    )
}

/// Waits until `tokens` and one request may be sent, then takes them. `on_wait` is told when
/// the caller has to wait.
pub fn acquire(tokens: f64, on_wait: &mut dyn FnMut()) {
    loop {
        let (tpm, rpm) = limits();
        if tpm <= 0.0 && rpm <= 0.0 {
            return;
        }
        let wait = shared_state::update(|s| {
            let now = unix_now_ms();
            let wait = s.token_bucket.wait(tpm, now).max(s.request_bucket.wait(rpm, now));
            if wait.is_none() {
                s.token_bucket.spend(tokens);
                s.request_bucket.spend(1.0);
            }
            wait
        })
        .flatten();
        match wait {
            None => return,
            Some(wait) => {
                on_wait();
                latch::sleep(wait.min(MAX_SLEEP));
            }
        }
    }
}

/// Corrects the token estimate of an answered request and follows the API's own figures.
pub fn settle(estimated: f64, actual: u64, headers: &RateLimitHeaders) {
    shared_state::update(|s| {
        if actual > 0 {
            s.token_bucket.settle(estimated, actual as f64);
        }
        if let (Some(remaining), Some(limit)) = (headers.remaining_tokens, headers.limit_tokens) {
            s.token_bucket.observe_remaining(remaining, limit);
        }
        if let (Some(remaining), Some(limit)) = (headers.remaining_requests, headers.limit_requests) {
            s.request_bucket.observe_remaining(remaining, limit);
        }
    });
}
