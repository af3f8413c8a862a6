//! Requests and answers through a real socket: method, target, headers and body reach the
//! handler; answers carry their status, headers and length; keep-alive, `Connection: close`
//! and chunked bodies work.

mod common;

use std::io::Write;

use common::{body, connect, echo_server, exchange, post, read_all, read_one, status};
use http_endpoint::{Limits, Reply, Server};

#[test]
fn a_request_reaches_the_handler_with_its_target_headers_and_body() {
    let server = echo_server(Limits::default());
    let answer = exchange(
        server.addr(),
        &post("/v1/embeddings?x=1", "Authorization: Bearer k\r\n", "{}"),
    );
    assert_eq!(status(&answer), 200, "{answer}");
    let echoed = body(&answer);
    assert_eq!(
        (echoed["method"].as_str(), echoed["url"].as_str()),
        (Some("POST"), Some("/v1/embeddings?x=1"))
    );
    assert_eq!(
        (echoed["auth"].as_str(), echoed["body"].as_str()),
        (Some("Bearer k"), Some("{}"))
    );
}

#[test]
fn an_answer_carries_its_status_headers_and_length() {
    let server = Server::start("127.0.0.1:0", |_| {
        Reply::api_error(429, "rate_limit_exceeded", "slow down").with_header("retry-after", "1")
    })
    .expect("start");
    let answer = exchange(server.addr(), b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{answer}");
    assert!(
        answer.contains("retry-after: 1\r\n") && answer.contains("content-length: "),
        "{answer}"
    );
    assert_eq!(body(&answer)["error"]["code"], "rate_limit_exceeded");
}

#[test]
fn a_kept_alive_connection_serves_several_requests_until_connection_close() {
    let server = echo_server(Limits::default());
    let mut stream = connect(server.addr());
    for n in 0..3 {
        write!(stream, "GET /n/{n} HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
        let answer = read_one(&mut stream);
        assert_eq!(body(&answer)["url"], format!("/n/{n}"), "{answer}");
    }
    write!(stream, "GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").expect("write");
    let answer = read_all(&mut stream);
    assert_eq!(body(&answer)["url"], "/last", "{answer}");
}

#[test]
fn http_1_0_is_answered_and_closed() {
    let server = echo_server(Limits::default());
    let answer = exchange(server.addr(), b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(body(&answer)["url"], "/old", "{answer}");
}

#[test]
fn a_chunked_body_is_read_whole() {
    let server = echo_server(Limits::default());
    let raw = b"POST /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
    let answer = exchange(server.addr(), raw);
    assert_eq!(body(&answer)["body"], "abcdefg", "{answer}");
}

#[test]
fn a_handler_that_panics_is_answered_500_and_the_server_goes_on() {
    let server = Server::start("127.0.0.1:0", |request| {
        assert!(request.path() != "/panic", "the handler was told to panic");
        Reply::new(204, Vec::new())
    })
    .expect("start");
    let raw = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes();
    assert_eq!(status(&exchange(server.addr(), &raw("/panic"))), 500);
    assert_eq!(status(&exchange(server.addr(), &raw("/fine"))), 204);
}
