//! Finding the inputs an API rejects without giving up the rest of the batch, and blaming an
//! input only when that is proven.
//!
//! When a request fails with 400 or 422 for its input, the inputs are split in halves and the
//! left half is sent. If it is accepted, the rejected input must be in the right half, which is
//! split again without being sent. If it is rejected too, the search goes on in the left half,
//! and the right half, untested, is *deferred*: left pending for a later batch, where it travels
//! in a full request. So one rejected input among n costs about log2(n) extra requests, and
//! every other input is embedded.
//!
//! An input is blamed (recorded as rejected) only when it was sent alone, rejected alone, and
//! the same API accepted another request of the same batch: when none was accepted, a tiny
//! canary request (a fixed text) is sent, a batch of one paper included. If the API rejects the
//! canary too, it refuses every request (a wrong model, say): that is a configuration error
//! ([`ApiError::RefusesEverything`]) and no input is blamed.
//!
//! A refusal for the request's size (413, or a 400 whose code names a size limit) says nothing
//! about any one input: the request is split and both halves are sent, and no input is blamed;
//! one input refused for its size alone ends the search with that error.
//!
//! A request that still fails after its retries with a 500 or with an answer that is not a valid
//! embeddings response (a self-hosted model that fails on one odd input does the first; a NaN
//! in one vector the second) may be one input's doing too, when a canary request is answered
//! meanwhile (an API that fails the canary too fails everything: the search stops there). It is
//! bisected the same way, and an input is blamed only when, after the search reached it, another
//! canary is answered and the input sent alone fails again: so an outage, even one that ends
//! during the search, never blames anyone.
//!
//! A request that fails for another reason ends the search: what was answered before it is
//! kept ([`Isolated::vectors`], already paid for), the rest stays pending, and the error comes
//! back in [`Isolated::error`].

use crate::error::ApiError;

/// Where each input of a batch ended up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Isolated {
    /// Accepted inputs with their vectors.
    pub vectors: Vec<(usize, Vec<f32>)>,
    /// Inputs proven rejected, with the API's message.
    pub rejected: Vec<(usize, String)>,
    /// Inputs not sent in this batch, in groups.
    pub deferred: Vec<Vec<usize>>,
    /// The error that ended the search early; inputs neither accepted nor rejected stay pending.
    pub error: Option<ApiError>,
}

/// Error codes with which APIs refuse a request for its size rather than its content.
const SIZE_CODES: [&str; 4] = [
    "context_length_exceeded",
    "max_tokens_exceeded",
    "request_too_large",
    "payload_too_large",
];

/// Whether the API refused the request for its size: split it, blame no input.
pub fn is_size_rejection(error: &ApiError) -> bool {
    match error {
        ApiError::Rejected { status: 413, .. } => true,
        ApiError::Rejected {
            status: 400,
            code: Some(code),
            ..
        } => SIZE_CODES.contains(&code.as_str()),
        _ => false,
    }
}

/// Whether the API refused the request because of an input's content.
pub fn is_input_rejection(error: &ApiError) -> bool {
    matches!(error, ApiError::Rejected { status: 400 | 422, .. }) && !is_size_rejection(error)
}

/// Whether a request that failed this way after its retries may have failed for one input: a
/// 500, or an answer that is not a valid embeddings response.
pub fn may_follow_an_input(error: &ApiError) -> bool {
    matches!(error, ApiError::ServerError { status: 500, .. } | ApiError::Malformed(_))
}

fn rejection_message(error: &ApiError) -> String {
    match error {
        ApiError::Rejected { status, message, .. } => format!("HTTP {status}: {message}"),
        other => other.to_string(),
    }
}

type Sender<'a> = dyn FnMut(&[usize]) -> Result<Vec<Vec<f32>>, ApiError> + 'a;

