//! The mock's limits: many slow calls at once, since benchmarks drive it with up to 64 workers
//! and its `latency=` switch keeps each call on a thread while it sleeps.

use http_endpoint::Limits;

/// Open connections at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Calls answered at once; a request beyond them is answered 503 `server_busy`.
pub const DEFAULT_MAX_QUEUE: usize = 256;

/// Limits that let `max_queue` calls run at once (the mock's calls mostly sleep, so none wait
/// for a thread), on at most `max_connections` connections.
pub fn limits_for(max_connections: usize, max_queue: usize) -> Limits {
    // Batch input files reach 200 MB, as the real API takes.
    Limits {
        max_connections,
        max_queue,
        handler_threads: max_queue,
        max_body_bytes: 256 << 20,
        ..Limits::default()
    }
}

/// The limits of [`crate::MockServer::start`] and of `doctrove-mock` without options.
pub fn default_limits() -> Limits {
    limits_for(DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_QUEUE)
}
