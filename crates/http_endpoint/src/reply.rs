//! One answer as a handler gives it, and the OpenAI-shaped error answers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A JSON body.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::new(status, body.to_string().into_bytes()).with_header("Content-Type", "application/json")
    }

    /// An error in the OpenAI API's shape: `{"error": {"message", "type", "param", "code"}}`.
    pub fn api_error(status: u16, code: &str, message: &str) -> Reply {
        let kind = match status {
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        Reply::json(
            status,
            &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
        )
    }

    /// The answer as hyper sends it. A status outside 100-999 becomes 500; a header that is not
    /// valid HTTP is left out. hyper adds `Content-Length`.
    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_has_the_openai_shape() {
        let reply = Reply::api_error(429, "rate_limit_exceeded", "slow down").with_header("retry-after", "1");
        let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(Reply::api_error(503, "server_busy", "busy").status, 503);
    }

    #[test]
    fn a_response_carries_status_and_headers_and_drops_invalid_ones() {
        let response = Reply::json(429, &json!({}))
            .with_header("retry-after", "1")
            .with_header("bad header", "x")
            .with_header("x-ok", "line\nbreak")
            .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers().len(), 2);
        assert_eq!(
            Reply::new(42, Vec::new()).into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
