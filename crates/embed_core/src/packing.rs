//! Packing a batch's inputs into requests: at most 2048 inputs and at most a token budget each,
//! in order.

use crate::request::MAX_INPUTS_PER_REQUEST;

/// Splits inputs with these token counts into consecutive requests of at most
/// `MAX_INPUTS_PER_REQUEST` inputs and `max_tokens` tokens (an input larger than the budget
/// alone gets a request of its own). Returns index ranges.
pub fn pack(token_counts: &[usize], max_tokens: usize) -> Vec<std::ops::Range<usize>> {
    let mut requests = Vec::new();
    let mut start = 0;
    let mut tokens = 0;
    for (i, &n) in token_counts.iter().enumerate() {
        let full = i - start == MAX_INPUTS_PER_REQUEST || (i > start && tokens + n > max_tokens);
        if full {
            requests.push(start..i);
            start = i;
            tokens = 0;
        }
        tokens += n;
    }
    if start < token_counts.len() {
        requests.push(start..token_counts.len());
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_batch_is_one_request() {
        assert_eq!(pack(&[10, 20, 30], 300_000), vec![0..3]);
    }

    #[test]
    fn the_token_budget_splits_requests() {
        assert_eq!(pack(&[100, 100, 100, 100], 250), vec![0..2, 2..4]);
    }

    #[test]
    fn the_input_limit_splits_requests() {
        let counts = vec![1; 5000];
        assert_eq!(pack(&counts, usize::MAX), vec![0..2048, 2048..4096, 4096..5000]);
    }

    #[test]
    fn an_oversized_input_travels_alone() {
        assert_eq!(pack(&[10, 500, 10], 100), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn nothing_packs_to_no_request() {
        assert!(pack(&[], 100).is_empty());
    }
}
