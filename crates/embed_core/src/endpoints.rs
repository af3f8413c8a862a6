//! Named endpoints: the file that defines them (the server's configuration, read only by the
//! superuser-set `doctrove_embed.endpoints_file`), and which one a request goes to.
//!
//! The file is a JSON object, one member per endpoint:
//!
//! ```json
//! {
//!   "openai": {"url": "https://api.openai.com/v1", "key_file": "/etc/doctrove/openai.key",
//!              "max_requests_per_minute": 3000, "max_tokens_per_minute": 1000000},
//!   "local":  {"url": "http://127.0.0.1:8080/v1"}
//! }
//! ```
//!
//! A job names endpoints, never a URL or key. Each request goes to the endpoint with the most
//! free capacity (the free share of its rate limits, divided among the requests already in
//! flight to it); an endpoint that failed rests for a while and is skipped, so a job slows down
//! when one is down and stops only when every one is.

use serde_json::Value;

/// The name that means the `doctrove_embed.api_base_url` settings.
pub const DEFAULT_ENDPOINT: &str = "default";

/// Largest endpoints file read.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// One endpoint as the file defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSpec {
    pub name: String,
    pub url: String,
    /// A file holding the key (checked as `api_key_file` is); `None`: no key is sent.
    pub key_file: Option<String>,
    pub key_header: String,
    /// 0: no limit of the extension's own (the API's headers still slow it down).
    pub max_requests_per_minute: f64,
    pub max_tokens_per_minute: f64,
}

/// Whether `name` may name an endpoint (or a job): a lower-case letter, then up to 62
/// lower-case letters, digits or underscores.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn limit(entry: &serde_json::Map<String, Value>, field: &str, name: &str) -> Result<f64, String> {
    match entry.get(field) {
        None => Ok(0.0),
        Some(value) => match value.as_f64() {
            Some(v) if v.is_finite() && (0.0..=1e12).contains(&v) => Ok(v),
            _ => Err(format!("endpoint \"{name}\": {field} must be a number from 0 to 1e12")),
        },
    }
}

/// Parses the endpoints file; every problem is named with the endpoint and field it is in.
pub fn parse(text: &str) -> Result<Vec<EndpointSpec>, String> {
    if text.len() > MAX_FILE_BYTES {
        return Err(format!("the file is larger than {MAX_FILE_BYTES} bytes"));
    }
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(members) = root else {
        return Err("the file must hold a JSON object, one member per endpoint".into());
    };
    let mut endpoints = Vec::with_capacity(members.len());
    for (name, entry) in members {
        if !valid_name(&name) || name == DEFAULT_ENDPOINT {
            return Err(format!(
                "\"{}\" cannot name an endpoint: a lower-case letter, then lower-case letters, digits or underscores (\"{DEFAULT_ENDPOINT}\" is the settings')",
                name.escape_default()
            ));
        }
        let Value::Object(entry) = entry else {
            return Err(format!("endpoint \"{name}\" must be an object"));
        };
        const FIELDS: [&str; 5] = [
            "url",
            "key_file",
            "key_header",
            "max_requests_per_minute",
            "max_tokens_per_minute",
        ];
        if let Some(unknown) = entry.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!("endpoint \"{name}\": unknown field \"{}\"", unknown.escape_default()));
        }
        let text_field = |field: &str| -> Result<Option<String>, String> {
            match entry.get(field) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() && !s.chars().any(char::is_control) => Ok(Some(s.clone())),
                Some(_) => Err(format!("endpoint \"{name}\": {field} must be a non-empty string")),
            }
        };
        let url = text_field("url")?.ok_or_else(|| format!("endpoint \"{name}\" has no url"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("endpoint \"{name}\": url must start with http:// or https://"));
        }
        endpoints.push(EndpointSpec {
            url,
            key_file: text_field("key_file")?,
            key_header: text_field("key_header")?.unwrap_or_else(|| "Authorization".into()),
            max_requests_per_minute: limit(&entry, "max_requests_per_minute", &name)?,
            max_tokens_per_minute: limit(&entry, "max_tokens_per_minute", &name)?,
            name,
        });
    }
    Ok(endpoints)
}

/// What is known of one endpoint when a request is about to go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// The free share of its rate limits, 0 to 1 (1 when it has none).
    pub free: f64,
    /// Requests under way to it from the whole server.
    pub in_flight: u32,
    /// Until when (unix ms) it rests after a failure; 0 when it does not.
    pub resting_until_ms: i64,
}

