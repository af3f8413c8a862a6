//! The OpenAI-compatible side: `POST /v1/embeddings` (inputs as a string or an array of
//! strings, `encoding_format` float or base64, each vector with its `index`, `usage` in model
//! tokens), `GET /v1/models` and `GET /health`.

use http_endpoint::openai::{body_of, embedding_value, inputs_of};
use http_endpoint::{Reply, Request};
use serde_json::{json, Value};

use crate::model::SentenceModel;

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
        ("GET", "/health") => Reply::json(
            200,
            &json!({"status": "ok", "model": state.name, "dimensions": state.model.dims(),
                    "precision": state.model.precision(), "kernel": state.model.kernel(),
                    "instruction_set": state.model.instruction_set()}),
        ),
        (_, path) => Reply::api_error(404, "not_found", &format!("no route for {} {path}", request.method)),
    }
}

fn embeddings(state: &ServerState, raw: &[u8]) -> Reply {
    let body = match body_of(raw) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let model = body["model"].as_str().unwrap_or("");
    if !state.serves(model) {
        return Reply::api_error(
            404,
            "model_not_found",
            &format!(
                "The model '{model}' does not exist here; this server serves '{}'.",
                state.name
            ),
        );
    }
    let inputs = match inputs_of(&body) {
        Ok(inputs) => inputs,
        Err(reply) => return reply,
    };
    let base64 = match body["encoding_format"].as_str().unwrap_or("float") {
        "float" => false,
        "base64" => true,
        other => {
            return Reply::api_error(
                400,
                "invalid_value",
                &format!("'encoding_format' must be float or base64, not '{other}'."),
            )
        }
    };
    if let Some(asked) = body.get("dimensions").filter(|d| !d.is_null()) {
        if asked.as_u64() != Some(state.model.dims() as u64) {
            return Reply::api_error(
                400,
                "invalid_value",
                &format!(
                    "This model makes {}-dimensional vectors only; 'dimensions' was {asked}.",
                    state.model.dims()
                ),
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
        .map(|(index, vector)| json!({"object": "embedding", "index": index, "embedding": embedding_value(vector, base64)}))
        .collect();
    Reply::json(
        200,
        &json!({"object": "list", "data": data, "model": state.name,
                "usage": {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens}}),
    )
}
