//! Finding the inputs an API rejects without giving up the rest of the batch.
//!
//! When a request fails with 400 (or 413/422) for its input, the inputs are split in halves and
//! the left half is sent. If it is accepted, the rejected input must be in the right half,
//! which is split again without being sent. If it is rejected too, the search goes on in the
//! left half, and the right half, untested, is *deferred*: left pending for a later batch, where
//! it travels in a full request. So one rejected input among n costs about log2(n) extra
//! requests, and every other input is embedded.
//!
//! A request that fails for another reason ends the search with that error. When the search
//! ends with nothing accepted, a tiny canary request (a fixed text) tells the two cases apart:
//! if the API rejects the canary too, it is refusing every request (a wrong model, say), and
//! that error is returned rather than blaming an input.
//!
//! Every batch either embeds or rejects at least one input, so a backlog always drains.

use crate::error::ApiError;

/// Where each input of a batch ended up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Isolated {
    /// Accepted inputs with their vectors.
    pub vectors: Vec<(usize, Vec<f32>)>,
    /// Inputs found to be rejected, with the API's message.
    pub rejected: Vec<(usize, String)>,
    /// Inputs not sent in this batch, in groups.
    pub deferred: Vec<Vec<usize>>,
}

/// Whether the API refused the request because of its input.
pub fn is_input_rejection(error: &ApiError) -> bool {
    matches!(error, ApiError::Rejected { status: 400 | 413 | 422, .. })
}

fn rejection_message(error: &ApiError) -> String {
    match error {
        ApiError::Rejected { status, message, .. } => format!("HTTP {status}: {message}"),
        other => other.to_string(),
    }
}

type Sender<'a> = dyn FnMut(&[usize]) -> Result<Vec<Vec<f32>>, ApiError> + 'a;

fn search(items: &[usize], known_rejected: Option<String>, send: &mut Sender, out: &mut Isolated) -> Result<(), ApiError> {
    let message = match known_rejected {
        Some(message) => message,
        None => match send(items) {
            Ok(vectors) => {
                out.vectors.extend(items.iter().copied().zip(vectors));
                return Ok(());
            }
            Err(error) if is_input_rejection(&error) => rejection_message(&error),
            Err(error) => return Err(error),
        },
    };
    if items.len() == 1 {
        out.rejected.push((items[0], message));
        return Ok(());
    }
    let (left, right) = items.split_at(items.len() / 2);
    match send(left) {
        Ok(vectors) => {
            out.vectors.extend(left.iter().copied().zip(vectors));
            search(right, Some(message), send, out)
        }
        Err(error) if is_input_rejection(&error) => {
            out.deferred.push(right.to_vec());
            search(left, Some(rejection_message(&error)), send, out)
        }
        Err(error) => Err(error),
    }
}

/// The text of the canary request.
pub const CANARY_TEXT: &str = "doctrove_embed canary";