/// The search over one group of inputs; `Err` ends it (what is in `out` stays).
struct Search<'s, 'a> {
    send: &'s mut Sender<'a>,
    out: Isolated,
    /// Whether an accepted request of this batch shows that the API accepts requests at all.
    proven: &'s mut bool,
    /// Inputs rejected alone (4xx), not yet proven to be at fault.
    suspects: Vec<(usize, String)>,
    /// Inputs whose request failed alone (500, an invalid answer), to be blamed only when a
    /// canary sent afterwards is answered.
    failed_alone: Vec<(usize, ApiError)>,
    /// Sends the canary request.
    canary: &'s mut dyn FnMut() -> Result<(), ApiError>,
    /// Whether a canary has shown that the API answers while a request fails with a 500 or an
    /// invalid answer: only then may such a failure follow an input, and is it searched.
    failure_searched: bool,
}

impl Search<'_, '_> {
    fn send(&mut self, items: &[usize]) -> Result<Vec<Vec<f32>>, ApiError> {
        let answer = (self.send)(items);
        if answer.is_ok() {
            *self.proven = true;
        }
        answer
    }

    /// `items`, whose request is known to fail with `known` (or not yet sent when `None`).
    fn search(&mut self, items: &[usize], known: Option<ApiError>) -> Result<(), ApiError> {
        let error = match known {
            Some(error) => error,
            None => match self.send(items) {
                Ok(vectors) => {
                    self.out.vectors.extend(items.iter().copied().zip(vectors));
                    return Ok(());
                }
                Err(error) => error,
            },
        };
        if is_size_rejection(&error) {
            if items.len() == 1 {
                return Err(error);
            }
            let (left, right) = items.split_at(items.len() / 2);
            self.search(left, None)?;
            return self.search(right, None);
        }
        let failure = may_follow_an_input(&error);
        if !is_input_rejection(&error) && !failure {
            return Err(error);
        }
        if failure && !self.failure_searched {
            // An API that fails a canary the same way fails every text, not this request's:
            // nothing to search, and no input to suspect.
            if (self.canary)().is_err() {
                return Err(error);
            }
            self.failure_searched = true;
        }
        if items.len() == 1 {
            if failure {
                self.failed_alone.push((items[0], error));
            } else {
                self.suspects.push((items[0], rejection_message(&error)));
            }
            return Ok(());
        }
        let (left, right) = items.split_at(items.len() / 2);
        match self.send(left) {
            Ok(vectors) => {
                self.out.vectors.extend(left.iter().copied().zip(vectors));
                self.search(right, Some(error))
            }
            Err(left_error) => {
                self.out.deferred.push(right.to_vec());
                self.search(left, Some(left_error))
            }
        }
    }
}

/// The text of the canary request.
pub const CANARY_TEXT: &str = "doctrove_embed canary";

