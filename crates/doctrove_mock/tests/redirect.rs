//! The `redirect=PORT` switch: a 302 to `<scope>-redirected` at that port with no body work,
//! and the key headers each scope received, as the stats report them.

mod common;

use common::embed;
use doctrove_mock::{MockConfig, MockServer};

fn mock() -> MockServer {
    MockServer::start("127.0.0.1:0", MockConfig { default_dims: 4 }).expect("start the mock")
}

#[test]
fn redirect_answers_302_to_the_redirected_scope_at_that_port() {
    let mock = mock();
    let answer = embed(
        mock.addr(),
        "/s=rd1/redirect=18099/v1/embeddings",
        "Authorization: Bearer k1\r\n",
    );
    assert_eq!(answer.status, 302, "{}", answer.head);
    assert!(
        answer
            .head
            .contains("\r\nlocation: http://127.0.0.1:18099/s=rd1-redirected/v1/embeddings"),
        "{}",
        answer.head
    );
    assert!(answer.head.contains("content-length: 0"), "{}", answer.head);
    let stats = mock.stats("rd1");
    assert_eq!((stats["requests"].as_u64(), stats["answered"].as_u64()), (Some(1), Some(0)));
    assert_eq!(stats["last_auth"], "Authorization: Bearer k1");
}

#[test]
fn the_redirected_scope_records_whether_a_key_arrived() {
    let mock = mock();
    let first = embed(
        mock.addr(),
        &format!("/s=rd2/redirect={}/v1/embeddings", mock.addr().port()),
        "api-key: k2\r\n",
    );
    let location = first
        .head
        .split("location: ")
        .nth(1)
        .and_then(|l| l.lines().next())
        .expect("a location")
        .to_string();
    let path = location.trim_start_matches(&mock.url().to_ascii_lowercase()).to_string();
    assert_eq!(path, "/s=rd2-redirected/v1/embeddings");

    // A client that drops the key on a redirect.
    assert_eq!(embed(mock.addr(), &path, "").status, 200);
    let redirected = mock.stats("rd2-redirected");
    assert_eq!(
        (redirected["requests"].as_u64(), redirected["requests_with_key"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(redirected["last_auth"].is_null());

    // A client that forwards it.
    assert_eq!(embed(mock.addr(), &path, "api-key: k2\r\n").status, 200);
    let redirected = mock.stats("rd2-redirected");
    assert_eq!(redirected["requests_with_key"], 1);
    assert_eq!(redirected["last_auth"], "api-key: k2");
}
