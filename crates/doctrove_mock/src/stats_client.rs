//! Reads a running mock's counters over plain HTTP/1.0 (std only), for tests that run where no
//! HTTP client is linked, such as inside a PostgreSQL backend.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

/// `GET /stats/SCOPE` from the mock at `root` (`http://127.0.0.1:PORT`, any path after it ignored).
pub fn fetch_stats(root: &str, scope: &str) -> Result<Value, String> {
    let authority = root
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {root}"))?
        .split('/')
        .next()
        .unwrap_or_default();
    let mut stream = TcpStream::connect(authority).map_err(|e| format!("connect {authority}: {e}"))?;
    write!(stream, "GET /stats/{scope} HTTP/1.0\r\nHost: {authority}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or("no body in the answer")?;
    serde_json::from_str(body).map_err(|e| format!("stats are not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MockConfig, MockServer};

    #[test]
    fn stats_of_an_unused_scope_are_zero() {
        let mock = MockServer::start("127.0.0.1:0", MockConfig::default()).unwrap();
        let stats = fetch_stats(&format!("{}/v1", mock.url()), "nothing").unwrap();
        assert_eq!(stats["requests"], 0);
    }
}
