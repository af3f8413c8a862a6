//! Per-request switches, read from the path segments in front of `/embeddings`.
//!
//! A base URL such as `http://127.0.0.1:18089/s=test1/latency=200/status=500/v1` makes every
//! request to it slow and failing, and counts it under the scope `test1`. Segments without `=`
//! (such as `v1`) are ignored, so any OpenAI-style base URL works.

/// What one request asks the mock to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Counters are kept per scope (`s=NAME`), so tests running side by side do not mix.
    pub scope: String,
    /// Vector length when the request has no `dimensions` field (`dim=N`).
    pub dims: Option<usize>,
    /// Delay before answering, in milliseconds (`latency=MS`).
    pub latency_ms: u64,
    /// Answer every request with this HTTP status and an OpenAI-style error (`status=CODE`).
    pub status: Option<u16>,
    /// Apply `status=` only after the scope's first N requests (`from=N`), so a batch's later
    /// requests fail while its first ones are answered.
    pub status_from: u64,
    /// Send absurd numbers in every answer's headers: `retry-after: 1e400`, `retry-after-ms:
    /// NaN`, `x-ratelimit-*` of `inf`, `NaN` and `-5` (`absurd=1`).
    pub absurd: bool,
    /// Require this key, as `Authorization: Bearer KEY` or `api-key: KEY` (`key=KEY`).
    pub key: Option<String>,
    /// Answer with a body that is not the expected JSON (`body=garbage|random|nodata`).
    pub body: Option<String>,
    /// Leave the last vector out of the answer (`drop=1`).
    pub drop_one: bool,
    /// Answer vectors one component longer than asked (`dimoff=1`).
    pub wrong_dims: bool,
    /// Answer in request order instead of reversed order (`order=asc`).
    pub ascending: bool,
    /// Reject with 400 any request holding an input that contains this text (`poison=TEXT`).
    pub poison: Option<String>,
    /// Fail with 500 any request holding an input that contains this text, every time, as a
    /// self-hosted model that crashes on one odd input does (`fail=TEXT`).
    pub fail: Option<String>,
    /// Fraction of requests answered 429 with `retry-after-ms` (`p429=0.2`).
    pub p429: f64,
    /// Fraction of requests answered 500 (`p500=0.1`).
    pub p500: f64,
    /// Fraction of requests delayed by `slow_ms` (`pslow=0.3`), to cause client timeouts.
    pub pslow: f64,
    /// The delay of those requests (`slow=MS`, default 5000).
    pub slow_ms: u64,
    /// Fraction of answers missing their last vector (`pdrop=0.2`).
    pub pdrop: f64,
    /// Fraction of answers with vectors one component too long (`pdimoff=0.2`).
    pub pdimoff: f64,
    /// Answer 429 with code `insufficient_quota`, as for an account out of credit (`quota=1`).
    pub no_quota: bool,
    /// Enforce this many tokens per minute for the scope, answering 429 beyond it (`tpm=N`).
    pub tpm: u64,
    /// Enforce this many requests per minute for the scope (`rpm=N`).
    pub rpm: u64,
    /// Answer `302 Found` (which clients follow with a GET) to the embeddings of the mock at `127.0.0.1:PORT`, under
    /// the scope `<scope>-redirected`, without reading the body (`redirect=PORT`).
    pub redirect: Option<u16>,
    /// Batch API: milliseconds from a batch's creation until it is finished (`batch_delay=MS`).
    pub batch_delay_ms: u64,
    /// Batch API: batches expire instead of completing, with half their requests done
    /// (`batch_expire=1`).
    pub batch_expire: bool,
    /// Batch API: most tokens enqueued at once in open batches of the scope; a batch beyond it
    /// fails validation with `token_limit_exceeded` (`batch_tokens=N`, 0 = no limit).
    pub batch_enqueued_tokens: u64,
    /// Batch API: hold the answer to a batch's creation and to a file's content this many
    /// milliseconds, the batch already created (`batch_hold=MS`), so a test can kill the
    /// caller at that point.
    pub batch_hold_ms: u64,
    /// Batch API: answer every `/files` and `/batches` route with 404, as an endpoint without a
    /// Batch API does (`no_batch_api=1`).
    pub no_batch_api: bool,
    /// Batch API: a cancelled batch stays `cancelling` this many milliseconds, then is
    /// `cancelled` with half its requests done, as the real API takes minutes (`cancel_delay=MS`).
    pub cancel_delay_ms: u64,
    /// Batch API: a batch's output file ends with a line that is not a result (`bad_line=1`).
    pub batch_bad_line: bool,
    /// Batch API: deleting a file is answered 500 and the file stays (`delete_fail=1`).
    pub delete_fail: bool,
    /// Batch API: hold the answer to a file upload this many milliseconds, the file already
    /// stored (`upload_hold=MS`), so a test can cancel the caller meanwhile.
    pub upload_hold_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scope: "default".into(),
            dims: None,
            latency_ms: 0,
            status: None,
            status_from: 0,
            absurd: false,
            key: None,
            body: None,
            drop_one: false,
            wrong_dims: false,
            ascending: false,
            poison: None,
            fail: None,
            p429: 0.0,
            p500: 0.0,
            pslow: 0.0,
            slow_ms: 5000,
            pdrop: 0.0,
            pdimoff: 0.0,
            no_quota: false,
            tpm: 0,
            rpm: 0,
            redirect: None,
            batch_delay_ms: 0,
            batch_expire: false,
            batch_enqueued_tokens: 0,
            batch_hold_ms: 0,
            no_batch_api: false,
            cancel_delay_ms: 0,
            batch_bad_line: false,
            delete_fail: false,
            upload_hold_ms: 0,
        }
    }
}

