//! Stopping a server lets the request under way finish, then refuses new connections.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{echo_server, exchange, status};
use http_endpoint::Limits;

#[test]
fn a_request_under_way_finishes_when_the_server_is_dropped() {
    let server = echo_server(Limits::default());
    let addr = server.addr();
    let under_way =
        std::thread::spawn(move || exchange(addr, b"GET /sleep/800 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    std::thread::sleep(Duration::from_millis(200));
    drop(server);
    let answer = under_way.join().expect("the request under way");
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still accepting after the stop"
    );
}
