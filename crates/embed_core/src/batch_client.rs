//! The Batch API over HTTP: upload an input file, create, retrieve, list and cancel batches,
//! and read an output or error file line by line without holding it in memory.
//!
//! Everything the API sends back is checked before use: ids are put into URL paths only when
//! they are short and plain (`[A-Za-z0-9_-]`), lists and statuses are bounded, and a file is read
//! a line at a time with a cap on each line.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use serde_json::{json, Value};

use crate::bounds::{cut_message, MAX_MESSAGE_CHARS};
use crate::client::{agent_for, display_url, read_answer, transport_error, with_key, ApiConfig};
use crate::error::ApiError;
use crate::request::api_url;

/// Longest an upload or a download may take in all.
const FILE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Largest JSON answer about a file or a batch (a listing page of 100 batches included).
const MAX_ANSWER_BYTES: u64 = 4 << 20;

/// A batch as the API describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchInfo {
    pub id: String,
    /// `validating`, `failed`, `in_progress`, `finalizing`, `completed`, `expired`,
    /// `cancelling` or `cancelled`.
    pub status: String,
    pub input_file_id: Option<String>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    /// The first validation error's code and message, for a batch that failed.
    pub error: Option<(String, String)>,
    pub metadata: BTreeMap<String, String>,
}

impl BatchInfo {
    /// Whether the API is done with the batch: its files, if any, are final.
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "expired" | "failed" | "cancelled")
    }

    /// `code: message` of the validation error, if the API gave one.
    pub fn error_text(&self) -> Option<String> {
        self.error.as_ref().map(|(code, message)| format!("{code}: {message}"))
    }
}

/// Whether `id` may go into a URL path: 1 to 128 characters of `[A-Za-z0-9_-]`.
pub fn is_plain_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn plain_id(value: &Value, what: &str) -> Result<Option<String>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(id) if is_plain_id(id) => Ok(Some(id.clone())),
        _ => Err(ApiError::Malformed(format!("the {what} is not a plain id"))),
    }
}

const STATUSES: [&str; 8] = [
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
];

/// Reads a batch object.
pub fn batch_info(value: &Value) -> Result<BatchInfo, ApiError> {
    let id = plain_id(&value["id"], "batch id")?.ok_or_else(|| ApiError::Malformed("a batch has no id".into()))?;
    let status = value["status"]
        .as_str()
        .filter(|s| STATUSES.contains(s))
        .ok_or_else(|| ApiError::Malformed(format!("batch {id} has an unknown status")))?;
    let counts = &value["request_counts"];
    let count = |name: &str| counts[name].as_i64().unwrap_or(0).clamp(0, i64::from(i32::MAX));
    let error = value["errors"]["data"].as_array().and_then(|errors| errors.first()).map(|e| {
        (
            cut_message(e["code"].as_str().unwrap_or("error"), 100),
            cut_message(e["message"].as_str().unwrap_or(""), MAX_MESSAGE_CHARS),
        )
    });
    let metadata = value["metadata"]
        .as_object()
        .map(|m| {
            m.iter()
                .take(16)
                .filter_map(|(k, v)| Some((cut_message(k, 64), cut_message(v.as_str()?, 512))))
                .collect()
        })
        .unwrap_or_default();
    Ok(BatchInfo {
        id,
        status: status.to_string(),
        input_file_id: plain_id(&value["input_file_id"], "input file id")?,
        output_file_id: plain_id(&value["output_file_id"], "output file id")?,
        error_file_id: plain_id(&value["error_file_id"], "error file id")?,
        total: count("total"),
        completed: count("completed"),
        failed: count("failed"),
        error,
        metadata,
    })
}

/// The body of a 2xx answer, at most `limit` bytes; any other answer as its error.
fn answer_body(config: &ApiConfig, response: ureq::http::Response<ureq::Body>, limit: u64) -> Result<Vec<u8>, ApiError> {
    read_answer(config, response, limit, |status| (200..300).contains(&status)).map(|(bytes, _)| bytes)
}

fn json_of(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::Malformed(format!("the answer is not JSON ({e})")))
}

