//! SIGTERM and SIGINT stop `doctrove-mock` gracefully: the request under way is answered, new
//! connections are refused, and the process exits 0.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{embed, MockProcess};

fn stops_gracefully_on(signal: &str) {
    let mut mock = MockProcess::start(&["--listen", "127.0.0.1:0", "--dims", "2"], &[]);
    let addr = mock.addr;
    let under_way = std::thread::spawn(move || embed(addr, "/s=term/latency=1500/v1/embeddings", ""));
    std::thread::sleep(Duration::from_millis(400));
    mock.signal(signal);

    let answer = under_way.join().expect("the request under way");
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.body["data"][0]["embedding"].as_array().map(Vec::len), Some(2));

    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = mock.child.try_wait().expect("poll the mock") {
            break status;
        }
        assert!(Instant::now() < deadline, "the mock did not exit after SIG{signal}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(TcpStream::connect(addr).is_err(), "the mock still accepts connections");
}

#[test]
fn sigterm_lets_the_request_under_way_finish_and_exits_0() {
    stops_gracefully_on("TERM");
}

#[test]
fn sigint_does_the_same() {
    stops_gracefully_on("INT");
}
