//! A full queue of handler calls is answered 503 with `Retry-After` and an OpenAI-shaped
//! `server_busy` error, and the calls already queued are still answered.

mod common;

use std::time::Duration;

use common::{body, echo_server, exchange, status};
use http_endpoint::Limits;

const SLOW: &[u8] = b"GET /sleep/1500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
const QUICK: &[u8] = b"GET /quick HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[test]
fn a_request_beyond_a_full_queue_gets_503_with_retry_after() {
    let server = echo_server(Limits {
        handler_threads: 1,
        max_queue: 2,
        ..Limits::default()
    });
    let addr = server.addr();
    // One call running, one waiting for the only thread: the queue is full.
    let queued: Vec<_> = (0..2).map(|_| std::thread::spawn(move || exchange(addr, SLOW))).collect();
    std::thread::sleep(Duration::from_millis(400));

    let busy = exchange(addr, QUICK);
    assert_eq!(status(&busy), 503, "{busy}");
    assert!(busy.to_ascii_lowercase().contains("retry-after: 1\r\n"), "{busy}");
    let error = &body(&busy)["error"];
    assert_eq!(
        (error["code"].as_str(), error["type"].as_str()),
        (Some("server_busy"), Some("server_error"))
    );

    for call in queued {
        let answer = call.join().expect("a queued call");
        assert_eq!(status(&answer), 200, "{answer}");
    }
    assert_eq!(status(&exchange(addr, QUICK)), 200);
}
