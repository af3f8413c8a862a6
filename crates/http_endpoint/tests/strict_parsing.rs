//! Requests a proxy and this server could read differently are refused: two different
//! `Content-Length` headers, a malformed length, a malformed request line.

mod common;

use common::{echo_server, exchange, status};
use http_endpoint::Limits;

#[test]
fn two_different_content_lengths_are_refused() {
    let server = echo_server(Limits::default());
    let raw = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc";
    let answer = exchange(server.addr(), raw);
    assert_eq!(status(&answer), 400, "{answer}");
}

#[test]
fn a_content_length_that_is_not_a_number_is_refused() {
    let server = echo_server(Limits::default());
    let answer = exchange(server.addr(), b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\nabc");
    assert_eq!(status(&answer), 400, "{answer}");
}

#[test]
fn a_malformed_request_line_is_refused() {
    let server = echo_server(Limits::default());
    let answer = exchange(server.addr(), b"GET  / HTTP/1.1 extra\r\nHost: t\r\n\r\n");
    assert_eq!(status(&answer), 400, "{answer}");
}
