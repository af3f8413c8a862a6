//! What one server allows its clients: connections, queued handler calls, sizes, timeouts and
//! an optional API key.

use std::time::Duration;

/// The limits a [`crate::Server`] enforces. [`Limits::default`] suits a server on loopback; the
/// two binaries set their own numbers from their command lines.
#[derive(Clone)]
pub struct Limits {
    /// Open connections at once. One more is answered 503 and closed, without a thread or a
    /// request read.
    pub max_connections: usize,
    /// Handler calls that run at once, each on a thread of the server's blocking pool.
    pub handler_threads: usize,
    /// Handler calls running plus waiting for a thread. A request beyond it is answered 503
    /// with `Retry-After` and the code `server_busy`, as a busy API does.
    pub max_queue: usize,
    /// Largest request body. A larger declared `Content-Length` is refused with 413 before any
    /// of the body is read; a chunked body is refused once it passes the limit.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers); beyond it the answer is 431.
    pub max_header_bytes: usize,
    /// Most headers in one request; beyond it the answer is 431.
    pub max_headers: usize,
    /// Time a client has to send a whole request head, counted from its first byte (from the
    /// connection's opening for its first request). A slower client is disconnected.
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may sit without a new request before it is closed.
    pub idle_timeout: Duration,
    /// Time a client has to send a whole body once its head has arrived; beyond it the answer
    /// is 408.
    pub body_read_timeout: Duration,
    /// Time a client may leave an answer untaken (not one byte read) before the connection is
    /// closed.
    pub send_timeout: Duration,
    /// On shutdown, how long requests under way may take to finish before the server stops
    /// anyway.
    pub shutdown_grace: Duration,
    /// When set, every request except `GET /health` must carry `Authorization: Bearer KEY` or
    /// `api-key: KEY`; others are answered 401 with the code `invalid_api_key`.
    pub api_key: Option<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            handler_threads: 32,
            max_queue: 128,
            // OpenAI caps a request at 300,000 tokens: about 1.2 MB of text, a few times that as
            // escaped JSON.
            max_body_bytes: 32 << 20,
            max_header_bytes: 64 << 10,
            max_headers: 64,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            api_key: None,
        }
    }
}

impl std::fmt::Debug for Limits {
    /// Everything but the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("max_connections", &self.max_connections)
            .field("handler_threads", &self.handler_threads)
            .field("max_queue", &self.max_queue)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_headers", &self.max_headers)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .finish()
    }
}
