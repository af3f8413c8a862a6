//! One request to one of a job's endpoints: the freest first (see
//! `embed_core::endpoints::order`), the next when it fails for the endpoint's reasons, so an
//! endpoint that is down or rate limited slows a job and does not stop it.

use std::cell::RefCell;

use embed_core::retry::RetryPolicy;
use embed_core::{ApiError, Embeddings};

use crate::http::endpoints::Endpoint;
use crate::http::retries::{embed_with_retries, is_endpoint_fault, Wait};
use crate::pg::clock::unix_now_ms;
use crate::pg::endpoint_state;

/// Inputs an endpoint answered in a batch, and its failed requests.
#[derive(Debug, Default, Clone, Copy)]
pub struct EndpointTally {
    pub inputs: u64,
    pub errors: u64,
}

/// Sends one request to the freest of `endpoints` (see `embed_core::endpoints::order`); when it
/// fails for the endpoint's reasons, to the next. Every endpoint but the last tried gets one
/// retry: another may answer at once. Each try is counted in `tally`.
pub fn send_to_one_of(
    endpoints: &[Endpoint],
    texts: &[String],
    tokens: usize,
    dims: Option<usize>,
    policy: &RetryPolicy,
    on_wait: &mut dyn FnMut(Wait),
    tally: &RefCell<Vec<EndpointTally>>,
) -> Result<Embeddings, ApiError> {
    let capacities: Vec<_> = endpoints
        .iter()
        .map(|e| endpoint_state::capacity(&e.name, e.max_tokens_per_minute, e.max_requests_per_minute))
        .collect();
    let order = embed_core::endpoints::order(&capacities, unix_now_ms());
    for (k, &i) in order.iter().enumerate() {
        let last = k + 1 == order.len();
        let tries = if last {
            *policy
        } else {
            RetryPolicy {
                max_retries: policy.max_retries.min(1),
                ..*policy
            }
        };
        let result = embed_with_retries(&endpoints[i], texts, tokens, dims, &tries, on_wait);
        let mut tally = tally.borrow_mut();
        match &result {
            Ok(_) => tally[i].inputs += texts.len() as u64,
            Err(_) => tally[i].errors += 1,
        }
        if last || !matches!(&result, Err(error) if is_endpoint_fault(error)) {
            return result;
        }
    }
    // A job names at least one endpoint (checked when it is defined).
    Err(ApiError::Malformed("no endpoint to send the request to".into()))
}
