//! One embeddings request over HTTP (ureq): send the inputs, map every failure to an
//! [`ApiError`], decode the answer. Blocking; the extension runs it off the main thread so a
//! cancel is seen while it waits.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::error::ApiError;
use crate::request::{auth_header, endpoint_url, request_body};
use crate::response::{api_error_message, decode_embeddings, Embeddings};

/// Largest answer read: 2048 inputs of 3072 dimensions in base64 take about 34 MB.
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

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
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Removes the key from text the API sent back (some APIs quote the key they refused).
pub fn redact(text: &str, api_key: &str) -> String {
    if api_key.len() < 4 {
        return text.to_string();
    }
    text.replace(api_key, "[redacted]")
}

/// How long the API asks to wait: `retry-after-ms` (milliseconds) or `retry-after`
/// (seconds, or an HTTP date, read relative to `now_unix`).
pub fn parse_retry_after(retry_after_ms: Option<&str>, retry_after: Option<&str>, now_unix: u64) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| *v >= 0.0) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = retry_after?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let when = httpdate_to_unix(value)?;
    Some(Duration::from_secs(when.saturating_sub(now_unix)))
}

/// Parses an IMF-fixdate such as `Wed, 21 Oct 2015 07:28:00 GMT` to seconds since 1970.
fn httpdate_to_unix(value: &str) -> Option<u64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == parts[2])? as u64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4].split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = (y - era * 400) as u64;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe as i64 - 719_468;
    u64::try_from(days * 86_400 + (hms[0] * 3600 + hms[1] * 60 + hms[2]) as i64).ok()
}

/// One agent per timeout, kept so connections (and TLS sessions) are reused between batches.
fn agent_for(timeout: Duration) -> ureq::Agent {
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
        .user_agent(concat!("doctrove_embed/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    *slot = Some((timeout, agent.clone()));
    agent
}

fn transport_error(error: ureq::Error, config: &ApiConfig) -> ApiError {
    let url = display_url(&config.base_url);
    let timeout_ms = config.timeout.as_millis() as u64;
    match error {
        ureq::Error::Timeout(_) => ApiError::Timeout { url, timeout_ms },
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ApiError::Timeout { url, timeout_ms },
        ureq::Error::HostNotFound => ApiError::Unreachable { url, reason: "the host name was not found".into() },
        ureq::Error::BadUri(_) => ApiError::Unreachable { url, reason: "the URL is not valid".into() },
        other => ApiError::Unreachable { url, reason: redact(&other.to_string(), &config.api_key) },
    }
}

/// Sends `inputs` in one request and returns their vectors in input order. `expected_dims`,
/// when set, is the length every vector must have.
pub fn embed(config: &ApiConfig, inputs: &[String], expected_dims: Option<usize>) -> Result<Embeddings, ApiError> {
    let url = endpoint_url(&config.base_url);
    let body = request_body(&config.model, inputs, config.dimensions);
    let mut request = agent_for(config.timeout).post(&url).header("Content-Type", "application/json");
    if let Some((name, value)) = auth_header(&config.api_key_header, &config.api_key) {
        request = request.header(name.as_str(), value.as_str());
    }
    let mut response = request.send(&body[..]).map_err(|e| transport_error(e, config))?;
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (retry_ms, retry_s) = (header("retry-after-ms"), header("retry-after"));
    let rate_limits = crate::rate_limit::RateLimitHeaders::read(header);
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| transport_error(e, config))?;

    if status == 200 {
        let mut answer = decode_embeddings(&bytes, inputs.len(), expected_dims).map_err(ApiError::Malformed)?;
        answer.rate_limits = rate_limits;
        return Ok(answer);
    }
    let (message, code) = api_error_message(&bytes);
    let message = redact(&message, &config.api_key);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let retry_after = parse_retry_after(retry_ms.as_deref(), retry_s.as_deref(), now);
    Err(match status {
        401 | 403 => ApiError::Unauthorized { status, message },
        429 => ApiError::RateLimited { message, code, retry_after },
        500..=599 => ApiError::ServerError { status, message, retry_after },
        _ => ApiError::Rejected { status, message, code },
    })
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
        assert_eq!(redact("Incorrect API key provided: sk-secret.", "sk-secret"), "Incorrect API key provided: [redacted].");
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
    fn an_unreadable_retry_after_is_ignored() {
        assert_eq!(parse_retry_after(None, Some("soon"), 0), None);
    }
}
