//! One request as a handler sees it: method, target, headers and the whole body.

/// One request, its body read in full (within [`crate::Limits::max_body_bytes`]).
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query string.
    pub url: String,
    /// Header names in lower case; values that are not UTF-8 are read lossily.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("")
    }

    /// The first header of that name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request as hyper parsed it, with its collected body.
    pub(crate) fn from_parts(parts: &hyper::http::request::Parts, body: Vec<u8>) -> Request {
        let url = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |pq| pq.as_str().to_string());
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        Request {
            method: parts.method.as_str().to_string(),
            url,
            headers,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_headers_are_read_from_the_parsed_request() {
        let (parts, ()) = hyper::Request::post("/v1/embeddings?x=1")
            .header("Authorization", "Bearer k")
            .body(())
            .expect("a valid request")
            .into_parts();
        let request = Request::from_parts(&parts, b"{}".to_vec());
        assert_eq!(
            (request.method.as_str(), request.path(), request.url.as_str()),
            ("POST", "/v1/embeddings", "/v1/embeddings?x=1")
        );
        assert_eq!(request.header("AUTHORIZATION"), Some("Bearer k"));
        assert_eq!(request.body, b"{}");
    }
}
