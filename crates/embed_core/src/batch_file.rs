//! The Batch API's files: the JSON-lines input a submission uploads, and the lines of the
//! output and error files a collection reads back.
//!
//! Each request of a batch carries one paper, and its `custom_id` is the paper's id. Requests
//! inside a batch cost nothing extra, so nothing is saved by packing; and one input per request
//! makes every line of every file self-describing (a batch created just before a crash is
//! adopted from the API's files alone), and a rejected text sends only itself back to the live
//! path, already proven rejected on its own.

use serde_json::{json, Value};

use crate::bounds::{cut_message, MAX_MESSAGE_CHARS};
use crate::request::request_body;
use crate::response::{api_error_message, decode_embeddings};

/// Most embedding inputs (so papers) one batch may hold.
pub const MAX_BATCH_INPUTS: usize = 50_000;

/// Largest input file the API takes (200 MB), less room for the form around it.
pub const MAX_BATCH_FILE_BYTES: usize = 200_000_000 - 64 * 1024;

/// Longest paper id sent as a `custom_id`; papers with longer ids stay on the live path.
pub const MAX_CUSTOM_ID_BYTES: usize = 64;

/// Longest line read from an output or error file: a vector of the largest size pgvector
/// stores, in base64, with room for the envelope.
pub const MAX_RESULT_LINE_BYTES: usize = 16_000 * 6 + 64 * 1024;

/// The input file's line for one paper: a POST to `/v1/embeddings` with the body a live
/// request would carry for this one text, and a newline.
pub fn request_line(custom_id: &str, model: &str, input: &str, dimensions: u32) -> String {
    let body: Value =
        serde_json::from_slice(&request_body(model, &[input.to_string()], dimensions)).expect("request_body is JSON");
    let mut line = json!({"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}).to_string();
    line.push('\n');
    line
}

/// One request of an input file, as a line of it says.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequest {
    pub custom_id: String,
    /// The one text sent.
    pub input: String,
    pub model: Option<String>,
}

/// The request of one input-file line, when it is a request for one text.
pub fn request_of_line(line: &[u8]) -> Option<InputRequest> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let custom_id = value["custom_id"].as_str()?.to_string();
    let input = match &value["body"]["input"] {
        Value::String(text) => text.clone(),
        Value::Array(texts) if texts.len() == 1 => texts[0].as_str()?.to_string(),
        _ => return None,
    };
    let model = value["body"]["model"].as_str().map(str::to_string);
    Some(InputRequest { custom_id, input, model })
}

