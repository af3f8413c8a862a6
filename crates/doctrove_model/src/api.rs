//! The OpenAI-compatible side: `POST /v1/embeddings` (inputs as a string or an array of
//! strings, `encoding_format` float or base64, each vector with its `index`, `usage` in model
//! tokens; `model` picks one of the models served), `GET /v1/models` and `GET /health`.

use http_endpoint::openai::{body_of, embedding_value, inputs_of};
use http_endpoint::{Reply, Request};
use serde_json::{json, Value};

use crate::model::SentenceModel;

/// One model the server serves, under its name.
pub struct Served {
    /// The name requests give and the server reports (such as `all-MiniLM-L6-v2`).
    pub name: String,
    pub model: SentenceModel,
}

/// What every request handler shares: the models, the first one the one `/health` describes.
pub struct ServerState {
    pub models: Vec<Served>,
}

impl ServerState {
    /// A server of one model.
    pub fn single(name: &str, model: SentenceModel) -> ServerState {
        ServerState {
            models: vec![Served {
                name: name.to_string(),
                model,
            }],
        }
    }

    /// The model `requested` names: by its name or its `owner/name` form (names hold no `/`, so
    /// one name never shadows another).
    fn model(&self, requested: &str) -> Option<&Served> {
        let short = requested.rsplit('/').next();
        self.models
            .iter()
            .find(|served| requested == served.name || short == Some(served.name.as_str()))
    }

    fn names(&self) -> String {
        self.models
            .iter()
            .map(|s| format!("'{}'", s.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn handle(state: &ServerState, request: &Request) -> Reply {
    match (request.method.as_str(), request.path()) {
        ("POST", "/v1/embeddings" | "/embeddings") => embeddings(state, &request.body),
        ("GET", "/v1/models" | "/models") => Reply::json(
            200,
            &json!({"object": "list", "data": state.models.iter().map(|s| json!({
                "id": s.name, "object": "model", "owned_by": "local", "dimensions": s.model.dims(),
                "max_tokens": s.model.max_tokens()})).collect::<Vec<_>>()}),
        ),
        ("GET", "/health") => {
            let first = &state.models[0];
            Reply::json(
                200,
                &json!({"status": "ok", "model": first.name, "dimensions": first.model.dims(),
                        "precision": first.model.precision(), "kernel": first.model.kernel(),
                        "instruction_set": first.model.instruction_set(),
                        "models": state.models.iter().map(|s| json!({"name": s.name, "dimensions": s.model.dims()})).collect::<Vec<_>>()}),
            )
        }
        (_, path) => Reply::api_error(404, "not_found", &format!("no route for {} {path}", request.method)),
    }
}

fn embeddings(state: &ServerState, raw: &[u8]) -> Reply {
    let body = match body_of(raw) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let requested = body["model"].as_str().unwrap_or("");
    let Some(Served { name, model }) = state.model(requested) else {
        let shown: String = requested.chars().take(100).collect();
        return Reply::api_error(
            404,
            "model_not_found",
            &format!(
                "The model '{shown}' does not exist here; this server serves {}.",
                state.names()
            ),
        );
    };
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
        if asked.as_u64() != Some(model.dims() as u64) {
            return Reply::api_error(
                400,
                "invalid_value",
                &format!(
                    "This model makes {}-dimensional vectors only; 'dimensions' was {asked}.",
                    model.dims()
                ),
            );
        }
    }
    let embedded = match model.embed(&inputs) {
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
        &json!({"object": "list", "data": data, "model": name,
                "usage": {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens}}),
    )
}