fn get_json(config: &ApiConfig, path: &str) -> Result<Value, ApiError> {
    let request = with_key(config, agent_for(config.timeout).get(api_url(&config.base_url, path)));
    let response = request.call().map_err(|e| transport_error(e, config))?;
    json_of(&answer_body(config, response, MAX_ANSWER_BYTES)?)
}

fn post_json(config: &ApiConfig, path: &str, body: &Value) -> Result<Value, ApiError> {
    let request = with_key(config, agent_for(config.timeout).post(api_url(&config.base_url, path)))
        .header("Content-Type", "application/json");
    let response = request
        .send(body.to_string().as_bytes())
        .map_err(|e| transport_error(e, config))?;
    json_of(&answer_body(config, response, MAX_ANSWER_BYTES)?)
}

/// A boundary that does not occur in `content`: 128 random bits, so no text a writer plants
/// can predict it, checked with one linear search (a collision, about 2^-128, draws again).
fn boundary_for(content: &[u8]) -> String {
    loop {
        let mut bits = [0u8; 16];
        getrandom::fill(&mut bits).expect("the operating system's random source");
        let boundary = format!("doctrove-embed-{:032x}", u128::from_le_bytes(bits));
        if memchr::memmem::find(content, boundary.as_bytes()).is_none() {
            return boundary;
        }
    }
}

/// Uploads `content` as a batch input file (`POST /files`, multipart, `purpose=batch`); returns
/// the file's id. ureq has no multipart support, and this form is two fields, so it is written
/// out here.
pub fn upload_batch_file(config: &ApiConfig, filename: &str, content: &[u8]) -> Result<String, ApiError> {
    let boundary = boundary_for(content);
    let filename: String = filename
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/jsonl\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = with_key(
        config,
        agent_for(config.timeout.max(FILE_TIMEOUT)).post(api_url(&config.base_url, "files")),
    )
    .header("Content-Type", &format!("multipart/form-data; boundary={boundary}"));
    let response = request.send(&body[..]).map_err(|e| transport_error(e, config))?;
    let answer = json_of(&answer_body(config, response, MAX_ANSWER_BYTES)?)?;
    plain_id(&answer["id"], "file id")?.ok_or_else(|| ApiError::Malformed("the uploaded file has no id".into()))
}

/// Creates a batch of the embeddings requests in `input_file_id` (`POST /batches`).
pub fn create_batch(config: &ApiConfig, input_file_id: &str, metadata: &BTreeMap<String, String>) -> Result<BatchInfo, ApiError> {
    let body =
        json!({"input_file_id": input_file_id, "endpoint": "/v1/embeddings", "completion_window": "24h", "metadata": metadata});
    batch_info(&post_json(config, "batches", &body)?)
}

/// The batch `id` as it is now (`GET /batches/{id}`).
pub fn retrieve_batch(config: &ApiConfig, id: &str) -> Result<BatchInfo, ApiError> {
    if !is_plain_id(id) {
        return Err(ApiError::Malformed("a batch id is not a plain id".into()));
    }
    batch_info(&get_json(config, &format!("batches/{id}"))?)
}

/// Deletes file `id` from the API (`DELETE /files/{id}`).
pub fn delete_file(config: &ApiConfig, id: &str) -> Result<(), ApiError> {
    if !is_plain_id(id) {
        return Err(ApiError::Malformed("a file id is not a plain id".into()));
    }
    let request = with_key(
        config,
        agent_for(config.timeout).delete(api_url(&config.base_url, &format!("files/{id}"))),
    );
    let response = request.call().map_err(|e| transport_error(e, config))?;
    answer_body(config, response, MAX_ANSWER_BYTES).map(|_| ())
}

/// Asks the API to cancel batch `id` (`POST /batches/{id}/cancel`).
pub fn cancel_batch(config: &ApiConfig, id: &str) -> Result<BatchInfo, ApiError> {
    if !is_plain_id(id) {
        return Err(ApiError::Malformed("a batch id is not a plain id".into()));
    }
    batch_info(&post_json(config, &format!("batches/{id}/cancel"), &json!({}))?)
}