/// Reads the switches from a request path such as `/s=a/latency=5/v1/embeddings`.
pub fn parse_path(path: &str) -> Options {
    let path = path.split('?').next().unwrap_or("");
    let mut options = Options::default();
    for segment in path.split('/') {
        let Some((name, value)) = segment.split_once('=') else {
            continue;
        };
        let value = percent_decode(value);
        match name {
            "s" => options.scope = value,
            "dim" => options.dims = value.parse().ok(),
            "latency" => options.latency_ms = value.parse().unwrap_or(0),
            "status" => options.status = value.parse().ok(),
            "from" => options.status_from = value.parse().unwrap_or(0),
            "absurd" => options.absurd = value == "1",
            "key" => options.key = Some(value),
            "body" => options.body = Some(value),
            "drop" => options.drop_one = value == "1",
            "dimoff" => options.wrong_dims = value == "1",
            "order" => options.ascending = value == "asc",
            "poison" => options.poison = Some(value),
            "fail" => options.fail = Some(value),
            "p429" => options.p429 = value.parse().unwrap_or(0.0),
            "p500" => options.p500 = value.parse().unwrap_or(0.0),
            "pslow" => options.pslow = value.parse().unwrap_or(0.0),
            "slow" => options.slow_ms = value.parse().unwrap_or(5000),
            "pdrop" => options.pdrop = value.parse().unwrap_or(0.0),
            "pdimoff" => options.pdimoff = value.parse().unwrap_or(0.0),
            "quota" => options.no_quota = value == "0",
            "tpm" => options.tpm = value.parse().unwrap_or(0),
            "rpm" => options.rpm = value.parse().unwrap_or(0),
            "redirect" => options.redirect = value.parse().ok(),
            "batch_delay" => options.batch_delay_ms = value.parse().unwrap_or(0),
            "batch_expire" => options.batch_expire = value == "1",
            "batch_tokens" => options.batch_enqueued_tokens = value.parse().unwrap_or(0),
            "batch_hold" => options.batch_hold_ms = value.parse().unwrap_or(0),
            "no_batch_api" => options.no_batch_api = value == "1",
            "cancel_delay" => options.cancel_delay_ms = value.parse().unwrap_or(0),
            "bad_line" => options.batch_bad_line = value == "1",
            "delete_fail" => options.delete_fail = value == "1",
            "upload_hold" => options.upload_hold_ms = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    options
}

/// Decodes `%XX` escapes, so switch values may hold spaces and slashes.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes every byte but letters, digits and `-._~`, so a value fits in a path segment.
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_openai_path_has_default_options() {
        assert_eq!(parse_path("/v1/embeddings"), Options::default());
    }

    #[test]
    fn switches_are_read_from_segments() {
        let o = parse_path("/s=t1/latency=250/status=503/dim=3/key=k%20x/v1/embeddings?api-version=1");
        assert_eq!(o.scope, "t1");
        assert_eq!(o.latency_ms, 250);
        assert_eq!(o.status, Some(503));
        assert_eq!(o.dims, Some(3));
        assert_eq!(o.key.as_deref(), Some("k x"));
    }

    #[test]
    fn a_status_may_start_after_some_requests_and_headers_may_be_absurd() {
        let options = parse_path("/s=a/status=401/from=1/absurd=1/v1/embeddings");
        assert_eq!((options.status, options.status_from, options.absurd), (Some(401), 1, true));
    }

    #[test]
    fn redirect_takes_a_port() {
        assert_eq!(parse_path("/s=a/redirect=18089/v1/embeddings").redirect, Some(18089));
        assert_eq!(parse_path("/s=a/redirect=nope/v1/embeddings").redirect, None);
    }

    #[test]
    fn a_percent_before_a_multibyte_character_is_kept() {
        assert_eq!(parse_path("/s=%aé/v1").scope, "%aé");
    }

    #[test]
    fn an_encoded_value_decodes_to_itself() {
        let scope = "a b/c%d-é";
        assert_eq!(parse_path(&format!("/s={}/v1", percent_encode(scope))).scope, scope);
    }

    #[test]
    fn a_query_string_does_not_leak_into_switches() {
        assert_eq!(parse_path("/s=a/v1/embeddings?s=b").scope, "a");
    }
}
