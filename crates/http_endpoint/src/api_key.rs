//! The optional API key: which requests need it, and a comparison in constant time.

use hyper::header::AUTHORIZATION;
use hyper::http::request::Parts;
use hyper::Method;
use subtle::ConstantTimeEq;

/// Whether the request may go on: `GET /health` always may; any other needs `key` as
/// `Authorization: Bearer KEY` or `api-key: KEY`.
pub fn admits(parts: &Parts, key: &str) -> bool {
    if parts.method == Method::GET && parts.uri.path() == "/health" {
        return true;
    }
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    let plain = parts.headers.get("api-key").map(|v| v.as_bytes());
    bearer.or(plain).is_some_and(|given| bool::from(given.ct_eq(key.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, path: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = hyper::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a valid request").into_parts().0
    }

    #[test]
    fn bearer_or_api_key_header_with_the_key_is_admitted() {
        assert!(admits(
            &parts(Method::POST, "/v1/embeddings", &[("authorization", "Bearer s3cret")]),
            "s3cret"
        ));
        assert!(admits(
            &parts(Method::POST, "/v1/embeddings", &[("api-key", "s3cret")]),
            "s3cret"
        ));
    }

    #[test]
    fn a_missing_wrong_or_partial_key_is_refused() {
        for headers in [
            &[][..],
            &[("authorization", "Bearer s3cre")],
            &[("authorization", "Bearer s3cretx")],
            &[("authorization", "s3cret")],
            &[("api-key", "")],
        ] {
            assert!(
                !admits(&parts(Method::POST, "/v1/embeddings", headers), "s3cret"),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn only_get_health_is_open() {
        assert!(admits(&parts(Method::GET, "/health", &[]), "k"));
        assert!(!admits(&parts(Method::POST, "/health", &[]), "k"));
        assert!(!admits(&parts(Method::GET, "/v1/models", &[]), "k"));
    }
}
