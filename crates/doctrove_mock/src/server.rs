//! The HTTP side: an OpenAI-compatible `POST .../embeddings`, plus `GET /stats/SCOPE` and
//! `POST /reset/SCOPE` for tests, answered through the project's HTTP endpoint.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_endpoint::openai::{body_of, inputs_of};
use http_endpoint::{Limits, Reply, Request, Server};

use serde_json::{json, Value};

use crate::embeddings::embeddings_body;
use crate::limits::default_limits;
use crate::options::{parse_path, percent_encode, Options};
use crate::stats::Stats;
use crate::vectors::vector_for;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Vector length when neither the request (`dimensions`) nor the path (`dim=`) sets one.
    pub default_dims: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig { default_dims: 1536 }
    }
}

struct State {
    config: MockConfig,
    stats: Mutex<Stats>,
    batches: Mutex<crate::batch_api::BatchStore>,
    limits: Mutex<std::collections::HashMap<String, Allowance>>,
}

/// A scope's tokens and requests per minute: buckets that start full and refill continuously,
/// like the real API's limits.
struct Allowance {
    tokens: f64,
    requests: f64,
    at: std::time::Instant,
}

impl Allowance {
    /// Takes `tokens` and one request if both are there; otherwise the wait until they are.
    /// Also returns what is left, for the `x-ratelimit-remaining-*` headers.
    fn take(&mut self, options: &Options, tokens: f64) -> (Result<(), Duration>, f64, f64) {
        let (tpm, rpm) = (options.tpm as f64, options.rpm as f64);
        let minutes = self.at.elapsed().as_secs_f64() / 60.0;
        self.at = std::time::Instant::now();
        if tpm > 0.0 {
            self.tokens = (self.tokens + minutes * tpm).min(tpm);
        }
        if rpm > 0.0 {
            self.requests = (self.requests + minutes * rpm).min(rpm);
        }
        let short_tokens = if tpm > 0.0 && self.tokens < tokens {
            (tokens - self.tokens) / tpm
        } else {
            0.0
        };
        let short_requests = if rpm > 0.0 && self.requests < 1.0 {
            (1.0 - self.requests) / rpm
        } else {
            0.0
        };
        let wait = short_tokens.max(short_requests);
        if wait > 0.0 {
            return (Err(Duration::from_secs_f64(wait * 60.0)), self.tokens, self.requests);
        }
        self.tokens -= tokens;
        self.requests -= 1.0;
        (Ok(()), self.tokens, self.requests)
    }
}

/// A running mock; dropping it stops the server.
pub struct MockServer {
    server: Server,
    state: Arc<State>,
}

impl MockServer {
    /// Listens on `bind` (such as `127.0.0.1:0` for any free port) and starts answering, within
    /// the mock's default limits.
    pub fn start(bind: &str, config: MockConfig) -> io::Result<MockServer> {
        MockServer::start_with(bind, config, default_limits())
    }

    /// Listens on `bind` and starts answering within `limits`.
    pub fn start_with(bind: &str, config: MockConfig, limits: Limits) -> io::Result<MockServer> {
        let state = Arc::new(State {
            config,
            stats: Mutex::default(),
            batches: Mutex::default(),
            limits: Mutex::default(),
        });
        let server = {
            let state = Arc::clone(&state);
            Server::start_with(bind, limits, move |request| handle(&state, request))?
        };
        Ok(MockServer { server, state })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The counters of one scope, as `GET /stats/SCOPE` answers them.
    pub fn stats(&self, scope: &str) -> Value {
        self.state.stats.lock().unwrap().json_of(scope)
    }

    /// Stop gracefully on SIGTERM or SIGINT (for the mock's own process only).
    pub fn stop_on_signals(&self) -> io::Result<()> {
        self.server.stop_on_signals()
    }

    /// Blocks until the server stops: after a signal (see [`MockServer::stop_on_signals`]),
    /// otherwise never.
    pub fn wait(self) {
        self.server.wait()
    }
}

fn handle(state: &State, request: &Request) -> Reply {
    let path = request.path();
    match (request.method.as_str(), path) {
        // Any method: a client that follows a 302 comes back with a GET, and a test must see it
        // (and the key it carries) in the counters.
        (_, p) if p.ends_with("/embeddings") => embeddings(state, request, &request.url),
        ("GET", p) if p.starts_with("/stats/") => {
            let scope = &p["/stats/".len()..];
            Reply::json(200, &state.stats.lock().unwrap().json_of(scope))
        }
        ("POST", p) if p.starts_with("/reset/") => {
            state.stats.lock().unwrap().reset(&p["/reset/".len()..]);
            Reply::json(200, &json!({"reset": true}))
        }
        ("GET", "/health") => Reply::json(200, &json!({"status": "ok"})),
        _ => {
            let options = parse_path(&request.url);
            if let Some(refused) = key_refused(&options, auth_of(request).as_deref()) {
                return refused;
            }
            let reply = {
                let mut store = state.batches.lock().unwrap();
                let mut stats = state.stats.lock().unwrap();
                crate::batch_api::handle(&mut store, &mut stats, &options, request)
                    .unwrap_or_else(|| Reply::api_error(404, "not_found", &format!("no route for {path}")))
            };
            let held = (request.method == "POST" && path.ends_with("/batches")) || path.ends_with("/content");
            if held && options.batch_hold_ms > 0 {
                std::thread::sleep(Duration::from_millis(options.batch_hold_ms));
            }
            if request.method == "POST" && path.ends_with("/files") && options.upload_hold_ms > 0 {
                std::thread::sleep(Duration::from_millis(options.upload_hold_ms));
            }
            reply
        }
    }
}

/// `reply` with the numbers no real API sends in its headers (replacing any wait it carries).
fn with_absurd_headers(mut reply: Reply) -> Reply {
    reply
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case("retry-after-ms") && !name.starts_with("x-ratelimit"));
    reply
        .with_header("retry-after", "1e400")
        .with_header("retry-after-ms", "NaN")
        .with_header("x-ratelimit-limit-tokens", "inf")
        .with_header("x-ratelimit-remaining-tokens", "NaN")
        .with_header("x-ratelimit-limit-requests", "1e400")
        .with_header("x-ratelimit-remaining-requests", "-5")
}

