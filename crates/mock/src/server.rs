//! The HTTP side: an OpenAI-compatible `POST .../embeddings`, plus `GET /stats/SCOPE` and
//! `POST /reset/SCOPE` for tests.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::options::{parse_path, Options};
use crate::stats::Stats;
use crate::vectors::vector_for;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Vector length when neither the request (`dimensions`) nor the path (`dim=`) sets one.
    pub default_dims: usize,
    /// Requests answered at the same time; a slow request holds one thread.
    pub threads: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig { default_dims: 1536, threads: 32 }
    }
}

struct State {
    config: MockConfig,
    stats: Mutex<Stats>,
}

/// A running mock; dropping it stops the server.
pub struct MockServer {
    addr: SocketAddr,
    server: Arc<Server>,
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

impl MockServer {
    /// Listens on `bind` (such as `127.0.0.1:0` for any free port) and starts answering.
    pub fn start(bind: &str, config: MockConfig) -> io::Result<MockServer> {
        let server = Arc::new(Server::http(bind).map_err(io::Error::other)?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the mock listens on a unix socket"))?;
        let state = Arc::new(State { config: config.clone(), stats: Mutex::default() });
        let threads = (0..config.threads.max(1))
            .map(|_| {
                let server = Arc::clone(&server);
                let state = Arc::clone(&state);
                std::thread::spawn(move || {
                    while let Ok(request) = server.recv() {
                        handle(&state, request);
                    }
                })
            })
            .collect();
        Ok(MockServer { addr, server, state, threads })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters of one scope, as `GET /stats/SCOPE` answers them.
    pub fn stats(&self, scope: &str) -> Value {
        self.state.stats.lock().unwrap().json_of(scope)
    }

    /// Blocks until the server stops (it does not stop on its own).
    pub fn wait(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
    }
}

fn handle(state: &State, mut request: Request) {
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let response = match (request.method(), path.as_str()) {
        (Method::Post, p) if p.ends_with("/embeddings") => embeddings(state, &mut request, &url),
        (Method::Get, p) if p.starts_with("/stats/") => {
            let scope = &p["/stats/".len()..];
            json_response(200, &state.stats.lock().unwrap().json_of(scope))
        }
        (Method::Post, p) if p.starts_with("/reset/") => {
            state.stats.lock().unwrap().reset(&p["/reset/".len()..]);
            json_response(200, &json!({"reset": true}))
        }
        (Method::Get, "/health") => json_response(200, &json!({"status": "ok"})),
        _ => error_response(404, "not_found", &format!("no route for {path}")),
    };
    let _ = request.respond(response);
}

type Reply = Response<io::Cursor<Vec<u8>>>;

fn json_response(status: u16, body: &Value) -> Reply {
    Response::from_data(body.to_string().into_bytes())
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
}

fn error_response(status: u16, code: &str, message: &str) -> Reply {
    let kind = if status == 429 { "rate_limit_error" } else if status >= 500 { "server_error" } else { "invalid_request_error" };
    json_response(status, &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn request_header(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}

/// A number in [0, 1) fixed by the request's position in its scope, so fault rates repeat.
fn request_fraction(scope: &str, n: u64, salt: u64) -> f64 {
    let v = vector_for(&format!("{scope}#{n}#{salt}"), 1)[0];
    (f64::from(v) + 1.0) / 2.0
}

fn embeddings(state: &State, request: &mut Request, url: &str) -> Reply {
    let options = parse_path(url);
    let mut raw = Vec::new();
    let _ = request.as_reader().read_to_end(&mut raw);
    let auth = request_header(request, "authorization")
        .map(|v| format!("Authorization: {v}"))
        .or_else(|| request_header(request, "api-key").map(|v| format!("api-key: {v}")));
    let n = {
        let mut stats = state.stats.lock().unwrap();
        let scope = stats.scope(&options.scope);
        scope.requests += 1;
        scope.last_query = url.split_once('?').map(|(_, q)| q.to_string());
        scope.last_auth = auth.clone();
        scope.requests
    };
    if options.latency_ms > 0 {
        std::thread::sleep(Duration::from_millis(options.latency_ms));
    }
    if options.pslow > 0.0 && request_fraction(&options.scope, n, 7) < options.pslow {
        std::thread::sleep(Duration::from_millis(options.slow_ms));
    }
    let reply = answer(state, &options, &raw, auth.as_deref(), n);
    if reply.status_code().0 != 200 {
        state.stats.lock().unwrap().scope(&options.scope).failed += 1;
    }
    reply
}

fn answer(state: &State, options: &Options, raw: &[u8], auth: Option<&str>, n: u64) -> Reply {
    if let Some(key) = &options.key {
        let given = auth
            .and_then(|a| a.strip_prefix("Authorization: Bearer ").or_else(|| a.strip_prefix("api-key: ")))
            .unwrap_or("");
        if given != key {
            // Like the real API, the message quotes the key it was given.
            return error_response(401, "invalid_api_key", &format!("Incorrect API key provided: {given}."));
        }
    }
    if let Some(status) = options.status {
        let reply = error_response(status, "mock_status", &format!("The mock was told to answer {status}."));
        return if status == 429 { reply.with_header(header("retry-after-ms", "20")) } else { reply };
    }
    if options.p429 > 0.0 && request_fraction(&options.scope, n, 429) < options.p429 {
        return error_response(429, "rate_limit_exceeded", "Rate limit reached (mock).")
            .with_header(header("retry-after-ms", "20"));
    }
    if options.p500 > 0.0 && request_fraction(&options.scope, n, 500) < options.p500 {
        return error_response(500, "server_error", "The server had an error (mock).");
    }
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => return error_response(400, "invalid_json", &format!("We could not parse the JSON body: {e}")),
    };
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect()
        }
        _ => return error_response(400, "invalid_input", "'input' must be a string or an array of strings."),
    };
    if inputs.is_empty() || inputs.len() > 2048 {
        return error_response(400, "invalid_input", "'input' must hold 1 to 2048 items.");
    }
    if inputs.iter().any(|s| s.is_empty()) {
        return error_response(400, "invalid_input", "'$.input' is invalid: empty string.");
    }
    if let Some(poison) = &options.poison {
        if inputs.iter().any(|s| s.contains(poison.as_str())) {
            return error_response(400, "invalid_input", "Invalid 'input': the text was rejected.");
        }
    }
    let model = body["model"].as_str().unwrap_or("").to_string();
    let dimensions = body["dimensions"].as_u64();
    let encoding = body["encoding_format"].as_str().unwrap_or("float").to_string();
    let dims = dimensions.map(|d| d as usize).or(options.dims).unwrap_or(state.config.default_dims);
    let wrong_dims = options.wrong_dims || (options.pdimoff > 0.0 && request_fraction(&options.scope, n, 11) < options.pdimoff);
    let drop_one = options.drop_one || (options.pdrop > 0.0 && request_fraction(&options.scope, n, 13) < options.pdrop);
    let answered_dims = if wrong_dims { dims + 1 } else { dims };

    {
        let mut stats = state.stats.lock().unwrap();
        let scope = stats.scope(&options.scope);
        scope.answered += 1;
        scope.inputs += inputs.len() as u64;
        scope.max_inputs_per_request = scope.max_inputs_per_request.max(inputs.len() as u64);
        for text in &inputs {
            *scope.per_text.entry(text.clone()).or_default() += 1;
        }
        scope.last_model = Some(model.clone());
        scope.last_dimensions = dimensions;
        scope.last_encoding_format = Some(encoding.clone());
    }

    match options.body.as_deref() {
        Some("garbage") => return Response::from_data(b"<html>502 Bad Gateway</html>".to_vec()).with_status_code(200),
        Some("random") => {
            let seed = String::from_utf8_lossy(raw);
            let bytes: Vec<u8> = vector_for(&seed, 256).iter().map(|f| f.to_bits() as u8).collect();
            return Response::from_data(bytes).with_status_code(200);
        }
        Some("nodata") => return json_response(200, &json!({"object": "list", "model": model})),
        _ => {}
    }

    let mut order: Vec<usize> = (0..inputs.len()).collect();
    if !options.ascending {
        order.reverse();
    }
    if drop_one {
        order.pop();
    }
    let data: Vec<Value> = order
        .iter()
        .map(|&i| {
            let vector = vector_for(&inputs[i], answered_dims);
            let embedding = if encoding == "base64" {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|s| s.len().div_ceil(4)).sum();
    json_response(
        200,
        &json!({"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}
