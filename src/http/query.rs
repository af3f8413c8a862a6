//! Embedding a search query: the text trimmed and cut to the model's input limit, sent as one
//! request within the shared rate limit, with retries.

use std::cell::RefCell;

use pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE;

use crate::errors::{api_error, UserError};
use crate::http::endpoints::Endpoint;
use crate::http::failover::{send_to_one_of, EndpointTally};
use crate::http::retries::retry_policy;

/// The vector of `query`, from one of `endpoints`; `dims` is the length it must have, when
/// known.
pub fn embed_query(endpoints: &[Endpoint], query: &str, dims: Option<usize>) -> Result<Vec<f32>, UserError> {
    let (text, _) = embed_core::tokens::cut_to_model_limit(query.trim());
    if text.is_empty() {
        return Err(UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, "the search text is empty"));
    }
    let tokens = embed_core::rate_limit::estimate_tokens(&text);
    let tally = RefCell::new(vec![EndpointTally::default(); endpoints.len()]);
    let answer =
        send_to_one_of(endpoints, &[text], tokens, dims, &retry_policy(), &mut |_| {}, &tally).map_err(|e| api_error(&e))?;
    Ok(answer.vectors.into_iter().next().unwrap_or_default())
}