/// A number in [0, 1) fixed by the request's position in its scope, so fault rates repeat.
fn request_fraction(scope: &str, n: u64, salt: u64) -> f64 {
    let v = vector_for(&format!("{scope}#{n}#{salt}"), 1)[0];
    (f64::from(v) + 1.0) / 2.0
}

fn embeddings(state: &State, request: &Request, url: &str) -> Reply {
    let options = parse_path(url);
    let raw = &request.body;
    let auth = auth_of(request);
    let n = {
        let mut stats = state.stats.lock().unwrap();
        let scope = stats.scope(&options.scope);
        scope.requests += 1;
        scope.last_query = url.split_once('?').map(|(_, q)| q.to_string());
        scope.last_auth = auth.clone();
        scope.requests_with_key += u64::from(auth.is_some());
        scope.requests
    };
    if let Some(port) = options.redirect {
        let location = format!(
            "http://127.0.0.1:{port}/s={}-redirected/v1/embeddings",
            percent_encode(&options.scope)
        );
        return Reply::new(302, Vec::new()).with_header("Location", &location);
    }
    if options.latency_ms > 0 {
        std::thread::sleep(Duration::from_millis(options.latency_ms));
    }
    if options.pslow > 0.0 && request_fraction(&options.scope, n, 7) < options.pslow {
        std::thread::sleep(Duration::from_millis(options.slow_ms));
    }
    let mut reply = answer(state, &options, raw, auth.as_deref(), n);
    if options.absurd {
        reply = with_absurd_headers(reply);
    }
    if reply.status != 200 {
        state.stats.lock().unwrap().scope(&options.scope).failed += 1;
    }
    reply
}

/// The request's key header as `name: value` (`Authorization` or `api-key`).
fn auth_of(request: &Request) -> Option<String> {
    request
        .header("authorization")
        .map(|v| format!("Authorization: {v}"))
        .or_else(|| request.header("api-key").map(|v| format!("api-key: {v}")))
}

/// The 401 for a request without the key `key=` asks for, if it lacks it.
fn key_refused(options: &Options, auth: Option<&str>) -> Option<Reply> {
    let key = options.key.as_ref()?;
    let given = auth
        .and_then(|a| {
            a.strip_prefix("Authorization: Bearer ")
                .or_else(|| a.strip_prefix("api-key: "))
        })
        .unwrap_or("");
    // Like the real API, the message quotes the key it was given.
    (given != key).then(|| Reply::api_error(401, "invalid_api_key", &format!("Incorrect API key provided: {given}.")))
}

