//! Decoding an embeddings response: base64 float32 vectors matched to inputs by `index`,
//! checked for count and dimension; and the message of an error response.

use base64::Engine;
use serde_json::Value;

use crate::bounds::{cut_message, MAX_MESSAGE_CHARS, MAX_VECTOR_DIMS};

/// The vectors of one answered request, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub total_tokens: u64,
    /// The answer's `x-ratelimit-*` headers (set by the HTTP client).
    pub rate_limits: crate::rate_limit::RateLimitHeaders,
}

/// Decodes base64 of little-endian float32 values.
pub fn decode_base64_f32(text: &str) -> Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| format!("an embedding is not valid base64 ({e})"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!("an embedding has {} bytes, not a multiple of 4", bytes.len()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// One vector of at most `max_dims` values, refused before it is decoded when longer
/// (base64 takes four characters for every three bytes).
fn decode_embedding(value: &Value, max_dims: usize) -> Result<Vec<f32>, String> {
    match value {
        Value::String(text) => {
            if text.len() > (max_dims * 4).div_ceil(3) * 4 {
                return Err(format!("an embedding has more than {max_dims} dimensions"));
            }
            decode_base64_f32(text)
        }
        Value::Array(items) if items.len() > max_dims => Err(format!("an embedding has more than {max_dims} dimensions")),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| "an embedding holds a non-number".to_string())
            })
            .collect(),
        _ => Err("an embedding is neither base64 text nor a list of numbers".into()),
    }
}

/// Why a 200 answer cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// Not an embeddings response at all (not JSON, bad base64, NaN, ...).
    Malformed(String),
    /// Well-formed, but with another number of vectors than inputs sent: sending the same
    /// request again gives the same answer.
    WrongCount(String),
    /// Well-formed, but vectors of another length than the column holds: a setting is wrong.
    WrongDimensions(String),
}

impl DecodeError {
    /// What is wrong, in words.
    pub fn problem(&self) -> &str {
        match self {
            DecodeError::Malformed(p) | DecodeError::WrongCount(p) | DecodeError::WrongDimensions(p) => p,
        }
    }
}

impl From<DecodeError> for crate::ApiError {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::Malformed(problem) => crate::ApiError::Malformed(problem),
            DecodeError::WrongCount(problem) => crate::ApiError::WrongShape {
                problem,
                dimensions: false,
            },
            DecodeError::WrongDimensions(problem) => crate::ApiError::WrongShape {
                problem,
                dimensions: true,
            },
        }
    }
}

/// Decodes a 200 answer to a request of `expected_count` inputs. Each vector lands at its
/// `index`, whatever order the answer lists them in. When `expected_dims` is set every vector
/// must have that length; otherwise all must share one length.
pub fn decode_embeddings(body: &[u8], expected_count: usize, expected_dims: Option<usize>) -> Result<Embeddings, DecodeError> {
    use DecodeError::*;
    let json: Value = serde_json::from_slice(body).map_err(|e| Malformed(format!("the body is not JSON ({e})")))?;
    let data = json
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| Malformed("the body has no \"data\" list".to_string()))?;
    if data.len() != expected_count {
        return Err(WrongCount(format!(
            "{} inputs were sent but {} embeddings came back",
            expected_count,
            data.len()
        )));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected_count];
    for item in data {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .ok_or_else(|| Malformed("an embedding has no \"index\"".to_string()))? as usize;
        let slot = slots.get_mut(index).ok_or_else(|| {
            Malformed(format!(
                "an embedding has index {index}, but only {expected_count} inputs were sent"
            ))
        })?;
        if slot.is_some() {
            return Err(Malformed(format!("index {index} appears twice")));
        }
        let vector = decode_embedding(item.get("embedding").unwrap_or(&Value::Null), MAX_VECTOR_DIMS).map_err(Malformed)?;
        if vector.is_empty() {
            return Err(Malformed("an embedding is empty".into()));
        }
        *slot = Some(vector);
    }
    let vectors: Vec<Vec<f32>> = slots.into_iter().map(|v| v.expect("every index filled")).collect();
    let dims = expected_dims.or_else(|| vectors.first().map(Vec::len));
    if let Some(dims) = dims {
        if let Some(bad) = vectors.iter().position(|v| v.len() != dims) {
            let problem = format!("embedding {bad} has {} dimensions, expected {dims}", vectors[bad].len());
            return Err(if expected_dims.is_some() {
                WrongDimensions(problem)
            } else {
                Malformed(problem)
            });
        }
    }
    if vectors.iter().flatten().any(|f| !f.is_finite()) {
        return Err(Malformed("an embedding holds NaN or infinity".into()));
    }
    // No input counts more than the model's limit, so a larger figure is not believed.
    let most_tokens = (expected_count * crate::bounds::MAX_TOKENS_PER_INPUT) as u64;
    let total_tokens = json["usage"]["total_tokens"]
        .as_u64()
        .filter(|&n| n <= most_tokens)
        .unwrap_or(0);
    Ok(Embeddings {
        vectors,
        total_tokens,
        rate_limits: Default::default(),
    })
}

