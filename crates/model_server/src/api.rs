//! The OpenAI-compatible side: `POST /v1/embeddings` (inputs as a string or an array of
//! strings, `encoding_format` float or base64, each vector with its `index`, `usage` in model
//! tokens), `GET /v1/models` and `GET /health`.

use base64::Engine;
use http_endpoint::{Reply, Request};
use serde_json::{json, Value};

use crate::model::SentenceModel;

/// Most inputs in one request, as the OpenAI API allows.
const MAX_INPUTS: usize = 2048;

/// What every request handler shares.
pub struct ServerState {
    pub model: SentenceModel,
    /// The name the server answers to and reports (such as `all-MiniLM-L6-v2`).
    pub name: String,
}

impl ServerState {
    /// Whether `requested` names this model: its short name or its `owner/name` form.
    fn serves(&self, requested: &str) -> bool {
        requested == self.name || requested.rsplit('/').next() == Some(self.name.as_str())
    }
}

pub fn handle(state: &ServerState, request: &Request) -> Reply {
    match (request.method.as_str(), request.path()) {
        ("POST", "/v1/embeddings" | "/embeddings") => embeddings(state, &request.body),
        ("GET", "/v1/models" | "/models") => Reply::json(
            200,
            &json!({"object": "list", "data": [{"id": state.name, "object": "model", "owned_by": "local"}]}),
        ),
        ("GET", "/health") => Reply::json(200, &json!({"status": "ok", "model": state.name, "dimensions": state.model.dims()})),
        (_, path) => Reply::api_error(404, "not_found", &format!("no route for {} {path}", request.method)),
    }
}

fn embeddings(state: &ServerState, raw: &[u8]) -> Reply {
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => return Reply::api_error(400, "invalid_json", &format!("We could not parse the JSON body: {e}")),
    };
    let model = body["model"].as_str().unwrap_or("");
    if !state.serves(model) {
        return Reply::api_error(
            404,
            "model_not_found",
            &format!("The model '{model}' does not exist here; this server serves '{}'.", state.name),
        );
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        Value::Array(_) => {
            return Reply::api_error(400, "invalid_input", "'input' must be strings: token arrays are not supported here.")
        }
        _ => return Reply::api_error(400, "invalid_input", "'input' must be a string or an array of strings."),
    };
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return Reply::api_error(400, "invalid_input", &format!("'input' must hold 1 to {MAX_INPUTS} items."));
    }
    if let Some(i) = inputs.iter().position(String::is_empty) {
        return Reply::api_error(400, "invalid_input", &format!("'$.input[{i}]' is invalid: empty string."));
    }
    let base64 = match body["encoding_format"].as_str().unwrap_or("float") {
        "float" => false,
        "base64" => true,
        other => {
            return Reply::api_error(400, "invalid_value", &format!("'encoding_format' must be float or base64, not '{other}'."))
        }
    };
    if let Some(asked) = body.get("dimensions").filter(|d| !d.is_null()) {
        if asked.as_u64() != Some(state.model.dims() as u64) {
            return Reply::api_error(
                400,
                "invalid_value",
                &format!("This model makes {}-dimensional vectors only; 'dimensions' was {asked}.", state.model.dims()),
            );
        }
    }
    let embedded = match state.model.embed(&inputs) {
        Ok(e) => e,
        Err(e) => return Reply::api_error(500, "server_error", &format!("The model failed: {e}")),
    };
    let data: Vec<Value> = embedded
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| json!({"object": "embedding", "index": index, "embedding": encode(vector, base64)}))
        .collect();
    Reply::json(
        200,
        &json!({"object": "list", "data": data, "model": state.name,
                "usage": {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens}}),
    )
}

/// A vector as JSON numbers, or as base64 of its little-endian float32 bytes.
fn encode(vector: &[f32], base64: bool) -> Value {
    if base64 {
        let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        json!(vector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_holds_little_endian_float32() {
        let Value::String(text) = encode(&[1.0, -2.5], true) else { panic!("not a string") };
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
    }

    #[test]
    fn float_is_a_json_array() {
        assert_eq!(encode(&[0.5, 0.25], false), json!([0.5, 0.25]));
    }
}
