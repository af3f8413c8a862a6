//! The optional API key: without it or with a wrong one a request is answered 401
//! `invalid_api_key`; with it (as a bearer token or `api-key`) the request is served; `GET
//! /health` needs none.

mod common;

use common::{body, echo_server, exchange, post, status};
use http_endpoint::Limits;

fn keyed_server() -> http_endpoint::Server {
    echo_server(Limits {
        api_key: Some("s3cret-key".into()),
        ..Limits::default()
    })
}

#[test]
fn a_request_without_the_key_or_with_a_wrong_one_gets_401() {
    let server = keyed_server();
    for headers in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Bearer s3cret-ke\r\n",
        "api-key: s3cret-key2\r\n",
    ] {
        let answer = exchange(server.addr(), &post("/v1/embeddings", headers, "{}"));
        assert_eq!(status(&answer), 401, "{headers}: {answer}");
        assert_eq!(body(&answer)["error"]["code"], "invalid_api_key");
    }
}

#[test]
fn a_request_with_the_key_is_served() {
    let server = keyed_server();
    for headers in ["Authorization: Bearer s3cret-key\r\n", "api-key: s3cret-key\r\n"] {
        let answer = exchange(server.addr(), &post("/v1/embeddings", headers, "{}"));
        assert_eq!(status(&answer), 200, "{headers}: {answer}");
    }
}

#[test]
fn health_needs_no_key() {
    let server = keyed_server();
    let answer = exchange(server.addr(), b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(status(&answer), 200, "{answer}");
    let other = exchange(
        server.addr(),
        b"GET /v1/models HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&other), 401, "{other}");
}
