//! Embedding a search query: the text trimmed and cut to the model's input limit, taken from
//! the server-wide cache when it was embedded lately, else sent as one request within the
//! shared rate limit, with retries, and kept in the cache.

use std::cell::RefCell;

use pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE;

use crate::errors::{api_error, UserError};
use crate::http::endpoints::Endpoint;
use crate::http::failover::{send_to_one_of, EndpointTally};
use crate::http::retries::retry_policy;
use crate::pg::query_cache;

/// The vector of `query`, from one of `endpoints`; `dims` is the length it must have, when
/// known.
pub fn embed_query(endpoints: &[Endpoint], query: &str, dims: Option<usize>) -> Result<Vec<f32>, UserError> {
    let (text, _) = embed_core::tokens::cut_to_model_limit(query.trim());
    if text.is_empty() {
        return Err(UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, "the search text is empty"));
    }
    // Each endpoint by name and URL: a session may point the endpoint default elsewhere.
    let names: Vec<&str> = endpoints
        .iter()
        .flat_map(|e| [e.name.as_str(), e.config.base_url.as_str()])
        .collect();
    let config = &endpoints[0].config;
    let key = embed_core::query_cache::cache_key(&names, &config.model, config.dimensions, &text);
    if let Some(vector) = query_cache::lookup(&key) {
        return Ok(vector);
    }
    let tokens = embed_core::rate_limit::estimate_tokens(&text);
    let tally = RefCell::new(vec![EndpointTally::default(); endpoints.len()]);
    let answer =
        send_to_one_of(endpoints, &[text], tokens, dims, &retry_policy(), &mut |_| {}, &tally).map_err(|e| api_error(&e))?;
    let vector = answer.vectors.into_iter().next().unwrap_or_default();
    query_cache::store(&key, &vector);
    Ok(vector)
}
