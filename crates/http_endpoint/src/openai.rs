//! The parts of the OpenAI embeddings API both of the project's servers speak the same way:
//! which `input` a request may carry, and how one vector is written in the answer.

use base64::Engine;
use serde_json::{json, Value};

use crate::Reply;

/// Most inputs in one request, as the OpenAI API allows.
pub const MAX_INPUTS: usize = 2048;

/// A request body as JSON, or the 400 the API answers for one that is not.
pub fn body_of(raw: &[u8]) -> Result<Value, Reply> {
    serde_json::from_slice(raw)
        .map_err(|e| Reply::api_error(400, "invalid_json", &format!("We could not parse the JSON body: {e}")))
}

/// The texts of a request body's `input`: one string, or an array of 1 to [`MAX_INPUTS`]
/// strings, none empty. Anything else is the 400 answer the API gives for it.
pub fn inputs_of(body: &Value) -> Result<Vec<String>, Reply> {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        Value::Array(_) => {
            return Err(Reply::api_error(
                400,
                "invalid_input",
                "'input' must be strings: token arrays are not supported here.",
            ))
        }
        _ => {
            return Err(Reply::api_error(
                400,
                "invalid_input",
                "'input' must be a string or an array of strings.",
            ))
        }
    };
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return Err(Reply::api_error(
            400,
            "invalid_input",
            &format!("'input' must hold 1 to {MAX_INPUTS} items."),
        ));
    }
    if let Some(i) = inputs.iter().position(String::is_empty) {
        return Err(Reply::api_error(
            400,
            "invalid_input",
            &format!("'$.input[{i}]' is invalid: empty string."),
        ));
    }
    Ok(inputs)
}

/// A vector as JSON numbers, or as base64 of its little-endian float32 bytes.
pub fn embedding_value(vector: &[f32], base64: bool) -> Value {
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

    fn code_of(body: Value) -> String {
        let reply = inputs_of(&body).unwrap_err();
        let answer: Value = serde_json::from_slice(&reply.body).unwrap();
        format!("{} {}", reply.status, answer["error"]["code"].as_str().unwrap())
    }

    #[test]
    fn a_body_that_is_not_json_is_refused() {
        assert_eq!(body_of(b"{\"input\": \"a\"}").ok(), Some(json!({"input": "a"})));
        assert_eq!(body_of(b"<html>").unwrap_err().status, 400);
    }

    #[test]
    fn a_string_or_an_array_of_strings_is_taken_in_order() {
        assert_eq!(inputs_of(&json!({"input": "a"})).ok(), Some(vec!["a".to_string()]));
        assert_eq!(
            inputs_of(&json!({"input": ["b", "a"]})).ok(),
            Some(vec!["b".to_string(), "a".to_string()])
        );
    }

    #[test]
    fn empty_missing_token_and_oversized_inputs_are_refused() {
        for body in [
            json!({}),
            json!({"input": []}),
            json!({"input": ["x", ""]}),
            json!({"input": [[1, 2]]}),
            json!({"input": vec!["x"; MAX_INPUTS + 1]}),
        ] {
            assert_eq!(code_of(body.clone()), "400 invalid_input", "{body}");
        }
    }

    #[test]
    fn base64_holds_little_endian_float32() {
        let Value::String(text) = embedding_value(&[1.0, -2.5], true) else {
            panic!("not a string")
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
    }

    #[test]
    fn float_is_a_json_array() {
        assert_eq!(embedding_value(&[0.5, 0.25], false), json!([0.5, 0.25]));
    }
}