/// One page of the account's batches, newest first, after the batch `after`
/// (`GET /batches?limit=100`), and whether more follow.
pub fn list_batches(config: &ApiConfig, after: Option<&str>) -> Result<(Vec<BatchInfo>, bool), ApiError> {
    let mut path = "batches?limit=100".to_string();
    if let Some(after) = after.filter(|a| is_plain_id(a)) {
        path.push_str(&format!("&after={after}"));
    }
    let answer = get_json(config, &path)?;
    let data = answer["data"]
        .as_array()
        .ok_or_else(|| ApiError::Malformed("a batch listing has no data".into()))?;
    let batches = data.iter().take(100).map(batch_info).collect::<Result<Vec<_>, _>>()?;
    let more = answer["has_more"].as_bool().unwrap_or(false) && !batches.is_empty();
    Ok((batches, more))
}

/// Reads file `id` (`GET /files/{id}/content`) a line at a time, each at most `max_line`
/// bytes, handing each to `on_line` (which returns `false` to stop). A longer line is an error.
pub fn read_file_lines(
    config: &ApiConfig,
    id: &str,
    max_line: usize,
    on_line: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<(), ApiError> {
    if !is_plain_id(id) {
        return Err(ApiError::Malformed("a file id is not a plain id".into()));
    }
    let url = api_url(&config.base_url, &format!("files/{id}/content"));
    let request = with_key(config, agent_for(config.timeout.max(FILE_TIMEOUT)).get(url));
    let response = request.call().map_err(|e| transport_error(e, config))?;
    if !response.status().is_success() {
        answer_body(config, response, MAX_ANSWER_BYTES)?;
        return Err(ApiError::Malformed("the file could not be read".into()));
    }
    let mut reader = BufReader::with_capacity(1 << 20, response.into_body().into_reader());
    let mut line = Vec::with_capacity(64 * 1024);
    loop {
        line.clear();
        let read = (&mut reader)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| ApiError::Unreachable {
                url: display_url(&config.base_url),
                reason: format!("reading file {id}: {e}"),
            })?;
        if read == 0 {
            return Ok(());
        }
        if line.len() > max_line {
            return Err(ApiError::Malformed(format!(
                "file {id} has a line longer than {max_line} bytes"
            )));
        }
        let trimmed = line.strip_suffix(b"\n").unwrap_or(&line);
        if trimmed.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if !on_line(trimmed) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_the_api_go_into_paths_only_when_plain() {
        assert!(is_plain_id("batch_abc-123"));
        for bad in ["", "../files", "a/b", "a?b", "a b", &"x".repeat(129)] {
            assert!(!is_plain_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_batch_object_is_read_and_checked() {
        let info = batch_info(&json!({"id": "batch_1", "status": "failed", "input_file_id": "file-1",
            "output_file_id": null, "request_counts": {"total": 3, "completed": 0, "failed": 0},
            "errors": {"data": [{"code": "token_limit_exceeded", "message": "Enqueued token limit reached"}]},
            "metadata": {"doctrove_db": "d"}}))
        .unwrap();
        assert_eq!(info.error.as_ref().map(|e| e.0.as_str()), Some("token_limit_exceeded"));
        assert_eq!(info.metadata["doctrove_db"], "d");
        assert!(info.is_finished());
        assert!(batch_info(&json!({"id": "batch_1", "status": "weird"})).is_err());
        assert!(batch_info(&json!({"id": "../x", "status": "completed"})).is_err());
        assert!(batch_info(&json!({"id": "b", "status": "completed", "output_file_id": "f/../../x"})).is_err());
    }

    #[test]
    fn the_boundary_is_random_and_never_occurs_in_the_file() {
        let first = boundary_for(b"");
        // A file holding the last boundary (as a writer who saw it could plant) gets another.
        let content = format!("{{\"input\": \"--{first}\"}}");
        let second = boundary_for(content.as_bytes());
        assert_ne!(first, second);
        assert!(!content.contains(&second));
        assert_eq!(second.len(), "doctrove-embed-".len() + 32);
    }
}
