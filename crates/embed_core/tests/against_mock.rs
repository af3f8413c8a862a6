//! The HTTP client against the project's mock server: vectors, ordering, headers, and each
//! kind of failure.

use std::time::Duration;

use doctrove_mock::{vector_for, MockConfig, MockServer};
use embed_core::{embed, ApiConfig, ApiError};

fn start() -> MockServer {
    MockServer::start("127.0.0.1:0", MockConfig { default_dims: 8 }).unwrap()
}

fn config(mock: &MockServer, path: &str) -> ApiConfig {
    ApiConfig {
        base_url: format!("{}/{path}", mock.url()),
        api_key: "sk-test-key-123".into(),
        api_key_header: "Authorization".into(),
        model: "text-embedding-3-small".into(),
        dimensions: 0,
        timeout: Duration::from_secs(5),
    }
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn vectors_come_back_in_input_order_though_the_mock_answers_reversed() {
    let mock = start();
    let inputs = texts(&["Title: a", "Title: b", "Title: c"]);
    let got = embed(&config(&mock, "s=order/v1"), &inputs, Some(8)).unwrap();
    let want: Vec<Vec<f32>> = inputs.iter().map(|t| vector_for(t, 8)).collect();
    assert_eq!(got.vectors, want);
    let stats = mock.stats("order");
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["inputs"], 3);
    assert_eq!(stats["last_encoding_format"], "base64");
    assert_eq!(stats["last_auth"], "Authorization: Bearer sk-test-key-123");
}

#[test]
fn dimensions_are_sent_when_set() {
    let mock = start();
    let mut cfg = config(&mock, "s=dims/v1");
    cfg.dimensions = 4;
    let got = embed(&cfg, &texts(&["x"]), Some(4)).unwrap();
    assert_eq!(got.vectors[0], vector_for("x", 4));
    assert_eq!(mock.stats("dims")["last_dimensions"], 4);
}

#[test]
fn a_query_string_reaches_the_server_and_another_header_carries_the_bare_key() {
    let mock = start();
    let mut cfg = config(&mock, "s=azure/openai/deployments/e?api-version=2024-02-01");
    cfg.api_key_header = "api-key".into();
    embed(&cfg, &texts(&["x"]), None).unwrap();
    let stats = mock.stats("azure");
    assert_eq!(stats["last_query"], "api-version=2024-02-01");
    assert_eq!(stats["last_auth"], "api-key: sk-test-key-123");
}

#[test]
fn a_wrong_key_is_unauthorized_and_its_echo_is_redacted() {
    let mock = start();
    let err = embed(&config(&mock, "s=key/key=right/v1"), &texts(&["x"]), None).unwrap_err();
    match &err {
        ApiError::Unauthorized { status: 401, message } => assert!(message.contains("[redacted]"), "{message}"),
        other => panic!("expected 401, got {other:?}"),
    }
    assert!(!err.to_string().contains("sk-test-key-123"));
}

#[test]
fn status_codes_map_to_their_errors() {
    let mock = start();
    let cases = [
        (429, "RateLimited"),
        (500, "ServerError"),
        (503, "ServerError"),
        (400, "Rejected"),
        (403, "Unauthorized"),
    ];
    for (status, kind) in cases {
        let err = embed(&config(&mock, &format!("status={status}/v1")), &texts(&["x"]), None).unwrap_err();
        assert!(format!("{err:?}").starts_with(kind), "{status}: {err:?}");
    }
}

#[test]
fn a_429_carries_its_retry_after() {
    let mock = start();
    match embed(&config(&mock, "status=429/v1"), &texts(&["x"]), None).unwrap_err() {
        ApiError::RateLimited { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_millis(20))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_answers_are_refused() {
    let mock = start();
    for path in ["body=garbage/v1", "body=random/v1", "body=nodata/v1"] {
        let err = embed(&config(&mock, path), &texts(&["x", "y"]), Some(8)).unwrap_err();
        assert!(matches!(err, ApiError::Malformed(_)), "{path}: {err:?}");
    }
}

#[test]
fn answers_of_the_wrong_count_or_length_are_told_apart() {
    let mock = start();
    let err = embed(&config(&mock, "drop=1/v1"), &texts(&["x", "y"]), Some(8)).unwrap_err();
    assert!(matches!(err, ApiError::WrongShape { dimensions: false, .. }), "{err:?}");
    let err = embed(&config(&mock, "dimoff=1/v1"), &texts(&["x", "y"]), Some(8)).unwrap_err();
    assert!(matches!(err, ApiError::WrongShape { dimensions: true, .. }), "{err:?}");
}

#[test]
fn a_slow_answer_times_out() {
    let mock = start();
    let mut cfg = config(&mock, "latency=2000/v1");
    cfg.timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let err = embed(&cfg, &texts(&["x"]), None).unwrap_err();
    assert!(matches!(err, ApiError::Timeout { timeout_ms: 200, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[test]
fn a_closed_port_is_unreachable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cfg = ApiConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        api_key: String::new(),
        api_key_header: "Authorization".into(),
        model: "m".into(),
        dimensions: 0,
        timeout: Duration::from_secs(2),
    };
    let err = embed(&cfg, &texts(&["x"]), None).unwrap_err();
    assert!(matches!(err, ApiError::Unreachable { .. }), "{err:?}");
}
