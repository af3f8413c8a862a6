//! Building an embeddings request: the endpoint URL, the JSON body and the key's header.

use serde_json::{json, Value};

/// Most inputs the API takes in one request.
pub const MAX_INPUTS_PER_REQUEST: usize = 2048;

/// `{base}/embeddings`, keeping a query string of the base (Azure's `?api-version=...`).
pub fn endpoint_url(base_url: &str) -> String {
    api_url(base_url, "embeddings")
}

/// `{base}/{path}`, keeping a query string of the base; a query in `path` joins it.
pub fn api_url(base_url: &str, path: &str) -> String {
    let (base, base_query) = base_url.split_once('?').unwrap_or((base_url, ""));
    let (path, path_query) = path.split_once('?').unwrap_or((path, ""));
    let query: Vec<&str> = [base_query, path_query].into_iter().filter(|q| !q.is_empty()).collect();
    let mut url = format!("{}/{path}", base.trim_end_matches('/'));
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    url
}

/// The request body: the inputs in order, vectors asked for as base64 little-endian float32.
/// `dimensions` is sent only when set (0 means the model's own length).
pub fn request_body(model: &str, inputs: &[String], dimensions: u32) -> Vec<u8> {
    let mut body: Value = json!({
        "model": model,
        "input": inputs,
        "encoding_format": "base64",
    });
    if dimensions > 0 {
        body["dimensions"] = json!(dimensions);
    }
    body.to_string().into_bytes()
}

/// The header that carries the key: `Authorization: Bearer KEY`, or the bare key under any
/// other header name (Azure's `api-key`). `None` when there is no key.
pub fn auth_header(header_name: &str, api_key: &str) -> Option<(String, String)> {
    if api_key.is_empty() {
        return None;
    }
    let name = if header_name.trim().is_empty() {
        "Authorization"
    } else {
        header_name.trim()
    };
    let value = if name.eq_ignore_ascii_case("authorization") {
        format!("Bearer {api_key}")
    } else {
        api_key.to_string()
    };
    Some((name.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_appended_to_the_base() {
        assert_eq!(
            endpoint_url("https://api.openai.com/v1"),
            "https://api.openai.com/v1/embeddings"
        );
        assert_eq!(
            endpoint_url("https://api.openai.com/v1/"),
            "https://api.openai.com/v1/embeddings"
        );
    }

    #[test]
    fn a_query_string_in_the_base_is_kept_after_the_path() {
        assert_eq!(
            endpoint_url("https://x.openai.azure.com/openai/deployments/e?api-version=2024-02-01"),
            "https://x.openai.azure.com/openai/deployments/e/embeddings?api-version=2024-02-01"
        );
    }

    #[test]
    fn a_path_with_a_query_joins_the_base_s_query() {
        assert_eq!(
            api_url("https://h/v1?api-version=1", "batches?limit=100"),
            "https://h/v1/batches?api-version=1&limit=100"
        );
        assert_eq!(
            api_url("https://h/v1/", "batches?limit=100"),
            "https://h/v1/batches?limit=100"
        );
    }

    #[test]
    fn the_body_asks_for_base64_and_keeps_input_order() {
        let body: Value = serde_json::from_slice(&request_body("m", &["b".into(), "a".into()], 0)).unwrap();
        assert_eq!(body, json!({"model": "m", "input": ["b", "a"], "encoding_format": "base64"}));
    }

    #[test]
    fn dimensions_are_sent_only_when_set() {
        let body: Value = serde_json::from_slice(&request_body("m", &["a".into()], 256)).unwrap();
        assert_eq!(body["dimensions"], 256);
    }

    #[test]
    fn the_authorization_header_carries_a_bearer_token() {
        assert_eq!(
            auth_header("Authorization", "sk-1"),
            Some(("Authorization".into(), "Bearer sk-1".into()))
        );
    }

    #[test]
    fn another_header_carries_the_bare_key() {
        assert_eq!(auth_header("api-key", "k"), Some(("api-key".into(), "k".into())));
    }

    #[test]
    fn no_key_sends_no_header() {
        assert_eq!(auth_header("Authorization", ""), None);
    }
}
