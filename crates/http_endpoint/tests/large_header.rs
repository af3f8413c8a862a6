//! A 1 MB request header is refused (431, or the connection closed) without the server
//! buffering it, and many headers are refused too.

mod common;

use std::io::Write;

use common::{connect, echo_server, exchange, read_all, status};
use http_endpoint::Limits;

/// The process's resident memory in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn a_one_megabyte_header_is_refused_without_growing_memory() {
    let server = echo_server(Limits::default());
    let mut raw = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    raw.resize(raw.len() + (1 << 20), b'a');
    raw.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        status(&exchange(
            server.addr(),
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )),
        200
    );
    let before = resident_kib();
    let mut stream = connect(server.addr());
    let mut writer = stream.try_clone().expect("clone the stream");
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&raw);
    });
    let answer = read_all(&mut stream);
    let _ = sender.join();
    let grown = resident_kib().saturating_sub(before);
    assert!(status(&answer) == 431 || answer.is_empty(), "{answer}");
    assert!(grown < 768, "the server grew by {grown} KiB reading a 1 MiB header");
}

#[test]
fn too_many_headers_are_refused() {
    let server = echo_server(Limits {
        max_headers: 8,
        ..Limits::default()
    });
    let headers: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = exchange(
        server.addr(),
        format!("GET / HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes(),
    );
    assert!(status(&answer) == 431 || answer.is_empty(), "{answer}");
}
