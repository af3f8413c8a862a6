//! Slow clients: a request head sent byte by byte is cut off after the header timeout while
//! other clients are answered meanwhile, an idle kept-alive connection is closed after the
//! idle timeout (not after the shorter header timeout), and a client that does not take its
//! answer is disconnected after the send timeout.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{body, connect, echo_server, exchange, read_all, read_one, status};
use http_endpoint::Limits;

fn limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

#[test]
fn a_head_sent_byte_by_byte_is_cut_off_while_others_are_answered() {
    let server = echo_server(limits());
    let mut slow = connect(server.addr());
    let started = Instant::now();
    let mut writer = slow.try_clone().expect("clone the stream");
    let trickle = std::thread::spawn(move || {
        let head = b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Padding: "
            .iter()
            .chain(std::iter::repeat(&b'a'));
        for byte in head.take(100) {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    let answer = exchange(server.addr(), b"GET /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(body(&answer)["url"], "/other", "{answer}");
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "the other client waited {:?}",
        asked.elapsed()
    );

    let answer = read_all(&mut slow);
    let cut_after = started.elapsed();
    assert!(!answer.contains("/slow"), "the slow request was served: {answer}");
    assert!(
        cut_after >= Duration::from_millis(700) && cut_after < Duration::from_millis(1700),
        "cut off after {cut_after:?}"
    );
    let _ = trickle.join();
}

#[test]
fn an_idle_connection_outlives_the_header_timeout_but_not_the_idle_timeout() {
    let server = echo_server(limits());
    let mut stream = connect(server.addr());
    stream.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
    assert_eq!(body(&read_one(&mut stream))["url"], "/first");
    std::thread::sleep(Duration::from_millis(1200));
    stream.write_all(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
    assert_eq!(body(&read_one(&mut stream))["url"], "/second");
    let idle = Instant::now();
    let rest = read_all(&mut stream);
    assert!(!rest.contains("HTTP/1.1 200"), "{rest}");
    assert!(
        idle.elapsed() >= Duration::from_millis(1800) && idle.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        idle.elapsed()
    );
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = echo_server(limits());
    let mut silent = connect(server.addr());
    let opened = Instant::now();
    let _ = read_all(&mut silent);
    assert!(
        opened.elapsed() < Duration::from_millis(1800),
        "closed after {:?}",
        opened.elapsed()
    );
}

#[test]
fn a_client_that_leaves_its_answer_unread_loses_its_connection() {
    let server = echo_server(Limits {
        max_connections: 1,
        send_timeout: Duration::from_millis(500),
        ..limits()
    });
    let mut stuck = connect(server.addr());
    stuck
        .write_all(b"GET /big/33554432 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(200));
    let quick = b"GET /quick HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_eq!(
        status(&exchange(server.addr(), quick)),
        503,
        "the unread answer's connection was not holding its place"
    );
    let waiting = Instant::now();
    while status(&exchange(server.addr(), quick)) != 200 {
        assert!(
            waiting.elapsed() < Duration::from_secs(3),
            "the unread answer kept its connection"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stuck);
}
