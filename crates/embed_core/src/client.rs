//! One embeddings request over HTTP (ureq): send the inputs, map every failure to an
//! [`ApiError`], decode the answer. Blocking; the extension runs it off the main thread so a
//! cancel is seen while it waits.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::bounds::{cut_message, max_answer_bytes, MAX_MESSAGE_CHARS};
use crate::error::ApiError;
use crate::rate_limit::RateLimitHeaders;
use crate::request::{auth_header, endpoint_url, request_body};
use crate::response::{api_error_message, decode_embeddings, Embeddings};

/// Where and how to call the API; a snapshot of the settings, taken before each request.
#[derive(Clone, PartialEq)]
pub struct ApiConfig {
    pub base_url: String,
    pub api_key: String,
    pub api_key_header: String,
    pub model: String,
    /// Sent as `dimensions` when greater than 0.
    pub dimensions: u32,
    pub timeout: Duration,
}

impl std::fmt::Debug for ApiConfig {
    // The key is left out, so a config printed in a log or panic holds no secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("base_url", &display_url(&self.base_url))
            .field("api_key", &if self.api_key.is_empty() { "(none)" } else { "(set)" })
            .field("api_key_header", &self.api_key_header)
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The URL without any `user:password@` part, for messages.
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Removes the key from text the API sent back (some APIs quote the key they refused), and
/// cuts it to [`MAX_MESSAGE_CHARS`].
pub fn redact(text: &str, api_key: &str) -> String {
    let text = cut_message(text, MAX_MESSAGE_CHARS + api_key.len());
    let text = if api_key.len() < 4 {
        text
    } else {
        text.replace(api_key, "[redacted]")
    };
    cut_message(&text, MAX_MESSAGE_CHARS)
}

/// The scheme, host and port of a `Location` header, for a message (never its path or query,
/// which could hold anything).
pub fn location_host(location: Option<&str>) -> String {
    let Some(location) = location else {
        return "(no Location header)".into();
    };
    let Some((scheme, rest)) = location.split_once("://") else {
        return "a relative location".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    cut_message(&format!("{scheme}://{host}"), 200)
}

/// Longest wait the API can ask for; a larger `retry-after` is cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// A wait in seconds from the network: `None` unless it is a finite number of at least 0;
/// capped at [`MAX_RETRY_AFTER`].
fn bounded_seconds(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())))
}

/// How long the API asks to wait: `retry-after-ms` (milliseconds) or `retry-after`
/// (seconds, or an HTTP date, read relative to `now_unix`), at most [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(retry_after_ms: Option<&str>, retry_after: Option<&str>, now_unix: u64) -> Option<Duration> {
    if let Some(wait) = retry_after_ms
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|ms| bounded_seconds(ms / 1000.0))
    {
        return Some(wait);
    }
    let value = retry_after?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return bounded_seconds(seconds);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let when = when.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(when.saturating_sub(now_unix)).min(MAX_RETRY_AFTER))
}

