//! Calling the embeddings API from a backend: on a helper thread, cancellable, with retries,
//! within the server-wide rate limit.

pub mod config;
pub mod endpoints;
pub mod failover;
pub mod off_thread;
pub mod query;
pub mod rate_limiter;
pub mod retries;
