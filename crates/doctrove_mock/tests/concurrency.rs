//! The mock serves 64 slow requests at once, as benchmarks with up to 64 workers need.

mod common;

use std::time::{Duration, Instant};

use common::embed;
use doctrove_mock::{MockConfig, MockServer};

#[test]
fn sixty_four_slow_requests_are_answered_side_by_side() {
    let mock = MockServer::start("127.0.0.1:0", MockConfig { default_dims: 4 }).expect("start the mock");
    let addr = mock.addr();
    let started = Instant::now();
    let calls: Vec<_> = (0..64)
        .map(|_| std::thread::spawn(move || embed(addr, "/s=wide/latency=600/v1/embeddings", "").status))
        .collect();
    let statuses: Vec<u16> = calls.into_iter().map(|c| c.join().expect("a call")).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "64 calls of 600 ms took {:?}",
        started.elapsed()
    );
    assert_eq!(mock.stats("wide")["answered"], 64);
}
