//! Connections beyond the limit are answered 503 (or closed) at once, while the open ones
//! keep being served, and a closed connection's place is given to the next.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{body, connect, echo_server, exchange, read_one, status};
use http_endpoint::Limits;

fn ask(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .expect("write");
    read_one(stream)
}

const CLOSE: &[u8] = b"GET /new HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[test]
fn a_connection_beyond_the_limit_is_refused_while_the_open_ones_are_served() {
    let server = echo_server(Limits {
        max_connections: 2,
        ..Limits::default()
    });
    let mut first = connect(server.addr());
    let mut second = connect(server.addr());
    assert_eq!(body(&ask(&mut first, "/a"))["url"], "/a");
    assert_eq!(body(&ask(&mut second, "/b"))["url"], "/b");

    let asked = Instant::now();
    let refused = exchange(server.addr(), CLOSE);
    assert!(status(&refused) == 503 || refused.is_empty(), "{refused}");
    assert!(!refused.contains("/new"), "{refused}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "refusing took {:?}",
        asked.elapsed()
    );
    if status(&refused) == 503 {
        assert_eq!(body(&refused)["error"]["code"], "server_busy");
        assert!(refused.to_ascii_lowercase().contains("retry-after: 1"), "{refused}");
    }

    assert_eq!(body(&ask(&mut first, "/a2"))["url"], "/a2");
    assert_eq!(body(&ask(&mut second, "/b2"))["url"], "/b2");

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let answer = exchange(server.addr(), CLOSE);
        if body(&answer)["url"] == "/new" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a freed place was not given to a new connection: {answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