/// Sends `items` (indices into the batch) with `send`, isolating inputs the API rejects.
/// `send` gets the indices of one request and returns their vectors in order; `canary` sends
/// [`CANARY_TEXT`] alone.
pub fn isolate_rejected(
    items: &[usize],
    send: &mut Sender,
    canary: &mut dyn FnMut() -> Result<(), ApiError>,
) -> Result<Isolated, ApiError> {
    let mut out = Isolated::default();
    if items.is_empty() {
        return Ok(out);
    }
    let first_error = match send(items) {
        Ok(vectors) => {
            out.vectors.extend(items.iter().copied().zip(vectors));
            return Ok(out);
        }
        Err(error) if is_input_rejection(&error) => error,
        Err(error) => return Err(error),
    };
    search(items, Some(rejection_message(&first_error)), send, &mut out)?;
    if out.vectors.is_empty() && items.len() > 1 {
        match canary() {
            Ok(()) => {}
            Err(error) if is_input_rejection(&error) => return Err(first_error),
            Err(error) => return Err(error),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake API: rejects any request holding a poisoned index, counts requests.
    fn fake<'a>(poisoned: &[usize], calls: &'a mut usize) -> impl FnMut(&[usize]) -> Result<Vec<Vec<f32>>, ApiError> + 'a {
        let poisoned = poisoned.to_vec();
        move |items: &[usize]| {
            *calls += 1;
            if items.iter().any(|i| poisoned.contains(i)) {
                Err(ApiError::Rejected { status: 400, message: "bad input".into(), code: None })
            } else {
                Ok(items.iter().map(|&i| vec![i as f32]).collect())
            }
        }
    }

    fn no_canary() -> impl FnMut() -> Result<(), ApiError> {
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
        let out = isolate_rejected(&items, &mut fake(&[], &mut calls), &mut no_canary()).unwrap();
        assert_eq!(calls, 1);
        assert_eq!(out.vectors.len(), 250);
        assert!(out.vectors.iter().all(|(i, v)| v == &vec![*i as f32]));
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
            let out = isolate_rejected(&items, &mut fake(&[poison], &mut calls), &mut canary).unwrap();
            assert_eq!(out.rejected.len(), 1, "poison {poison}");
            assert_eq!(out.rejected[0].0, poison);
            assert_eq!(all_indices(&out), items, "every input is accounted for exactly once");
            // 1 request of the clean run + at most ceil(log2 250) = 8 more (+1 canary when
            // nothing else was accepted).
            assert!(calls + canaries <= 1 + 8 + 1, "poison {poison}: {calls} requests, {canaries} canaries");
        }
    }

    #[test]
    fn several_rejected_inputs_are_all_found_or_deferred() {
        let items: Vec<usize> = (0..64).collect();
        let mut calls = 0;
        let out = isolate_rejected(&items, &mut fake(&[3, 40, 41], &mut calls), &mut no_canary()).unwrap();
        assert_eq!(all_indices(&out), items);
        let rejected: Vec<usize> = out.rejected.iter().map(|(i, _)| *i).collect();
        let deferred: Vec<usize> = out.deferred.iter().flatten().copied().collect();
        for poison in [3, 40, 41] {
            assert!(rejected.contains(&poison) || deferred.contains(&poison), "{poison} was embedded");
        }
        assert!(out.vectors.iter().all(|(i, _)| ![3, 40, 41].contains(i)));
    }

    #[test]
    fn an_api_that_rejects_everything_is_an_error_not_a_bad_input() {
        let items: Vec<usize> = (0..10).collect();
        let mut calls = 0;
        let mut canary = || Err(ApiError::Rejected { status: 400, message: "no such model".into(), code: None });
        let err = isolate_rejected(&items, &mut fake(&items, &mut calls), &mut canary).unwrap_err();
        assert!(is_input_rejection(&err));
    }

    #[test]
    fn a_batch_of_rejected_inputs_only_is_still_isolated() {
        let items: Vec<usize> = (0..3).collect();
        let mut calls = 0;
        let out = isolate_rejected(&items, &mut fake(&items, &mut calls), &mut no_canary()).unwrap();
        assert_eq!(out.rejected.len(), 1, "one rejected now, the rest deferred");
        assert_eq!(all_indices(&out), items);
    }

    #[test]
    fn a_single_rejected_input_is_rejected() {
        let mut calls = 0;
        let out = isolate_rejected(&[7], &mut fake(&[7], &mut calls), &mut no_canary()).unwrap();
        assert_eq!(out.rejected, vec![(7, "HTTP 400: bad input".to_string())]);
        assert_eq!(calls, 1);
    }

    #[test]
    fn other_errors_end_the_search() {
        let mut calls = 0;
        let mut send = |_: &[usize]| {
            calls += 1;
            Err(ApiError::ServerError { status: 500, message: "down".into(), retry_after: None })
        };
        let err = isolate_rejected(&[1, 2, 3], &mut send, &mut no_canary()).unwrap_err();
        assert!(matches!(err, ApiError::ServerError { .. }));
        assert_eq!(calls, 1);
    }
}