/// The order in which to try a job's endpoints now: those not resting by free capacity per
/// request in flight (most first, ties in the job's order), then the resting ones by the end of
/// their rest (a job whose endpoints all rest still tries the one that recovers first).
pub fn order(capacities: &[Capacity], now_ms: i64) -> Vec<usize> {
    let score = |c: &Capacity| c.free.clamp(0.0, 1.0) / (1.0 + f64::from(c.in_flight));
    let (mut up, mut resting): (Vec<usize>, Vec<usize>) =
        (0..capacities.len()).partition(|&i| capacities[i].resting_until_ms <= now_ms);
    up.sort_by(|&a, &b| score(&capacities[b]).total_cmp(&score(&capacities[a])).then(a.cmp(&b)));
    resting.sort_by_key(|&i| (capacities[i].resting_until_ms, i));
    up.extend(resting);
    up
}

/// How long an endpoint rests after `failures` failures in a row: 5 s, 10 s, 20 s, 40 s, then
/// a minute.
pub fn rest_ms(failures: u32) -> i64 {
    (5000i64 << failures.saturating_sub(1).min(4)).min(60_000)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_file_defines_endpoints_with_defaults() {
        let parsed = parse(
            r#"{"openai": {"url": "https://api.openai.com/v1", "key_file": "/k", "max_tokens_per_minute": 1000000},
                "local": {"url": "http://127.0.0.1:8080/v1"}}"#,
        )
        .unwrap();
        assert_eq!(parsed.len(), 2);
        let local = parsed.iter().find(|e| e.name == "local").unwrap();
        assert_eq!(
            local,
            &EndpointSpec {
                name: "local".into(),
                url: "http://127.0.0.1:8080/v1".into(),
                key_file: None,
                key_header: "Authorization".into(),
                max_requests_per_minute: 0.0,
                max_tokens_per_minute: 0.0,
            }
        );
        let openai = parsed.iter().find(|e| e.name == "openai").unwrap();
        assert_eq!((openai.key_file.as_deref(), openai.max_tokens_per_minute), (Some("/k"), 1e6));
    }

    #[test]
    fn every_mistake_is_refused_with_its_place() {
        for (text, says) in [
            ("[]", "JSON object"),
            ("{", "not valid JSON"),
            (r#"{"default": {"url": "http://x"}}"#, "cannot name an endpoint"),
            (r#"{"Bad": {"url": "http://x"}}"#, "cannot name an endpoint"),
            (r#"{"a": {}}"#, "endpoint \"a\" has no url"),
            (r#"{"a": {"url": "ftp://x"}}"#, "http:// or https://"),
            (r#"{"a": {"url": "http://x", "key": "sk-inline"}}"#, "unknown field \"key\""),
            (
                r#"{"a": {"url": "http://x", "max_tokens_per_minute": -1}}"#,
                "max_tokens_per_minute",
            ),
            (
                r#"{"a": {"url": "http://x", "max_requests_per_minute": "many"}}"#,
                "max_requests_per_minute",
            ),
            (r#"{"a": {"url": "http://x\n"}}"#, "url must be a non-empty string"),
            (r#"{"a": "http://x"}"#, "must be an object"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    fn up(free: f64, in_flight: u32) -> Capacity {
        Capacity {
            free,
            in_flight,
            resting_until_ms: 0,
        }
    }

    #[test]
    fn the_freest_endpoint_goes_first_and_a_resting_one_last() {
        let now = 10_000;
        let resting = Capacity {
            free: 1.0,
            in_flight: 0,
            resting_until_ms: now + 5000,
        };
        assert_eq!(order(&[up(0.2, 0), up(0.9, 0), resting], now), [1, 0, 2]);
        // Requests in flight share an endpoint's capacity.
        assert_eq!(order(&[up(1.0, 3), up(0.5, 0)], now), [1, 0]);
        // Ties keep the job's order.
        assert_eq!(order(&[up(1.0, 0), up(1.0, 0)], now), [0, 1]);
        // All resting: the one that recovers first.
        let later = Capacity {
            resting_until_ms: now + 9000,
            ..resting
        };
        assert_eq!(order(&[later, resting], now), [1, 0]);
    }

    #[test]
    fn rests_double_up_to_a_minute() {
        let rests: Vec<i64> = (1..=7).map(rest_ms).collect();
        assert_eq!(rests, [5000, 10000, 20000, 40000, 60000, 60000, 60000]);
    }

    proptest! {
        /// The order is a permutation, with every endpoint not resting before every resting one.
        #[test]
        fn the_order_tries_each_endpoint_once_up_ones_first(
            caps in proptest::collection::vec((0.0f64..=1.0, 0u32..8, prop_oneof![Just(0i64), 1i64..20_000]), 0..8)
        ) {
            let now = 10_000;
            let capacities: Vec<Capacity> = caps.iter().map(|&(free, in_flight, until)| Capacity { free, in_flight, resting_until_ms: until }).collect();
            let order = order(&capacities, now);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..capacities.len()).collect::<Vec<_>>());
            let first_resting = order.iter().position(|&i| capacities[i].resting_until_ms > now).unwrap_or(order.len());
            prop_assert!(order[first_resting..].iter().all(|&i| capacities[i].resting_until_ms > now));
        }
    }
}
