//! Attacks on the server's HTTP side, against a server holding the real model: a slowloris
//! client and an oversized body are cut off, and a normal embeddings request meanwhile gets the
//! right vector. Each attack appends `attack NAME worked=0|1` to `$DOCTROVE_SECURITY_LOG` when
//! that is set.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{cosine, model};
use doctrove_model::{handle, ServerState};
use http_endpoint::{Limits, Server};
use serde_json::{json, Value};

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BODY_BYTES: usize = 64 << 10;

/// A server on a free loopback port with short limits, sharing the test binary's model.
fn server_addr() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let dir = doctrove_model::model_dir_from_env();
        let state = Arc::new(ServerState::single(
            "all-MiniLM-L6-v2",
            doctrove_model::SentenceModel::load(&dir).expect("load the model"),
        ));
        let limits = Limits {
            header_read_timeout: HEADER_TIMEOUT,
            max_body_bytes: MAX_BODY_BYTES,
            ..Limits::default()
        };
        let server = Server::start_with("127.0.0.1:0", limits, move |request| handle(&state, request)).expect("start");
        let addr = server.addr();
        std::mem::forget(server); // serves until the test binary ends
        addr
    })
}

/// Records the attack's outcome in the security log, then fails the test if it worked.
fn report(attack: &str, outcome: Result<(), String>) {
    if let Some(path) = std::env::var_os("DOCTROVE_SECURITY_LOG") {
        let line = format!("attack {attack} worked={}\n", u8::from(outcome.is_err()));
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open the security log");
        log.write_all(line.as_bytes()).expect("write the security log");
    }
    if let Err(how) = outcome {
        panic!("attack {attack} worked: {how}");
    }
}

/// Sends `raw` on a new connection and reads until the server closes it (within 30 s).
fn exchange(raw: &[u8]) -> Result<String, String> {
    let mut stream = TcpStream::connect(server_addr()).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let _ = stream.write_all(raw);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn status(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A normal embeddings request for the first text of the reference fixture, checked against
/// the reference vector of an independent implementation.
fn normal_request_is_answered_correctly() -> Result<(), String> {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/reference.json")).map_err(|e| e.to_string())?;
    let text = fixture["texts"][0].as_str().ok_or("no text in the fixture")?;
    let reference: Vec<f32> = fixture["vectors"][0]
        .as_array()
        .ok_or("no vector in the fixture")?
        .iter()
        .filter_map(Value::as_f64)
        .map(|x| x as f32)
        .collect();
    let body = json!({"model": "all-MiniLM-L6-v2", "input": [text]}).to_string();
    let answer = exchange(
        format!(
            "POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )?;
    if status(&answer) != 200 {
        return Err(format!("the normal request was answered {answer:.300}"));
    }
    let json: Value = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .ok_or("no JSON body")?;
    let vector: Vec<f32> = json["data"][0]["embedding"]
        .as_array()
        .ok_or("no embedding")?
        .iter()
        .filter_map(Value::as_f64)
        .map(|x| x as f32)
        .collect();
    let similarity = cosine(&vector, &reference);
    if vector.len() != 384 || similarity < 0.999 {
        return Err(format!(
            "the normal request got a wrong vector ({} components, cosine {similarity})",
            vector.len()
        ));
    }
    let direct = model().embed(&[text.to_string()]).map_err(|e| e.to_string())?;
    if vector != direct.vectors[0] {
        return Err("the normal request's vector differs from the model's own".into());
    }
    Ok(())
}

/// Opens a connection that sends a request head one byte every 100 ms for up to 10 s, and
/// returns how long the server let it go on.
fn slowloris() -> std::thread::JoinHandle<Result<Duration, String>> {
    std::thread::spawn(|| {
        let mut stream = TcpStream::connect(server_addr()).map_err(|e| format!("connect: {e}"))?;
        let started = Instant::now();
        let head = b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nX-Slow: "
            .iter()
            .chain(std::iter::repeat(&b'a'));
        for byte in head.take(100) {
            if stream.write_all(&[*byte]).is_err() {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "the server kept a connection sending its head byte by byte for {:?}",
            started.elapsed()
        ))
    })
}

#[test]
fn slowloris_connections_are_cut_off_and_do_not_stop_a_normal_request() {
    let outcome = (|| {
        let slow: Vec<_> = (0..8).map(|_| slowloris()).collect();
        std::thread::sleep(Duration::from_millis(300));
        normal_request_is_answered_correctly()?;
        for connection in slow {
            let lasted = connection.join().map_err(|_| "a slowloris thread panicked")??;
            if lasted > HEADER_TIMEOUT * 4 {
                return Err(format!("a slow head was cut off only after {lasted:?}"));
            }
        }
        Ok(())
    })();
    report("slowloris", outcome);
}

#[test]
fn oversized_bodies_are_refused_and_do_not_stop_a_normal_request() {
    let outcome = (|| {
        let started = Instant::now();
        let declared = exchange(b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000000\r\n\r\n")?;
        if status(&declared) != 413 || started.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "a declared 10 GB body was answered {declared:.200} after {:?}",
                started.elapsed()
            ));
        }
        let mut chunked = b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "z".repeat(4096));
        for _ in 0..(MAX_BODY_BYTES / 4096 + 4) {
            chunked.extend_from_slice(chunk.as_bytes());
        }
        let answer = exchange(&chunked)?;
        if status(&answer) != 413 {
            return Err(format!("a chunked body over the limit was answered {answer:.200}"));
        }
        normal_request_is_answered_correctly()
    })();
    report("oversized_body", outcome);
}
