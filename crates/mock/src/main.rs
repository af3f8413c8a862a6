//! `doctrove-mock`: runs the mock embeddings server until killed.
//!
//! `doctrove-mock [--listen 127.0.0.1:18089] [--dims 1536]`

use doctrove_mock::{MockConfig, MockServer};
use std::io::Write;

fn main() {
    let mut listen = "127.0.0.1:18089".to_string();
    let mut config = MockConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--listen" => listen = value(),
            "--dims" => config.default_dims = value().parse().unwrap_or_else(|_| usage("--dims takes a number")),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if !http_endpoint::is_loopback(&listen) {
        usage("the mock listens on loopback addresses only");
    }
    let server = MockServer::start(&listen, config).unwrap_or_else(|e| {
        eprintln!("doctrove-mock: cannot listen on {listen}: {e}");
        std::process::exit(1)
    });
    println!("doctrove-mock listening on {}", server.url());
    let _ = std::io::stdout().flush();
    server.wait();
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("doctrove-mock: {problem}");
    }
    eprintln!("usage: doctrove-mock [--listen 127.0.0.1:PORT] [--dims N]");
    std::process::exit(2)
}
