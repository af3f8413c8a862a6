//! The HTTP/1.1 side of the project's OpenAI-compatible endpoints (the mock and the local model
//! server): hyper on a tokio runtime of the server's own, one blocking handler function for every
//! request, run on a bounded pool of threads. It enforces [`Limits`] on connections, queued
//! calls, header and body sizes and slow clients, checks an optional API key, and stops
//! gracefully on SIGTERM or SIGINT when asked to.

mod api_key;
mod client_deadlines;
mod connection;
mod dispatch;
mod limits;
mod reply;
mod request;
mod server;

pub mod openai;

pub use limits::Limits;
pub use reply::Reply;
pub use request::Request;
pub use server::Server;

/// Whether `listen` is a loopback address. Both servers refuse anything else unless they
/// require an API key.
pub fn is_loopback(listen: &str) -> bool {
    listen.starts_with("127.") || listen.starts_with("localhost:") || listen.starts_with("[::1]:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_loopback() {
        assert!(is_loopback("127.0.0.1:80") && is_loopback("[::1]:80") && is_loopback("localhost:1"));
        assert!(!is_loopback("0.0.0.0:80") && !is_loopback("10.0.0.1:80"));
    }
}
