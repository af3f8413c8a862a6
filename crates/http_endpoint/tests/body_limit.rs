//! Body limits: a declared `Content-Length` over the limit is refused with 413 before any of
//! the body is sent; a chunked body is refused once it passes the limit; a body that stops
//! arriving is answered 408.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{body, connect, echo_server, exchange, read_all, status};
use http_endpoint::Limits;

fn limits() -> Limits {
    Limits {
        max_body_bytes: 1024,
        body_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    }
}

#[test]
fn a_declared_length_over_the_limit_is_refused_before_the_body_is_sent() {
    let server = echo_server(limits());
    // Only the head: the server must not wait for (or allocate) the ten gigabytes it declares.
    let answer = exchange(
        server.addr(),
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000000\r\n\r\n",
    );
    assert_eq!(status(&answer), 413, "{answer}");
    assert_eq!(body(&answer)["error"]["code"], "request_too_large");
}

#[test]
fn a_body_at_the_limit_is_accepted() {
    let server = echo_server(limits());
    let answer = exchange(server.addr(), &common::post("/", "", &"x".repeat(1024)));
    assert_eq!(body(&answer)["body_bytes"], 1024, "{answer}");
}

#[test]
fn a_chunked_body_over_the_limit_is_refused_once_it_passes_the_limit() {
    let server = echo_server(limits());
    let mut stream = connect(server.addr());
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect("write the head");
    // 1,200 bytes in chunks of 100, and no last chunk: the answer must come without one.
    for _ in 0..12 {
        let _ = stream.write_all(format!("64\r\n{}\r\n", "y".repeat(100)).as_bytes());
    }
    let answer = read_all(&mut stream);
    assert_eq!(status(&answer), 413, "{answer}");
    assert_eq!(body(&answer)["error"]["code"], "request_too_large");
}

#[test]
fn a_body_that_stops_arriving_is_answered_408() {
    let server = echo_server(limits());
    let mut stream = connect(server.addr());
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part")
        .expect("write");
    let answer = read_all(&mut stream);
    assert_eq!(status(&answer), 408, "{answer}");
}