/// A fingerprint of the text sent for a paper (the first 64 bits of its SHA-256) over the text as
/// sent (cut to the model's limit): a vector is written only to a paper whose text, cut the same
/// way, has the same fingerprint. So a paper whose text changed while its batch was open gets no
/// vector for the old text, and a batch whose input lines carry other texts than the papers'
/// (one made by anyone else holding the key) writes nothing; finding another text with a given
/// fingerprint takes about 2^64 tries.
pub fn text_hash(text: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

/// The fingerprint of what would be sent for a paper whose text is `input`.
pub fn sent_text_hash(input: &str) -> i64 {
    text_hash(&crate::tokens::cut_to_model_limit(input).0)
}

/// What one line of an output or error file says about its paper.
#[derive(Debug, Clone, PartialEq)]
pub enum LineResult {
    /// The paper's vector, and the tokens the API counted for it.
    Embedded {
        custom_id: String,
        vector: Vec<f32>,
        tokens: u64,
    },
    /// The API refused the paper's text (a 4xx other than 408, 409 and 429).
    Rejected { custom_id: String, message: String },
    /// The request was not done (expired, cancelled, a server error or rate limit inside the
    /// batch, or an answer that does not fit): the paper goes back to pending.
    NotDone { custom_id: String, reason: String },
}

impl LineResult {
    pub fn custom_id(&self) -> &str {
        match self {
            LineResult::Embedded { custom_id, .. }
            | LineResult::Rejected { custom_id, .. }
            | LineResult::NotDone { custom_id, .. } => custom_id,
        }
    }
}

/// Reads one line of an output or error file. `dims`, when known, is the length every vector
/// must have. `Err` when the line is not a result line at all.
pub fn parse_result_line(line: &[u8], dims: Option<usize>) -> Result<LineResult, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("a result line is not JSON ({e})"))?;
    let custom_id = value["custom_id"]
        .as_str()
        .ok_or("a result line has no custom_id")?
        .to_string();
    let response = &value["response"];
    if response.is_null() || !response.is_object() {
        let reason = value["error"]["code"]
            .as_str()
            .or(value["error"]["message"].as_str())
            .unwrap_or("no response");
        return Ok(LineResult::NotDone {
            custom_id,
            reason: cut_message(reason, MAX_MESSAGE_CHARS),
        });
    }
    let status = response["status_code"].as_u64().unwrap_or(0);
    let body = serde_json::to_vec(&response["body"]).unwrap_or_default();
    match status {
        200 => match decode_embeddings(&body, 1, dims) {
            Ok(mut answer) => Ok(LineResult::Embedded {
                custom_id,
                vector: answer.vectors.remove(0),
                tokens: answer.total_tokens,
            }),
            Err(e) => Ok(LineResult::NotDone {
                custom_id,
                reason: format!("the answer does not fit: {}", e.problem()),
            }),
        },
        400..=499 if ![408, 409, 429].contains(&status) => Ok(LineResult::Rejected {
            custom_id,
            message: format!("HTTP {status}: {}", api_error_message(&body).0),
        }),
        _ => Ok(LineResult::NotDone {
            custom_id,
            reason: format!("HTTP {status}: {}", api_error_message(&body).0),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_gives_back_its_paper_and_text_and_the_same_fingerprint() {
        let long = "word ".repeat(20_000);
        let (cut, _) = crate::tokens::cut_to_model_limit(&long);
        let line = request_line("paper-7", "text-embedding-3-small", &cut, 0);
        let request = request_of_line(line.as_bytes()).unwrap();
        assert_eq!(
            (request.custom_id.as_str(), request.input.as_str()),
            ("paper-7", cut.as_str())
        );
        assert_eq!(request.model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(text_hash(&request.input), sent_text_hash(&long));
        assert_ne!(sent_text_hash(&long), sent_text_hash("EVIL"));
        assert_eq!(
            request_of_line(b"{\"custom_id\": \"x\", \"body\": {\"input\": [\"a\", \"b\"]}}"),
            None
        );
    }

    #[test]
    fn a_request_line_carries_the_live_body_for_one_text() {
        let line = request_line("42", "m", "Title: A", 8);
        assert!(line.ends_with('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["custom_id"], "42");
        assert_eq!(value["url"], "/v1/embeddings");
        assert_eq!(
            value["body"],
            json!({"model": "m", "input": ["Title: A"], "encoding_format": "base64", "dimensions": 8})
        );
    }

    #[test]
    fn an_output_line_gives_the_vector() {
        let line = br#"{"id":"r","custom_id":"7","response":{"status_code":200,"body":{"data":[{"index":0,"embedding":[0.5,-0.25]}],"usage":{"total_tokens":3}}},"error":null}"#;
        assert_eq!(
            parse_result_line(line, Some(2)).unwrap(),
            LineResult::Embedded {
                custom_id: "7".into(),
                vector: vec![0.5, -0.25],
                tokens: 3
            }
        );
    }

    #[test]
    fn a_400_is_a_rejection_and_a_429_or_an_expiry_is_not_done() {
        let rejected =
            br#"{"custom_id":"1","response":{"status_code":400,"body":{"error":{"message":"bad text","code":"invalid_input"}}}}"#;
        assert!(
            matches!(parse_result_line(rejected, None).unwrap(), LineResult::Rejected { message, .. } if message.contains("bad text"))
        );
        let limited = br#"{"custom_id":"2","response":{"status_code":429,"body":{"error":{"message":"slow down"}}}}"#;
        assert!(matches!(
            parse_result_line(limited, None).unwrap(),
            LineResult::NotDone { .. }
        ));
        let expired = br#"{"custom_id":"3","response":null,"error":{"code":"batch_expired","message":"x"}}"#;
        assert_eq!(
            parse_result_line(expired, None).unwrap(),
            LineResult::NotDone {
                custom_id: "3".into(),
                reason: "batch_expired".into()
            }
        );
    }

    #[test]
    fn a_vector_of_the_wrong_length_is_not_written() {
        let line = br#"{"custom_id":"7","response":{"status_code":200,"body":{"data":[{"index":0,"embedding":[0.5]}]}}}"#;
        assert!(matches!(
            parse_result_line(line, Some(2)).unwrap(),
            LineResult::NotDone { .. }
        ));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_result_line(b"<html>", None).is_err());
        assert!(parse_result_line(br#"{"response":{}}"#, None).is_err());
    }
}
