//! A small HTTP/1.1 server for the project's OpenAI-compatible endpoints: a thread per
//! connection, keep-alive, Content-Length bodies, one handler function for every request. The
//! mock and the local model server both answer through it, so every byte they send is under the
//! project's control and neither needs a web framework.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::{json, Value};

pub mod openai;

/// Largest request body accepted (2048 inputs of 8191 tokens fit with room to spare).
const MAX_BODY_BYTES: usize = 256 << 20;

/// One parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query string.
    pub url: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("")
    }

    /// The first header of that name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, body: Vec<u8>) -> Reply {
        Reply { status, headers: Vec::new(), body }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A JSON body.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::new(status, body.to_string().into_bytes()).with_header("Content-Type", "application/json")
    }

    /// An error in the OpenAI API's shape: `{"error": {"message", "type", "param", "code"}}`.
    pub fn api_error(status: u16, code: &str, message: &str) -> Reply {
        let kind = match status {
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        Reply::json(status, &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
    }
}

/// A running server; dropping it stops accepting connections.
pub struct Server {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `bind` (such as `127.0.0.1:0` for any free port) and answers every request with
    /// `handler`, each connection on a thread of its own.
    pub fn start<H>(bind: &str, handler: H) -> io::Result<Server>
    where
        H: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let acceptor = {
            let stopping = Arc::clone(&stopping);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        let handler = Arc::clone(&handler);
                        std::thread::spawn(move || serve_connection(stream, &*handler));
                    }
                }
            })
        };
        Ok(Server { addr, stopping, acceptor: Some(acceptor) })
    }

    /// `http://HOST:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until the server stops (it does not stop on its own).
    pub fn wait(mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Whether `listen` is a loopback address; both servers refuse anything else.
pub fn is_loopback(listen: &str) -> bool {
    listen.starts_with("127.") || listen.starts_with("localhost:") || listen.starts_with("[::1]:")
}

fn serve_connection(stream: TcpStream, handler: &dyn Fn(&Request) -> Reply) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    while let Some((request, close)) = read_request(&mut reader) {
        let reply = handler(&request);
        if write_reply(&mut writer, &reply, close).is_err() || close {
            return;
        }
    }
}

/// Reads one request; `None` at the end of the connection or on a malformed request.
fn read_request(reader: &mut impl BufRead) -> Option<(Request, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, url, version) = (parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    if length > MAX_BODY_BYTES {
        return None;
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let close = version == "HTTP/1.0" || headers.iter().any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
    Some((Request { method, url, headers, body }, close))
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_reply(stream: &mut impl Write, reply: &Reply, close: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\nContent-Length: {}\r\n", reply.status, reason_phrase(reply.status), reply.body.len());
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(if close { "Connection: close\r\n\r\n" } else { "Connection: keep-alive\r\n\r\n" });
    let mut out = head.into_bytes();
    out.extend_from_slice(&reply.body);
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_with_its_headers_and_body() {
        let raw = b"POST /v1/embeddings?x=1 HTTP/1.1\r\nContent-Length: 2\r\nAuthorization: Bearer k\r\n\r\n{}";
        let (request, close) = read_request(&mut &raw[..]).unwrap();
        assert_eq!((request.method.as_str(), request.path(), request.body.as_slice()), ("POST", "/v1/embeddings", &b"{}"[..]));
        assert_eq!(request.header("AUTHORIZATION"), Some("Bearer k"));
        assert!(!close);
    }

    #[test]
    fn http_1_0_and_connection_close_end_the_connection() {
        let (_, close) = read_request(&mut &b"GET / HTTP/1.0\r\n\r\n"[..]).unwrap();
        assert!(close);
        let (_, close) = read_request(&mut &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..]).unwrap();
        assert!(close);
    }

    #[test]
    fn a_truncated_body_is_no_request() {
        assert!(read_request(&mut &b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab"[..]).is_none());
    }

    #[test]
    fn a_reply_carries_length_headers_and_body() {
        let mut out = Vec::new();
        write_reply(&mut out, &Reply::api_error(429, "rate_limit_exceeded", "slow down").with_header("retry-after", "1"), false)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{text}");
        assert!(text.contains("retry-after: 1\r\n") && text.contains("Connection: keep-alive\r\n\r\n"), "{text}");
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn only_loopback_addresses_are_loopback() {
        assert!(is_loopback("127.0.0.1:80") && is_loopback("[::1]:80") && is_loopback("localhost:1"));
        assert!(!is_loopback("0.0.0.0:80") && !is_loopback("10.0.0.1:80"));
    }
}