/// The `error.message` and `error.code` of an OpenAI-style error body; the raw text (cut to
/// 300 characters) when the body is not one.
pub fn api_error_message(body: &[u8]) -> (String, Option<String>) {
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        let error = &json["error"];
        let message = error["message"].as_str().or_else(|| error.as_str()).map(str::to_string);
        let code = error["code"].as_str().or_else(|| error["type"].as_str()).map(str::to_string);
        if let Some(message) = message {
            return (cut_message(&message, MAX_MESSAGE_CHARS), code.map(|c| cut_message(&c, 100)));
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return ("(empty body)".into(), None);
    }
    (cut_message(text, 300), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(values: &[f32]) -> String {
        let bytes: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn base64_decodes_to_little_endian_floats() {
        assert_eq!(decode_base64_f32(&b64(&[1.5, -0.25, 3.0])).unwrap(), vec![1.5, -0.25, 3.0]);
    }

    #[test]
    fn base64_of_a_partial_float_is_refused() {
        let text = base64::engine::general_purpose::STANDARD.encode([0u8, 0, 0]);
        assert!(decode_base64_f32(&text).unwrap_err().contains("multiple of 4"));
    }

    #[test]
    fn vectors_are_placed_by_index_not_by_answer_order() {
        let body = json!({"data": [
            {"index": 1, "embedding": b64(&[2.0, 2.0])},
            {"index": 0, "embedding": b64(&[1.0, 1.0])},
        ], "usage": {"total_tokens": 7}});
        let got = decode_embeddings(body.to_string().as_bytes(), 2, Some(2)).unwrap();
        assert_eq!(got.vectors, vec![vec![1.0, 1.0], vec![2.0, 2.0]]);
        assert_eq!(got.total_tokens, 7);
    }

    #[test]
    fn float_lists_are_accepted_too() {
        let body = json!({"data": [{"index": 0, "embedding": [0.5, 1.0]}]});
        assert_eq!(
            decode_embeddings(body.to_string().as_bytes(), 1, None).unwrap().vectors,
            vec![vec![0.5, 1.0]]
        );
    }

    #[test]
    fn a_missing_vector_is_refused() {
        let body = json!({"data": [{"index": 0, "embedding": b64(&[1.0])}]});
        let err = decode_embeddings(body.to_string().as_bytes(), 2, None)
            .unwrap_err()
            .problem()
            .to_string();
        assert_eq!(err, "2 inputs were sent but 1 embeddings came back");
    }

    #[test]
    fn a_repeated_index_is_refused() {
        let body = json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]});
        assert_eq!(
            decode_embeddings(body.to_string().as_bytes(), 2, None)
                .unwrap_err()
                .problem()
                .to_string(),
            "index 0 appears twice"
        );
    }

    #[test]
    fn an_index_past_the_inputs_is_refused() {
        let body = json!({"data": [{"index": 5, "embedding": [1.0]}]});
        assert!(decode_embeddings(body.to_string().as_bytes(), 1, None)
            .unwrap_err()
            .problem()
            .to_string()
            .contains("index 5"));
    }

    #[test]
    fn a_wrong_dimension_is_refused() {
        let body = json!({"data": [{"index": 0, "embedding": [1.0, 2.0, 3.0]}]});
        let err = decode_embeddings(body.to_string().as_bytes(), 1, Some(2))
            .unwrap_err()
            .problem()
            .to_string();
        assert_eq!(err, "embedding 0 has 3 dimensions, expected 2");
    }

    #[test]
    fn mixed_lengths_are_refused_without_an_expected_dimension() {
        let body = json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]});
        assert!(decode_embeddings(body.to_string().as_bytes(), 2, None).is_err());
    }

    #[test]
    fn a_vector_longer_than_pgvector_allows_is_refused_before_decoding() {
        let long = vec![0.5f32; MAX_VECTOR_DIMS + 1];
        for embedding in [json!(b64(&long)), json!(long)] {
            let body = json!({"data": [{"index": 0, "embedding": embedding}]});
            let err = decode_embeddings(body.to_string().as_bytes(), 1, None)
                .unwrap_err()
                .problem()
                .to_string();
            assert!(err.contains("more than 16000 dimensions"), "{err}");
        }
    }

    #[test]
    fn an_empty_vector_is_refused() {
        let body = json!({"data": [{"index": 0, "embedding": ""}]});
        assert_eq!(
            decode_embeddings(body.to_string().as_bytes(), 1, None)
                .unwrap_err()
                .problem()
                .to_string(),
            "an embedding is empty"
        );
    }

    #[test]
    fn an_absurd_token_count_is_not_believed() {
        let body = json!({"data": [{"index": 0, "embedding": b64(&[1.0])}], "usage": {"total_tokens": u64::MAX}});
        assert_eq!(
            decode_embeddings(body.to_string().as_bytes(), 1, None).unwrap().total_tokens,
            0
        );
    }

    #[test]
    fn a_long_error_message_is_cut() {
        let body = json!({"error": {"message": "m".repeat(100_000), "code": "c".repeat(100_000)}});
        let (message, code) = api_error_message(body.to_string().as_bytes());
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(code.unwrap().chars().count() <= 101);
    }

    #[test]
    fn a_body_that_is_not_json_is_refused() {
        assert!(decode_embeddings(b"<html>", 1, None)
            .unwrap_err()
            .problem()
            .to_string()
            .starts_with("the body is not JSON"));
    }

    #[test]
    fn the_api_error_message_and_code_are_read() {
        let body = json!({"error": {"message": "Too long", "type": "invalid_request_error", "code": "context_length"}});
        assert_eq!(
            api_error_message(body.to_string().as_bytes()),
            ("Too long".into(), Some("context_length".into()))
        );
    }

    #[test]
    fn a_plain_error_body_is_quoted() {
        assert_eq!(api_error_message(b"  Bad Gateway \n"), ("Bad Gateway".into(), None));
    }
}
