//! Embedding a search query: the text trimmed and cut to the model's input limit, sent as one
//! request within the shared rate limit, with retries.

use embed_core::ApiConfig;
use pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE;

use crate::errors::{api_error, UserError};
use crate::http::retries::{embed_with_retries, retry_policy};

/// The vector of `query`; `dims` is the length it must have, when known.
pub fn embed_query(config: &ApiConfig, query: &str, dims: Option<usize>) -> Result<Vec<f32>, UserError> {
    let (text, _) = embed_core::tokens::cut_to_model_limit(query.trim());
    if text.is_empty() {
        return Err(UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, "the search text is empty"));
    }
    let tokens = embed_core::rate_limit::estimate_tokens(&text);
    let answer = embed_with_retries(config, &[text], tokens, dims, &retry_policy(), &mut |_| {}).map_err(|e| api_error(&e))?;
    Ok(answer.vectors.into_iter().next().unwrap_or_default())
}
