//! Raw HTTP/1.1 requests to a mock, and a `doctrove-mock` process that is killed when dropped.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// One answer: status, head (lower-cased) and JSON body (null when the body is not JSON).
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Value,
}

/// Sends one request with `Connection: close` and reads the answer (giving up after 10 s).
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect to the mock");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(raw.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    Answer {
        status: head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0),
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// An embeddings request for one input.
pub fn embed(addr: SocketAddr, path: &str, headers: &str) -> Answer {
    request(addr, "POST", path, headers, r#"{"model": "m", "input": "hello"}"#)
}

/// A `doctrove-mock` process, killed when dropped.
pub struct MockProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl MockProcess {
    /// Starts the built binary with `args` and `env`, and waits for its "listening on" line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> MockProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_doctrove-mock"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start doctrove-mock");
        let stdout = child.stdout.take().expect("the mock's stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the mock's first line");
        let url = line.trim().rsplit(' ').next().unwrap_or_default();
        let addr = url.trim_start_matches("http://").replace("0.0.0.0", "127.0.0.1");
        let addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("no address in the mock's first line: {line:?}"));
        MockProcess { child, addr }
    }

    /// Sends a signal to the process (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
