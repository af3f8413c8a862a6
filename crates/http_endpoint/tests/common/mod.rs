//! A test server and a raw-socket client: what a test sends is exactly the bytes it writes.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use http_endpoint::{Limits, Reply, Server};
use serde_json::json;

/// A server that answers every request with what it received; `/sleep/MS` answers after MS
/// milliseconds, `/big/BYTES` with a body of that many bytes.
pub fn echo_server(limits: Limits) -> Server {
    Server::start_with("127.0.0.1:0", limits, |request| {
        if let Some(ms) = request.path().strip_prefix("/sleep/").and_then(|ms| ms.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if let Some(bytes) = request.path().strip_prefix("/big/").and_then(|n| n.parse().ok()) {
            return Reply::new(200, vec![b'b'; bytes]);
        }
        Reply::json(
            200,
            &json!({"method": request.method, "url": request.url, "body_bytes": request.body.len(),
                    "body": String::from_utf8_lossy(&request.body), "auth": request.header("authorization")}),
        )
    })
    .expect("start the server")
}

/// A connection with reads that give up after 10 seconds.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    stream
}

/// Sends `raw` on a new connection and reads until the server closes it (or 10 s pass).
/// Errors on either side end the exchange; what was read by then is returned.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = connect(addr);
    let _ = stream.write_all(raw);
    read_all(&mut stream)
}

/// Everything the server sends until it closes the connection (or 10 s pass).
pub fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads exactly one answer with a `content-length` from a kept-alive connection.
pub fn read_one(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return String::from_utf8_lossy(&head).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = stream.read_exact(&mut body);
    head + &String::from_utf8_lossy(&body)
}

/// The status code of a raw answer; 0 when there is none.
pub fn status(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The JSON body of a raw answer.
pub fn body(answer: &str) -> serde_json::Value {
    answer
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or_default()
}

/// A request with a `Content-Length` body and `Connection: close`.
pub fn post(path: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