/// Sends `items` (indices into the batch) with `send`, isolating inputs the API rejects.
/// `send` gets the indices of one request and returns their vectors in order; `canary` sends
/// [`CANARY_TEXT`] alone. `proven` carries across the requests of one batch whether the API
/// has accepted one (it is set here when a request is accepted).
pub fn isolate_rejected(
    items: &[usize],
    send: &mut Sender,
    canary: &mut dyn FnMut() -> Result<(), ApiError>,
    proven: &mut bool,
) -> Isolated {
    let mut search = Search {
        send,
        out: Isolated::default(),
        proven,
        suspects: Vec::new(),
        failed_alone: Vec::new(),
        canary,
        failure_searched: false,
    };
    if !items.is_empty() {
        if let Err(error) = search.search(items, None) {
            search.out.error = Some(error);
        }
    }
    let Search {
        send,
        mut out,
        proven,
        suspects,
        failed_alone,
        canary,
        ..
    } = search;
    if !failed_alone.is_empty() {
        // A 500 or an invalid answer for one input (reached by the search, perhaps without being
        // sent alone): blamed only if the API answers a canary now and then fails that input
        // sent alone again. Otherwise the API was failing, not the input: nothing is blamed, and
        // an input it now answers is kept.
        match canary() {
            Ok(()) => {
                *proven = true;
                for (i, _) in failed_alone {
                    match send(&[i]) {
                        Ok(mut vectors) => out.vectors.push((i, vectors.pop().unwrap_or_default())),
                        Err(error) if may_follow_an_input(&error) => {
                            out.rejected.push((i, format!("failed alone: {error}")));
                        }
                        Err(error) => {
                            out.deferred.push(vec![i]);
                            out.error.get_or_insert(error);
                        }
                    }
                }
            }
            Err(error) => {
                out.deferred.extend(failed_alone.into_iter().map(|(i, _)| vec![i]));
                out.error.get_or_insert(error);
                out.deferred.extend(suspects.into_iter().map(|(i, _)| vec![i]));
                return out;
            }
        }
    }
    if suspects.is_empty() {
        return out;
    }
    if !*proven {
        match canary() {
            Ok(()) => *proven = true,
            Err(error) if is_input_rejection(&error) || is_size_rejection(&error) => {
                let first = suspects.into_iter().next().map(|(_, message)| message).unwrap_or_default();
                out.error.get_or_insert(ApiError::RefusesEverything { message: first });
                return out;
            }
            Err(error) => {
                out.error.get_or_insert(error);
                return out;
            }
        }
    }
    out.rejected.extend(suspects);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected() -> ApiError {
        ApiError::Rejected {
            status: 400,
            message: "bad input".into(),
            code: None,
        }
    }

    /// A fake API: rejects any request holding a poisoned index, counts requests.
    fn fake<'a>(poisoned: &[usize], calls: &'a mut usize) -> impl FnMut(&[usize]) -> Result<Vec<Vec<f32>>, ApiError> + 'a {
        let poisoned = poisoned.to_vec();
        move |items: &[usize]| {
            *calls += 1;
            if items.iter().any(|i| poisoned.contains(i)) {
                Err(rejected())
            } else {
                Ok(items.iter().map(|&i| vec![i as f32]).collect())
            }
        }
    }

    fn canary_ok() -> impl FnMut() -> Result<(), ApiError> {
        || Ok(())
    }

    fn all_indices(out: &Isolated) -> Vec<usize> {
        let mut all: Vec<usize> = out.vectors.iter().map(|(i, _)| *i).collect();
        all.extend(out.rejected.iter().map(|(i, _)| *i));
        all.extend(out.deferred.iter().flatten());
        all.sort();
        all
    }

    #[test]
    fn a_clean_batch_is_one_request() {
        let mut calls = 0;
        let items: Vec<usize> = (0..250).collect();
        let out = isolate_rejected(&items, &mut fake(&[], &mut calls), &mut canary_ok(), &mut false);
        assert_eq!(calls, 1);
        assert_eq!(out.vectors.len(), 250);
        assert!(out.vectors.iter().all(|(i, v)| v == &vec![*i as f32]));
        assert_eq!(out.error, None);
    }

    #[test]
    fn one_rejected_input_costs_about_log2_extra_requests_wherever_it_is() {
        let items: Vec<usize> = (0..250).collect();
        for poison in 0..250 {
            let mut calls = 0;
            let mut canaries = 0;
            let mut canary = || {
                canaries += 1;
                Ok(())
            };
            let out = isolate_rejected(&items, &mut fake(&[poison], &mut calls), &mut canary, &mut false);
            assert_eq!(out.rejected.len(), 1, "poison {poison}");
            assert_eq!(out.rejected[0].0, poison);
            assert_eq!(all_indices(&out), items, "every input is accounted for exactly once");
            // 1 request of the clean run + at most ceil(log2 250) = 8 more, + 1 canary when no
            // other request was accepted (the poison in the first half all the way down).
            assert!(calls <= 1 + 8, "poison {poison}: {calls} requests");
            assert!(canaries <= 1, "poison {poison}: {canaries} canaries");
        }
    }

    #[test]
    fn several_rejected_inputs_are_all_found_or_deferred() {
        let items: Vec<usize> = (0..64).collect();
        let mut calls = 0;
        let out = isolate_rejected(&items, &mut fake(&[3, 40, 41], &mut calls), &mut canary_ok(), &mut false);
        assert_eq!(all_indices(&out), items);
        let rejected: Vec<usize> = out.rejected.iter().map(|(i, _)| *i).collect();
        let deferred: Vec<usize> = out.deferred.iter().flatten().copied().collect();
        for poison in [3, 40, 41] {
            assert!(
                rejected.contains(&poison) || deferred.contains(&poison),
                "{poison} was embedded"
            );
        }
        assert!(out.vectors.iter().all(|(i, _)| ![3, 40, 41].contains(i)));
    }

    #[test]
    fn an_api_that_rejects_everything_blames_no_input_even_in_a_batch_of_one() {
        for size in [1usize, 10] {
            let items: Vec<usize> = (0..size).collect();
            let mut calls = 0;
            let mut canary = || {
                Err(ApiError::Rejected {
                    status: 400,
                    message: "no such model".into(),
                    code: None,
                })
            };
            let out = isolate_rejected(&items, &mut fake(&items, &mut calls), &mut canary, &mut false);
            assert!(out.rejected.is_empty(), "batch of {size}: {out:?}");
            assert!(matches!(out.error, Some(ApiError::RefusesEverything { .. })), "{out:?}");
        }
    }

    #[test]
    fn a_batch_of_one_rejected_paper_is_blamed_only_after_the_canary_passed() {
        let mut calls = 0;
        let mut canaries = 0;
        let mut canary = || {
            canaries += 1;
            Ok(())
        };
        let out = isolate_rejected(&[7], &mut fake(&[7], &mut calls), &mut canary, &mut false);
        assert_eq!(out.rejected, vec![(7, "HTTP 400: bad input".to_string())]);
        assert_eq!((calls, canaries), (1, 1));
    }

    #[test]
    fn an_api_already_proven_in_the_batch_needs_no_canary() {
        let mut calls = 0;
        let mut canary = || panic!("no canary needed");
        let out = isolate_rejected(&[7], &mut fake(&[7], &mut calls), &mut canary, &mut true);
        assert_eq!(out.rejected.len(), 1);
    }

    /// A fake API that fails with 500 (after its retries) any request holding a poisoned index.
    fn failing<'a>(poisoned: &[usize], calls: &'a mut usize) -> impl FnMut(&[usize]) -> Result<Vec<Vec<f32>>, ApiError> + 'a {
        let poisoned = poisoned.to_vec();
        move |items: &[usize]| {
            *calls += 1;
            if items.iter().any(|i| poisoned.contains(i)) {
                Err(ApiError::ServerError {
                    status: 500,
                    message: "model crashed".into(),
                    retry_after: None,
                })
            } else {
                Ok(items.iter().map(|&i| vec![i as f32]).collect())
            }
        }
    }

    #[test]
    fn an_input_that_makes_the_api_fail_is_found_and_its_neighbours_embedded() {
        let items: Vec<usize> = (0..250).collect();
        for poison in [0, 1, 124, 125, 249] {
            let mut calls = 0;
            let mut canaries = 0;
            let mut canary = || {
                canaries += 1;
                Ok(())
            };
            let out = isolate_rejected(&items, &mut failing(&[poison], &mut calls), &mut canary, &mut false);
            let blamed: Vec<usize> = out.rejected.iter().map(|(i, _)| *i).collect();
            assert_eq!(blamed, vec![poison], "{out:?}");
            assert!(out.rejected[0].1.contains("500"), "{:?}", out.rejected);
            assert_eq!(all_indices(&out), items);
            assert!(out.vectors.iter().all(|(i, v)| *i != poison && v == &vec![*i as f32]));
            assert_eq!(out.error, None);
            // The search, then the input sent alone once more after the canary.
            assert!(calls <= 1 + 8 + 1, "poison {poison}: {calls} requests");
            assert_eq!(canaries, 2, "a canary before the search, and one before the blame");
        }
    }

    #[test]
    fn an_api_that_fails_everything_blames_no_input() {
        let items: Vec<usize> = (0..16).collect();
        let mut calls = 0;
        let mut canary = || {
            Err(ApiError::ServerError {
                status: 500,
                message: "down".into(),
                retry_after: None,
            })
        };
        let out = isolate_rejected(&items, &mut failing(&items, &mut calls), &mut canary, &mut false);
        assert!(out.rejected.is_empty(), "{out:?}");
        assert!(
            matches!(out.error, Some(ApiError::ServerError { status: 500, .. })),
            "{out:?}"
        );
        assert!(out.vectors.is_empty() && out.deferred.is_empty());
        assert_eq!(calls, 1, "the canary fails too: nothing to search");
    }

    #[test]
    fn an_outage_that_ends_during_the_search_blames_no_input() {
        let items: Vec<usize> = (0..16).collect();
        let mut calls = 0;
        // The API fails the first three requests with 500 (after their retries), then answers.
        let mut send = |items: &[usize]| -> Result<Vec<Vec<f32>>, ApiError> {
            calls += 1;
            if calls <= 3 {
                Err(ApiError::ServerError {
                    status: 500,
                    message: "down".into(),
                    retry_after: None,
                })
            } else {
                Ok(items.iter().map(|&i| vec![i as f32]).collect())
            }
        };
        let out = isolate_rejected(&items, &mut send, &mut canary_ok(), &mut false);
        assert!(out.rejected.is_empty(), "{out:?}");
        assert_eq!(out.error, None);
        assert_eq!(all_indices(&out), items, "every input answered or deferred");
        assert!(out.vectors.iter().all(|(i, v)| v == &vec![*i as f32]));
    }

    #[test]
    fn a_503_still_ends_the_search_without_bisecting() {
        let items: Vec<usize> = (0..16).collect();
        let mut calls = 0;
        let mut send = |_: &[usize]| -> Result<Vec<Vec<f32>>, ApiError> {
            calls += 1;
            Err(ApiError::ServerError {
                status: 503,
                message: "busy".into(),
                retry_after: None,
            })
        };
        let out = isolate_rejected(&items, &mut send, &mut canary_ok(), &mut false);
        assert_eq!(calls, 1);
        assert!(out.rejected.is_empty() && out.deferred.is_empty());
        assert!(matches!(out.error, Some(ApiError::ServerError { status: 503, .. })));
    }

    #[test]
    fn a_size_refusal_splits_without_blaming() {
        let items: Vec<usize> = (0..8).collect();
        let mut calls = 0;
        // The API takes at most 3 inputs a request and answers 413 above.
        let mut send = |items: &[usize]| {
            calls += 1;
            if items.len() > 3 {
                Err(ApiError::Rejected {
                    status: 413,
                    message: "too large".into(),
                    code: None,
                })
            } else {
                Ok(items.iter().map(|&i| vec![i as f32]).collect())
            }
        };
        let out = isolate_rejected(&items, &mut send, &mut canary_ok(), &mut false);
        assert!(out.rejected.is_empty());
        assert_eq!(out.error, None);
        let mut embedded: Vec<usize> = out.vectors.iter().map(|(i, _)| *i).collect();
        embedded.sort();
        assert_eq!(embedded, items, "every input embedded after splitting");
    }

    #[test]
    fn one_input_too_large_alone_is_an_error_not_a_rejection() {
        let mut send = |_: &[usize]| {
            Err(ApiError::Rejected {
                status: 413,
                message: "too large".into(),
                code: None,
            })
        };
        let out = isolate_rejected(&[1], &mut send, &mut canary_ok(), &mut false);
        assert!(out.rejected.is_empty());
        assert!(matches!(out.error, Some(ApiError::Rejected { status: 413, .. })));
    }

    #[test]
    fn other_errors_end_the_search_and_keep_what_was_answered() {
        let mut calls = 0;
        // The first request is rejected for an input, the left half is accepted, then the API
        // goes down.
        let mut send = |items: &[usize]| {
            calls += 1;
            match calls {
                1 => Err(rejected()),
                2 => Ok(items.iter().map(|&i| vec![i as f32]).collect()),
                _ => Err(ApiError::ServerError {
                    status: 503,
                    message: "down".into(),
                    retry_after: None,
                }),
            }
        };
        let out = isolate_rejected(&[1, 2, 3, 4], &mut send, &mut canary_ok(), &mut false);
        assert_eq!(
            out.vectors.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2],
            "paid for, kept"
        );
        assert!(out.rejected.is_empty(), "nothing proven");
        assert!(matches!(out.error, Some(ApiError::ServerError { .. })));
    }
}