/// One agent per timeout, kept so connections (and TLS sessions) are reused between batches.
pub(crate) fn agent_for(timeout: Duration) -> ureq::Agent {
    static AGENT: OnceLock<Mutex<Option<(Duration, ureq::Agent)>>> = OnceLock::new();
    let mut slot = AGENT.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some((t, agent)) = slot.as_ref() {
        if *t == timeout {
            return agent.clone();
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        // A redirect would carry the key to whatever host `Location` names: never follow one.
        .max_redirects(0)
        .user_agent(concat!("doctrove_embed/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    *slot = Some((timeout, agent.clone()));
    agent
}

pub(crate) fn transport_error(error: ureq::Error, config: &ApiConfig) -> ApiError {
    let url = display_url(&config.base_url);
    let timeout_ms = config.timeout.as_millis() as u64;
    match error {
        ureq::Error::Timeout(_) => ApiError::Timeout { url, timeout_ms },
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ApiError::Timeout { url, timeout_ms },
        ureq::Error::HostNotFound => ApiError::Unreachable {
            url,
            reason: "the host name was not found".into(),
        },
        ureq::Error::BadUri(_) => ApiError::Unreachable {
            url,
            reason: "the URL is not valid".into(),
        },
        other => ApiError::Unreachable {
            url,
            reason: redact(&other.to_string(), &config.api_key),
        },
    }
}

/// Sends `inputs` in one request and returns their vectors in input order. `expected_dims`,
/// when set, is the length every vector must have.
pub fn embed(config: &ApiConfig, inputs: &[String], expected_dims: Option<usize>) -> Result<Embeddings, ApiError> {
    let url = endpoint_url(&config.base_url);
    let body = request_body(&config.model, inputs, config.dimensions);
    let request = with_key(
        config,
        agent_for(config.timeout)
            .post(&url)
            .header("Content-Type", "application/json"),
    );
    let response = request.send(&body[..]).map_err(|e| transport_error(e, config))?;
    let limit = max_answer_bytes(inputs.len(), expected_dims);
    let (bytes, rate_limits) = read_answer(config, response, limit, |status| status == 200)?;
    let mut answer = decode_embeddings(&bytes, inputs.len(), expected_dims).map_err(ApiError::from)?;
    answer.rate_limits = rate_limits;
    Ok(answer)
}

/// `request` with the API key header of `config`, if a key is set.
pub(crate) fn with_key<B>(config: &ApiConfig, mut request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
    if let Some((name, value)) = auth_header(&config.api_key_header, &config.api_key) {
        request = request.header(name.as_str(), value.as_str());
    }
    request
}

/// Reads an HTTP answer, for every call the clients make: a 3xx is [`ApiError::Redirected`]
/// (its body unread); otherwise the body is read, at most `limit` bytes, and returned with the
/// `x-ratelimit-*` headers when `ok(status)`; any other status is the error it means.
pub(crate) fn read_answer(
    config: &ApiConfig,
    mut response: ureq::http::Response<ureq::Body>,
    limit: u64,
    ok: impl Fn(u16) -> bool,
) -> Result<(Vec<u8>, RateLimitHeaders), ApiError> {
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    if (300..400).contains(&status) {
        return Err(ApiError::Redirected {
            status,
            location: location_host(header("location").as_deref()),
        });
    }
    let (retry_ms, retry_s) = (header("retry-after-ms"), header("retry-after"));
    let rate_limits = RateLimitHeaders::read(header);
    let bytes = response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| transport_error(e, config))?;
    if ok(status) {
        return Ok((bytes, rate_limits));
    }
    Err(error_answer(config, status, &bytes, retry_ms.as_deref(), retry_s.as_deref()))
}

/// The error an answer of `status` (not 2xx, not 3xx) with `body` means.
fn error_answer(config: &ApiConfig, status: u16, body: &[u8], retry_ms: Option<&str>, retry_s: Option<&str>) -> ApiError {
    let (message, code) = api_error_message(body);
    let message = redact(&message, &config.api_key);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let retry_after = parse_retry_after(retry_ms, retry_s, now);
    match status {
        401 | 403 => ApiError::Unauthorized { status, message },
        429 => ApiError::RateLimited {
            message,
            code,
            retry_after,
        },
        500..=599 => ApiError::ServerError {
            status,
            message,
            retry_after,
        },
        _ => ApiError::Rejected { status, message, code },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_not_displayed() {
        assert_eq!(display_url("https://u:p@host:1/v1"), "https://host:1/v1");
        assert_eq!(display_url("https://host/v1?a=b@c"), "https://host/v1?a=b@c");
    }

    #[test]
    fn the_key_is_removed_from_echoed_messages() {
        assert_eq!(
            redact("Incorrect API key provided: sk-secret.", "sk-secret"),
            "Incorrect API key provided: [redacted]."
        );
    }

    #[test]
    fn the_debug_form_of_a_config_hides_the_key() {
        let config = ApiConfig {
            base_url: "http://x".into(),
            api_key: "sk-very-secret".into(),
            api_key_header: "Authorization".into(),
            model: "m".into(),
            dimensions: 0,
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{config:?}").contains("sk-very-secret"));
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        assert_eq!(parse_retry_after(Some("250"), Some("9"), 0), Some(Duration::from_millis(250)));
    }

    #[test]
    fn retry_after_takes_seconds() {
        assert_eq!(parse_retry_after(None, Some("2"), 0), Some(Duration::from_secs(2)));
    }

    #[test]
    fn retry_after_takes_an_http_date() {
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        let got = parse_retry_after(None, Some("Wed, 21 Oct 2015 07:28:00 GMT"), 1_445_412_470);
        assert_eq!(got, Some(Duration::from_secs(10)));
    }

    #[test]
    fn absurd_waits_are_capped_or_ignored() {
        assert_eq!(parse_retry_after(None, Some("1e400"), 0), None, "infinity");
        assert_eq!(parse_retry_after(Some("NaN"), None, 0), None);
        assert_eq!(parse_retry_after(None, Some("-3"), 0), None);
        assert_eq!(parse_retry_after(None, Some("1e300"), 0), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after(Some("99999999999"), None, 0), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after(None, Some("Fri, 31 Dec 9999 23:59:59 GMT"), 0),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn a_redirect_location_is_shown_by_host_only() {
        assert_eq!(
            location_host(Some("https://u:p@evil.example:8443/steal?key=1")),
            "https://evil.example:8443"
        );
        assert_eq!(location_host(None), "(no Location header)");
        assert_eq!(location_host(Some("/relative")), "a relative location");
    }

    #[test]
    fn an_echoed_message_is_redacted_and_cut() {
        let message = format!("{}sk-secret", "x".repeat(MAX_MESSAGE_CHARS - 3));
        let shown = redact(&message, "sk-secret");
        assert!(!shown.contains("sk-sec"), "{shown}");
        assert!(shown.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn an_unreadable_retry_after_is_ignored() {
        assert_eq!(parse_retry_after(None, Some("soon"), 0), None);
    }
}