fn answer(state: &State, options: &Options, raw: &[u8], auth: Option<&str>, n: u64) -> Reply {
    if let Some(refused) = key_refused(options, auth) {
        return refused;
    }
    if options.no_quota {
        return Reply::api_error(429, "insufficient_quota", "You exceeded your current quota (mock).");
    }
    if let Some(status) = options.status.filter(|_| n > options.status_from) {
        let reply = Reply::api_error(status, "mock_status", &format!("The mock was told to answer {status}."));
        return if status == 429 {
            reply.with_header("retry-after-ms", "20")
        } else {
            reply
        };
    }
    if options.p429 > 0.0 && request_fraction(&options.scope, n, 429) < options.p429 {
        return Reply::api_error(429, "rate_limit_exceeded", "Rate limit reached (mock).").with_header("retry-after-ms", "20");
    }
    if options.p500 > 0.0 && request_fraction(&options.scope, n, 500) < options.p500 {
        return Reply::api_error(500, "server_error", "The server had an error (mock).");
    }
    let body = match body_of(raw) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let inputs = match inputs_of(&body) {
        Ok(inputs) => inputs,
        Err(reply) => return reply,
    };
    if let Some(poison) = &options.poison {
        if inputs.iter().any(|s| s.contains(poison.as_str())) {
            return Reply::api_error(400, "invalid_input", "Invalid 'input': the text was rejected.");
        }
    }
    if let Some(fail) = &options.fail {
        if inputs.iter().any(|s| s.contains(fail.as_str())) {
            return Reply::api_error(500, "server_error", "The model failed on this request (mock).");
        }
    }
    let tokens: usize = inputs.iter().map(|s| s.len().div_ceil(4)).sum();
    let mut limit_headers = Vec::new();
    if options.tpm > 0 || options.rpm > 0 {
        let (taken, tokens_left, requests_left) = {
            let mut limits = state.limits.lock().unwrap();
            let allowance = limits.entry(options.scope.clone()).or_insert_with(|| Allowance {
                tokens: options.tpm as f64,
                requests: options.rpm as f64,
                at: std::time::Instant::now(),
            });
            allowance.take(options, tokens as f64)
        };
        if options.tpm > 0 {
            limit_headers.push(("x-ratelimit-limit-tokens".to_string(), options.tpm.to_string()));
            limit_headers.push((
                "x-ratelimit-remaining-tokens".to_string(),
                (tokens_left.max(0.0) as u64).to_string(),
            ));
        }
        if options.rpm > 0 {
            limit_headers.push(("x-ratelimit-limit-requests".to_string(), options.rpm.to_string()));
            limit_headers.push((
                "x-ratelimit-remaining-requests".to_string(),
                (requests_left.max(0.0) as u64).to_string(),
            ));
        }
        if let Err(wait) = taken {
            state.stats.lock().unwrap().scope(&options.scope).rate_limited += 1;
            let mut reply = Reply::api_error(429, "rate_limit_exceeded", "Rate limit reached for tokens per min (mock).")
                .with_header("retry-after-ms", &wait.as_millis().max(1).to_string());
            for (name, value) in limit_headers {
                reply = reply.with_header(&name, &value);
            }
            return reply;
        }
    }
    let model = body["model"].as_str().unwrap_or("").to_string();
    let dimensions = body["dimensions"].as_u64();
    let encoding = body["encoding_format"].as_str().unwrap_or("float").to_string();
    let dims = dimensions
        .map(|d| d as usize)
        .or(options.dims)
        .unwrap_or(state.config.default_dims);
    let wrong_dims = options.wrong_dims || (options.pdimoff > 0.0 && request_fraction(&options.scope, n, 11) < options.pdimoff);
    let drop_one = options.drop_one || (options.pdrop > 0.0 && request_fraction(&options.scope, n, 13) < options.pdrop);
    let answered_dims = if wrong_dims { dims + 1 } else { dims };

    {
        let mut stats = state.stats.lock().unwrap();
        let scope = stats.scope(&options.scope);
        scope.answered += 1;
        scope.inputs += inputs.len() as u64;
        scope.tokens += tokens as u64;
        scope.max_inputs_per_request = scope.max_inputs_per_request.max(inputs.len() as u64);
        for text in &inputs {
            *scope.per_text.entry(text.clone()).or_default() += 1;
        }
        scope.last_model = Some(model.clone());
        scope.last_dimensions = dimensions;
        scope.last_encoding_format = Some(encoding.clone());
    }

    match options.body.as_deref() {
        Some("garbage") => return Reply::new(200, b"<html>502 Bad Gateway</html>".to_vec()),
        Some("random") => {
            let seed = String::from_utf8_lossy(raw);
            let bytes: Vec<u8> = vector_for(&seed, 256).iter().map(|f| f.to_bits() as u8).collect();
            return Reply::new(200, bytes);
        }
        Some("nodata") => return Reply::json(200, &json!({"object": "list", "model": model})),
        _ => {}
    }

    let mut body = embeddings_body(
        &model,
        &inputs,
        answered_dims,
        encoding == "base64",
        options.ascending,
        tokens as u64,
    );
    if let (true, Some(data)) = (drop_one, body["data"].as_array_mut()) {
        data.pop();
    }
    let mut reply = Reply::json(200, &body);
    for (name, value) in limit_headers {
        reply = reply.with_header(&name, &value);
    }
    reply
}
