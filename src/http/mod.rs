//! Calling the embeddings API from a backend: on a helper thread, cancellable, with retries,
//! within the server-wide rate limit.

pub mod api_call;
pub mod rate_limiter;
