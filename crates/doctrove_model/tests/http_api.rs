//! The OpenAI-compatible HTTP side, through a real socket: float and base64 answers with their
//! index and usage, and the errors a client gets for requests the model cannot serve.

mod common;

use std::sync::{Arc, OnceLock};

use base64::Engine;
use common::server::exchange;
use common::{cosine, model};
use doctrove_model::{handle, ServerState};
use http_endpoint::Server;
use serde_json::{json, Value};

/// A server on a free loopback port, sharing the test binary's model.
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let dir = doctrove_model::model_dir_from_env();
        let state = Arc::new(ServerState::single(
            "all-MiniLM-L6-v2",
            doctrove_model::SentenceModel::load(&dir).expect("load the model"),
        ));
        let server = Server::start("127.0.0.1:0", move |request| handle(&state, request)).unwrap();
        let url = server.url();
        std::mem::forget(server); // serves until the test binary ends
        url
    })
}

/// POSTs `body` to `path` and returns the status and the JSON answer.
fn post(path: &str, body: &Value) -> (u16, Value) {
    exchange(server_url().trim_start_matches("http://"), "POST", path, &body.to_string())
}

fn decode_base64(value: &Value) -> Vec<f32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.as_str().unwrap())
        .unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn float_answers_carry_each_vector_at_its_index_with_usage() {
    let texts = ["Galaxy clusters and dark matter.", "Gene expression in yeast."];
    let (status, answer) = post("/v1/embeddings", &json!({"model": "all-MiniLM-L6-v2", "input": texts}));
    assert_eq!(status, 200, "{answer}");
    let direct = model().embed(&texts.map(String::from)).unwrap();
    for (i, item) in answer["data"].as_array().unwrap().iter().enumerate() {
        assert_eq!(item["index"], i);
        let got: Vec<f32> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got, direct.vectors[i]);
    }
    assert_eq!(answer["usage"]["prompt_tokens"], direct.tokens);
    assert_eq!(answer["usage"]["total_tokens"], direct.tokens);
    assert_eq!(answer["model"], "all-MiniLM-L6-v2");
}

#[test]
fn base64_answers_decode_to_the_same_vectors() {
    let (_, float) = post(
        "/v1/embeddings",
        &json!({"model": "all-MiniLM-L6-v2", "input": "Topological insulators."}),
    );
    let (status, b64) = post(
        "/v1/embeddings",
        &json!({"model": "sentence-transformers/all-MiniLM-L6-v2", "input": ["Topological insulators."],
                "encoding_format": "base64", "dimensions": 384}),
    );
    assert_eq!(status, 200, "{b64}");
    let from_float: Vec<f32> = float["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let from_base64 = decode_base64(&b64["data"][0]["embedding"]);
    assert_eq!(from_base64, from_float);
    assert!(cosine(&from_base64, &from_float) > 0.999_999);
}

#[test]
fn requests_the_model_cannot_serve_get_openai_style_errors() {
    let cases = [
        (
            json!({"model": "text-embedding-3-small", "input": "x"}),
            404,
            "model_not_found",
        ),
        (
            json!({"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 1536}),
            400,
            "invalid_value",
        ),
        (json!({"model": "all-MiniLM-L6-v2", "input": ["x", ""]}), 400, "invalid_input"),
        (
            json!({"model": "all-MiniLM-L6-v2", "input": [[1, 2, 3]]}),
            400,
            "invalid_input",
        ),
        (json!({"model": "all-MiniLM-L6-v2", "input": []}), 400, "invalid_input"),
        (
            json!({"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "int8"}),
            400,
            "invalid_value",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = post("/v1/embeddings", &body);
        assert_eq!((got, answer["error"]["code"].as_str().unwrap()), (status, code), "{body}");
    }
}
