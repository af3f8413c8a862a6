//! The API side of one batch: cut each text to the model's limit, pack the texts into requests
//! (at most 2048 inputs and `max_tokens_per_request` tokens each), send them with retries, and
//! isolate inputs the API rejects (see `embed_core::bisect`). When a request fails for good,
//! the requests after it are not sent, and everything answered before it is kept: it is paid
//! for, and the caller writes it.

use embed_core::bisect::{isolate_rejected, CANARY_TEXT};
use embed_core::packing::pack;
use embed_core::rate_limit;
use embed_core::retry::RetryPolicy;
use embed_core::tokens;
use embed_core::ApiError;
use pgrx::pg_sys;

use crate::http::endpoints::Endpoint;
use crate::http::failover::{send_to_one_of, EndpointTally};
use crate::http::retries::{retry_policy, Wait};
use crate::settings::gucs;

/// What the API made of a batch's texts, by their index in the batch.
pub struct Answered {
    /// The vector of each text, where it was answered.
    pub vectors: Vec<Option<Vec<f32>>>,
    /// Texts proven rejected, with the API's message.
    pub rejected: Vec<(usize, String)>,
    /// Tokens the API counted.
    pub tokens: u64,
    /// The error that stopped the batch early; texts neither answered nor rejected stay pending.
    pub error: Option<ApiError>,
    /// What each endpoint of the job did, in the job's order.
    pub by_endpoint: Vec<EndpointTally>,
}

/// Each text cut to the model's input limit, with its token count when it was counted. A cancel
/// is seen between texts (each cut is bounded: see `embed_core::bounds`).
fn cut_texts(texts: &[String]) -> Vec<(String, Option<usize>)> {
    texts
        .iter()
        .map(|text| {
            pg_sys::check_for_interrupts!();
            tokens::cut_to_model_limit(text)
        })
        .collect()
}

/// Token counts for packing: byte lengths bound them from above, so texts are counted exactly
/// only when the bounds do not fit in one request.
fn packing_counts(inputs: &[(String, Option<usize>)], budget: usize) -> Vec<usize> {
    let upper: Vec<usize> = inputs
        .iter()
        .map(|(text, n)| n.unwrap_or_else(|| tokens::upper_bound(text)))
        .collect();
    if upper.iter().sum::<usize>() <= budget {
        return upper;
    }
    inputs
        .iter()
        .map(|(text, n)| {
            pg_sys::check_for_interrupts!();
            n.unwrap_or_else(|| tokens::count(text))
        })
        .collect()
}

/// Sends `texts` as the batch's requests. `dims` is the length every vector must have, when
/// known; `on_wait` is told about each wait (rate limit, retry).
pub fn send_batch(endpoints: &[Endpoint], texts: &[String], dims: Option<usize>, on_wait: &mut dyn FnMut(Wait)) -> Answered {
    let inputs = cut_texts(texts);
    let budget = gucs::MAX_TOKENS_PER_REQUEST.get().max(1) as usize;
    let counts = packing_counts(&inputs, budget);
    // Token estimates for the rate limit: exact where counted, else about four bytes a token.
    let estimates: Vec<usize> = inputs
        .iter()
        .map(|(text, n)| n.unwrap_or_else(|| rate_limit::estimate_tokens(text)))
        .collect();
    let policy = retry_policy();
    let halves_policy = RetryPolicy {
        max_retries: policy.max_retries.min(1),
        ..policy
    };
    let mut answered = Answered {
        vectors: vec![None; texts.len()],
        rejected: Vec::new(),
        tokens: 0,
        error: None,
        by_endpoint: vec![EndpointTally::default(); endpoints.len()],
    };
    let tally = std::cell::RefCell::new(std::mem::take(&mut answered.by_endpoint));
    let mut expected = dims;
    let mut proven = false;
    for request in pack(&counts, budget) {
        let indices: Vec<usize> = request.collect();
        let mut tokens_used = 0;
        let mut first = true;
        let mut send = |items: &[usize]| {
            let texts: Vec<String> = items.iter().map(|&i| inputs[i].0.clone()).collect();
            let tokens = items.iter().map(|&i| estimates[i]).sum();
            // The request itself gets every retry; the halves of a search after it failed get
            // one: its retries already showed the failure is not transient.
            let policy = if std::mem::take(&mut first) { &policy } else { &halves_policy };
            // Without a declared length, every request of the batch must agree with the first.
            let answer = send_to_one_of(endpoints, &texts, tokens, expected, policy, on_wait, &tally)?;
            expected = expected.or(answer.vectors.first().map(Vec::len));
            tokens_used += answer.total_tokens;
            Ok(answer.vectors)
        };
        let mut canary =
            || send_to_one_of(endpoints, &[CANARY_TEXT.to_string()], 4, None, &policy, &mut |_| {}, &tally).map(|_| ());
        let isolated = isolate_rejected(&indices, &mut send, &mut canary, &mut proven);
        answered.tokens += tokens_used;
        for (i, vector) in isolated.vectors {
            answered.vectors[i] = Some(vector);
        }
        answered.rejected.extend(isolated.rejected);
        if isolated.error.is_some() {
            answered.error = isolated.error;
            break;
        }
    }
    answered.by_endpoint = tally.into_inner();
    answered
}
