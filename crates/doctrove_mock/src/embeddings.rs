//! The body of an embeddings answer, as the live route (`server`) and the Batch API's output
//! file (`batch_api`) both write it.

use http_endpoint::openai::embedding_value;
use serde_json::{json, Value};

use crate::vectors::vector_for;

/// An embeddings answer: each input's vector of `dims` components, listed in input order when
/// `ascending`, else reversed (clients must match by `index`).
pub(crate) fn embeddings_body(model: &str, inputs: &[String], dims: usize, base64: bool, ascending: bool, tokens: u64) -> Value {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    if !ascending {
        order.reverse();
    }
    let data: Vec<Value> = order
        .iter()
        .map(|&i| json!({"object": "embedding", "index": i, "embedding": embedding_value(&vector_for(&inputs[i], dims), base64)}))
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}
