//! When to send a failed request again: exponential back-off with jitter, or the wait the API
//! asked for (`retry-after-ms`, `retry-after`).

use std::time::Duration;

use crate::error::ApiError;

/// The back-off of one batch's requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`doctrove_embed.max_retries`).
    pub max_retries: u32,
    /// The wait before the first retry, doubled for each further one.
    pub base: Duration,
    /// The longest wait, whatever the attempt or the API asks.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first) after `error`, or `None` when the
    /// error is final or the retries are used up. `jitter` in [0, 1) spreads workers apart:
    /// the back-off is drawn from its upper half, and a wait the API asked for gets up to 10%
    /// more.
    pub fn delay(&self, retry: u32, error: &ApiError, jitter: f64) -> Option<Duration> {
        // An answer that does not fit the request is sent once more (an API can glitch), not
        // six times: each attempt is billed and the answer is usually the same.
        let once_more = matches!(error, ApiError::WrongShape { .. }) && retry == 1;
        if retry > self.max_retries || !(error.is_transient() || once_more) {
            return None;
        }
        let jitter = jitter.clamp(0.0, 1.0);
        let asked = match error {
            ApiError::RateLimited { retry_after, .. } | ApiError::ServerError { retry_after, .. } => *retry_after,
            _ => None,
        };
        let wait = match asked {
            Some(asked) => asked.mul_f64(1.0 + 0.1 * jitter),
            None => {
                let exponential = self.base.saturating_mul(1u32 << (retry - 1).min(20));
                exponential.min(self.max_delay).mul_f64(0.5 + 0.5 * jitter)
            }
        };
        Some(wait.min(self.max_delay))
    }
}

/// A jitter value in [0, 1) from `seed` (time, pid, attempt), well mixed (splitmix64).
pub fn jitter_from(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The pause after `failures` failures in a row of a worker, a job or a database's workers:
/// 2 s, 4 s, 8 s, ... doubling up to `max`.
pub fn pause_after_failures(failures: u32, max: Duration) -> Duration {
    (Duration::from_secs(1) * 2u32.saturating_pow(failures.min(9))).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error() -> ApiError {
        ApiError::ServerError {
            status: 500,
            message: "boom".into(),
            retry_after: None,
        }
    }

    #[test]
    fn the_back_off_doubles_within_its_jitter_band() {
        let policy = RetryPolicy::default();
        for retry in 1..=4 {
            let full = Duration::from_millis(500) * (1 << (retry - 1));
            let low = policy.delay(retry, &server_error(), 0.0).unwrap();
            let high = policy.delay(retry, &server_error(), 0.999).unwrap();
            assert_eq!(low, full / 2);
            assert!(high <= full && high > full.mul_f64(0.99), "{high:?} vs {full:?}");
        }
    }

    #[test]
    fn the_back_off_never_exceeds_the_maximum() {
        let policy = RetryPolicy {
            max_retries: 30,
            ..RetryPolicy::default()
        };
        assert!(policy.delay(30, &server_error(), 0.999).unwrap() <= Duration::from_secs(60));
    }

    #[test]
    fn a_wait_the_api_asks_for_is_honoured() {
        let error = ApiError::RateLimited {
            message: "x".into(),
            code: None,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(RetryPolicy::default().delay(1, &error, 0.0), Some(Duration::from_secs(3)));
    }

    #[test]
    fn retries_stop_after_the_maximum() {
        let policy = RetryPolicy {
            max_retries: 2,
            ..RetryPolicy::default()
        };
        assert!(policy.delay(2, &server_error(), 0.5).is_some());
        assert_eq!(policy.delay(3, &server_error(), 0.5), None);
    }

    #[test]
    fn final_errors_are_not_retried() {
        let quota = ApiError::RateLimited {
            message: "x".into(),
            code: Some("insufficient_quota".into()),
            retry_after: None,
        };
        let unauthorized = ApiError::Unauthorized {
            status: 401,
            message: "x".into(),
        };
        let bad_input = ApiError::Rejected {
            status: 400,
            message: "x".into(),
            code: None,
        };
        for error in [quota, unauthorized, bad_input] {
            assert_eq!(RetryPolicy::default().delay(1, &error, 0.5), None, "{error:?}");
        }
    }

    #[test]
    fn pauses_after_failures_double_up_to_their_bound() {
        let max = Duration::from_secs(300);
        let pauses: Vec<u64> = [1, 2, 3, 8, 9, 20]
            .iter()
            .map(|&n| pause_after_failures(n, max).as_secs())
            .collect();
        assert_eq!(pauses, vec![2, 4, 8, 256, 300, 300]);
        assert_eq!(pause_after_failures(0, max), Duration::from_secs(1));
    }

    #[test]
    fn timeouts_conflicts_and_malformed_answers_are_retried() {
        let policy = RetryPolicy::default();
        let timeout = ApiError::Timeout {
            url: "u".into(),
            timeout_ms: 1,
        };
        let conflict = ApiError::Rejected {
            status: 409,
            message: "x".into(),
            code: None,
        };
        let malformed = ApiError::Malformed("x".into());
        for error in [timeout, conflict, malformed] {
            assert!(policy.delay(1, &error, 0.5).is_some(), "{error:?}");
        }
    }

    #[test]
    fn an_answer_that_does_not_fit_is_retried_once_only() {
        let policy = RetryPolicy::default();
        let wrong = ApiError::WrongShape {
            problem: "embedding 0 has 3 dimensions, expected 4".into(),
            dimensions: true,
        };
        assert!(policy.delay(1, &wrong, 0.5).is_some());
        assert_eq!(policy.delay(2, &wrong, 0.5), None);
        assert_eq!(
            RetryPolicy {
                max_retries: 0,
                ..policy
            }
            .delay(1, &wrong, 0.5),
            None
        );
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let values: Vec<f64> = (0..100).map(jitter_from).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(values.windows(2).any(|w| (w[0] - w[1]).abs() > 0.1));
    }
}
